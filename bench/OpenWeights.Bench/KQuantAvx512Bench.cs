using System.Diagnostics;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Bench;

/// <summary>
/// `--kquant-avx512`: WeightMatrix.MatMul on Llama-3.2-1B's K-quant shapes (Q4_K attn_q/o 2048×2048, ffn gate/up 8192×2048,
/// Q6_K ffn_down 2048×8192; Q5_K on the same shape) at 1, 64 and 512 tokens, the AVX-512 kernels against the AVX2 kernels of the same build in the
/// same process (<see cref="QuantDot.UseAvx512"/>; a Q4_K matrix is repacked once per path, as its layout picks its
/// kernels then). The two paths alternate in rounds and each keeps its best time; the load average is printed with each
/// row because the machine is shared. Beside the wall times, the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID) of
/// the best run of each path: with --threads 1 (the MatMul runs on the calling thread) it is the kernels' own time, which
/// a loaded machine disturbs much less than wall time (with more threads it counts only the caller's share). Without AVX-512 only the AVX2 columns are measured.
/// </summary>
public static class KQuantAvx512Bench
{
    public static int Run(BenchOptions o)
    {
        (GgmlType Type, int Rows, int Cols, string Name)[] shapes =
            [(GgmlType.Q4_K, 2048, 2048, "attn_q"), (GgmlType.Q4_K, 8192, 2048, "ffn_up"), (GgmlType.Q6_K, 2048, 8192, "ffn_down"),
            (GgmlType.Q5_K, 2048, 8192, "ffn_down shape")];
        int[] tokenCounts = [1, 64, 512];
        bool has512 = Set(true) && QuantDotAvx512();
        Set(false);
        Console.WriteLine($"WeightMatrix.MatMul, {o.Threads} threads, best of alternating rounds; AVX-512 available: {has512}");
        Console.WriteLine("| type | shape (rows x cols) | tokens | AVX2 ms | AVX-512 ms | AVX2 / AVX-512 | AVX2 cpu ms | AVX-512 cpu ms | cpu ratio | load avg |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        var rng = new Random(1);
        foreach (var (type, rows, cols, name) in shapes)
        {
            long rb = GgmlTypes.RowBytes(type, cols);
            using var buf = new OpenWeights.Tensors.Memory.NativeBuffer(rb * rows);
            var sample = new byte[16 * rb];
            var row = new float[cols];
            for (int r = 0; r < 16; r++)
            {
                for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                Quantize.Row(type, row, sample.AsSpan((int)(r * rb), (int)rb));
            }
            int maxTokens = tokenCounts.Max();
            var x = new float[maxTokens * cols];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var y = new float[maxTokens * rows];
            unsafe
            {
                for (int r = 0; r < rows; r++) sample.AsSpan((int)(r % 16 * rb), (int)rb).CopyTo(new Span<byte>(buf.Pointer + r * rb, (int)rb));
                Set(false);
                var m2 = new WeightMatrix(buf.Pointer, type, rows, cols);
                m2.Repack();
                Set(true);
                var m512 = new WeightMatrix(buf.Pointer, type, rows, cols);
                m512.Repack();
                foreach (int n in tokenCounts)
                {
                    int runs = n == 1 ? 30 : n == 64 ? 5 : 2;
                    double best2 = double.MaxValue, best512 = double.MaxValue, cpu2 = double.MaxValue, cpu512 = double.MaxValue;
                    string load0 = LoadAverage();
                    for (int round = 0; round < 4; round++)
                    {
                        Set(false);
                        var (w2, c2) = Best(() => m2.MatMul(x, y, n, o.Threads), runs);
                        best2 = Math.Min(best2, w2); cpu2 = Math.Min(cpu2, c2);
                        if (!has512) continue;
                        Set(true);
                        var (w5, c5) = Best(() => m512.MatMul(x, y, n, o.Threads), runs);
                        best512 = Math.Min(best512, w5); cpu512 = Math.Min(cpu512, c5);
                    }
                    string shape = $"{name} {rows}x{cols}{(m2.IsRepacked ? " (interleaved)" : "")}";
                    string r512 = has512 ? $"{best512 * 1e3:F2} | {best2 / best512:F2}" : "- | -";
                    string c512 = has512 ? $"{cpu512 * 1e3:F2} | {cpu2 / cpu512:F2}" : "- | -";
                    Console.WriteLine($"| {type} | {shape} | {n} | {best2 * 1e3:F2} | {r512} | {cpu2 * 1e3:F2} | {c512} | {load0} → {LoadAverage()} |");
                }
                m2.ReleasePacked(); m512.ReleasePacked();
            }
        }
        Set(true);
        return 0;
    }

    private static bool Set(bool avx512) { QuantDot.UseAvx512 = avx512; return true; }

    /// <summary>Whether the AVX-512 kernels would run (QuantDot.Avx512Path is internal: the same test on the public switches).</summary>
    private static bool QuantDotAvx512() =>
        QuantDot.UseSimd && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported
        && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported && System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported;

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }

    /// <summary>Best wall time and best process CPU time (seconds) of runs calls of a.</summary>
    private static (double Wall, double Cpu) Best(Action a, int runs)
    {
        a(); // JIT, caches, pool threads
        double wall = double.MaxValue, cpu = double.MaxValue;
        for (int i = 0; i < runs; i++)
        {
            double c0 = ThreadCpuSeconds();
            long s = Stopwatch.GetTimestamp();
            a();
            wall = Math.Min(wall, Stopwatch.GetElapsedTime(s).TotalSeconds);
            cpu = Math.Min(cpu, ThreadCpuSeconds() - c0);
        }
        return (wall, cpu);
    }

    private struct Timespec { public long Sec, Nsec; }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec ts);

    /// <summary>This thread's CPU time in seconds (Linux CLOCK_THREAD_CPUTIME_ID = 3); NaN where unavailable.</summary>
    private static double ThreadCpuSeconds()
    {
        if (!OperatingSystem.IsLinux()) return double.NaN;
        return ClockGetTime(3, out var ts) == 0 ? ts.Sec + ts.Nsec * 1e-9 : double.NaN;
    }
}
