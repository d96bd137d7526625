using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenWeights.Extensions.AI;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// gpt-oss harmony replies through our <see cref="IChatClient"/> and through the generator token by token: the
/// analysis channel is <see cref="TextReasoningContent"/> (streamed), the final channel the text, a commentary call a
/// <see cref="FunctionCallContent"/>. The tiny harmony model's output is forced to what gpt-oss writes (see
/// <see cref="HarmonyTinyModel"/>).
/// </summary>
public class HarmonyChatClientTests
{
    private const string Thinking = "Two and two make four.";
    private const string Answer = "It is four.";
    private const string Reply = "<|channel|>analysis<|message|>" + Thinking + "<|end|><|start|>assistant<|channel|>final<|message|>" + Answer + "<|return|>";
    private const string CallReply = "<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}<|call|>";

    private static ForcedTokens Forced(Tokenizer tok, string text) => new(tok.Encode(text, addSpecial: false, parseSpecial: true));

    [Fact]
    public async Task ReasoningIsTextReasoningContentAndTheAnswerIsText()
    {
        using var m = DecoderModel.Load(HarmonyTinyModel.Path);
        using var client = new OpenWeightsChatClient(m, null, 2048, 2) { JsonConstraintFactory = (tok, _) => Forced(tok, Reply) };
        Assert.True(client.Formatter.IsHarmony);
        ChatMessage[] msgs = [new(ChatRole.User, "What is 2+2?")];
        var opts = new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 200 };

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(msgs, opts)) updates.Add(u);
        var reasoningUpdates = updates.Where(u => u.Contents.OfType<TextReasoningContent>().Any()).ToList();
        Assert.True(reasoningUpdates.Count > 3, $"reasoning came in {reasoningUpdates.Count} updates: it should stream");
        Assert.Equal(Thinking, string.Concat(updates.SelectMany(u => u.Contents).OfType<TextReasoningContent>().Select(t => t.Text)));
        Assert.Equal(Answer, string.Concat(updates.SelectMany(u => u.Contents).OfType<TextContent>().Select(t => t.Text)));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);

        var r = await client.GetResponseAsync(msgs, opts);
        Assert.Equal(Answer, r.Text); // the reasoning is not text
        Assert.Equal(Thinking, string.Concat(r.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>().Select(t => t.Text)));

        // ReasoningOutput.None leaves the thinking out
        var quiet = await client.GetResponseAsync(msgs, new ChatOptions { ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 200, Reasoning = new ReasoningOptions { Output = ReasoningOutput.None } });
        Assert.Equal(Answer, quiet.Text);
        Assert.Empty(quiet.Messages.SelectMany(x => x.Contents).OfType<TextReasoningContent>());

        // the reasoning goes back to the template as the assistant's thinking
        var turns = OpenWeightsChatClient.ToTurns([.. msgs, .. r.Messages]);
        Assert.Equal(Thinking, turns[^1].Reasoning);
        Assert.Equal(Answer, turns[^1].Content);
    }

    [Fact]
    public async Task CommentaryCallIsFunctionCallContent()
    {
        using var m = DecoderModel.Load(HarmonyTinyModel.Path);
        using var client = new OpenWeightsChatClient(m, null, 2048, 2) { JsonConstraintFactory = (tok, _) => Forced(tok, CallReply) };
        var opts = new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 200,
            Tools = [AIFunctionFactory.Create((string city) => "rain", "get_weather", "Current weather")],
        };
        var r = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")], opts);
        Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
        var call = Assert.Single(r.Messages.SelectMany(x => x.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Oslo", call.Arguments!["city"]!.ToString());
        Assert.Equal("", r.Text);
        // the call, its thinking and its result render back in harmony
        var turns = OpenWeightsChatClient.ToTurns([new ChatMessage(ChatRole.User, "Weather in Oslo?"), .. r.Messages,
            new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, "rain")])]);
        string rendered = client.Formatter.Render(turns, [new OpenWeights.Inference.Chat.ChatTool("get_weather", "Current weather", null)]);
        Assert.Contains("<|start|>assistant<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Oslo\"}<|call|>", rendered);
        Assert.Contains("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\"rain\"<|end|>", rendered);
    }

    /// <summary>
    /// Token by token through the generator with the formatter's reply options: the markers come out as text, the
    /// reply goes on after the analysis's &lt;|end|&gt; and stops at &lt;|return|&gt; (not written), and a parser fed
    /// each chunk as it comes gives the reasoning and the answer.
    /// </summary>
    [Fact]
    public async Task GeneratorStreamsHarmonyTokenByToken()
    {
        using var m = DecoderModel.Load(HarmonyTinyModel.Path);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        var session = new InferenceSession(m, 2048, 2);
        var prompt = f.EncodeConversation([ChatTurn.User("What is 2+2?")]);
        var forced = Forced(tok, Reply + "never reached");
        var options = f.ForReply(new GenerationOptions { MaxTokens = 300, Constraint = forced });
        var parser = f.CreateReplyParser();
        var chunks = new List<string>();
        FinishReason? finish = null;
        await foreach (var c in Generator.GenerateAsync(session, tok, prompt, options))
        {
            chunks.Add(c.Text);
            parser.Push(c.Text);
            finish ??= c.Finish;
        }
        parser.Complete();
        Assert.Equal(FinishReason.Stop, finish);
        Assert.Equal(Reply[..^"<|return|>".Length], string.Concat(chunks)); // everything up to <|return|>, markers as text
        Assert.Contains("<|end|>", chunks);     // a marker is one token, one chunk
        Assert.Contains("<|channel|>", chunks);
        Assert.Equal(Thinking, parser.Result.Reasoning);
        Assert.Equal(Answer, parser.Result.Content);
    }
}

/// <summary>The CLI chat loop on a harmony model: the answer is written, the thinking only when asked (dimmed), and the history keeps them apart so the next turn renders.</summary>
public class HarmonyChatLoopTests
{
    /// <summary>Forces a token sequence, then the end token, and starts over for the next reply (the end token is never accepted).</summary>
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
        using var m = OpenWeights.Models.DecoderModel.Load(HarmonyTinyModel.Path);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        var session = new InferenceSession(m, 2048, 2);
        var forced = new EveryReply(tok.Encode("<|channel|>analysis<|message|>" + thinking + "<|end|><|start|>assistant<|channel|>final<|message|>" + answer,
            addSpecial: false, parseSpecial: true), tok.TokenToId("<|return|>"));
        var loop = new OpenWeights.Cli.Commands.ChatLoop(session, f, new GenerationOptions { MaxTokens = 200, Constraint = forced }, null) { ShowReasoning = showReasoning };
        var output = new StringWriter();
        await loop.RunAsync(new StringReader("hi\nagain\n"), output);
        string o = output.ToString();
        Assert.Equal(2, o.Split(answer).Length - 1); // both replies: the second turn rendered with the first in its history
        Assert.DoesNotContain("<|", o);
        Assert.Equal(showReasoning, o.Contains("\u001b[2m" + thinking, StringComparison.Ordinal));
        if (!showReasoning) Assert.DoesNotContain(thinking, o);
        var first = loop.History[1];
        Assert.Equal(("assistant", answer, thinking), (first.Role, first.Content, first.Reasoning));
        Assert.Equal(4, loop.History.Count);
    }
}
