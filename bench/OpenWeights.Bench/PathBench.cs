using System.Diagnostics;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Bench;

/// <summary>
/// `--kernel-paths`: WeightMatrix.MatMul with the AVX-512 kernels against the AVX2 kernels of the same build
/// (<see cref="QuantDot.UseAvx512"/>, read when a matrix is repacked and when a row kernel is chosen), on the shapes of
/// SmolLM2-135M (576 × 576, 1536 × 576, 576 × 1536), 1 token (decode) and 64 tokens (prefill). The two paths are timed
/// in alternation, several rounds, best time of each: on a shared machine the ratio of interleaved runs is what holds.
/// </summary>
public static class PathBench
{
    public static int Run(BenchOptions o)
    {
        (int Rows, int Cols)[] shapes = [(576, 576), (1536, 576), (576, 1536)];
        GgmlType[] types = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0];
        int[] tokenCounts = [1, 64];
        const int rounds = 5;
        var rng = new Random(1);
        Console.WriteLine($"WeightMatrix.MatMul, {o.Threads} threads, AVX-512 vs AVX2 kernels of this build (CPU AVX-512: {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}, " +
            $"AVX-VNNI: {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}); best of {rounds} alternating rounds; load average {LoadAverage()}");
        Console.WriteLine("| type | layout | rows x cols | tokens | avx2 µs | avx512 µs | avx2 / avx512 |");
        Console.WriteLine("|---|---|---|---:|---:|---:|---:|");
        foreach (var type in types)
            foreach (var (rows, cols) in shapes)
            {
                long rb = GgmlTypes.RowBytes(type, cols);
                var w = new byte[rb * rows];
                var row = new float[cols];
                for (int r = 0; r < rows; r++)
                {
                    for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                    Quantize.Row(type, row, w.AsSpan((int)(r * rb), (int)rb));
                }
                var x = new float[64 * cols];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                var y = new float[64 * rows];
                unsafe
                {
                    fixed (byte* pw = w)
                        foreach (bool repack in new[] { true, false })
                        {
                            var m512 = Make(pw, type, rows, cols, repack, avx512: true);
                            var m256 = Make(pw, type, rows, cols, repack, avx512: false);
                            foreach (int n in tokenCounts)
                            {
                                int runs = n == 1 ? 400 : 20;
                                double t512 = double.MaxValue, t256 = double.MaxValue;
                                for (int round = 0; round < rounds; round++)
                                {
                                    t256 = Math.Min(t256, Best(() => m256.MatMul(x, y, n, o.Threads), runs, avx512: false));
                                    t512 = Math.Min(t512, Best(() => m512.MatMul(x, y, n, o.Threads), runs, avx512: true));
                                }
                                Console.WriteLine($"| {type} | {(repack ? "interleaved" : "rows")} | {rows} x {cols} | {n} | {t256 * 1e6:F1} | {t512 * 1e6:F1} | {t256 / t512:F2} |");
                            }
                            m512.ReleasePacked(); m256.ReleasePacked();
                        }
                }
            }
        Console.WriteLine($"load average after: {LoadAverage()}");
        return 0;
    }

    private static unsafe WeightMatrix Make(byte* w, GgmlType type, int rows, int cols, bool repack, bool avx512)
    {
        var m = new WeightMatrix(w, type, rows, cols);
        bool was = QuantDot.UseAvx512;
        try { QuantDot.UseAvx512 = avx512; if (repack && !m.Repack()) throw new InvalidOperationException($"{type} {rows}x{cols} did not repack"); }
        finally { QuantDot.UseAvx512 = was; }
        return m;
    }

    /// <summary>Best time of <paramref name="runs"/> calls, with the AVX-512 switch set as given (row kernels read it per call).</summary>
    private static double Best(Action a, int runs, bool avx512)
    {
        bool was = QuantDot.UseAvx512;
        QuantDot.UseAvx512 = avx512;
        try
        {
            // warm-up: 0.3 s of calls, so the driver's methods have reached their final JIT tier (and the pool its threads)
            long w0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < 3 || Stopwatch.GetElapsedTime(w0).TotalSeconds < 0.3; i++) a();
            double best = double.MaxValue;
            for (int i = 0; i < runs; i++)
            {
                long s = Stopwatch.GetTimestamp();
                a();
                best = Math.Min(best, Stopwatch.GetElapsedTime(s).TotalSeconds);
            }
            return best;
        }
        finally { QuantDot.UseAvx512 = was; }
    }

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }
}
