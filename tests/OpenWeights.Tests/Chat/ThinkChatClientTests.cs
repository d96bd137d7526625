using Microsoft.Extensions.AI;
using OpenWeights.Extensions.AI;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// &lt;think&gt; replies through our <see cref="IChatClient"/>: the thinking is <see cref="TextReasoningContent"/>
/// (streamed), the answer the text, whether the tags are single tokens or split over several; the thinking switch
/// reaches the template from <see cref="ChatOptions.Reasoning"/> and from AdditionalProperties["chat_template_kwargs"].
/// The tiny model is an R1 distill (<see cref="ThinkTinyModel"/>: its prompt opens the thinking); its output is forced.
/// </summary>
public class ThinkChatClientTests
{
    private const string Thinking = "Two and two make four.";
    private const string Answer = "It is four.";
    private const string Reply = Thinking + "\n</think>\n\n" + Answer; // R1: the prompt opened the thinking

    private static ForcedTokens Forced(Tokenizer tok, string text, bool tagsAsTokens = true) =>
        new(tok.Encode(text, addSpecial: false, parseSpecial: tagsAsTokens));

    private static string Reasoning(IEnumerable<ChatResponseUpdate> updates) =>
        string.Concat(updates.SelectMany(u => u.Contents).OfType<TextReasoningContent>().Select(t => t.Text));

    private static string Text(IEnumerable<ChatResponseUpdate> updates) =>
        string.Concat(updates.SelectMany(u => u.Contents).OfType<TextContent>().Select(t => t.Text));

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // </think> written as several tokens: the parser joins the pieces
    public async Task ThinkingIsTextReasoningContentAndTheAnswerIsText(bool tagsAsTokens)
    {
        using var m = DecoderModel.Load(ThinkTinyModel.Path);
        var tok = Tokenizer.FromGguf(m.Source);
        if (!tagsAsTokens) Assert.True(tok.Encode("</think>", addSpecial: false, parseSpecial: false).Length > 1);
        using var client = new OpenWeightsChatClient(m, null, 2048, 2) { JsonConstraintFactory = (t, _) => Forced(t, Reply, tagsAsTokens) };
        Assert.True(client.Formatter.IsThinking);
        ChatMessage[] msgs = [new(ChatRole.User, "What is 2+2?")];
        var opts = new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 200 };

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(msgs, opts)) updates.Add(u);
        int reasoningUpdates = updates.Count(u => u.Contents.OfType<TextReasoningContent>().Any());
        Assert.True(reasoningUpdates > 3, $"reasoning came in {reasoningUpdates} updates: it should stream");
        Assert.Equal(Thinking, Reasoning(updates));
        Assert.Equal(Answer, Text(updates));
        int firstText = updates.FindIndex(u => u.Contents.OfType<TextContent>().Any());
        Assert.True(updates.FindLastIndex(u => u.Contents.OfType<TextReasoningContent>().Any()) < firstText, "reasoning after the answer");
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);

        var r = await client.GetResponseAsync(msgs, opts);
        Assert.Equal(Answer, r.Text); // the thinking is not text
        Assert.DoesNotContain("think>", r.Text);
        Assert.Equal(Thinking, string.Concat(r.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>().Select(t => t.Text)));

        // ReasoningOutput.None leaves the thinking out
        var quiet = await client.GetResponseAsync(msgs, new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 200, Reasoning = new ReasoningOptions { Output = ReasoningOutput.None } });
        Assert.Equal(Answer, quiet.Text);
        Assert.Empty(quiet.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>());

        // the thinking goes back to the template as the assistant's reasoning
        var turns = OpenWeightsChatClient.ToTurns([.. msgs, .. r.Messages]);
        Assert.Equal((Thinking, Answer), (turns[^1].Reasoning, turns[^1].Content));
    }

    /// <summary>A reply cut off inside the thinking (max tokens) is all reasoning: nothing of it leaks into the text.</summary>
    [Fact]
    public async Task AReplyCutOffWhileThinkingIsAllReasoning()
    {
        using var m = DecoderModel.Load(ThinkTinyModel.Path);
        using var client = new OpenWeightsChatClient(m, null, 2048, 2) { JsonConstraintFactory = (t, _) => Forced(t, Reply) };
        int thinkingTokens = Tokenizer.FromGguf(m.Source).Encode(Thinking, addSpecial: false).Length;
        var r = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "What is 2+2?")],
            new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = thinkingTokens - 1 });
        Assert.Equal(ChatFinishReason.Length, r.FinishReason);
        Assert.Equal("", r.Text);
        string reasoning = string.Concat(r.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>().Select(t => t.Text));
        Assert.True(reasoning.Length > 0 && Thinking.StartsWith(reasoning, StringComparison.Ordinal), reasoning);
    }

    /// <summary>
    /// Qwen3's template on the same model: the model opens the thinking itself; ReasoningEffort.None, and
    /// AdditionalProperties["chat_template_kwargs"] = {enable_thinking: false}, render the prompt with the thinking closed,
    /// and the reply is then all answer.
    /// </summary>
    [Fact]
    public async Task TheThinkingSwitchReachesTheTemplate()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        using var m = DecoderModel.Load(ThinkTinyModel.Path);
        string next = "<think>\nhm\n</think>\n\nHello!";
        using var client = new OpenWeightsChatClient(m, qwen3, 2048, 2) { JsonConstraintFactory = (t, _) => Forced(t, next) };
        ChatMessage[] msgs = [new(ChatRole.User, "Hi")];
        var f = client.Formatter;
        int on = f.Encode(f.Render([ChatTurn.User("Hi")])).Length;
        int off = f.Encode(f.Render([ChatTurn.User("Hi")], extra: ChatFormatter.ThinkingVariables(false))).Length;
        Assert.True(off > on);

        var thinking = await client.GetResponseAsync(msgs, new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 100 });
        Assert.Equal(("hm", "Hello!"), (string.Concat(thinking.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>().Select(t => t.Text)), thinking.Text));
        Assert.Equal(on, thinking.Usage!.InputTokenCount);

        next = "Hello!";
        var viaEffort = await client.GetResponseAsync(msgs, new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 100, Reasoning = new ReasoningOptions { Effort = ReasoningEffort.None },
        });
        Assert.Equal(off, viaEffort.Usage!.InputTokenCount);
        Assert.Equal("Hello!", viaEffort.Text);
        Assert.Empty(viaEffort.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>());

        var viaKwargs = await client.GetResponseAsync(msgs, new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 100,
            AdditionalProperties = new() { [OpenWeightsChatClient.ChatTemplateKwargs] = new Dictionary<string, object?> { ["enable_thinking"] = false } },
        });
        Assert.Equal(off, viaKwargs.Usage!.InputTokenCount);
        Assert.Equal("Hello!", viaKwargs.Text);

        await Assert.ThrowsAsync<OpenWeightsException>(() => client.GetResponseAsync(msgs, new ChatOptions
        {
            AdditionalProperties = new() { [OpenWeightsChatClient.ChatTemplateKwargs] = "enable_thinking=false" },
        }));
    }
}

