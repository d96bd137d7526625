using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Constraints;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>Graceful shutdown (grace period, then clean ends), any model name served, the server's sampling defaults.</summary>
public class ServerLifecycleTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    /// <summary>Blocks generation (the scheduler thread) at the first token until released.</summary>
    private sealed class Gate : ITokenConstraint
    {
        public readonly SemaphoreSlim Entered = new(0);
        public readonly ManualResetEventSlim Release = new();
        private int calls;
        public void MaskLogits(Span<float> logits)
        {
            if (Interlocked.Increment(ref calls) == 1) Entered.Release();
            Release.Wait(TimeSpan.FromSeconds(60));
        }
        public void Accept(int tokenId) { }
        public bool IsComplete => false;
    }

    /// <summary>Makes each token take a few milliseconds, so a long reply lasts seconds.</summary>
    private sealed class Slow : ITokenConstraint
    {
        public void MaskLogits(Span<float> logits) => Thread.Sleep(3);
        public void Accept(int tokenId) { }
        public bool IsComplete => false;
    }

    private static ServerOptions Options(TimeSpan grace, Func<Tokenizer, string?, ITokenConstraint> constraint) => new()
    {
        ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 2048, Threads = 2, ShutdownTimeout = grace, JsonConstraintFactory = constraint,
    };

    private static HttpRequestMessage JsonStream(int maxTokens) => new(HttpMethod.Post, "/v1/chat/completions")
    {
        Content = Json($$$"""{"model":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":{{{maxTokens}}},"stream":true,"stream_options":{"include_usage":true},"response_format":{"type":"json_object"}}"""),
    };

    private static async Task<List<string>> ReadSse(HttpResponseMessage resp)
    {
        var lines = new List<string>();
        using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line) if (line.StartsWith("data: ")) lines.Add(line[6..]);
        return lines;
    }

    [Fact]
    public async Task Stopping_lets_a_running_reply_finish_within_the_grace_period()
    {
        var gate = new Gate();
        await using var server = await KestrelServer.StartAsync(Options(TimeSpan.FromMinutes(1), (_, _) => gate));
        using var http = new HttpClient { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromMinutes(1) };
        using var resp = await http.SendAsync(JsonStream(6), HttpCompletionOption.ResponseHeadersRead);
        Assert.True(await gate.Entered.WaitAsync(TimeSpan.FromSeconds(30)), "generation never started");

        var stopping = server.App.StopAsync();
        await Task.Delay(200);
        Assert.False(stopping.IsCompleted, "the server stopped without waiting for the running reply");
        gate.Release.Set();
        var lines = await ReadSse(resp);
        Assert.Equal("[DONE]", lines[^1]);
        var usage = JsonNode.Parse(lines[^2])!["usage"]!;
        Assert.Equal(6, usage["completion_tokens"]!.GetValue<int>()); // finished in full, not cut
        Assert.Contains(lines.SkipLast(1).Select(l => JsonNode.Parse(l)!["choices"]!.AsArray()), c => c.Any(x => x!["finish_reason"]?.GetValue<string>() == "length"));
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task After_the_grace_period_streams_end_with_a_final_chunk_and_done()
    {
        await using var server = await KestrelServer.StartAsync(Options(TimeSpan.FromMilliseconds(200), (_, _) => new Slow()));
        using var http = new HttpClient { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromMinutes(1) };
        using var resp = await http.SendAsync(JsonStream(2000), HttpCompletionOption.ResponseHeadersRead); // >= 6 s uncut
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var read = ReadSse(resp);
        SpinWait.SpinUntil(() => server.ModelHost.Scheduler.ActiveSlots == 1, 10000);
        await server.App.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var lines = await read.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("[DONE]", lines[^1]);
        Assert.True(JsonNode.Parse(lines[^2])!["usage"]!["completion_tokens"]!.GetValue<int>() < 2000, "the reply was not cut at the grace period");
        Assert.Equal("stop", JsonNode.Parse(lines[^3])!["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task New_requests_are_refused_once_shutdown_begins()
    {
        using var factory = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 2 });
        using var http = factory.CreateClient();
        factory.ModelHost.BeginShutdown(TimeSpan.FromMinutes(1));
        var resp = await http.PostAsync("/v1/completions", Json("""{"prompt":"a","max_tokens":2}"""));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, resp.StatusCode);
        Assert.Equal("server_shutting_down", JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("gpt-4o")]
    [InlineData("")]
    [InlineData(null)]
    public async Task Any_model_name_is_served_by_the_loaded_model_and_the_reply_names_it(string? model)
    {
        using var factory = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 2 });
        using var http = factory.CreateClient();
        string field = model is null ? "" : $"\"model\":\"{model}\",";
        foreach (var (path, body) in new[]
        {
            ("/v1/chat/completions", $$"""{{{field}}"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""),
            ("/v1/completions", $$"""{{{field}}"prompt":"hi","max_tokens":2}"""),
            ("/v1/embeddings", $$"""{{{field}}"input":"hi"}"""),
        })
        {
            var resp = await http.PostAsync(path, Json(body));
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.Equal("tiny-qwen2", JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["model"]!.GetValue<string>());
        }
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/v1/completions", Json("""{"model":5,"prompt":"hi"}"""))).StatusCode);
    }

    [Fact]
    public void Server_sampling_defaults_are_the_library_defaults()
    {
        using var factory = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 2 });
        var req = new OpenAiRequest((JsonObject)JsonNode.Parse("""{"messages":[]}""")!);
        var s = req.GenerationOptions(factory.ModelHost, 4, 0).Sampling;
        var d = SamplingOptions.Default;
        Assert.Equal((d.Temperature, d.TopK, d.TopP, d.MinP, d.RepeatPenalty), (s.Temperature, s.TopK, s.TopP, s.MinP, s.RepeatPenalty));
        var set = new OpenAiRequest((JsonObject)JsonNode.Parse("""{"temperature":0,"top_k":0,"top_p":1,"min_p":0}""")!).GenerationOptions(factory.ModelHost, 4, 0).Sampling;
        Assert.Equal((0f, 0, 1f, 0f), (set.Temperature, set.TopK, set.TopP, set.MinP));
    }
}
