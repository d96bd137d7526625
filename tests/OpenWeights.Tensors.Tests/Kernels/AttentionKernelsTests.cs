using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>The attention loops against their scalar references over head sizes, key counts, strides and offsets.</summary>
public class AttentionKernelsTests
{
    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static void RequireAvx2()
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
    }

    [Fact]
    public void Scores_and_weighted_sum_match_scalar_references()
    {
        RequireAvx2();
        ScoresAndWeightedSumsMatchScalarReferences([8, 16, 64, 72, 128, 136]);
    }

    /// <summary>The F32 kernels of the path in use against the scalar references (shared with the 128-bit tests).</summary>
    internal static void ScoresAndWeightedSumsMatchScalarReferences(int[] ds)
    {
        var rng = new Random(21);
        foreach (int d in ds)
            foreach (int len in new[] { 0, 1, 3, 4, 5, 8, 13, 37 })
                foreach (int pad in new[] { 0, 3 })
                {
                    int stride = 3 * d + pad, offset = pad; // the head's d values start at an unaligned offset inside the row
                    var k = Random(rng, offset + Math.Max(1, len) * stride); var v = Random(rng, offset + Math.Max(1, len) * stride);
                    var q = Random(rng, d);
                    var s1 = new float[len]; var s2 = new float[len];
                    AttentionKernels.Scores(q, k.AsSpan(offset), stride, len, 0.125f, s1);
                    AttentionKernels.ScoresScalar(q, k.AsSpan(offset), stride, len, 0.125f, s2);
                    for (int j = 0; j < len; j++) Assert.True(Math.Abs(s1[j] - s2[j]) <= 1e-5f * d, $"d={d} len={len} j={j}: {s1[j]} vs {s2[j]}");

                    var p = Random(rng, len);
                    var o1 = new float[d]; var o2 = new float[d];
                    Array.Fill(o1, float.NaN); // every output is written
                    AttentionKernels.WeightedSum(p, v.AsSpan(offset), stride, o1);
                    AttentionKernels.WeightedSumScalar(p, v.AsSpan(offset), stride, o2);
                    Assert.Equal(o2, o1); // the same fused multiply-adds in the same key order
                }
    }

    /// <summary>Decoding F16 and Q8_0 cache rows (a head inside wider rows) equals the scalar reference bit for bit.</summary>
    [Theory]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F16)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.Q8_0)]
    public void Decoded_cache_rows_match_the_scalar_reference(OpenWeights.Tensors.Quant.GgmlType type) => DecodedRowsMatchTheScalarReference(type, 64);

    internal static unsafe void DecodedRowsMatchTheScalarReference(OpenWeights.Tensors.Quant.GgmlType type, int d)
    {
        var rng = new Random(3);
        int rows = 7, rowBytes = type == OpenWeights.Tensors.Quant.GgmlType.F16 ? 3 * d * 2 : 3 * d / 32 * 34;
        var raw = new byte[rows * rowBytes];
        rng.NextBytes(raw);
        if (type == OpenWeights.Tensors.Quant.GgmlType.F16)
        {
            for (int i = 0; i < raw.Length; i += 2) if ((raw[i + 1] & 0x7C) == 0x7C) { raw[i] = 0; raw[i + 1] &= 0xFC; } // no NaN (payloads not compared): ±inf, subnormals, zeros stay
            for (int i = 0; i < raw.Length; i += 64) { raw[i] = 0; raw[i + 1] = 0x7C; }            // +inf at the start of every 32 halves
        }
        else
            for (int i = 0; i < raw.Length; i += 34) raw[i + 1] &= 0x3F; // finite block scales
        int head = type == OpenWeights.Tensors.Quant.GgmlType.F16 ? d * 2 : d / 32 * 34; // the second head of each row
        var a = new float[rows * d]; var b = new float[rows * d];
        fixed (byte* p = raw) fixed (float* pa = a, pb = b)
        {
            AttentionKernels.DecodeRows(type, p + head, rowBytes, rows, d, pa);
            AttentionKernels.DecodeRowsScalar(type, p + head, rowBytes, rows, d, pb);
        }
        Assert.Equal(b, a);
        Assert.Contains(a, x => x != 0);
    }
    /// <summary>
    /// Scores and weighted sums read from F16 / Q8_0 rows in place equal the F32 kernels over the same rows decoded by
    /// DecodeRows bit for bit (what attention computed before), and the scalar references within float rounding (scores)
    /// or exactly (weighted sums: the same FMA chain). Heads inside wider rows, key counts around the 4-key step.
    /// </summary>
    [Theory]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F16)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.Q8_0)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F32)]
    public void Scores_and_weighted_sums_over_cache_rows_in_place_match_decoded_rows(OpenWeights.Tensors.Quant.GgmlType type)
    {
        RequireAvx2();
        InPlaceRowsMatchDecodedRows(type, [32, 64, 96, 128, 256]);
    }

    internal static unsafe void InPlaceRowsMatchDecodedRows(OpenWeights.Tensors.Quant.GgmlType type, int[] ds)
    {
        var rng = new Random(5);
        foreach (int d in ds)
            foreach (int len in new[] { 0, 1, 3, 4, 7, 12, 37 })
            {
                var (raw, rowBytes) = CacheRows(rng, type, 3, d, len);
                long head = rowBytes / 3; // the second head of each row
                var q = Random(rng, d); var p = Random(rng, len);
                var decoded = new float[Math.Max(1, len) * d];
                var s1 = new float[len]; var s2 = new float[len]; var s3 = new float[len];
                var o1 = Random(rng, d); var o2 = (float[])o1.Clone(); var o3 = (float[])o1.Clone(); // accumulates onto o
                fixed (byte* pr = raw)
                fixed (float* pd = decoded)
                {
                    AttentionKernels.DecodeRowsScalar(type, pr + head, rowBytes, len, d, pd);
                    AttentionKernels.Scores(type, q, pr + head, rowBytes, len, 0.125f, s1);
                    AttentionKernels.Scores(q, decoded, d, len, 0.125f, s2);
                    AttentionKernels.ScoresScalar(type, q, pr + head, rowBytes, len, 0.125f, s3);
                    AttentionKernels.WeightedSumAccumulate(type, p, pr + head, rowBytes, o1);
                    AttentionKernels.WeightedSumAccumulate(p, decoded, d, o2);
                    AttentionKernels.WeightedSumAccumulateScalar(type, p, pr + head, rowBytes, o3);
                }
                Assert.Equal(s2, s1);
                for (int j = 0; j < len; j++) Assert.True(Math.Abs(s1[j] - s3[j]) <= 1e-5f * d, $"d={d} len={len} j={j}: {s1[j]} vs {s3[j]}");
                Assert.Equal(o2, o1);
                Assert.Equal(o3, o1);
            }
    }

    /// <summary>
    /// The several-row kernels give each row the one-row kernel's bits, for every row count a pass takes (1 to 4: AVX2
    /// machines run 2 per pass, AVX-512VL ones 4, both counts are exercised here), F32 / F16 / Q8_0 rows read in place, head
    /// sizes with and without a 32-dim remainder, key counts around the 4-key step; each row's queries, probabilities and
    /// outputs different, outputs accumulated onto their previous values.
    /// </summary>
    [Theory]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F16)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.Q8_0)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F32)]
    public void Several_rows_per_pass_give_each_row_the_one_row_bits(OpenWeights.Tensors.Quant.GgmlType type)
    {
        RequireAvx2();
        SeveralRowsGiveEachRowTheOneRowBits(type, type == OpenWeights.Tensors.Quant.GgmlType.Q8_0 ? [32, 64, 96, 128] : [8, 24, 40, 64, 96, 128]);
    }

    /// <summary>
    /// On an AVX-512 machine the several-row kernels take their 512-bit forms (two keys' accumulators per register for scores,
    /// 16 dims per register for weighted sums) and the test above checks those; here the same checks run with the AVX-512
    /// kernels switched off, so the 256-bit forms are proven on the same machine too: both give the one-row bits.
    /// </summary>
    [Theory]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F16)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.Q8_0)]
    [InlineData(OpenWeights.Tensors.Quant.GgmlType.F32)]
    public void Several_rows_per_pass_in_256_and_512_bit_registers_give_the_same_bits(OpenWeights.Tensors.Quant.GgmlType type)
    {
        RequireAvx2();
        if (!QuantDot.UseAvx512 || QuantDot.KernelPath != "avx512") Assert.Skip("no AVX-512 kernel path here: only the 256-bit forms run (the test above)");
        Assert.True(AttentionKernels.Avx512Rows, "AVX-512 path: the 512-bit several-row kernels");
        int[] ds = type == OpenWeights.Tensors.Quant.GgmlType.Q8_0 ? [32, 64, 96, 128] : [8, 24, 40, 64, 96, 128];
        SeveralRowsGiveEachRowTheOneRowBits(type, ds);
        QuantDot.UseAvx512 = false;
        try
        {
            Assert.False(AttentionKernels.Avx512Rows, "AVX-512 kernels off: the 256-bit several-row kernels");
            SeveralRowsGiveEachRowTheOneRowBits(type, ds);
        }
        finally { QuantDot.UseAvx512 = true; }
    }

    internal static unsafe void SeveralRowsGiveEachRowTheOneRowBits(OpenWeights.Tensors.Quant.GgmlType type, int[] ds)
    {
        var rng = new Random(9);
        float** qs = stackalloc float*[4], ss = stackalloc float*[4], psr = stackalloc float*[4], os = stackalloc float*[4];
        foreach (int d in ds)
            foreach (int len in new[] { 0, 1, 3, 4, 5, 13, 64 })
                foreach (int rows in new[] { 1, 2, 3, 4 })
                {
                    var (raw, rowBytes) = CacheRows(rng, type, 2, d, len);
                    long head = rowBytes / 2; // the second head of each row
                    var q = Random(rng, rows * d); var p = Random(rng, rows * Math.Max(1, len));
                    var s1 = new float[rows * Math.Max(1, len)]; var s2 = new float[s1.Length];
                    var o1 = Random(rng, rows * d); var o2 = (float[])o1.Clone();
                    fixed (byte* pr = raw)
                    fixed (float* pq = q, pp = p, ps = s1, po = o1)
                    {
                        for (int r = 0; r < rows; r++) { qs[r] = pq + r * d; ss[r] = ps + r * Math.Max(1, len); psr[r] = pp + r * Math.Max(1, len); os[r] = po + r * d; }
                        AttentionKernels.ScoresRows(type, qs, rows, d, pr + head, rowBytes, len, 0.125f, ss);
                        AttentionKernels.WeightedSumAccumulateRows(type, psr, rows, len, pr + head, rowBytes, os, d);
                        for (int r = 0; r < rows; r++)
                        {
                            AttentionKernels.Scores(type, q.AsSpan(r * d, d), pr + head, rowBytes, len, 0.125f, s2.AsSpan(r * Math.Max(1, len), len));
                            AttentionKernels.WeightedSumAccumulate(type, p.AsSpan(r * Math.Max(1, len), len), pr + head, rowBytes, o2.AsSpan(r * d, d));
                        }
                    }
                    Assert.True(s2.AsSpan().SequenceEqual(s1), $"{type} scores d={d} len={len} rows={rows}");
                    Assert.True(o2.AsSpan().SequenceEqual(o1), $"{type} weighted sums d={d} len={len} rows={rows}");
                }
    }

    /// <summary>len cache rows of <paramref name="heads"/> heads of d random values in <paramref name="type"/> (at least one
    /// row's bytes, so a pointer to them exists), and the bytes per row.</summary>
    private static unsafe (byte[] Raw, long RowBytes) CacheRows(Random rng, OpenWeights.Tensors.Quant.GgmlType type, int heads, int d, int len)
    {
        int kvDim = heads * d;
        long rowBytes = type switch { OpenWeights.Tensors.Quant.GgmlType.F16 => 2L * kvDim, OpenWeights.Tensors.Quant.GgmlType.Q8_0 => kvDim / 32 * 34, _ => 4L * kvDim };
        var raw = new byte[Math.Max(1, len) * rowBytes];
        var x = new float[kvDim];
        fixed (byte* pr = raw)
            for (int j = 0; j < len; j++)
            {
                for (int i = 0; i < kvDim; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                Store(type, x, pr + j * rowBytes);
            }
        return (raw, rowBytes);
    }

    internal static unsafe void Store(OpenWeights.Tensors.Quant.GgmlType type, float[] x, byte* dst)
    {
        switch (type)
        {
            case OpenWeights.Tensors.Quant.GgmlType.F32: x.AsSpan().CopyTo(new Span<float>(dst, x.Length)); break;
            case OpenWeights.Tensors.Quant.GgmlType.F16: System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(x, new Span<Half>(dst, x.Length)); break;
            default: fixed (float* px = x) QuantDot.QuantizeQ8_0(px, dst, x.Length); break;
        }
    }
}
