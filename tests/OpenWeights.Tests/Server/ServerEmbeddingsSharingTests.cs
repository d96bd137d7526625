using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Embeddings share the scheduler with generation: a large embeddings request runs a chunk at a time between other
/// work, so a small embeddings request and a chat request are answered while it is still in flight.
/// </summary>
public class ServerEmbeddingsSharingTests
{
    [Fact]
    public async Task ASmallRequestCompletesWhileALargeEmbeddingsRequestIsInFlight()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 512, Threads = 2 });
        var http = f.CreateClient();
        var host = f.ModelHost;
        // 2048 inputs of 256 token ids: half a million tokens, far more than the small requests below need
        var ids = string.Join(",", Enumerable.Range(0, 256).Select(i => 10 + i % 500));
        string large = $"{{\"model\":\"{host.ModelId}\",\"input\":[{string.Join(",", Enumerable.Repeat($"[{ids}]", 2048))}]}}";
        using var cancelLarge = new CancellationTokenSource();
        var largeTask = http.PostAsync("/v1/embeddings", new StringContent(large, Encoding.UTF8, "application/json"), cancelLarge.Token);
        Assert.True(SpinWait.SpinUntil(() => host.Scheduler.EmbeddingsPending > 0 || largeTask.IsCompleted, 60_000), "the large request never reached the scheduler");

        var small = await http.PostAsync("/v1/embeddings", new StringContent($"{{\"model\":\"{host.ModelId}\",\"input\":\"hello\"}}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        Assert.Equal(256, JsonNode.Parse(await small.Content.ReadAsStringAsync())!["data"]![0]!["embedding"]!.AsArray().Count);
        var chat = await http.PostAsync("/v1/chat/completions", new StringContent(
            $"{{\"model\":\"{host.ModelId}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"max_tokens\":2}}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        Assert.False(largeTask.IsCompleted, "the large request finished before the small ones: they waited for it");
        Assert.Equal(1, host.Scheduler.EmbeddingsPending);

        // the client of the large request goes away: its work is dropped
        cancelLarge.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => largeTask);
        Assert.True(SpinWait.SpinUntil(() => host.Scheduler.EmbeddingsPending == 0, 30_000), "the cancelled embeddings were not dropped");
    }

    /// <summary>An embedding computed in small chunks (as the scheduler runs it) equals the one computed at once.</summary>
    [Fact]
    public void ChunkedEmbeddingEqualsWhole()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        int[] tokens = tok.Encode(string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog. ", 6)), addSpecial: true);
        var whole = m.Embed(tokens, 2);
        var run = new EmbeddingRun(m, tokens, chunk: 7);
        int steps = 1;
        while (!run.Step(2)) steps++;
        Assert.Equal((tokens.Length + 6) / 7, steps);
        var chunked = run.Result();
        for (int i = 0; i < whole.Length; i++) Assert.Equal(whole[i], chunked[i], 1e-6f);
    }
}
