using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// <see cref="WeightMatrix.MatMulMany"/> (several products as one pool job, as a mixture of experts runs its routed experts)
/// gives each part exactly the bits of its own <see cref="WeightMatrix.MatMul"/>: row-kernel and interleaved matrices,
/// parts sharing input rows, parts with 1 to 9 tokens, on 1 and 2 threads.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class MatMulManyTests
{
    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, true)]
    [InlineData(GgmlType.Q4_K, false)]
    [InlineData(GgmlType.Q8_0, true)]
    [InlineData(GgmlType.Q6_K, false)]
    [InlineData(GgmlType.MXFP4, true)]
    [InlineData(GgmlType.F32, false)]
    public void EachPartEqualsItsOwnMatMul(GgmlType type, bool repack)
    {
        if (repack && !QuantDot.Avx2Path) Assert.Skip("no AVX2 here: weights are not repacked (the row kernels are tested by the repack: false rows)");
        var rng = new Random(7);
        int rows = 64, cols = 512, experts = 4;
        long rb = GgmlTypes.RowBytes(type, cols);
        var data = new byte[experts * rows * rb];
        for (int r = 0; r < experts * rows; r++) Quantize.Row(type, Random(rng, cols), data.AsSpan((int)(r * rb), (int)rb));
        fixed (byte* p = data)
        {
            var w = new WeightMatrix[experts];
            for (int e = 0; e < experts; e++)
            {
                w[e] = new WeightMatrix(p + e * rows * rb, type, rows, cols);
                if (repack) Assert.True(w[e].Repack(), $"{type} has an interleaved layout");
            }
            try
            {
                // inputs: 12 token rows; part i reads rows [off, off + n); parts 0 and 1 read the same rows (one conversion)
                var x = Random(rng, 12 * cols);
                (int e, int off, int n)[] spec = [(0, 0, 3), (1, 0, 3), (2, 3, 1), (3, 4, 8), (0, 11, 1), (2, 2, 9)];
                foreach (int threads in new[] { 1, 2 })
                {
                    var parts = new MatMulPart[spec.Length];
                    int yOff = 0;
                    for (int i = 0; i < spec.Length; i++) { parts[i] = new MatMulPart(w[spec[i].e], spec[i].off * cols, yOff, spec[i].n); yOff += spec[i].n * rows; }
                    var many = new float[yOff];
                    WeightMatrix.MatMulMany(x, many, parts, threads);
                    for (int i = 0; i < spec.Length; i++)
                    {
                        var alone = new float[spec[i].n * rows];
                        w[spec[i].e].MatMul(x.AsSpan(spec[i].off * cols), alone, spec[i].n, threads);
                        for (int j = 0; j < alone.Length; j++)
                            Assert.True(BitConverter.SingleToInt32Bits(alone[j]) == BitConverter.SingleToInt32Bits(many[parts[i].YOffset + j]),
                                $"{type} repack={repack} threads={threads} part {i} value {j}: {many[parts[i].YOffset + j]} vs {alone[j]}");
                        Assert.Contains(alone, v => v != 0);
                    }
                }
            }
            finally { foreach (var m in w) m.ReleasePacked(); }
        }
    }

    /// <summary>
    /// Parts with their own output arrays (Q, K and V of one input, as a layer's projections run them) beside parts writing
    /// into the shared output: each equals its own MatMul bit for bit, one part alone too, and an own array too small is refused.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K, true)]
    [InlineData(GgmlType.Q6_K, false)]
    [InlineData(GgmlType.Q8_0, true)]
    public void PartsWithTheirOwnOutputsEqualTheirOwnMatMul(GgmlType type, bool repack)
    {
        if (repack && !QuantDot.Avx2Path) Assert.Skip("no AVX2 here: weights are not repacked (the row kernels are tested by the repack: false rows)");
        var rng = new Random(11);
        int cols = 512;
        int[] rowsOf = [128, 32, 32];
        long rb = GgmlTypes.RowBytes(type, cols);
        var data = new byte[rowsOf.Sum() * rb];
        for (int r = 0; r < rowsOf.Sum(); r++) Quantize.Row(type, Random(rng, cols), data.AsSpan((int)(r * rb), (int)rb));
        fixed (byte* p = data)
        {
            var w = new WeightMatrix[rowsOf.Length];
            long at = 0;
            for (int i = 0; i < w.Length; i++)
            {
                w[i] = new WeightMatrix(p + at, type, rowsOf[i], cols); at += rowsOf[i] * rb;
                if (repack) Assert.True(w[i].Repack(), $"{type} has an interleaved layout");
            }
            try
            {
                foreach (int n in new[] { 1, 5 })
                    foreach (int threads in new[] { 1, 2 })
                    {
                        var x = Random(rng, n * cols);
                        var own = rowsOf.Select(r => new float[n * r + 7]).ToArray(); // longer than needed, as RunState's arrays
                        var shared = new float[n * rowsOf[2]];
                        MatMulPart[] parts = [new(w[0], 0, 0, n, own[0]), new(w[1], 0, 0, n, own[1]), new(w[2], 0, 0, n)];
                        WeightMatrix.MatMulMany(x, shared, parts, threads);
                        WeightMatrix.MatMulMany(x, default, [new MatMulPart(w[1], 0, 0, n, own[2])], threads); // one part alone
                        float[][] got = [own[0], own[1], shared, own[2]];
                        int[] which = [0, 1, 2, 1];
                        for (int i = 0; i < got.Length; i++)
                        {
                            var alone = new float[n * rowsOf[which[i]]];
                            w[which[i]].MatMul(x, alone, n, threads);
                            Assert.True(alone.AsSpan().SequenceEqual(got[i].AsSpan(0, alone.Length)), $"{type} n={n} threads={threads} output {i}");
                            Assert.Contains(alone, v => v != 0);
                        }
                    }
                var ex = Assert.Throws<ArgumentException>(() => WeightMatrix.MatMulMany(new float[cols], default, [new MatMulPart(w[0], 0, 0, 1, new float[10]), new MatMulPart(w[1], 0, 0, 1, new float[32])], 1));
                Assert.Contains("too small", ex.Message);
            }
            finally { foreach (var m in w) m.ReleasePacked(); }
        }
    }

    [Fact]
    public void BuffersTooSmallAreRefused()
    {
        var data = new byte[GgmlTypes.RowBytes(GgmlType.F32, 32) * 8];
        fixed (byte* p = data)
        {
            var w = new WeightMatrix(p, GgmlType.F32, 8, 32);
            var ex = Assert.Throws<ArgumentException>(() => WeightMatrix.MatMulMany(new float[32], new float[12], [new(w, 0, 0, 1), new(w, 0, 8, 1)], 1));
            Assert.Contains("too small", ex.Message);
        }
    }
}
