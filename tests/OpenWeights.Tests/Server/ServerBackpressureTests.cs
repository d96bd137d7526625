using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>
/// A slow reader pauses only its own sequence: its buffered events stay bounded, other requests go on at full speed,
/// and once it reads again it gets exactly the output it would have got alone.
/// </summary>
public class ServerBackpressureTests
{
    private static SamplingOptions Greedy(Tokenizer tok, IEnumerable<int> ban) => new()
    {
        Temperature = 0, TopK = 0, TopP = 1, MinP = 0,
        LogitBias = ban.Where(i => i >= 0).Distinct().ToDictionary(i => i, _ => float.NegativeInfinity), // never stop early
    };

    // true once the condition has held for `hold` without a break
    private static async Task<bool> Steady(Func<bool> condition, TimeSpan hold, TimeSpan timeout)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? since = null;
        while (sw.Elapsed < timeout)
        {
            if (!condition()) since = null;
            else if ((since ??= sw.Elapsed) + hold <= sw.Elapsed) return true;
            await Task.Delay(10);
        }
        return false;
    }

    private static async Task<string> ReadAll(JobOutput output, TimeSpan delay = default)
    {
        var sb = new StringBuilder();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await foreach (var e in output.ReadAllAsync(cts.Token))
        {
            Assert.Null(e.Error);
            sb.Append(e.Chunk!.Text);
            if (e.Chunk.Finish is not null) return sb.ToString();
            if (delay > TimeSpan.Zero) await Task.Delay(delay);
        }
        throw new InvalidOperationException("the output ended without a final event");
    }

    [Fact]
    public async Task SchedulerPausesASlowReadersSequenceOnly()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var metrics = new ServerMetrics();
        using var scheduler = new Scheduler(m, tok, parallel: 2, contextSize: 1024, threads: 2, maxQueue: 4, metrics);
        var options = new GenerationOptions { MaxTokens = 200, Sampling = Greedy(tok, tok.EndOfGeneration) };
        int[] slowPrompt = tok.Encode("once upon a time there was a slow reader", addSpecial: true);
        int[] fastPrompt = tok.Encode("the quick brown fox", addSpecial: true);
        var slow = new JobOutput(1, limit: 8);
        var fast = new JobOutput(1, limit: 8);
        scheduler.Submit([new GenerationJob(slowPrompt, options, 0, slow, CancellationToken.None)]);
        scheduler.Submit([new GenerationJob(fastPrompt, options, 0, fast, CancellationToken.None)]);

        // nobody reads the slow output: the fast request still finishes all its 200 tokens
        string fastText = await ReadAll(fast);
        Assert.True(SpinWait.SpinUntil(() => slow.Paused, 30000), "the slow sequence was never paused");
        Assert.Equal(1, scheduler.ActiveSlots); // the slow one keeps its slot
        int held = slow.Count;
        Assert.InRange(held, slow.Limit, slow.Capacity);
        Thread.Sleep(300); // paused means paused: nothing more is decoded for it
        Assert.Equal(held, slow.Count);
        Assert.True(metrics.PausedSlotSteps > 0);

        // reading slowly, it resumes and gets its full output
        string slowText = await ReadAll(slow, TimeSpan.FromMilliseconds(2));
        Assert.InRange(slow.PeakCount, slow.Limit, slow.Capacity);
        Assert.Equal(0, slow.Dropped);
        Assert.Equal(0, fast.Dropped);
        Assert.True(SpinWait.SpinUntil(() => scheduler.ActiveSlots == 0, 5000));

        var session = new InferenceSession(m, 1024, 2);
        Assert.Equal((await Generator.GenerateTextAsync(session, tok, fastPrompt, options)).Text, fastText);
        Assert.Equal((await Generator.GenerateTextAsync(session, tok, slowPrompt, options)).Text, slowText);
    }

    [Fact]
    public async Task AReaderThatNeverReadsIsCutOffAfterTheStalledTimeout()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var metrics = new ServerMetrics();
        using var scheduler = new Scheduler(m, tok, parallel: 1, contextSize: 1024, threads: 2, maxQueue: 4, metrics)
        {
            StalledReaderTimeout = TimeSpan.FromMilliseconds(300),
        };
        var options = new GenerationOptions { MaxTokens = 400, Sampling = Greedy(tok, tok.EndOfGeneration) };
        var stuck = new JobOutput(1, limit: 8);
        var next = new JobOutput(1, limit: 8);
        scheduler.Submit([new GenerationJob(tok.Encode("a client that never reads", addSpecial: true), options, 0, stuck, CancellationToken.None)]);
        scheduler.Submit([new GenerationJob(tok.Encode("the next one in the queue", addSpecial: true), options with { MaxTokens = 20 }, 0, next, CancellationToken.None)]);

        // the only slot is held by the stuck reader until the timeout frees it; then the queued request runs to the end
        string nextText = await ReadAll(next);
        Assert.NotEmpty(nextText);
        Assert.Equal(1, metrics.Stalled);
        Assert.InRange(stuck.Count, stuck.Limit, stuck.Capacity);
        var events = new List<JobEvent>();
        await foreach (var e in stuck.ReadAllAsync()) { events.Add(e); if (e.Chunk?.Finish is not null) break; }
        Assert.Equal(FinishReason.Cancelled, events[^1].Chunk!.Finish);
        Assert.Contains("openweights_stalled_readers_total 1\n", metrics.Render(0, 0, 1));
    }

    /// <summary>Over HTTP: a streaming client that stops reading pauses its sequence while another client streams.</summary>
    [Fact]
    public async Task SlowSseClientDoesNotHoldBackOthers()
    {
        const int limit = 8, slowTokens = 1200;
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 2048, Threads = 2, StreamBufferEvents = limit });
        var host = f.ModelHost;
        var http = f.CreateClient();
        var tok = host.Tokenizer;
        var ban = tok.EndOfGeneration.Append(tok.TokenToId("<|im_end|>")).Where(i => i >= 0).Distinct().ToList();
        string Body(string content, int max, bool stream) => new JsonObject
        {
            ["model"] = host.ModelId, ["stream"] = stream, ["max_tokens"] = max, ["temperature"] = 0,
            ["logit_bias"] = new JsonObject(ban.Select(i => KeyValuePair.Create(i.ToString(), (JsonNode?)JsonValue.Create(-100)))),
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        }.ToJsonString();

        // the slow client: reads the first event, then stops reading (its transport buffer fills, then its event buffer)
        using var slowReq = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(Body("Tell a very long story", slowTokens, true), Encoding.UTF8, "application/json") };
        using var slowResp = await http.SendAsync(slowReq, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, slowResp.StatusCode);
        var slowReader = new StreamReader(await slowResp.Content.ReadAsStreamAsync());
        string first = (await slowReader.ReadLineAsync())!;
        Assert.StartsWith("data: ", first);
        // (a pause may come and go early, while the transport buffer still takes events; wait for the lasting one)
        Assert.True(await Steady(() => host.Metrics.PausedSlots == 1, TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(2)), "the slow client's sequence was never paused for good");
        long generatedAtPause = host.Metrics.GeneratedTokens;
        string metrics = await http.GetStringAsync("/metrics");
        Assert.Contains("openweights_slots_paused 1\n", metrics);
        Assert.Matches(@"openweights_paused_slot_steps_total [1-9]", metrics);

        // another client streams to the end meanwhile
        using var fastResp = await http.PostAsync("/v1/chat/completions", new StringContent(Body("hello", 40, true), Encoding.UTF8, "application/json"));
        string fastSse = await fastResp.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", fastSse);
        Assert.Equal(1, host.Scheduler.ActiveSlots); // the slow one still holds its slot, paused
        Assert.True(host.Metrics.PeakBufferedEvents <= limit + 3, $"{host.Metrics.PeakBufferedEvents} events were buffered");

        // the slow client reads on: it gets the whole reply, as a single greedy run gives it
        var sb = new StringBuilder();
        string? finish = null;
        while (await slowReader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") break;
            var c = JsonNode.Parse(line[6..])!["choices"]![0]!;
            sb.Append(c["delta"]?["content"]?.GetValue<string>());
            finish = c["finish_reason"]?.GetValue<string>() ?? finish;
        }
        Assert.Equal("length", finish);
        Assert.True(host.Metrics.PeakBufferedEvents <= limit + 3, $"{host.Metrics.PeakBufferedEvents} events were buffered");
        Assert.True(host.Metrics.GeneratedTokens - generatedAtPause >= 40, "the other request was not decoded while the slow one was paused");

        using var m = DecoderModel.Load(TinyModels.Qwen);
        var ft = new ChatFormatter(Tokenizer.FromGguf(m.Source));
        var prompt = ft.EncodeConversation([ChatTurn.User("Tell a very long story")]);
        var (text, _, _) = await Generator.GenerateTextAsync(new InferenceSession(m, 2048, 2), ft.Tokenizer, prompt,
            ft.ForReply(new GenerationOptions { MaxTokens = slowTokens, Sampling = Greedy(tok, ban) }));
        Assert.Equal(text, sb.ToString());
    }
}
