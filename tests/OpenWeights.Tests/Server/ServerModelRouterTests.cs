using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using OpenAI.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using Xunit;

namespace OpenWeights.Tests.Server;

/// <summary>Several models in one server (--models-dir): routing by name, loading on first use, idle unloading, the memory budget.</summary>
public class ServerModelRouterTests(ITestOutputHelper output)
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private static string Body(string model) =>
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"Tell me a story about a cat."}],"max_tokens":10,"temperature":0,"logprobs":true}""";

    private static async Task<(HttpStatusCode Status, JsonNode Body)> Post(HttpClient http, Uri uri, string path, string body)
    {
        using var r = await http.PostAsync(new Uri(uri, path), Json(body));
        return (r.StatusCode, JsonNode.Parse(await r.Content.ReadAsStringAsync())!);
    }

    private static string Reply(JsonNode r) => r["choices"]![0]!["message"]!["content"]!.ToJsonString() + r["choices"]![0]!["logprobs"]!.ToJsonString();

    private static ServerOptions Base(string dir) => new() { ModelPath = "", ModelsDir = dir, Parallel = 2, ContextSize = 256, Threads = 2 };

    // the two tiny models in a folder, under their preset names
    private static TempDir Folder()
    {
        var dir = new TempDir();
        File.Copy(TinyModels.Qwen, dir.File("tiny-qwen2.gguf"));
        File.Copy(TinyModels.Llama, dir.File("tiny-llama.gguf"));
        return dir;
    }

    private static async Task<string> Alone(string model, string body)
    {
        await using var one = await KestrelServer.StartAsync(new ServerOptions { ModelPath = model, Parallel = 2, ContextSize = 256, Threads = 2 });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        var (status, r) = await Post(http, one.BaseUri, "/v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.OK, status);
        return Reply(r);
    }

    private static bool Mapped(string path) => File.ReadAllText("/proc/self/maps").Contains(path, StringComparison.Ordinal);

    [Fact]
    public async Task RoutesByNameLoadsOnFirstUseAndUnloadsWhenIdle()
    {
        using var dir = Folder();
        string qwenAlone = await Alone(TinyModels.Qwen, Body("x")), llamaAlone = await Alone(TinyModels.Llama, Body("x"));

        await using var server = await KestrelServer.StartAsync(Base(dir.Path) with { IdleUnload = TimeSpan.FromSeconds(2) });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        var router = server.App.Services.GetRequiredService<ModelRouter>();
        Assert.Empty(router.Loaded);
        var listed = JsonNode.Parse(await http.GetStringAsync(new Uri(server.BaseUri, "/v1/models")))!["data"]!.AsArray();
        Assert.Equal(["tiny-llama", "tiny-qwen2"], listed.Select(m => (string?)m!["id"]));
        Assert.All(listed, m => Assert.False((bool)m!["meta"]!["loaded"]!));

        // concurrent first requests for both: each model loads once, each reply is what the model gives alone
        var replies = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Post(http, server.BaseUri, "/v1/chat/completions", Body(i % 2 == 0 ? "tiny-qwen2" : "tiny-llama"))));
        for (int i = 0; i < replies.Length; i++)
        {
            Assert.Equal(HttpStatusCode.OK, replies[i].Status);
            Assert.Equal(i % 2 == 0 ? qwenAlone : llamaAlone, Reply(replies[i].Body));
            Assert.Equal(i % 2 == 0 ? "tiny-qwen2" : "tiny-llama", (string?)replies[i].Body["model"]);
        }
        Assert.Equal(2, router.Loaded.Count);
        Assert.Equal(2, router.Loads); // three requests each, one load each
        // each host keeps to what the fit estimate admitted: slots x context of KV, no prompt cache (none was sized)
        Assert.All(router.Loaded, h => { Assert.Equal(0, h.Scheduler.KvBudgetBytes); Assert.Null(h.Scheduler.PromptCache); });
        var ps = JsonNode.Parse(await http.GetStringAsync(new Uri(server.BaseUri, "/api/ps")))!["models"]!.AsArray().Select(m => (string?)m!["name"]).ToList();
        Assert.Equal(["tiny-llama", "tiny-qwen2"], ps);
        Assert.True(Mapped(dir.File("tiny-qwen2.gguf")));

        // the OpenAI client routes by its model name too
        var sdk = new ChatClient("tiny-llama", Creds.Key(), server.SdkOptions());
        Assert.Equal("tiny-llama", (await sdk.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 })).Value.Model);

        // unknown names: 404 model_not_found (OpenAI), Ollama's shape on /api
        var (status, err) = await Post(http, server.BaseUri, "/v1/chat/completions", Body("no-such-model"));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("model_not_found", (string?)err["error"]!["code"]);
        (status, err) = await Post(http, server.BaseUri, "/api/chat", """{"model":"no-such-model","messages":[{"role":"user","content":"hi"}],"stream":false}""");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.IsType<JsonValue>(err["error"], exactMatch: false); // Ollama: {"error":"..."}

        // keep llama busy with requests; qwen, idle, is unloaded (its file map closed), llama is not
        long rssLoaded = Rss();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (router.Loaded.Any(h => h.ModelId == "tiny-qwen2") && DateTime.UtcNow < deadline)
            Assert.Equal(HttpStatusCode.OK, (await Post(http, server.BaseUri, "/v1/chat/completions", Body("tiny-llama") .Replace("\"max_tokens\":10", "\"max_tokens\":1"))).Status);
        Assert.Equal(["tiny-llama"], router.Loaded.Select(h => h.ModelId));
        // the host is disposed on the unloading thread just after it leaves the table: its scheduler stops, its file map closes
        while (Mapped(dir.File("tiny-qwen2.gguf")) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.False(Mapped(dir.File("tiny-qwen2.gguf")), "the unloaded model's file is still mapped");
        Assert.True(Mapped(dir.File("tiny-llama.gguf")));
        ps = JsonNode.Parse(await http.GetStringAsync(new Uri(server.BaseUri, "/api/ps")))!["models"]!.AsArray().Select(m => (string?)m!["name"]).ToList();
        Assert.Equal(["tiny-llama"], ps);
        output.WriteLine($"RSS with both loaded {rssLoaded >> 20} MiB, after tiny-qwen2 was unloaded {Rss() >> 20} MiB");

        // a request loads it again, with the same reply
        var again = await Post(http, server.BaseUri, "/v1/chat/completions", Body("tiny-qwen2"));
        Assert.Equal(qwenAlone, Reply(again.Body));
    }

    private static long Rss()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, true, true);
        using var p = System.Diagnostics.Process.GetCurrentProcess();
        return p.WorkingSet64;
    }

    [Fact]
    public async Task RefusesAModelThatDoesNotFitBesideTheBusyOnes()
    {
        using var dir = Folder();
        File.Copy(TinyModels.Qwen, dir.File("tiny-qwen2-copy.gguf"));
        long qwen, llama;
        using (var probe = new ModelRouter(Base(dir.Path))) { qwen = probe.EstimateBytes(TinyModels.Qwen); llama = probe.EstimateBytes(TinyModels.Llama); }
        // room for two models, not three
        await using var server = await KestrelServer.StartAsync(Base(dir.Path) with { MemoryBudgetBytes = qwen + llama + (1 << 20) });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        var router = server.App.Services.GetRequiredService<ModelRouter>();

        using (await router.AcquireAsync("tiny-qwen2", default))
        using (await router.AcquireAsync("tiny-llama", default)) // both in use
        {
            var (status, err) = await Post(http, server.BaseUri, "/v1/chat/completions", Body("tiny-qwen2-copy"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal("insufficient_memory", (string?)err["error"]!["code"]);
            Assert.Contains("tiny-qwen2-copy", (string?)err["error"]!["message"]);
            // Anthropic's shape on /v1/messages
            (status, err) = await Post(http, server.BaseUri, "/v1/messages", """{"model":"tiny-qwen2-copy","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}""");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal("error", (string?)err["type"]);
            Assert.Equal(2, router.Loaded.Count);
            Assert.True(router.UsedBytes <= router.BudgetBytes);
        }
        // once they are idle, the least recently used makes room
        var ok = await Post(http, server.BaseUri, "/v1/chat/completions", Body("tiny-qwen2-copy"));
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Equal(["tiny-qwen2", "tiny-qwen2-copy"], router.Loaded.Select(h => h.ModelId)); // tiny-llama was released first
        Assert.True(router.UsedBytes <= router.BudgetBytes);

        // a model larger than the whole budget: refused at once
        await using var small = await KestrelServer.StartAsync(Base(dir.Path) with { MemoryBudgetBytes = qwen / 2 });
        var (s2, e2) = await Post(http, small.BaseUri, "/v1/chat/completions", Body("tiny-qwen2"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, s2);
        Assert.Equal("insufficient_memory", (string?)e2["error"]!["code"]);
        Assert.Contains("budget", (string?)e2["error"]!["message"]);
    }
}
