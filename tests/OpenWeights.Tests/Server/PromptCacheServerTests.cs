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

/// <summary><c>ignore_eos</c> (llama.cpp's server and vLLM read it; benchmarks rely on it): end-of-generation tokens do
/// not end the reply.</summary>
public class IgnoreEosTests
{
    [Fact]
    public async Task Ignore_eos_runs_the_reply_to_max_tokens()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 2 });
        using var http = f.CreateClient();
        int eos = f.ModelHost.Tokenizer.Eos;
        Assert.True(eos >= 0);
        async Task<System.Text.Json.Nodes.JsonNode> Ask(bool ignore)
        {
            var body = new System.Text.Json.Nodes.JsonObject
            {
                ["prompt"] = "hello", ["max_tokens"] = 6, ["temperature"] = 0, ["ignore_eos"] = ignore,
                ["logit_bias"] = new System.Text.Json.Nodes.JsonObject { [eos.ToString()] = 100 }, // the end is the likeliest token
            };
            using var resp = await http.PostAsync("/v1/completions", new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
            var text = await resp.Content.ReadAsStringAsync();
            Assert.True(resp.IsSuccessStatusCode, text);
            return System.Text.Json.Nodes.JsonNode.Parse(text)!;
        }
        var stopped = await Ask(false);
        Assert.Equal("stop", (string?)stopped["choices"]![0]!["finish_reason"]);
        var ran = await Ask(true);
        Assert.Equal(6, (int)ran["usage"]!["completion_tokens"]!);
        Assert.Equal("length", (string?)ran["choices"]![0]!["finish_reason"]);
    }
}
