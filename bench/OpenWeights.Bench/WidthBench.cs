using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Bench;

/// <summary>
/// `--avx512-vs-avx2 --model FILE`: prefill and decode of one model with our AVX-512 kernels and with our AVX2 kernels,
/// in one process, alternated run by run (the machine's drift between processes is larger than the difference). The
/// model is loaded twice, once per path, because an interleaved layout picks its kernels when it is made
/// (<see cref="QuantDot.UseAvx512"/> at load); during each run the switch and the attention rows per pass
/// (<see cref="AttentionKernels.MaxRows"/>: 4 with AVX-512VL, 2 with AVX2) are set to that path's. Both paths give the
/// same bits, so the greedy tokens are asserted equal. What stays the same in both: .NET's own vectorized library code
/// (it sees AVX-512 either way; <c>DOTNET_EnableAVX512=0</c> hides it from everything, between processes).
/// </summary>
public static class WidthBench
{
    public static int Run(BenchOptions o)
    {
        string file = o.Model ?? throw new ArgumentException("--avx512-vs-avx2 needs --model FILE");
        if (QuantDot.KernelPath != "avx512") { Console.WriteLine($"this machine's kernels are {QuantDot.KernelPath}: no AVX-512 path to compare"); return 0; }
        int rowsWide = AttentionKernels.MaxRows;
        DecoderModel Load(bool avx512) { QuantDot.UseAvx512 = avx512; try { return DecoderModel.Load(file); } finally { QuantDot.UseAvx512 = true; } }
        using var wide = Load(true);
        using var narrow = Load(false);
        int ctx = o.Prompt + o.Gen + 8;
        var sWide = new InferenceSession(wide, ctx, o.Threads, Math.Min(o.Prompt, 512), o.CacheTypes);
        var sNarrow = new InferenceSession(narrow, ctx, o.Threads, Math.Min(o.Prompt, 512), o.CacheTypes);
        var ids = SpeedTest.PromptTokens(o.Prompt, wide.Config.VocabSize);
        (double Prefill, double Decode, int[] Tokens) Once(InferenceSession s, bool avx512)
        {
            QuantDot.UseAvx512 = avx512;
            AttentionKernels.MaxRows = avx512 ? rowsWide : 2;
            try
            {
                s.Reset();
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                int next = Sampler.ArgMax(s.EvaluatePrompt(ids));
                double prefill = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
                var tokens = new int[o.Gen];
                Span<int> one = stackalloc int[1];
                long t1 = System.Diagnostics.Stopwatch.GetTimestamp();
                for (int i = 0; i < tokens.Length; i++) { tokens[i] = next; one[0] = next; next = Sampler.ArgMax(s.Evaluate(one)); }
                return (ids.Length / prefill, o.Gen / System.Diagnostics.Stopwatch.GetElapsedTime(t1).TotalSeconds, tokens);
            }
            finally { QuantDot.UseAvx512 = true; AttentionKernels.MaxRows = rowsWide; }
        }
        var refTokens = Once(sNarrow, false).Tokens; // warm-up of both
        if (!Once(sWide, true).Tokens.SequenceEqual(refTokens)) throw new InvalidOperationException("the AVX-512 and AVX2 paths gave different tokens");
        int runs = Math.Max(3, o.Reps);
        var w = new List<(double P, double D)>(); var n = new List<(double P, double D)>();
        for (int r = 0; r < runs; r++)
        {
            // alternate which path goes first, so neither always follows the other
            if (r % 2 == 0) { var a = Once(sWide, true); var b = Once(sNarrow, false); w.Add((a.Prefill, a.Decode)); n.Add((b.Prefill, b.Decode)); }
            else { var b = Once(sNarrow, false); var a = Once(sWide, true); w.Add((a.Prefill, a.Decode)); n.Add((b.Prefill, b.Decode)); }
        }
        static double Median(IEnumerable<double> v) => Stats.Median(v);
        Console.WriteLine($"{Path.GetFileName(file)}, {o.Threads} threads, prompt {o.Prompt}, decode {o.Gen}; {runs} alternated runs per path in one process (tokens equal)");
        Console.WriteLine("| kernels | prefill tok/s median | best | decode tok/s median | best |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        Console.WriteLine($"| avx512 | {Median(w.Select(x => x.P)):F1} | {w.Max(x => x.P):F1} | {Median(w.Select(x => x.D)):F2} | {w.Max(x => x.D):F2} |");
        Console.WriteLine($"| avx2 | {Median(n.Select(x => x.P)):F1} | {n.Max(x => x.P):F1} | {Median(n.Select(x => x.D)):F2} | {n.Max(x => x.D):F2} |");
        Console.WriteLine($"| avx512 / avx2 | {Median(w.Select(x => x.P)) / Median(n.Select(x => x.P)):F2}× | {w.Max(x => x.P) / n.Max(x => x.P):F2}× | {Median(w.Select(x => x.D)) / Median(n.Select(x => x.D)):F2}× | {w.Max(x => x.D) / n.Max(x => x.D):F2}× |");
        return 0;
    }
}
