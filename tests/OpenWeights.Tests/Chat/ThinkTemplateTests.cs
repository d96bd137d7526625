using OpenWeights.Inference.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// The real chat templates of &lt;think&gt; models (../shared/testdata/chat-templates/llama.cpp): which ones think is
/// read from the template (not the model's name); whether a reply begins inside the thinking is read from the rendered
/// prompt, with the per-request switch (<c>enable_thinking</c>, <c>thinking</c>) where the template has one; and an
/// assistant turn's reasoning reaches the template as <c>reasoning_content</c>, which the template keeps or drops itself.
/// </summary>
public class ThinkTemplateTests
{
    private static string Template(string file) => File.ReadAllText(TestData.Require("chat-templates/llama.cpp/" + file));

    private static ChatFormatter Formatter(string file) => new(Tokenizer.FromGguf(TinyModels.Qwen), Template(file));

    private static readonly ChatTurn[] Question = [ChatTurn.User("What is 2+2?")];

    [Theory]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", true)]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", true)]
    [InlineData("llama-cpp-deepseek-r1.jinja", true)]
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja", true)]
    [InlineData("deepseek-ai-DeepSeek-V3.2.jinja", true)]
    [InlineData("Qwen-Qwen3-0.6B.jinja", true)]
    [InlineData("Qwen-QwQ-32B.jinja", true)]
    [InlineData("Kimi-K2-Thinking.jinja", true)]
    [InlineData("Qwen-Qwen2.5-7B-Instruct.jinja", false)]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct.jinja", false)]
    [InlineData("moonshotai-Kimi-K2.jinja", false)]
    [InlineData("mistralai-Mistral-Nemo-Instruct-2407.jinja", false)]
    [InlineData("openai-gpt-oss-120b.jinja", false)] // thinks in harmony channels, not tags
    public void ThinkingModelsAreKnownByTheirTemplate(string file, bool thinking)
    {
        var f = Formatter(file);
        Assert.Equal(thinking, f.IsThinking);
        Assert.Equal(thinking, ChatFormatter.IsThinkingSource(Template(file)));
        Assert.Equal(thinking || f.IsHarmony, f.SeparatesReasoning);
    }

    /// <summary>Whether the generation prompt opens the thinking, by default and with the template's switch.</summary>
    [Theory]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", null, true)]  // R1 always opens it
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", null, false)] // llama.cpp's copy closes it unless enable_thinking
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "enable_thinking=true", true)]
    [InlineData("llama-cpp-deepseek-r1.jinja", null, true)]
    [InlineData("Qwen-Qwen3-0.6B.jinja", null, false)]                           // Qwen3: the model opens it itself
    [InlineData("Qwen-Qwen3-0.6B.jinja", "enable_thinking=false", false)]        // ... or the prompt closes an empty one
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja", null, false)]                 // V3.1 thinks only when asked
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja", "thinking=true", true)]
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja", "enable_thinking=true", true)]
    [InlineData("deepseek-ai-DeepSeek-V3.2.jinja", null, false)]
    [InlineData("deepseek-ai-DeepSeek-V3.2.jinja", "enable_thinking=true", true)]
    [InlineData("Qwen-QwQ-32B.jinja", null, false)]                             // llama.cpp's copy: as R1-Distill-Qwen
    [InlineData("Qwen-QwQ-32B.jinja", "enable_thinking=true", true)]
    [InlineData("Kimi-K2-Thinking.jinja", null, false)]                          // Kimi K2 Thinking writes <think> itself
    public void TheRenderedPromptTellsWhetherTheReplyBeginsInsideTheThinking(string file, string? variable, bool open)
    {
        var f = Formatter(file);
        Dictionary<string, object?>? extra = variable is null ? null : new() { [variable.Split('=')[0]] = variable.EndsWith("=true", StringComparison.Ordinal) };
        string rendered = f.Render(Question, extra: extra);
        Assert.Equal(open, ThinkReplyParser.OpensThinking(rendered));
        Assert.Equal(open, f.OpensThinking(Question, extra));
        // a reply parsed against that prompt: the reasoning apart from the answer, however the thinking was opened
        string reply = open ? "Two and two.\n</think>\n\nIt is 4." : "<think>\nTwo and two.\n</think>\n\nIt is 4.";
        var parsed = f.ParseReply(reply, rendered);
        Assert.Equal(("Two and two.", "It is 4."), (parsed.Reasoning, parsed.Content));
    }

    [Fact]
    public void ThinkingVariablesSwitchQwen3AndDeepSeekV31()
    {
        string qwenOff = Formatter("Qwen-Qwen3-0.6B.jinja").Render(Question, extra: ChatFormatter.ThinkingVariables(false));
        Assert.EndsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n", qwenOff);
        var v31 = Formatter("deepseek-ai-DeepSeek-V3.1.jinja");
        Assert.EndsWith("<｜Assistant｜><think>", v31.Render(Question, extra: ChatFormatter.ThinkingVariables(true)));
        Assert.EndsWith("<｜Assistant｜><think></think>", v31.Render(Question, extra: ChatFormatter.ThinkingVariables(false)));
        // with the thinking closed by the prompt, the answer is all content
        Assert.Equal(((string?)null, "Hello!"), (Formatter("Qwen-Qwen3-0.6B.jinja").ParseReply("Hello!", qwenOff) is var p ? (p.Reasoning, p.Content) : default));
    }

    /// <summary>Without a prompt, the parser assumes the template's usual generation prompt: R1's opens the thinking.</summary>
    [Fact]
    public void WithoutAPromptTheTemplatesUsualStartIsAssumed()
    {
        var r1 = Formatter("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja").ParseReply("Hmm.\n</think>\n\nFour.");
        Assert.Equal(("Hmm.", "Four."), (r1.Reasoning, r1.Content));
        var qwen = Formatter("Qwen-Qwen3-0.6B.jinja").ParseReply("<think>\nHmm.\n</think>\n\nFour.");
        Assert.Equal(("Hmm.", "Four."), (qwen.Reasoning, qwen.Content));
        var plain = Formatter("Qwen-Qwen2.5-7B-Instruct.jinja").ParseReply("<think>x</think>y");
        Assert.Equal(((string?)null, "<think>x</think>y"), (plain.Reasoning, plain.Content)); // not a thinking template: text stays
    }

    /// <summary>Qwen3 thinks, then calls a tool: the reasoning and the call come apart, nothing is left as content.</summary>
    [Fact]
    public void Qwen3ThinksThenCallsATool()
    {
        var f = Formatter("Qwen-Qwen3-0.6B.jinja");
        Assert.Equal(ToolCallFormat.Hermes, f.ToolFormat);
        const string reply = "<think>\nThe user wants the weather; call get_weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        var parsed = f.ParseReply(reply, f.Render(Question));
        Assert.Equal("The user wants the weather; call get_weather.", parsed.Reasoning);
        Assert.Equal("", parsed.Content);
        Assert.Equal("get_weather", Assert.Single(parsed.ToolCalls).Name);
        // without tool calls asked for, the answer is text as written
        var text = f.ParseReply(reply, f.Render(Question), toolCalls: false);
        Assert.StartsWith("<tool_call>", text.Content);
        Assert.Empty(text.ToolCalls);
    }

    /// <summary>The reasoning of earlier assistant turns reaches each template as reasoning_content; the template decides what it shows.</summary>
    [Fact]
    public void EarlierReasoningReachesTheTemplateWhichKeepsOrDropsIt()
    {
        const string thought = "Carry the one.", answer = "It is 4.";
        var turn = new ChatTurn("assistant", answer, Reasoning: thought);

        // Qwen3: the thinking of the turn after the last question is rendered, older thinking is dropped
        var qwen = Formatter("Qwen-Qwen3-0.6B.jinja");
        Assert.Contains("<|im_start|>assistant\n<think>\n" + thought + "\n</think>\n\n" + answer, qwen.Render([.. Question, turn], addGenerationPrompt: false));
        Assert.DoesNotContain(thought, qwen.Render([.. Question, turn, ChatTurn.User("And 3+3?")]));

        // DeepSeek-V3.2 in thinking mode keeps the thinking of the current exchange
        var v32 = Formatter("deepseek-ai-DeepSeek-V3.2.jinja");
        Assert.Contains("<｜Assistant｜><think>" + thought + "</think>" + answer, v32.Render([.. Question, turn], addGenerationPrompt: false, extra: ChatFormatter.ThinkingVariables(true)));

        // (Kimi K2 Thinking's keeps the thinking of a tool-call chain, but its template calls list.append, which our
        // sandbox refuses as transformers' does: it is not rendered here)

        // R1 drops earlier thinking (only the answer is shown again)
        var r1 = Formatter("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
        string rendered = r1.Render([.. Question, turn, ChatTurn.User("And 3+3?")]);
        Assert.Contains("<｜Assistant｜>" + answer + "<｜end▁of▁sentence｜>", rendered);
        Assert.DoesNotContain(thought, rendered);
    }

    /// <summary>&lt;think&gt; and &lt;/think&gt; as control tokens of a vocabulary are still written into the reply text, so the parser sees them.</summary>
    [Fact]
    public void ThinkTagsThatAreControlTokensAreKeptInTheReply()
    {
        var tok = Tokenizer.FromGguf(ThinkTinyModel.Path);
        var f = new ChatFormatter(tok);
        int open = tok.TokenToId("<think>"), close = tok.TokenToId("</think>");
        Assert.True(tok.IsControl(open) && tok.IsControl(close));
        var keep = f.ForReply(new OpenWeights.Inference.GenerationOptions()).KeepSpecialTokens;
        Assert.NotNull(keep);
        Assert.Contains(open, keep);
        Assert.Contains(close, keep);
        // a template that does not think keeps no such tokens
        var plain = new ChatFormatter(tok, Template("Qwen-Qwen2.5-7B-Instruct.jinja"));
        Assert.False(plain.ForReply(new OpenWeights.Inference.GenerationOptions()).KeepSpecialTokens?.Contains(open) ?? false);
    }
}
