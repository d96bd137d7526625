using System.Diagnostics;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Common;

namespace OpenWeights.Bench;

/// <summary>
/// `--latent-attention`: the absorbed decode step of one DeepSeek-V2-Lite layer alone (16 heads, r = 512, rope = 64, one query
/// token) over a latent cache in F32, F16 and Q8_0 at 512, 4,096 and 8,192 cached keys, 2 threads (or --threads N): the
/// per-(token, head) path (each row decoded twice per head) against LatentDecode (each row once for all heads, keys in
/// chunks) at tile sizes 16, 32 and 64, alternated run by run, medians of 15 (the machine is shared).
/// </summary>
public static class LatentAttentionBench
{
    private const int Heads = 16, R = 512, Kvw = R + 64, Reps = 15;
    private static readonly int[] Tiles = [16, 32, 64];

    public static int Run(BenchOptions o)
    {
        int threads = o.ThreadsSet ? o.Threads : 2;
        if (o.Model is not null) return Model(o, threads);
        float scale = 1f / MathF.Sqrt(192);
        Console.WriteLine($"absorbed latent decode, one layer, {threads} threads, medians of {Reps} alternated runs (ms)");
        Console.WriteLine($"| keys | cache | per head | {string.Join(" | ", Tiles.Select(t => $"one read, tile {t}"))} | speed-up (tile {LatentDecode.Tile}) |");
        Console.WriteLine($"|---:|---|---:|{string.Concat(Tiles.Select(_ => "---:|"))}---:|");
        int defaultTile = LatentDecode.Tile;
        foreach (int keys in new[] { 512, 4096, 8192 })
            foreach (var types in new[] { KvCacheTypes.F32, KvCacheTypes.F16, KvCacheTypes.Q8_0 })
            {
                using var cache = new KvCache(1, keys, Kvw, types, values: false);
                var rng = new Random(1);
                var row = new float[Kvw];
                for (int j = 0; j < keys; j++)
                {
                    for (int i = 0; i < Kvw; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                    cache.StoreK(0, j, row);
                }
                var q = new float[Heads * Kvw];
                for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 8 - 4);
                var lat = new float[Heads * R];
                KvCache?[] caches = [cache];
                int[] pos = [keys - 1];
                var perHead = new List<double>();
                var oneRead = Tiles.Select(_ => new List<double>()).ToArray();
                for (int rep = 0; rep <= Reps; rep++) // rep 0 warms up
                {
                    var sw = Stopwatch.StartNew();
                    LatentAttention.AttendPerHead(q, lat, caches, pos, 0, 1, Heads, R, Kvw, scale, threads);
                    if (rep > 0) perHead.Add(sw.Elapsed.TotalMilliseconds);
                    for (int k = 0; k < Tiles.Length; k++)
                    {
                        LatentDecode.Tile = Tiles[k];
                        sw.Restart();
                        LatentDecode.Run(q, lat, caches, pos, 0, 1, Heads, R, Kvw, scale, threads);
                        if (rep > 0) oneRead[k].Add(sw.Elapsed.TotalMilliseconds);
                    }
                    LatentDecode.Tile = defaultTile;
                }
                double ph = Stats.Median(perHead);
                var ones = oneRead.Select(Stats.Median).ToArray();
                double def = ones[Array.IndexOf(Tiles, defaultTile)];
                Console.WriteLine($"| {keys} | {types.K} | {ph:F2} | {string.Join(" | ", ones.Select(x => x.ToString("F2")))} | {ph / def:F1}x |");
            }
        Batches(threads, scale);
        return 0;
    }

    /// <summary>Steps of several tokens of one sequence (consecutive positions ending at 64, 512 or 4,096; an absorbed prefill
    /// below ExpandedPrefillMinTokens runs such steps): the per-head path against LatentDecode, F16 cache, medians of 7.</summary>
    private static void Batches(int threads, float scale)
    {
        Console.WriteLine();
        Console.WriteLine($"| tokens of one sequence | keys | cache | per head ms | one read ms | speed-up |");
        Console.WriteLine("|---:|---:|---|---:|---:|---:|");
        foreach (int keys in new[] { 64, 512, 4096 }) Batches(threads, scale, keys);
    }

    private static void Batches(int threads, float scale, int keys)
    {
        using var cache = new KvCache(1, keys, Kvw, KvCacheTypes.F16, values: false);
        var rng = new Random(2);
        var row = new float[Kvw];
        for (int j = 0; j < keys; j++)
        {
            for (int i = 0; i < Kvw; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            cache.StoreK(0, j, row);
        }
        foreach (int n in new[] { 1, 4, 8, 16, 31 })
        {
            var q = new float[n * Heads * Kvw];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 8 - 4);
            var lat = new float[n * Heads * R];
            var caches = Enumerable.Repeat<KvCache?>(cache, n).ToArray();
            int[] pos = [.. Enumerable.Range(keys - n, n)];
            var perHead = new List<double>(); var oneRead = new List<double>();
            for (int rep = 0; rep <= 7; rep++)
            {
                var sw = Stopwatch.StartNew();
                LatentAttention.AttendPerHead(q, lat, caches, pos, 0, n, Heads, R, Kvw, scale, threads);
                if (rep > 0) perHead.Add(sw.Elapsed.TotalMilliseconds);
                sw.Restart();
                LatentDecode.Run(q, lat, caches, pos, 0, n, Heads, R, Kvw, scale, threads);
                if (rep > 0) oneRead.Add(sw.Elapsed.TotalMilliseconds);
            }
            double a = Stats.Median(perHead), b = Stats.Median(oneRead);
            Console.WriteLine($"| {n} | {keys} | F16 | {a:F2} | {b:F2} | {a / b:F1}x |");
        }
    }

    /// <summary>`--latent-attention --model FILE [--prompt N]`: a latent-attention model's decode steps after an N-token prompt
    /// (default 4,096), the per-head path (LatentAttention.OneReadPerToken = false) and LatentDecode alternated 8 steps at a time in one
    /// process, medians of 5 (ms per token).</summary>
    private static int Model(BenchOptions o, int threads)
    {
        using var m = DecoderModel.Load(o.Model!);
        int prompt = o.Prompt == 512 ? 4096 : o.Prompt, steps = 8, reps = 5;
        var session = new InferenceSession(m, prompt + 2 * steps * (reps + 1) + 1, threads, 512, o.CacheTypes);
        var ids = SpeedTest.PromptTokens(prompt, m.Config.VocabSize);
        int next = Sampler.ArgMax(session.EvaluatePrompt(ids));
        var times = new[] { new List<double>(), new List<double>() };
        int[] one = new int[1];
        for (int rep = 0; rep <= reps; rep++)
            for (int mode = 0; mode < 2; mode++)
            {
                LatentAttention.OneReadPerToken = mode == 1;
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < steps; i++) { one[0] = next; next = Sampler.ArgMax(session.Evaluate(one)); }
                if (rep > 0) times[mode].Add(sw.Elapsed.TotalMilliseconds / steps);
            }
        LatentAttention.OneReadPerToken = true;
        double a = Stats.Median(times[0]), b = Stats.Median(times[1]);
        Console.WriteLine($"{Path.GetFileName(o.Model)}: decode after {prompt} tokens, {threads} threads, KV {o.CacheTypes.K}: per head {a:F1} ms/token ({1000 / a:F2} tok/s), one read {b:F1} ms/token ({1000 / b:F2} tok/s), {a / b:F2}x");
        return 0;
    }
}
