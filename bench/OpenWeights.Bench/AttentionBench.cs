using OpenWeights.Models.Common;

namespace OpenWeights.Bench;

/// <summary>
/// `--attention`: Attention.Causal alone over a KV cache in F32, F16 and Q8_0, at 512 and 4,096 cached keys: decode
/// (1 query token) and a prefill block (64 query tokens at the end of the context), in OLMoE's shape (16 KV heads of 128,
/// no grouping) and a GQA shape (32 query heads on 8 KV heads of 128). Decode reports the cache bytes read per second.
/// </summary>
public static class AttentionBench
{
    public static int Run(BenchOptions o)
    {
        DecodeOnly();
        Console.WriteLine($"Attention.Causal, {o.Threads} threads (best of runs: the machine is shared)");
        Console.WriteLine("| shape | keys | cache | decode ms | decode GB/s | prefill 64 ms |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|");
        foreach (var (name, heads, kvHeads, d) in new[] { ("16 x 128, no GQA", 16, 16, 128), ("32 on 8 x 128", 32, 8, 128) })
            foreach (int keys in new[] { 512, 4096 })
                foreach (var types in new[] { KvCacheTypes.F32, KvCacheTypes.F16, KvCacheTypes.Q8_0 })
                {
                    int kvDim = kvHeads * d, qDim = heads * d, prefill = 64;
                    var cache = new KvCache(1, keys, kvDim, types);
                    var rng = new Random(1);
                    var row = new float[kvDim];
                    for (int j = 0; j < keys; j++)
                    {
                        for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                        cache.StoreK(0, j, row); cache.StoreV(0, j, row);
                    }
                    var q = new float[prefill * qDim];
                    for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
                    var att = new float[prefill * qDim];
                    var caches = Enumerable.Repeat<KvCache?>(cache, prefill).ToArray();
                    int[] decodePos = [keys - 1];
                    var prefillPos = Enumerable.Range(keys - prefill, prefill).ToArray();
                    double dec = KernelBench.Best(() => Attention.Causal(q, caches, decodePos, 0, att, 1, heads, kvHeads, d, o.Threads), 50);
                    double pre = KernelBench.Best(() => Attention.Causal(q, caches, prefillPos, 0, att, prefill, heads, kvHeads, d, o.Threads), 5);
                    long bytes = (long)keys * (cache.KRowBytes + cache.VRowBytes);
                    Console.WriteLine($"| {name} | {keys} | {types} | {dec * 1e3:F3} | {bytes / dec / 1e9:F1} | {pre * 1e3:F2} |");
                }
        return 0;
    }

    /// <summary>AttentionKernels.DecodeRows alone: 4,096 rows of one 128-wide head out of 16 (what a decode step converts per KV head).</summary>
    private static unsafe void DecodeOnly()
    {
        const int rows = 4096, d = 128, kvDim = 16 * d;
        var dst = new float[64 * d];
        foreach (var types in new[] { KvCacheTypes.F16, KvCacheTypes.Q8_0 })
        {
            var cache = new KvCache(1, rows, kvDim, types);
            var row = new float[kvDim];
            var rng = new Random(2);
            for (int j = 0; j < rows; j++) { for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1); cache.StoreK(0, j, row); }
            byte* k = cache.KData(0);
            int rb = cache.KRowBytes;
            double t = KernelBench.Best(() =>
            {
                fixed (float* p = dst)
                    for (int j0 = 0; j0 < rows; j0 += 64) OpenWeights.Tensors.Kernels.AttentionKernels.DecodeRows(types.K, k + (long)j0 * rb, rb, 64, d, p);
            }, 50);
            Console.WriteLine($"DecodeRows {types}: {rows} x {d} in {t * 1e6:F0} us ({rows * d / t / 1e9:F2} G elements/s)");
        }
    }
}
