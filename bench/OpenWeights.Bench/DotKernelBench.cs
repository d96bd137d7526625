using System.Diagnostics;
using System.Runtime.InteropServices;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Bench;

/// <summary>
/// `--dot-kernels`: the row dot kernels of the Q8_K-activation types, ours (1 token and the 4-token kernel, per token)
/// beside ggml's own <c>ggml_vec_dot_*_q8_K</c> from LLamaSharp's libggml-cpu (AVX2 build) on the same bytes, one
/// thread, (2048, 8192) random blocks (speed does not depend on the values), in values per second; ours and ggml's are
/// measured alternately, best of several runs (the machine is shared).
/// </summary>
public static unsafe class DotKernelBench
{
    public static int Run()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "avx2");
        if (!OperatingSystem.IsLinux() || !File.Exists(Path.Combine(dir, "libggml-cpu.so")))
        {
            Console.Error.WriteLine("bench: --dot-kernels needs LLamaSharp's linux-x64 AVX2 libggml-cpu.so beside the bench");
            return 1;
        }
        NativeLibrary.Load(Path.Combine(dir, "libggml-base.so"));
        var cpu = NativeLibrary.Load(Path.Combine(dir, "libggml-cpu.so"));
        ((delegate* unmanaged<void>)NativeLibrary.GetExport(cpu, "ggml_cpu_init"))();
        const int rows = 2048, cols = 8192;
        GgmlType[] types = [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.IQ4_XS, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S, GgmlType.IQ1_M];
        var rng = new Random(1);
        var x = new float[4 * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        int xb = QuantDot.ActivationBytes(GgmlType.Q8_K, cols);
        var xq = new byte[4 * xb];
        fixed (float* px = x) fixed (byte* pq = xq)
            for (int t = 0; t < 4; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, px + t * cols, pq + t * xb, cols);
        Console.WriteLine($"Row dot kernels against Q8_K activations, ({rows}, {cols}), 1 thread, G values/s (per token for the 4-token kernel)");
        Console.WriteLine("| type | ours | ours 4-token | ggml AVX2 | ours / ggml |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        float* four = stackalloc float[4];
        foreach (var type in types)
        {
            long rb = GgmlTypes.RowBytes(type, cols);
            var w = new byte[rb * rows];
            rng.NextBytes(w);
            var k = QuantDot.For(type);
            var ggml = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)NativeLibrary.GetExport(cpu,
                $"ggml_vec_dot_{type.ToString().ToLowerInvariant().Replace("_k", "_K")}_q8_K");
            double ours = double.MaxValue, ours4 = double.MaxValue, theirs = double.MaxValue;
            fixed (byte* pw = w) fixed (byte* px = xq)
            {
                float sink = 0;
                for (int rep = 0; rep < 12; rep++) // alternate: first reps warm up (tiered JIT), the best of each counts
                {
                    long s = Stopwatch.GetTimestamp();
                    for (int r = 0; r < rows; r++) sink += k.Dot(pw + r * rb, px, cols);
                    ours = Math.Min(ours, Stopwatch.GetElapsedTime(s).TotalSeconds);
                    if (k.Dot4 != null)
                    {
                        s = Stopwatch.GetTimestamp();
                        for (int r = 0; r < rows; r++) { k.Dot4(pw + r * rb, px, xb, cols, four); sink += four[0]; }
                        ours4 = Math.Min(ours4, Stopwatch.GetElapsedTime(s).TotalSeconds / 4);
                    }
                    s = Stopwatch.GetTimestamp();
                    float g = 0;
                    for (int r = 0; r < rows; r++) { ggml(cols, &g, 0, pw + r * rb, 0, px, 0, 1); sink += g; }
                    theirs = Math.Min(theirs, Stopwatch.GetElapsedTime(s).TotalSeconds);
                    if (rep == 2) Thread.Sleep(200); // let the tier-1 code arrive
                }
                GC.KeepAlive(sink);
            }
            double n = (double)rows * cols;
            string four4 = ours4 == double.MaxValue ? "-" : $"{n / ours4 / 1e9:F1}";
            Console.WriteLine($"| {type} | {n / ours / 1e9:F1} | {four4} | {n / theirs / 1e9:F1} | {theirs / ours:F2}x |");
        }
        return 0;
    }
}
