#pragma warning disable SCME0001 // JsonPatch (the SDK's access to fields it does not model) is marked experimental
using System.Text;
using OpenAI.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Chat Completions' reasoning through the official OpenAI .NET client (2.15.0) on a real Kestrel port: the client has no
/// reasoning field, but reads <c>reasoning_content</c> (message and streamed deltas) through its JsonPatch, beside the
/// content it models. The model is tiny-qwen2 as an R1 distill; a constraint forces the reply.
/// </summary>
public class ChatSdkDeltaTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";

    [Fact]
    public async Task Reasoning_content_reaches_the_OpenAI_client_whole_and_as_deltas_before_the_content()
    {
        await using var s = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = ThinkTinyModel.Path, Parallel = 1, ContextSize = 2048, Threads = 2,
            JsonConstraintFactory = (tok, _) => new ForcedTokens(tok.Encode(Thinking + "\n</think>\n\n" + Answer, addSpecial: false, parseSpecial: true)),
        });
        var client = new ChatClient(s.ModelHost.ModelId, Creds.Key(), s.SdkOptions());
        OaChatMessage[] msgs = [new UserChatMessage("What is 2+2?")];
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 300, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };

        var whole = (await client.CompleteChatAsync(msgs, options)).Value;
        Assert.Equal(Answer, Assert.Single(whole.Content).Text);
        Assert.True(whole.Patch.TryGetValue("$.choices[0].message.reasoning_content"u8, out string? reasoning), "no reasoning_content in the message");
        Assert.Equal(Thinking, reasoning);

        var thought = new StringBuilder();
        var answer = new StringBuilder();
        int reasoningDeltas = 0;
        bool contentSeen = false, reasoningAfterContent = false;
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, options))
        {
            if (u.Patch.TryGetValue("$.choices[0].delta.reasoning_content"u8, out string? r) && r is { Length: > 0 })
            {
                thought.Append(r);
                reasoningDeltas++;
                reasoningAfterContent |= contentSeen;
            }
            foreach (var part in u.ContentUpdate) { answer.Append(part.Text); contentSeen |= part.Text.Length > 0; }
        }
        Assert.Equal(Thinking, thought.ToString());
        Assert.Equal(Answer, answer.ToString());
        Assert.True(reasoningDeltas > 3, $"reasoning came in {reasoningDeltas} deltas: it should stream token by token");
        Assert.False(reasoningAfterContent);
    }
}
