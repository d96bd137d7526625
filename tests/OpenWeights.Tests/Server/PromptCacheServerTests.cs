using OpenAI.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>
/// The prompt cache as the official OpenAI client sees it on a real port: conversations that share a long system prompt
/// report the shared tokens as <c>usage.prompt_tokens_details.cached_tokens</c> (the first computes them: 0), in whichever
/// slot they land, and the replies are the same as from a server without the cache.
/// </summary>
public class PromptCacheServerTests
{
    private static readonly string System = string.Concat(Enumerable.Range(0, 12).Select(i => $"Policy {i}: answer briefly and cite the record. "));

    private static async Task<(string Text, int Cached, int Prompt)> Ask(ChatClient client, string question)
    {
        OaChatMessage[] msgs = [new SystemChatMessage(System), new UserChatMessage(question)];
        var r = (await client.CompleteChatAsync(msgs, new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 })).Value;
        return (r.Content[0].Text, r.Usage.InputTokenDetails?.CachedTokenCount ?? -1, r.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Shared_system_prompts_are_reported_as_cached_tokens_and_change_nothing()
    {
        string[] questions = ["Which records?", "How long are they kept?", "Who may read them?", "What if one is lost?"];
        var plain = new List<string>();
        await using (var s = await KestrelServer.StartAsync(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 4, ContextSize = 2048, Threads = 2, PromptCacheBytes = 0 }))
        {
            var client = new ChatClient(s.ModelHost.ModelId, Creds.Key(), s.SdkOptions());
            foreach (var q in questions) plain.Add((await Ask(client, q)).Text);
        }

        await using var server = await KestrelServer.StartAsync(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 4, ContextSize = 2048, Threads = 2, PromptCacheBytes = 64 << 20 });
        var c = new ChatClient(server.ModelHost.ModelId, Creds.Key(), server.SdkOptions());
        var first = await Ask(c, questions[0]);
        Assert.Equal(0, first.Cached);
        Assert.Equal(plain[0], first.Text);
        // the others at once: they land in other slots, whose own caches are empty; only the prompt cache has the prefix
        var rest = await Task.WhenAll(questions.Skip(1).Select(q => Ask(c, q)));
        for (int i = 0; i < rest.Length; i++)
        {
            Assert.Equal(plain[i + 1], rest[i].Text);
            Assert.InRange(rest[i].Cached, 64, rest[i].Prompt - 1);
        }
        Assert.True(server.ModelHost.Scheduler.PromptCache!.TokensReused > 0);
    }
}
