using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Constraints;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>
/// A constraint that allows every token but the end-of-generation ones (so the reply never ends early), counts them, can
/// wait a little per token, and fails after <paramref name="failAfter"/>.
/// </summary>
public sealed class ProbeConstraint(Tokenizer tok, int failAfter = int.MaxValue, int delayMs = 0) : ITokenConstraint
{
    private readonly int[] ends = tok.EndOfGeneration.Append(tok.TokenToId("<|im_end|>")).Where(i => i >= 0).ToArray();
    private int accepted;
    public int Accepted => Volatile.Read(ref accepted);
    public void MaskLogits(Span<float> logits)
    {
        if (accepted >= failAfter) throw new InvalidOperationException($"probe failure after {accepted} tokens");
        foreach (int e in ends) if (e < logits.Length) logits[e] = float.NegativeInfinity;
        if (delayMs > 0) Thread.Sleep(delayMs);
    }
    public void Accept(int tokenId) => Interlocked.Increment(ref accepted);
    public bool IsComplete => false;
}

/// <summary>
/// Failures inside the server: a generation failing mid-stream ends the SSE stream with an error event and [DONE]; one
/// failing job does not take the others down; an unexpected exception is a 500 with an OpenAI-shaped body; a client that
/// disconnects mid-stream stops its generation.
/// </summary>
public class ServerFailureTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private static OwFactory Server(Func<Tokenizer, string?, ITokenConstraint> constraint) =>
        new(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 256, Threads = 2, JsonConstraintFactory = constraint });

    private static string Body(string model, bool stream, int maxTokens = 20) =>
        $$$"""{"model":"{{{model}}}","messages":[{"role":"user","content":"hi"}],"max_tokens":{{{maxTokens}}},"stream":{{{(stream ? "true" : "false")}}},"response_format":{"type":"json_object"}}""";

    [Fact]
    public async Task AFailureMidStreamSendsAnErrorEventThenDone()
    {
        using var f = Server((tok, _) => new ProbeConstraint(tok, failAfter: 3));
        var http = f.CreateClient();
        var resp = await http.PostAsync("/v1/chat/completions", Json(Body(f.ModelHost.ModelId, stream: true)));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        string text = await resp.Content.ReadAsStringAsync(); // a stream cut off without an end fails here
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var err = JsonNode.Parse(events[^2]["data: ".Length..])!["error"]!;
        Assert.Equal("server_error", err["type"]!.GetValue<string>());
        Assert.Equal("generation_failed", err["code"]!.GetValue<string>());
        Assert.Contains("probe failure", err["message"]!.GetValue<string>());
        Assert.True(events.Length >= 4, text); // the role chunk, the tokens before the failure, the error, [DONE]
        Assert.All(events[..^2], e => Assert.NotNull(JsonNode.Parse(e["data: ".Length..])!["choices"]));

        // text completions stream the same way
        var tc = await http.PostAsync("/v1/completions", Json($$"""{"model":"{{f.ModelHost.ModelId}}","prompt":"hi","max_tokens":20,"stream":true}"""));
        Assert.EndsWith("data: [DONE]\n\n", await tc.Content.ReadAsStringAsync());
        Assert.Equal("ok", JsonNode.Parse(await http.GetStringAsync("/health"))!["status"]!.GetValue<string>());
    }

    /// <summary>With n = 2, one choice failing ends the response; the other choice's generation stops with it.</summary>
    [Fact]
    public async Task TheOtherChoicesStopWhenOneFails()
    {
        var probes = new List<ProbeConstraint>();
        using var f = Server((tok, _) => { lock (probes) { var p = new ProbeConstraint(tok, failAfter: probes.Count == 0 ? 3 : int.MaxValue, delayMs: 5); probes.Add(p); return p; } });
        var http = f.CreateClient();
        foreach (bool stream in new[] { true, false })
        {
            string body = Body(f.ModelHost.ModelId, stream, maxTokens: 200).Replace("\"max_tokens\"", "\"n\":2,\"max_tokens\"");
            var resp = await http.PostAsync("/v1/chat/completions", Json(body));
            string text = await resp.Content.ReadAsStringAsync();
            Assert.Contains("generation_failed", text);
            Assert.True(SpinWait.SpinUntil(() => f.ModelHost.Scheduler.ActiveSlots == 0, 30_000), "the other choice kept its slot");
            var other = probes[^1];
            Assert.True(other.Accepted < 200, $"the other choice ran to the end ({other.Accepted} tokens)");
            probes.Clear();
        }
    }

    [Fact]
    public async Task AFailureWithoutStreamingIsA500WithAnOpenAiBody()
    {
        using var f = Server((tok, _) => new ProbeConstraint(tok, failAfter: 3));
        var resp = await f.CreateClient().PostAsync("/v1/chat/completions", Json(Body(f.ModelHost.ModelId, stream: false)));
        Assert.Equal(HttpStatusCode.InternalServerError, resp.StatusCode);
        var err = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("server_error", err["type"]!.GetValue<string>());
        Assert.Equal("generation_failed", err["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task AnUnexpectedExceptionIsA500WithAnOpenAiBody()
    {
        using var f = Server((_, _) => throw new InvalidOperationException("unexpected\nfailure"));
        var http = f.CreateClient();
        var resp = await http.PostAsync("/v1/chat/completions", Json(Body(f.ModelHost.ModelId, stream: false)));
        Assert.Equal(HttpStatusCode.InternalServerError, resp.StatusCode);
        Assert.Equal("application/json", resp.Content.Headers.ContentType?.MediaType);
        var err = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("server_error", err["type"]!.GetValue<string>());
        Assert.Equal("internal_error", err["code"]!.GetValue<string>());
        Assert.DoesNotContain('\n', err["message"]!.GetValue<string>()); // escaped
        Assert.Contains("status=\"500\"", await http.GetStringAsync("/metrics")); // counted as what the client got
        // and the server goes on
        var ok = await http.PostAsync("/v1/chat/completions", Json($$"""{"model":"{{f.ModelHost.ModelId}}","messages":[{"role":"user","content":"hi"}],"max_tokens":1}"""));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    /// <summary>One job's sampling failing (here its constraint) ends that job alone; the job batched with it goes on.</summary>
    [Fact]
    public async Task OneFailingJobDoesNotEndTheOthers()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        using var scheduler = new Scheduler(m, tok, parallel: 2, contextSize: 256, threads: 2, maxQueue: 4, new ServerMetrics());
        var greedy = new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1, MinP = 0 };
        var failing = new JobOutput(1, 64);
        var healthy = new JobOutput(1, 64);
        int[] prompt = tok.Encode("hello there", addSpecial: true);
        // submitted together: both take a slot in the same step, so the failure happens while the healthy job runs
        scheduler.Submit([
            new GenerationJob(prompt, new GenerationOptions { MaxTokens = 20, Sampling = greedy, Constraint = new ProbeConstraint(tok, failAfter: 3) }, 0, failing, default),
            new GenerationJob(prompt, new GenerationOptions { MaxTokens = 20, Sampling = greedy, Constraint = new ProbeConstraint(tok) }, 0, healthy, default),
        ]);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        Exception? error = null;
        await foreach (var e in failing.ReadAllAsync(cts.Token)) { if (e.Error is not null) { error = e.Error; break; } Assert.Null(e.Chunk!.Finish); }
        Assert.Contains("probe failure", error!.Message);
        GenerationChunk? last = null;
        await foreach (var e in healthy.ReadAllAsync(cts.Token))
        {
            Assert.Null(e.Error);
            if ((last = e.Chunk!).Finish is not null) break;
        }
        Assert.Equal(FinishReason.Length, last!.Finish);
        Assert.Equal(20, last.Stats!.GeneratedTokens);
        Assert.True(SpinWait.SpinUntil(() => scheduler.ActiveSlots == 0, 5000));
    }

    /// <summary>
    /// A client that disconnects mid-stream has its generation stopped and its slot freed. Each token waits 5 ms in the
    /// constraint, so 1000 tokens take 5 s or more; "stopped within about a second" is measured in tokens: fewer than 200
    /// (one second's worth at most) are generated after the client left, however slow the machine.
    /// </summary>
    [Fact]
    public async Task ADisconnectedClientsGenerationStops()
    {
        ProbeConstraint? probe = null;
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 2048, Threads = 2,
            JsonConstraintFactory = (tok, _) => probe = new ProbeConstraint(tok, delayMs: 5),
        });
        var host = server.ModelHost;
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseUri };
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(Body(host.ModelId, stream: true, maxTokens: 1000)) };
        var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
        for (int seen = 0; seen < 4;) if ((await reader.ReadLineAsync())!.StartsWith("data: ", StringComparison.Ordinal)) seen++;
        Assert.Equal(1, host.Scheduler.ActiveSlots);
        long cancelledBefore = host.Metrics.Cancelled;
        int atDisconnect = probe!.Accepted;
        resp.Dispose(); // the client goes away

        Assert.True(SpinWait.SpinUntil(() => host.Scheduler.ActiveSlots == 0, 30_000), "the slot was not freed");
        Assert.Equal(cancelledBefore + 1, host.Metrics.Cancelled);
        int after = probe.Accepted - atDisconnect;
        Assert.True(after < 200, $"{after} tokens were generated after the client left");
    }
}
