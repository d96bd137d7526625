using OpenWeights.Models.Common;

namespace OpenWeights.Bench;

/// <summary>
/// `--attention`: Attention.Causal alone over a KV cache in F32, F16 and Q8_0, at 512, 4,096 and 16,384 cached keys, with 1
/// and 2 threads (or --threads N alone): decode (1 query token) the way it ran before (each F16 / Q8_0 tile decoded to an
/// F32 scratch, no key split: "tiled") and now (keys and values read in place, the split step at long contexts: "now"),
/// the two alternated run by run and reported as medians (the machine is shared), and a prefill block (64 query tokens at
/// the end of the context, best of 3, up to 4,096 keys), in OLMoE's shape (16 KV heads of 128, no grouping) and a GQA
/// shape (32 query heads on 8 KV heads of 128) and SmolLM2-135M's (9 query heads on 3 KV heads of 64: few KV heads, where
/// decode at 1,024 keys or more with 2 threads splits over the keys). Both decode paths give the same bits (asserted here too).
/// </summary>
public static class AttentionBench
{
    public static int Run(BenchOptions o)
    {
        DecodeOnly();
        int[] threadCounts = o.ThreadsSet ? [o.Threads] : [1, 2];
        Console.WriteLine("Attention.Causal, decode medians of 15 alternated runs; prefill best of 3");
        Console.WriteLine("| shape | keys | cache | threads | decode tiled ms | decode now ms | speed-up | now GB/s | prefill 64 ms |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, heads, kvHeads, d) in new[] { ("16 x 128, no GQA", 16, 16, 128), ("32 on 8 x 128", 32, 8, 128), ("9 on 3 x 64", 9, 3, 64) })
            foreach (int keys in new[] { 512, 4096, 16384 })
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
                    var att = new float[prefill * qDim]; var attOld = new float[prefill * qDim];
                    var caches = Enumerable.Repeat<KvCache?>(cache, prefill).ToArray();
                    int[] decodePos = [keys - 1];
                    var prefillPos = Enumerable.Range(keys - prefill, prefill).ToArray();
                    foreach (int threads in threadCounts)
                    {
                        void Old() => WithPaths(tiled: true, () => Attention.Causal(q, caches, decodePos, 0, attOld, 1, heads, kvHeads, d, threads));
                        void Now() => Attention.Causal(q, caches, decodePos, 0, att, 1, heads, kvHeads, d, threads);
                        var (told, tnow) = Alternated(Old, Now, 15);
                        if (!att.AsSpan(0, qDim).SequenceEqual(attOld.AsSpan(0, qDim))) throw new InvalidOperationException("decode paths differ");
                        string pre = keys <= 4096 ? $"{KernelBench.Best(() => Attention.Causal(q, caches, prefillPos, 0, att, prefill, heads, kvHeads, d, threads), 3) * 1e3:F2}" : "";
                        long bytes = (long)keys * (cache.KRowBytes + cache.VRowBytes);
                        Console.WriteLine($"| {name} | {keys} | {types} | {threads} | {told * 1e3:F3} | {tnow * 1e3:F3} | {told / tnow:F2}x | {bytes / tnow / 1e9:F1} | {pre} |");
                    }
                }
        return 0;
    }

    /// <summary>Runs <paramref name="run"/> with the previous decode path (F16 / Q8_0 tiles decoded to F32, no split) when asked.</summary>
    private static void WithPaths(bool tiled, Action run)
    {
        int direct = Attention.DirectRows, split = Attention.SplitKeys;
        if (tiled) { Attention.DirectRows = 0; Attention.SplitKeys = int.MaxValue; }
        try { run(); } finally { Attention.DirectRows = direct; Attention.SplitKeys = split; }
    }

    /// <summary>Medians of a and b over <paramref name="runs"/> runs each, alternated (a, b, a, b, ...) after a warm-up of each.</summary>
    private static (double A, double B) Alternated(Action a, Action b, int runs)
    {
        a(); b();
        var ta = new double[runs]; var tb = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long s = System.Diagnostics.Stopwatch.GetTimestamp(); a(); ta[i] = System.Diagnostics.Stopwatch.GetElapsedTime(s).TotalSeconds;
            s = System.Diagnostics.Stopwatch.GetTimestamp(); b(); tb[i] = System.Diagnostics.Stopwatch.GetElapsedTime(s).TotalSeconds;
        }
        Array.Sort(ta); Array.Sort(tb);
        return (ta[runs / 2], tb[runs / 2]);
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
            GC.KeepAlive(cache); // k points into its native memory
        }
    }
}