/// <summary>The CLI chat loop on an R1 model: the answer is written, the thinking only when asked (dimmed), and the history keeps them apart.</summary>
public class ThinkChatLoopTests
{
    /// <summary>Forces a token sequence, then the end token, and starts over for the next reply.</summary>
    private sealed class EveryReply(int[] tokens, int end) : OpenWeights.Inference.Constraints.ITokenConstraint
    {
        private int pos;
        public void MaskLogits(Span<float> logits)
        {
            int want = pos < tokens.Length ? tokens[pos] : end;
            if (pos >= tokens.Length) pos = 0; // the end token stops this reply without Accept; the next reply starts again
            for (int i = 0; i < logits.Length; i++) if (i != want) logits[i] = float.NegativeInfinity;
        }
        public void Accept(int tokenId) => pos++;
        public bool IsComplete => false;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ChatLoopWritesTheAnswerAndKeepsTheThinkingApart(bool showReasoning)
    {
        const string thinking = "Say hello back.", answer = "Hello there!";
        using var m = DecoderModel.Load(ThinkTinyModel.Path);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        var session = new InferenceSession(m, 2048, 2);
        var forced = new EveryReply(tok.Encode(thinking + "\n</think>\n\n" + answer, addSpecial: false, parseSpecial: true), tok.Eos);
        var loop = new OpenWeights.Cli.Commands.ChatLoop(session, f, new GenerationOptions { MaxTokens = 200, Constraint = forced }, null) { ShowReasoning = showReasoning };
        var output = new StringWriter();
        await loop.RunAsync(new StringReader("hi\nagain\n"), output);
        string o = output.ToString();
        Assert.Equal(2, o.Split(answer).Length - 1); // both replies: the second turn rendered with the first in its history
        Assert.DoesNotContain("think>", o);
        Assert.Equal(showReasoning, o.Contains("\u001b[2m" + thinking + "\u001b[0m\n" + answer, StringComparison.Ordinal));
        if (!showReasoning) Assert.DoesNotContain(thinking, o);
        var first = loop.History[1];
        Assert.Equal(("assistant", answer, thinking), (first.Role, first.Content, first.Reasoning));
        Assert.Equal(4, loop.History.Count);
    }
}
