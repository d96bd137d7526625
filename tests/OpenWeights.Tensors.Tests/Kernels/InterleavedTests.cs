using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Kernels.Interleaved;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// Q4_0, Q5_0, Q8_0, F16, Q4_K, IQ4_NL, IQ4_XS and MXFP4 weights repacked into 8-row interleaved groups (<see cref="InterleavedLayout"/>): the AVX2 kernels equal the scalar
/// reference bit for bit, the reference equals the F32 dot of the dequantized rows, and MatMul over the repacked
/// copy agrees with MatMul over the GGUF rows and stays batch invariant.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class InterleavedTests
{
    private static float[] RandomRow(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 1f);
        return x;
    }

    private static byte[] RandomRows(GgmlType type, Random rng, int rows, int cols)
    {
        long rb = GgmlTypes.RowBytes(type, cols);
        var w = new byte[rows * rb];
        for (int r = 0; r < rows; r++) Quantize.Row(type, RandomRow(rng, cols), w.AsSpan((int)(r * rb), (int)rb));
        return w;
    }

    private static byte[] RandomQ4_0(Random rng, int rows, int cols) => RandomRows(GgmlType.Q4_0, rng, rows, cols);

    /// <summary>Activation rows t &lt; tokens (x + t·stride) in the layout's format, and their exact values: (tokens, n).</summary>
    private static float[] Activations(InterleavedLayout layout, float* xf, byte* px, int stride, int n, int tokens)
    {
        var xd = new float[tokens * n];
        for (int t = 0; t < tokens; t++)
        {
            QuantDot.QuantizeActivation(layout.Activation, xf + t * n, px + t * stride, n);
            if (layout.Activation == GgmlType.Q8_0) { BlockQ8_0.DequantizeScalar(new ReadOnlySpan<byte>(px + t * stride, n / 32 * 34), xd.AsSpan(t * n, n)); continue; }
            if (layout.Activation == GgmlType.Q8_K) { BlockQ8_K.Dequantize(new ReadOnlySpan<byte>(px + t * stride, n / 256 * 292), xd.AsSpan(t * n, n)); continue; }
            for (int i = 0; i < n; i++) // F16: rounded, then scaled by a power of two (exactly undone here)
            {
                float* row = (float*)(px + t * stride);
                row[i] *= layout.ActivationScale;
                xd[t * n + i] = row[i] / layout.ActivationScale;
            }
        }
        return xd;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.MXFP4)]
    [InlineData(GgmlType.IQ4_XS)]
    public void Interleaved_kernels_match_the_scalar_reference_bit_for_bit_and_the_f32_dot(GgmlType type)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var layout = InterleavedLayout.For(type);
        var rng = new Random(41 + (int)type);
        const int rows = 16, tokens = 6; // 2 groups, 6 tokens: every kernel shape
        foreach (int blocks in layout.BlockValues == 256 ? new[] { 1, 2, 3, 5 } : new[] { 1, 2, 3, 5, 8, 17, 24 })
            for (int offset = 0; offset < 4; offset++)
            {
                int n = blocks * Math.Max(32, layout.BlockValues);
                long rb = GgmlTypes.RowBytes(type, n), gb = layout.GroupBytes(n);
                var w = RandomRows(type, rng, rows, n);
                var packed = new byte[layout.Bytes(rows, n) + 8];
                int xb = QuantDot.ActivationBytes(layout.Activation, n), stride = xb + 2 * offset + 1; // odd strides: unaligned rows
                var xbuf = new byte[tokens * stride + 8];
                var xf = RandomRow(rng, tokens * n);
                var single = new float[tokens * rows]; var four = new float[tokens * rows]; var pair = new float[tokens * rows]; var scalar = new float[tokens * rows];
                fixed (byte* pw = w) fixed (byte* pp0 = packed) fixed (byte* px0 = xbuf) fixed (float* pxf = xf)
                fixed (float* p1 = single) fixed (float* p4 = four) fixed (float* p6 = pair) fixed (float* ps = scalar)
                {
                    byte* pp = pp0 + offset, px = px0 + (3 - offset);
                    layout.Repack(pw, rb, rows, n, pp);
                    var xd = Activations(layout, pxf, px, stride, n, tokens);
                    for (int g = 0; g < 2; g++) layout.DotScalar(pp + g * gb, px, stride, n, tokens, ps + 8 * g, rows);
                    for (int t = 0; t < tokens; t++) layout.DotGroups(pp, gb, 2, px + t * stride, n, p1 + t * rows);
                    for (int g = 0; g < 2; g++) layout.Dot4(pp + g * gb, px, stride, n, p4 + 8 * g, rows);
                    for (int g = 0; g < 2; g++) layout.DotScalar(pp + g * gb, px + 4 * stride, stride, n, 2, p4 + 4 * rows + 8 * g, rows); // tokens 4, 5
                    if (layout.DotPair6 != null) layout.DotPair6(pp, gb, px, stride, n, p6, rows);
                    else scalar.CopyTo(pair, 0);
                    for (int t = 0; t < tokens; t++)
                        for (int r = 0; r < rows; r++)
                        {
                            int k = t * rows + r;
                            Assert.True(scalar[k] == single[k], $"{type} n={n} offset={offset} t={t} row={r}: scalar {scalar[k]} 1-token {single[k]}");
                            Assert.True(scalar[k] == four[k], $"{type} n={n} offset={offset} t={t} row={r}: scalar {scalar[k]} 4-token {four[k]}");
                            Assert.True(scalar[k] == pair[k], $"{type} n={n} offset={offset} t={t} row={r}: scalar {scalar[k]} 2-group 6-token {pair[k]}");
                            var wd = new float[n];
                            Dequantize.Row(type, new ReadOnlySpan<byte>(pw + r * rb, (int)rb), wd);
                            double exact = 0, mag = 0;
                            for (int i = 0; i < n; i++) { exact += (double)wd[i] * xd[t * n + i]; mag += Math.Abs((double)wd[i] * xd[t * n + i]); }
                            Assert.True(Math.Abs(scalar[k] - exact) <= 1e-5 * mag + 1e-6, $"{type} n={n} t={t} row={r}: scalar {scalar[k]} exact {exact}");
                        }
                }
            }
    }

    [Fact]
    public void Repacking_keeps_every_nibble_and_scale()
    {
        var rng = new Random(43);
        int rows = 16, cols = 96;
        long rb = GgmlTypes.RowBytes(GgmlType.Q4_0, cols);
        var w = RandomQ4_0(rng, rows, cols);
        var packed = new byte[Q4_0x8.Bytes(rows, cols)];
        fixed (byte* pw = w) fixed (byte* pp = packed) Q4_0x8.Repack(pw, rb, rows, cols, pp);
        // every (row, value) read back from the interleaved layout equals the GGUF row's dequantized value
        for (int r = 0; r < rows; r++)
        {
            var want = new float[cols];
            Dequantize.Row(GgmlType.Q4_0, w.AsSpan((int)(r * rb), (int)rb), want);
            int g = r / 8, j = r % 8;
            for (int v = 0; v < cols; v++)
            {
                int i = v / 32, e = v % 32, c = e % 16 / 4, k = e % 4;
                int off = (g * (cols / 32) + i) * Q4_0x8.BlockBytes;
                byte q = packed[off + 16 + c * 32 + j * 4 + k];
                int u = e < 16 ? q & 0x0F : q >> 4;
                float d = HalfConvert.Fp16ToFp32(BitConverter.ToUInt16(packed, off + 2 * j));
                Assert.Equal(want[v], (u - 8) * d);
            }
        }
    }

    [Fact]
    public void Q8_0_repacking_keeps_every_value_and_scale()
    {
        var rng = new Random(44);
        int rows = 16, cols = 96;
        long rb = GgmlTypes.RowBytes(GgmlType.Q8_0, cols);
        var w = RandomRows(GgmlType.Q8_0, rng, rows, cols);
        var packed = new byte[Q8_0x8.Bytes(rows, cols)];
        fixed (byte* pw = w) fixed (byte* pp = packed) Q8_0x8.Repack(pw, rb, rows, cols, pp);
        for (int r = 0; r < rows; r++)
        {
            var want = new float[cols];
            Dequantize.Row(GgmlType.Q8_0, w.AsSpan((int)(r * rb), (int)rb), want);
            int g = r / 8, j = r % 8;
            for (int v = 0; v < cols; v++)
            {
                int i = v / 32, e = v % 32;
                int off = (g * (cols / 32) + i) * Q8_0x8.BlockBytes;
                float d = HalfConvert.Fp16ToFp32(BitConverter.ToUInt16(packed, off + 2 * j));
                Assert.Equal(want[v], (sbyte)packed[off + 16 + e / 4 * 32 + j * 4 + e % 4] * d);
            }
        }
    }

    /// <summary>A matrix large enough to be repacked in several slices (each slice's source pages released as it goes).</summary>
    [Fact]
    public void Large_matrix_repacked_in_slices_matches_the_gguf_rows()
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var rng = new Random(45);
        int rows = 800, cols = 4096, n = 5;
        var w = RandomRows(GgmlType.Q4_0, rng, rows, cols);
        var x = RandomRow(rng, n * cols);
        var want = new float[n * rows]; var got = new float[n * rows];
        fixed (byte* pw = w)
        {
            var plain = new WeightMatrix(pw, GgmlType.Q4_0, rows, cols);
            var packed = new WeightMatrix(pw, GgmlType.Q4_0, rows, cols);
            Assert.True(packed.Repack());
            plain.MatMul(x, want, n, threads: 2);
            packed.MatMul(x, got, n, threads: 2);
            packed.ReleasePacked();
        }
        for (int t = 0; t < n; t++)
        {
            double mag = 0;
            for (int i = 0; i < cols; i++) mag += Math.Abs(x[t * cols + i]);
            for (int r = 0; r < rows; r++)
                Assert.True(Math.Abs(want[t * rows + r] - got[t * rows + r]) <= 1e-5 * mag * 8 + 1e-5, $"t={t} r={r}: gguf rows {want[t * rows + r]} repacked {got[t * rows + r]}");
        }
    }

    [Fact]
    public void Repack_refuses_shapes_it_cannot_group()
    {
        var w = new byte[12 * 18];
        fixed (byte* pw = w)
        {
            Assert.False(new WeightMatrix(pw, GgmlType.Q4_0, 12, 32).Repack());  // 12 rows: not whole groups of 8
            Assert.False(new WeightMatrix(pw, GgmlType.Q8_0, 6, 32).Repack());   // 6 rows
            Assert.False(new WeightMatrix(pw, GgmlType.Q4_1, 8, 32).Repack());   // no interleaved Q4_1 layout
        }
        Assert.Throws<ArgumentException>(() => { fixed (byte* p = w) Q4_0x8.Repack(p, 18, 12, 32, p); });
    }

    /// <summary>
    /// MatMul over the repacked copy agrees with MatMul over the GGUF rows (a different float order: within 1e-5 of
    /// the magnitude), is bit-identical whether tokens come alone or in a batch, and the scalar path (UseSimd off)
    /// gives the same bits as the AVX2 kernels. Rows decoded from the copy equal the GGUF rows'.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.MXFP4)]
    [InlineData(GgmlType.IQ4_XS)]
    public void MatMul_over_the_repacked_copy_matches_the_gguf_rows_and_is_batch_invariant(GgmlType type)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var rng = new Random(47);
        int rows = 40, cols = type is GgmlType.Q4_K or GgmlType.IQ4_XS ? 512 : 320;
        var w = RandomRows(type, rng, rows, cols);
        fixed (byte* pw = w)
        {
            var plain = new WeightMatrix(pw, type, rows, cols);
            var packed = new WeightMatrix(pw, type, rows, cols);
            Assert.True(packed.Repack());
            Assert.True(packed.IsRepacked);
            try
            {
                var row = new float[cols]; var rowPlain = new float[cols];
                for (int r = 0; r < rows; r++) // decoded from the interleaved copy: the GGUF row's values exactly
                {
                    packed.DecodeRow(r, row); plain.DecodeRow(r, rowPlain);
                    Assert.Equal(rowPlain, row);
                }
                foreach (int n in new[] { 1, 4, 7, 13, 21, 27 })
                {
                    var x = RandomRow(rng, n * cols);
                    var want = new float[n * rows]; var got = new float[n * rows]; var single = new float[rows]; var scalar = new float[n * rows];
                    plain.MatMul(x, want, n, threads: 2);
                    packed.MatMul(x, got, n, threads: 2);
                    try { QuantDot.UseSimd = false; packed.MatMul(x, scalar, n, threads: 2); }
                    finally { QuantDot.UseSimd = true; }
                    for (int t = 0; t < n; t++)
                    {
                        packed.MatMul(x.AsSpan(t * cols, cols), single, 1, threads: 2);
                        double mag = 0;
                        for (int i = 0; i < cols; i++) mag += Math.Abs(x[t * cols + i]);
                        for (int r = 0; r < rows; r++)
                        {
                            int k = t * rows + r;
                            Assert.True(single[r] == got[k], $"n={n} t={t} r={r}: alone {single[r]} batched {got[k]}");
                            Assert.True(scalar[k] == got[k], $"n={n} t={t} r={r}: scalar {scalar[k]} avx2 {got[k]}");
                            Assert.True(Math.Abs(want[k] - got[k]) <= 1e-5 * mag * 8 + 1e-5, $"n={n} t={t} r={r}: gguf rows {want[k]} repacked {got[k]}");
                        }
                    }
                }
            }
            finally { packed.ReleasePacked(); }
            Assert.False(packed.IsRepacked);
        }
    }

    /// <summary>
    /// MXFP4's interleaved scales: every exponent 0..255 (the subnormal ones 0 and 1 included) decodes from the 8-row block
    /// exactly as ggml's GGML_E8M0_TO_FP32_HALF, in the vector path as in the scalar one.
    /// </summary>
    [Fact]
    public void Mxfp4_interleaved_scales_are_exact_for_every_exponent()
    {
        if (!Avx2.IsSupported) Assert.Skip("AVX2 not available on this machine");
        var block = new byte[136];
        var w = new byte[8 * 17];
        for (int e0 = 0; e0 < 256; e0 += 8)
        {
            for (int j = 0; j < 8; j++) { w[j * 17] = (byte)(e0 + j); for (int k = 1; k < 17; k++) w[j * 17 + k] = (byte)(16 * j + k); }
            fixed (byte* pw = w) fixed (byte* pb = block)
            {
                Lut4x8.RepackMxfp4(pw, 17, 8, 32, pb);
                var row = new float[32]; var want = new float[32];
                var scales = Lut4x8.Mxfp4.Scales(pb);
                for (int j = 0; j < 8; j++)
                {
                    Assert.Equal(BitConverter.SingleToUInt32Bits(BlockMXFP4.ScaleHalf((byte)(e0 + j))), BitConverter.SingleToUInt32Bits(scales[j]));
                    fixed (float* pr = row) Lut4x8.DecodeRowMxfp4(pb, j, 32, pr);
                    BlockMXFP4.DequantizeScalar(w.AsSpan(j * 17, 17), want);
                    Assert.Equal(want, row);
                }
            }
        }
    }
}
