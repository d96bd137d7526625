using System.Diagnostics;
using System.Runtime.Intrinsics;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Memory;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;

namespace OpenWeights.Bench;

/// <summary>
/// `--decode-bandwidth`: how close a one-token MatMul comes to the machine's memory bandwidth. Decode reads every
/// weight once per token, so its speed is bytes ÷ bandwidth unless a kernel cannot keep up. For each type, enough
/// matrices of Llama-3.2-1B's shapes to fill ~512 MB (far past any cache) are multiplied by one token in turn, as a
/// decode step does; the bytes read per second are printed beside a plain read of the same number of bytes split over
/// the same pool threads (the ceiling). Row layout and interleaved, AVX-512 and AVX2 kernels of one build, and on
/// AVX-512 machines the interleaved layouts' 512-bit one-token pair kernels (<see cref="QuantDot.Avx512OneToken"/>,
/// off by default) against the 256-bit one-group kernels, and the K-quant row kernels without their prefetch
/// (<see cref="QuantDot.RowPrefetch"/>), the AVX-512 path uses for one token. Alternated in rounds, best of each.
/// </summary>
public static unsafe class DecodeBandwidthBench
{
    public static int Run(BenchOptions o)
    {
        (GgmlType Type, int Rows, int Cols)[] shapes =
            [(GgmlType.Q4_K, 8192, 2048), (GgmlType.Q6_K, 2048, 8192), (GgmlType.Q6_K, 128256 / 8, 2048), (GgmlType.Q5_K, 2048, 8192), (GgmlType.Q8_0, 8192, 2048),
            (GgmlType.Q4_0, 8192, 2048), (GgmlType.Q5_0, 8192, 2048)];
        const long Target = 512L << 20;
        var rng = new Random(1);
        Console.WriteLine($"one-token MatMul over ~512 MB of weights, {o.Threads} threads, best of 5 rounds; kernels {QuantDot.KernelPath}");
        bool has512 = QuantDot.UseAvx512 && QuantDot.KernelPath == "avx512", oneToken = QuantDot.Avx512OneToken;
        Console.WriteLine("| type | shape | kernels | matrices | MB read | ms | GB/s | plain read GB/s | of plain read |");
        Console.WriteLine("|---|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (type, rows, cols) in shapes)
        {
            long rb = GgmlTypes.RowBytes(type, cols);
            int count = (int)Math.Max(1, Target / (rb * rows));
            var sample = new byte[16 * rb];
            var row = new float[cols];
            for (int r = 0; r < 16; r++)
            {
                for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                Quantize.Row(type, row, sample.AsSpan((int)(r * rb), (int)rb));
            }
            var bufs = new NativeBuffer[count];
            for (int m = 0; m < count; m++)
            {
                bufs[m] = new NativeBuffer(rb * rows);
                for (int r = 0; r < rows; r++) sample.AsSpan((int)(r % 16 * rb), (int)rb).CopyTo(new Span<byte>(bufs[m].Pointer + r * rb, (int)rb));
            }
            // the variants: row layout and (where the type has one) interleaved, each with the AVX-512 and the AVX2 kernels
            var variants = new List<(string Name, bool Avx512, bool Prefetch, WeightMatrix[] Mats, long Bytes)>();
            foreach (bool avx512 in has512 ? new[] { true, false } : new[] { false })
            {
                QuantDot.UseAvx512 = avx512;
                string k = avx512 ? "avx512" : "avx2";
                var rowMats = bufs.Select(b => new WeightMatrix(b.Pointer, type, rows, cols)).ToArray();
                variants.Add(($"row {k}", avx512, true, rowMats, rb * rows * count));
                if (type is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K) variants.Add(($"row {k}, no prefetch", avx512, false, rowMats, rb * rows * count));
                foreach (bool pairs in avx512 ? new[] { false, true } : new[] { false })
                {
                    QuantDot.Avx512OneToken = pairs; // read when the layout is made
                    var packed = bufs.Select(b => new WeightMatrix(b.Pointer, type, rows, cols)).ToArray();
                    long pb = packed[0].RepackBytes * count;
                    if (pb > 0 && packed.All(w => w.Repack())) variants.Add(($"interleaved {k}{(pairs ? ", 512-bit one-token pairs" : "")}", avx512, true, packed, pb));
                }
                QuantDot.Avx512OneToken = oneToken;
            }
            var x = new float[cols];
            for (int i = 0; i < cols; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            var y = new float[rows];
            var best = new double[variants.Count];
            Array.Fill(best, double.MaxValue);
            double bestRead = double.MaxValue;
            for (int round = 0; round < 6; round++)
            {
                for (int v = 0; v < variants.Count; v++)
                {
                    QuantDot.UseAvx512 = variants[v].Avx512;
                    QuantDot.RowPrefetch = variants[v].Prefetch;
                    long s = Stopwatch.GetTimestamp();
                    foreach (var w in variants[v].Mats) w.MatMul(x, y, 1, o.Threads);
                    double t = Stopwatch.GetElapsedTime(s).TotalSeconds;
                    if (round > 0) best[v] = Math.Min(best[v], t); // round 0 warms up
                }
                long s2 = Stopwatch.GetTimestamp();
                foreach (var b in bufs) PlainRead(b.Pointer, rb * rows, o.Threads);
                double tr = Stopwatch.GetElapsedTime(s2).TotalSeconds;
                if (round > 0) bestRead = Math.Min(bestRead, tr);
            }
            double rgbs = (double)count * rb * rows / bestRead / 1e9;
            for (int v = 0; v < variants.Count; v++)
            {
                double gbs = variants[v].Bytes / best[v] / 1e9;
                Console.WriteLine($"| {type} | {rows}x{cols} | {variants[v].Name} | {count} | {variants[v].Bytes / 1e6:F0} | {best[v] * 1e3:F2} | {gbs:F1} | {rgbs:F1} | {gbs / rgbs:P0} |");
            }
            QuantDot.UseAvx512 = has512;
            QuantDot.RowPrefetch = true;
            foreach (var (_, _, _, mats, _) in variants) foreach (var w in mats) w.ReleasePacked();
            foreach (var b in bufs) b.Dispose();
        }
        return 0;
    }

    private struct ReadJob : IPoolJob
    {
        public byte* P; public long Bytes; public int Chunks; public float* Sink;
        public readonly void Execute(int c)
        {
            long per = Bytes / Chunks / 256 * 256;
            byte* p = P + c * per, end = c == Chunks - 1 ? P + Bytes : p + per;
            Vector256<byte> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; p + 128 <= end; p += 128)
            {
                a0 ^= Vector256.Load(p); a1 ^= Vector256.Load(p + 32); a2 ^= Vector256.Load(p + 64); a3 ^= Vector256.Load(p + 96);
            }
            Sink[c * 16] = (a0 ^ a1 ^ a2 ^ a3).GetElement(0);
        }
    }

    private static readonly float* sink = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(64 * 64, 64);

    /// <summary>Reads bytes at p once, split into as many contiguous chunks as MatMul splits rows (many per thread).</summary>
    private static void PlainRead(byte* p, long bytes, int threads)
    {
        var job = new ReadJob { P = p, Bytes = bytes, Chunks = Math.Min(64, threads * 8), Sink = sink };
        WorkerPool.For(threads, job.Chunks, ref job);
    }
}
