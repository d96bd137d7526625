using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

[CollectionDefinition(nameof(ServerMemoryTests), DisableParallelization = true)]
public sealed class SerialServerCollection;

/// <summary>
/// After a burst of concurrent streaming requests the server's memory returns to its baseline: slots are freed and
/// nothing per request is retained. Runs alone (not in parallel with other tests) so the heap figures mean something.
/// </summary>
[Collection(nameof(ServerMemoryTests))]
public class ServerMemoryTests
{
    private static async Task Burst(HttpClient http, string model, int clients)
    {
        var tasks = Enumerable.Range(0, clients).Select(async i =>
        {
            var body = new JsonObject
            {
                ["model"] = model, ["stream"] = true, ["max_tokens"] = 24, ["temperature"] = 0.7, ["seed"] = i,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"client {i} says hello" }),
            }.ToJsonString();
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            var text = await resp.Content.ReadAsStringAsync();
            Assert.Contains("data: [DONE]", text);
        });
        await Task.WhenAll(tasks);
    }

    private static long SettledHeap()
    {
        for (int i = 0; i < 3; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    [Fact]
    public async Task MemoryReturnsToBaselineAfterSixteenConcurrentStreams()
    {
        using var factory = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 4, MaxQueue = 32, ContextSize = 256, Threads = 2,
            PromptCacheBytes = 0 });
        using var http = factory.CreateClient();
        string model = factory.ModelHost.ModelId;
        // (the prompt cache keeps blocks by design, within its own budget: off here; PrefixCacheTests checks that bound)
        await Burst(http, model, 16);           // warm up: JIT, pools, the queue and the scheduler's slots
        long baseline = SettledHeap();
        for (int round = 0; round < 3; round++) await Burst(http, model, 16);
        Assert.True(SpinWait.SpinUntil(() => factory.ModelHost.Scheduler.ActiveSlots == 0, 5000));
        long after = SettledHeap();
        // 48 requests went through; anything retained per request would show up many times over.
        Assert.True(after - baseline < 4L << 20, $"managed heap grew by {(after - baseline) / 1024} KiB (baseline {baseline / 1024} KiB)");
    }
}
