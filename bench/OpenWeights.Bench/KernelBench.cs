using System.Diagnostics;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Bench;

/// <summary>
/// `--kernels`: WeightMatrix.MatMul alone, per weight type, on one (rows, cols) matrix: decode (1 token; weight bytes read
/// per second) and prefill (64 tokens; tokens per second), with the row kernels and, where the type has one, the
/// interleaved layout; Q5_K also with the F32 fallback (decode each row to F32, QuantDot.UseF32Reference) it used
/// before it had a kernel. The weights are a few quantized random rows repeated (speed does not depend on the values).
/// </summary>
public static class KernelBench
{
    public static int Run(BenchOptions o)
    {
        const int rows = 4096, cols = 8192, prefill = 64;
        GgmlType[] types = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.MXFP4,
            GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ1_S, GgmlType.IQ1_M,
            GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S];
        var rng = new Random(1);
        var x = new float[prefill * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var y = new float[prefill * rows];
        Console.WriteLine($"WeightMatrix.MatMul, {rows} x {cols}, {o.Threads} threads; decode = 1 token, prefill = {prefill} tokens (best of runs: the machine is shared)");
        Console.WriteLine("| type | layout | MiB | decode ms | decode GB/s | prefill ms | prefill tok/s |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|");
        foreach (var type in types)
        {
            long rb = GgmlTypes.RowBytes(type, cols);
            using var buf = new OpenWeights.Tensors.Memory.NativeBuffer(rb * rows);
            var sample = new byte[16 * rb];
            var row = new float[cols];
            for (int r = 0; r < 16; r++)
            {
                for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                if (Quantize.CanQuantize(type)) Quantize.Row(type, row, sample.AsSpan((int)(r * rb), (int)rb));
                else if (type is GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S) RandomBlocks(rng, type, sample.AsSpan((int)(r * rb), (int)rb)); // no quantizer of ours (IQ2): random valid blocks
                else rng.NextBytes(sample.AsSpan((int)(r * rb), (int)rb)); // no quantizer of ours (IQ3 / IQ1): random blocks, same speed
            }
            unsafe
            {
                for (int r = 0; r < rows; r++) sample.AsSpan((int)(r % 16 * rb), (int)rb).CopyTo(new Span<byte>(buf.Pointer + r * rb, (int)rb));
                if (type == GgmlType.Q5_K)
                {
                    var f = new WeightMatrix(buf.Pointer, type, rows, cols);
                    bool was = QuantDot.UseF32Reference;
                    QuantDot.UseF32Reference = true;
                    try
                    {
                        double fd = Best(() => f.MatMul(x, y, 1, o.Threads), 20), fp = Best(() => f.MatMul(x, y, prefill, o.Threads), 3);
                        Console.WriteLine($"| {type} | rows, F32 decode | {rb * rows / 1048576.0:F1} | {fd * 1e3:F2} | {rb * rows / fd / 1e9:F1} | {fp * 1e3:F1} | {prefill / fp:F0} |");
                    }
                    finally { QuantDot.UseF32Reference = was; }
                }
                foreach (bool repack in new[] { false, true })
                {
                    var m = new WeightMatrix(buf.Pointer, type, rows, cols);
                    if (repack && !m.Repack()) continue;
                    double dec = Best(() => m.MatMul(x, y, 1, o.Threads), 60);
                    double pre = Best(() => m.MatMul(x, y, prefill, o.Threads), 8);
                    Console.WriteLine($"| {type} | {(repack ? "interleaved" : "rows")} | {rb * rows / 1048576.0:F1} | {dec * 1e3:F2} | {rb * rows / dec / 1e9:F1} | {pre * 1e3:F1} | {prefill / pre:F0} |");
                    m.ReleasePacked();
                }
            }
        }
        Console.WriteLine();
        Console.WriteLine("| type | quantize (1 thread) M values/s |");
        Console.WriteLine("|---|---:|");
        var src = new float[1 << 16];
        for (int i = 0; i < src.Length; i++) src[i] = (float)(rng.NextDouble() * 2 - 1);
        foreach (var type in types.Where(Quantize.CanQuantize))
        {
            var dst = new byte[GgmlTypes.RowBytes(type, src.Length)];
            double t = Best(() => Quantize.Row(type, src, dst), 5);
            Console.WriteLine($"| {type} | {src.Length / t / 1e6:F1} |");
        }
        return 0;
    }

    /// <summary>Random bytes as blocks of a type whose every bit pattern is valid (the IQ2 grids), each with the f16 scale d = 0.01 first.</summary>
    private static void RandomBlocks(Random rng, GgmlType type, Span<byte> dst)
    {
        rng.NextBytes(dst);
        int bb = GgmlTypes.BlockBytes(type);
        for (int i = 0; i + bb <= dst.Length; i += bb) BitConverter.TryWriteBytes(dst[i..], HalfConvert.Fp32ToFp16(0.01f));
    }

    internal static double Best(Action a, int runs)
    {
        for (int i = 0; i < 3; i++) a(); // JIT, caches, pool threads
        var t = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long s = Stopwatch.GetTimestamp();
            a();
            t[i] = Stopwatch.GetElapsedTime(s).TotalSeconds;
        }
        return t.Min();
    }
}
