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
        RowsPerPass(o.ThreadsSet ? o.Threads : 2);
        int[] threadCounts = o.ThreadsSet ? [o.Threads] : [1, 2];
        Console.WriteLine("Attention.Causal, decode medians of 15 alternated runs; prefill best of 3");
        Console.WriteLine("| shape | keys | cache | threads | decode tiled ms | decode now ms | speed-up | now GB/s | prefill 64 ms |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, heads, kvHeads, d) in new[] { ("16 x 128, no GQA", 16, 16, 128), ("32 on 8 x 128", 32, 8, 128), ("9 on 3 x 64", 9, 3, 64) })
            foreach (int keys in new[] { 512, 4096, 16384 })
                foreach (var types in new[] { KvCacheTypes.F32, KvCacheTypes.F16, KvCacheTypes.Q8_0 })
                {
                    int kvDim = kvHeads * d, qDim = heads * d, prefill = 64;
                    var rng = new Random(1);
                    var cache = FilledCache(rng, keys, kvDim, types);
                    var q = RandomValues(rng, prefill * qDim);
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

    /// <summary>
    /// Query rows per kernel pass and tokens per block: before (one row at a time, blocks of 4 tokens), the several-row kernels
    /// alone (AttentionKernels.MaxRows rows, blocks of 4) and now (MaxRows rows, blocks of Attention.TokenBlock), alternated,
    /// medians, F16 cache, SmolLM2's shape (9 query heads on 3 KV heads of 64) and Llama-3.2-1B's (32 on 8 of 64): a prefill
    /// step of 256 tokens and a decode step at the end of 4,096 and 16,384 keys; on AVX-512 machines also "now" with the
    /// AVX-512 kernels off (the several-row kernels in 256-bit registers). All give the same bits (asserted).
    /// </summary>
    public static int RowsPerPass(int threads)
    {
        int maxRows = OpenWeights.Tensors.Kernels.AttentionKernels.MaxRows, block = Attention.TokenBlock;
        Console.WriteLine($"F16 cache, {threads} threads; before: 1 row per pass, blocks of 4 tokens; rows: {maxRows} rows, blocks of 4; now: {maxRows} rows, blocks of {block}");
        bool wide = OpenWeights.Tensors.Kernels.QuantDot.KernelPath == "avx512";
        Console.WriteLine("| shape | keys | step | before ms | rows ms | now ms | now vs before | now, 256-bit registers ms | 512-bit vs 256-bit |");
        Console.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (name, heads, kvHeads, d) in new[] { ("9 on 3 x 64", 9, 3, 64), ("32 on 8 x 64", 32, 8, 64) })
            foreach (int keys in new[] { 4096, 16384 })
            {
                int kvDim = kvHeads * d, qDim = heads * d, batch = 256;
                var rng = new Random(1);
                using var cache = FilledCache(rng, keys, kvDim, KvCacheTypes.F16);
                var q = RandomValues(rng, batch * qDim);
                var caches = Enumerable.Repeat<KvCache?>(cache, batch).ToArray();
                foreach (var (step, n) in new[] { ("prefill 256", batch), ("decode", 1) })
                {
                    var pos = Enumerable.Range(keys - n, n).ToArray();
                    // the last: now, with the AVX-512 kernels off (the 256-bit several-row kernels), where the machine has them
                    var settings = new[] { (1, 4, true), (maxRows, 4, true), (maxRows, block, true), (maxRows, block, false) }[..(wide ? 4 : 3)];
                    var outs = settings.Select(_ => new float[n * qDim]).ToArray();
                    var runs = new Action[settings.Length];
                    for (int v = 0; v < settings.Length; v++)
                    {
                        var (rows, tokens, avx512) = settings[v]; var att = outs[v];
                        runs[v] = () =>
                        {
                            OpenWeights.Tensors.Kernels.AttentionKernels.MaxRows = rows; Attention.TokenBlock = tokens;
                            OpenWeights.Tensors.Kernels.QuantDot.UseAvx512 = avx512;
                            try { Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads); }
                            finally { OpenWeights.Tensors.Kernels.AttentionKernels.MaxRows = maxRows; Attention.TokenBlock = block; OpenWeights.Tensors.Kernels.QuantDot.UseAvx512 = true; }
                        };
                    }
                    var t = Alternated(runs, n == 1 ? 15 : 5);
                    if (outs.Any(x => !outs[0].AsSpan().SequenceEqual(x))) throw new InvalidOperationException("rows per pass, tokens per block or register width changed the bits");
                    string w = wide ? $" {t[3] * 1e3:F3} | {t[3] / t[2]:F2}x |" : " - | - |";
                    Console.WriteLine($"| {name} | {keys} | {step} | {t[0] * 1e3:F3} | {t[1] * 1e3:F3} | {t[2] * 1e3:F3} | {t[0] / t[2]:F2}x |{w}");
                }
            }
        return 0;
    }

    /// <summary>A one-layer cache of <paramref name="keys"/> positions of random keys (the values the same rows).</summary>
    private static KvCache FilledCache(Random rng, int keys, int kvDim, KvCacheTypes types)
    {
        var cache = new KvCache(1, keys, kvDim, types);
        for (int j = 0; j < keys; j++)
        {
            var row = RandomValues(rng, kvDim);
            cache.StoreK(0, j, row); cache.StoreV(0, j, row);
        }
        return cache;
    }

    private static float[] RandomValues(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Medians over <paramref name="runs"/> runs of each action, the actions alternated run by run after a warm-up of each.</summary>
    private static double[] Alternated(Action[] actions, int runs)
    {
        foreach (var a in actions) a();
        var times = actions.Select(_ => new double[runs]).ToArray();
        for (int i = 0; i < runs; i++)
            for (int k = 0; k < actions.Length; k++)
            {
                long s = System.Diagnostics.Stopwatch.GetTimestamp(); actions[k](); times[k][i] = System.Diagnostics.Stopwatch.GetElapsedTime(s).TotalSeconds;
            }
        return times.Select(t => { Array.Sort(t); return t[runs / 2]; }).ToArray();
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
