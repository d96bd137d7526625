using System.Diagnostics;
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
                double ph = Median(perHead);
                var ones = oneRead.Select(Median).ToArray();
                double def = ones[Array.IndexOf(Tiles, defaultTile)];
                Console.WriteLine($"| {keys} | {types.K} | {ph:F2} | {string.Join(" | ", ones.Select(x => x.ToString("F2")))} | {ph / def:F1}x |");
            }
        return 0;
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s[s.Length / 2];
    }
}
