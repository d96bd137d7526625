using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// IQ2_XXS / IQ2_XS / IQ2_S without llama.cpp: hand-made blocks decode to the values the format defines, the AVX2 kernels
/// agree with the scalar references, the scalar references with the F32 dot of the decoded rows, the 4-token kernels and
/// the matrix product give every token the single-token bits. The blocks are random bytes (every bit pattern is a
/// valid block) with a finite scale; the bit-exact comparisons with ggml are in GgmlOracleTests.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class IQ2DotTests
{
    public static TheoryData<GgmlType> Types() => [GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S];

    private static delegate*<byte*, byte*, int, float> Scalar(GgmlType t) => t switch
    {
        GgmlType.IQ2_XXS => &QuantDot.DotIQ2_XXSScalar,
        GgmlType.IQ2_XS => &QuantDot.DotIQ2_XSScalar,
        _ => &QuantDot.DotIQ2_SScalar,
    };

    private static delegate*<byte*, byte*, int, float> Avx2Kernel(GgmlType t) => t switch
    {
        GgmlType.IQ2_XXS => &QuantDot.DotIQ2_XXSAvx2,
        GgmlType.IQ2_XS => &QuantDot.DotIQ2_XSAvx2,
        _ => &QuantDot.DotIQ2_SAvx2,
    };

    private static float[] RandomRow(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 1f);
        return x;
    }

    [Fact]
    public void IQ2_XXS_block_decodes_to_grid_times_scale_with_signs()
    {
        var b = new byte[BlockIQ2_XXS.BlockBytes];
        BitConverter.TryWriteBytes(b.AsSpan(0), HalfConvert.Fp32ToFp16(2f));
        // group 0: grid entries 0, 2, 255, 1; sign indices 1, 0, 127, 3; scale 3
        b[2] = 0; b[3] = 2; b[4] = 255; b[5] = 1;
        BitConverter.TryWriteBytes(b.AsSpan(6), 1u | 0u << 7 | 127u << 14 | 3u << 21 | 3u << 28);
        var y = new float[256];
        Dequantize.Row(GgmlType.IQ2_XXS, b, y);
        float db = 2f * 3.5f * 0.25f; // d · (0.5 + s) / 4
        // entry 0 = eight 8s, KSignsIq2xs[1] = 0b10000001: values 0 and 7 negative
        Assert.Equal([-8 * db, 8 * db, 8 * db, 8 * db, 8 * db, 8 * db, 8 * db, -8 * db], y[..8]);
        // entry 2 = 0x0808080808081919: bytes 0, 1 are 25; no signs
        Assert.Equal([25 * db, 25 * db, 8 * db, 8 * db, 8 * db, 8 * db, 8 * db, 8 * db], y[8..16]);
        // KSignsIq2xs[127] = 255: 7 signs set, so the 8th too (the count of minus signs is always even)
        for (int j = 0; j < 8; j++) Assert.Equal(-db * (byte)(IQ2Grids.Iq2xxs[255] >> 8 * j), y[16 + j]);
        // the other 7 groups: entry 0, no signs, scale 0 → 8 · d · 0.5 / 4 = 2
        Assert.All(y[32..], v => Assert.Equal(2f, v));
    }

    [Fact]
    public void IQ2_XS_and_IQ2_S_blocks_use_a_scale_per_16_values_and_high_index_bits()
    {
        // IQ2_XS: value group 2 (values 16..23) = grid entry 511 with sign index 1; group 0's scales 1 (values 0..15) and 5 (16..31)
        var xs = new byte[BlockIQ2_XS.BlockBytes];
        BitConverter.TryWriteBytes(xs.AsSpan(0), HalfConvert.Fp32ToFp16(1f));
        BitConverter.TryWriteBytes(xs.AsSpan(2 + 2 * 2), (ushort)(511 | 1 << 9));
        xs[66] = 1 | 5 << 4;
        var y = new float[256];
        Dequantize.Row(GgmlType.IQ2_XS, xs, y);
        Assert.Equal(8 * 1.5f * 0.25f, y[0]);
        Assert.Equal(8 * 1.5f * 0.25f, y[15]);
        ulong e = IQ2Grids.Iq2xs[511];
        for (int j = 0; j < 8; j++) Assert.Equal((j is 0 or 7 ? -1 : 1) * 5.5f * 0.25f * (byte)(e >> 8 * j), y[16 + j]);

        // IQ2_S: value group 3 of 32-value group 1 (values 56..63): index 0x2A | (qh bits 6, 7 = 0b11) << 8 = 0x32A, signs 0xF0
        var s = new byte[BlockIQ2_S.BlockBytes];
        BitConverter.TryWriteBytes(s.AsSpan(0), HalfConvert.Fp32ToFp16(1f));
        s[2 + 4 + 3] = 0x2A; s[34 + 4 + 3] = 0xF0; s[66 + 1] = 0b11 << 6; s[74 + 1] = 2 << 4;
        Dequantize.Row(GgmlType.IQ2_S, s, y);
        e = IQ2Grids.Iq2s[0x32A];
        for (int j = 0; j < 8; j++) Assert.Equal((j >= 4 ? -1 : 1) * 2.5f * 0.25f * (byte)(e >> 8 * j), y[56 + j]);
        Assert.Equal(8 * 0.5f * 0.25f, y[32]); // value group 0 of group 1: entry 0, scale 0
    }

    /// <summary>AVX2 against scalar (float order only), scalar against the F32 dot of the decoded rows, at unaligned offsets.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Simd_kernel_matches_scalar_reference_and_f32_dot(GgmlType type)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var rng = new Random(31 * (int)type);
        foreach (int blocks in new[] { 1, 2, 3, 5, 8, 9, 17, 28 })
            for (int offset = 0; offset < 4; offset++)
            {
                int n = blocks * 256;
                int wBytes = (int)GgmlTypes.RowBytes(type, n), xBytes = QuantDot.ActivationBytes(GgmlType.Q8_K, n);
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[xBytes + 8];
                Quant.GgmlOracleTests.RandomIq2Blocks(rng, type, n).CopyTo(wbuf, offset);
                var xf = RandomRow(rng, n);
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf)
                {
                    byte* pw = pw0 + offset, px = px0 + (3 - offset);
                    QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf, px, n);
                    float a = Avx2Kernel(type)(pw, px, n), b = Scalar(type)(pw, px, n);
                    var wd = new float[n]; var xd = new float[n];
                    Dequantize.Row(type, new ReadOnlySpan<byte>(pw, wBytes), wd);
                    BlockQ8_K.Dequantize(new ReadOnlySpan<byte>(px, xBytes), xd);
                    double exact = 0, mag = 0;
                    for (int i = 0; i < n; i++) { exact += (double)wd[i] * xd[i]; mag += Math.Abs((double)wd[i] * xd[i]); }
                    double tol = 1e-5 * mag + 1e-6;
                    Assert.True(Math.Abs(a - b) <= tol, $"{type} n={n} offset={offset}: simd {a} scalar {b}");
                    Assert.True(Math.Abs(b - exact) <= tol, $"{type} n={n} offset={offset}: scalar {b} exact {exact}");
                }
            }
    }

    /// <summary>The 4-token kernel gives each token exactly the single-token AVX2 kernel's bits (padded, odd row strides).</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Four_token_kernel_is_bit_exact_with_single_token_kernel(GgmlType type)
    {
        if (!QuantDot.Avx2Path) Assert.Skip("AVX2/FMA not available on this machine");
        var k = QuantDot.For(type);
        var rng = new Random(17 * (int)type);
        var got = new float[4];
        foreach (int blocks in new[] { 1, 3, 8, 28 })
        {
            int n = blocks * 256, xb = QuantDot.ActivationBytes(GgmlType.Q8_K, n), stride = xb + 5;
            var w = Quant.GgmlOracleTests.RandomIq2Blocks(rng, type, n);
            var xq = new byte[4 * stride];
            var xf = RandomRow(rng, 4 * n);
            fixed (byte* pw = w) fixed (byte* px = xq) fixed (float* pxf = xf) fixed (float* pg = got)
            {
                for (int t = 0; t < 4; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * n, px + t * stride, n);
                k.Dot4(pw, px, stride, n, pg);
                for (int t = 0; t < 4; t++) Assert.Equal(k.Dot(pw, px + t * stride, n), got[t]);
            }
        }
    }

    /// <summary>
    /// WeightMatrix.MatMul on an IQ2 matrix: 1 and 2 threads agree, every token count gives each token the bits of the
    /// single-token path, and each output is the F32 dot of the decoded row with the activations (within Q8_K rounding).
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void MatMul_is_batch_invariant_and_matches_decoded_rows(GgmlType type)
    {
        const int rows = 37, cols = 1024;
        var rng = new Random(5 + (int)type);
        var w = Quant.GgmlOracleTests.RandomIq2Blocks(rng, type, rows * cols);
        foreach (int n in new[] { 1, 4, 7, 13 })
        {
            var x = RandomRow(rng, n * cols);
            var y1 = new float[n * rows]; var y2 = new float[n * rows]; var single = new float[n * rows];
            fixed (byte* pw = w)
            {
                var m = new WeightMatrix(pw, type, rows, cols);
                m.MatMul(x, y1, n, threads: 1);
                m.MatMul(x, y2, n, threads: 2);
                try { QuantDot.UseMultiToken = false; m.MatMul(x, single, n, threads: 2); }
                finally { QuantDot.UseMultiToken = true; }
                var row = new float[cols];
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        int i = t * rows + r;
                        Assert.Equal(y1[i], y2[i]);
                        Assert.Equal(single[i], y1[i]);
                        m.DecodeRow(r, row);
                        double exact = 0, mag = 0;
                        for (int c = 0; c < cols; c++) { exact += (double)row[c] * x[t * cols + c]; mag += Math.Abs((double)row[c] * x[t * cols + c]); }
                        Assert.True(Math.Abs(y1[i] - exact) <= 0.01 * mag + 1e-4, $"{type} t={t} r={r}: {y1[i]} vs {exact}");
                    }
            }
        }
    }
}
