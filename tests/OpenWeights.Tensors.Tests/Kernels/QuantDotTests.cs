using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// Quantized dot products: each SIMD kernel against its scalar reference, and each scalar reference against the F32
/// dot of the dequantized weight and activation rows, over many lengths and unaligned buffer offsets.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class QuantDotTests
{
    private delegate float DotFn(byte* w, byte* x, int n);

    private static float[] RandomRow(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 1f);
        return x;
    }

    private static void Check(GgmlType wType, GgmlType aType, DotFn simd, DotFn scalar, bool needsAvx2 = true)
    {
        if (needsAvx2 && !(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        int bs = GgmlTypes.BlockSize(wType) == 1 ? 32 : GgmlTypes.BlockSize(wType);
        var rng = new Random((int)wType * 31 + (int)aType);
        foreach (int blocks in new[] { 1, 2, 3, 5, 8, 9, 17, 24 })
            for (int offset = 0; offset < 4; offset++)
            {
                int n = blocks * bs;
                var wf = RandomRow(rng, n); var xf = RandomRow(rng, n);
                int wBytes = (int)GgmlTypes.RowBytes(wType, n);
                int xBytes = QuantDot.ActivationBytes(aType, n);
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[xBytes + 8];
                if (wType == GgmlType.F32) wf.AsSpan().CopyTo(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(wbuf.AsSpan(offset, wBytes)));
                else Quantize.Row(wType, wf, wbuf.AsSpan(offset, wBytes));
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf)
                {
                    byte* pw = pw0 + offset, px = px0 + (3 - offset);
                    QuantDot.QuantizeActivation(aType, pxf, px, n);
                    float a = simd(pw, px, n), b = scalar(pw, px, n);
                    // reference: F32 dot of the dequantized rows
                    var wd = new float[n]; var xd = new float[n];
                    Dequantize.Row(wType, new ReadOnlySpan<byte>(pw, wBytes), wd);
                    if (aType == GgmlType.Q8_0) BlockQ8_0.DequantizeScalar(new ReadOnlySpan<byte>(px, n / 32 * 34), xd);
                    else if (aType == GgmlType.Q8_K) BlockQ8_K.Dequantize(new ReadOnlySpan<byte>(px, xBytes), xd);
                    else new ReadOnlySpan<float>(px, n).CopyTo(xd);
                    double exact = 0, mag = 0;
                    for (int i = 0; i < n; i++) { exact += (double)wd[i] * xd[i]; mag += Math.Abs((double)wd[i] * xd[i]); }
                    double tol = 1e-5 * mag + 1e-6;
                    Assert.True(Math.Abs(a - b) <= tol, $"{wType} n={n} offset={offset}: simd {a} scalar {b}");
                    Assert.True(Math.Abs(b - exact) <= tol, $"{wType} n={n} offset={offset}: scalar {b} exact {exact}");
                }
            }
    }

    [Fact] public void Q8_0_q8_0() => Check(GgmlType.Q8_0, GgmlType.Q8_0, QuantDot.DotQ8_0Avx2, QuantDot.DotQ8_0Scalar);
    [Fact] public void Q4_0_q8_0() => Check(GgmlType.Q4_0, GgmlType.Q8_0, QuantDot.DotQ4_0Avx2, QuantDot.DotQ4_0Scalar);
    [Fact] public void Q5_0_q8_0() => Check(GgmlType.Q5_0, GgmlType.Q8_0, QuantDot.DotQ5_0Avx2, QuantDot.DotQ5_0Scalar);
    [Fact] public void Q4_K_q8_K() => Check(GgmlType.Q4_K, GgmlType.Q8_K, QuantDot.DotQ4_KAvx2, QuantDot.DotQ4_KScalar);
    [Fact] public void Q5_K_q8_K() => Check(GgmlType.Q5_K, GgmlType.Q8_K, QuantDot.DotQ5_KAvx2, QuantDot.DotQ5_KScalar, needsAvx2: true);
    [Fact] public void Q6_K_q8_K() => Check(GgmlType.Q6_K, GgmlType.Q8_K, QuantDot.DotQ6_KAvx2, QuantDot.DotQ6_KScalar);
    [Fact] public void IQ4_NL_q8_0() => Check(GgmlType.IQ4_NL, GgmlType.Q8_0, QuantDot.DotIQ4_NLAvx2, QuantDot.DotIQ4_NLScalar);
    [Fact] public void MXFP4_q8_0() => Check(GgmlType.MXFP4, GgmlType.Q8_0, QuantDot.DotMXFP4Avx2, QuantDot.DotMXFP4Scalar);
    [Fact] public void IQ4_XS_q8_K() => Check(GgmlType.IQ4_XS, GgmlType.Q8_K, QuantDot.DotIQ4_XSAvx2, QuantDot.DotIQ4_XSScalar);
    [Fact] public void F16_f32() => Check(GgmlType.F16, GgmlType.F16, QuantDot.DotF16, QuantDot.DotF16Scalar, needsAvx2: false);

    private delegate void Dot4Fn(byte* w, byte* x, int stride, int n, float* result);

    /// <summary>
    /// A 4-token kernel against its scalar reference (the scalar single-token kernel on each of the 4 activation rows)
    /// over many lengths, unaligned weight and activation buffers and row strides with padding.
    /// </summary>
    private static void CheckFour(GgmlType wType, Dot4Fn simd, delegate*<byte*, byte*, int, float> scalar, int tokens = 4)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var aType = QuantDot.For(wType).Activation;
        int bs = GgmlTypes.BlockSize(wType) == 1 ? 32 : GgmlTypes.BlockSize(wType);
        var rng = new Random((int)wType * 17 + 3);
        // lengths in values: whole blocks; F16 rows may have any length (the tail is done per element)
        var lengths = new[] { 1, 2, 3, 5, 8, 9, 17, 24 }.Select(b => b * bs).ToList();
        if (wType == GgmlType.F16) lengths.AddRange([1, 7, 15, 16, 33, 100, 1001]);
        foreach (int n in lengths)
            for (int offset = 0; offset < 4; offset++)
            {
                int wBytes = (int)GgmlTypes.RowBytes(wType, n);
                int xBytes = QuantDot.ActivationBytes(aType, n);
                int stride = xBytes + 4 * offset + 1; // padded, odd: every row but the first is unaligned
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[tokens * stride + 8];
                Quantize.Row(wType, RandomRow(rng, n), wbuf.AsSpan(offset, wBytes));
                var xf = RandomRow(rng, tokens * n);
                var got = new float[tokens]; var want = new float[tokens];
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf) fixed (float* pg = got) fixed (float* pr = want)
                {
                    byte* pw = pw0 + offset, px = px0 + (3 - offset);
                    for (int t = 0; t < tokens; t++) QuantDot.QuantizeActivation(aType, pxf + t * n, px + t * stride, n);
                    simd(pw, px, stride, n, pg);
                    if (tokens == 8) QuantDot.Dot8Reference(scalar, pw, px, stride, n, pr);
                    else QuantDot.Dot4Reference(scalar, pw, px, stride, n, pr);
                    for (int t = 0; t < tokens; t++)
                    {
                        double mag = 0;
                        for (int i = 0; i < n; i++) mag += Math.Abs(xf[t * n + i]);
                        Assert.True(Math.Abs(got[t] - want[t]) <= 1e-5 * mag * 8 + 1e-5, $"{wType} n={n} offset={offset} t={t}: simd {got[t]} scalar {want[t]}");
                    }
                }
            }
    }

    [Fact] public void Q8_0_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q8_0, QuantDot.DotQ8_0Avx2x4, &QuantDot.DotQ8_0Scalar);
    [Fact] public void Q4_0_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q4_0, QuantDot.DotQ4_0Avx2x4, &QuantDot.DotQ4_0Scalar);
    [Fact] public void Q5_0_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q5_0, QuantDot.DotQ5_0Avx2x4, &QuantDot.DotQ5_0Scalar);
    [Fact] public void Q4_K_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q4_K, QuantDot.DotQ4_KAvx2x4, &QuantDot.DotQ4_KScalar);
    [Fact] public void Q5_K_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q5_K, QuantDot.DotQ5_KAvx2x4, &QuantDot.DotQ5_KScalar);
    [Fact] public void Q6_K_four_token_kernel_matches_scalar() => CheckFour(GgmlType.Q6_K, QuantDot.DotQ6_KAvx2x4, &QuantDot.DotQ6_KScalar);
    [Fact] public void IQ4_NL_four_token_kernel_matches_scalar() => CheckFour(GgmlType.IQ4_NL, QuantDot.DotIQ4_NLAvx2x4, &QuantDot.DotIQ4_NLScalar);
    [Fact] public void MXFP4_four_token_kernel_matches_scalar() => CheckFour(GgmlType.MXFP4, QuantDot.DotMXFP4Avx2x4, &QuantDot.DotMXFP4Scalar);
    [Fact] public void IQ4_XS_four_token_kernel_matches_scalar() => CheckFour(GgmlType.IQ4_XS, QuantDot.DotIQ4_XSAvx2x4, &QuantDot.DotIQ4_XSScalar);
    [Fact] public void F16_four_token_kernel_matches_scalar() => CheckFour(GgmlType.F16, QuantDot.DotF16Avx2x4, &QuantDot.DotF16Scalar);
    [Fact] public void Q5_0_eight_token_kernel_matches_scalar() => CheckFour(GgmlType.Q5_0, QuantDot.DotQ5_0Avx2x8, &QuantDot.DotQ5_0Scalar, tokens: 8);

    /// <summary>The 8-token kernels equal the single-token AVX2 kernels bit for bit on each token (same float sequence).</summary>
    [Theory]
    [InlineData(GgmlType.Q5_0)]
    public void Eight_token_kernel_is_bit_exact_with_single_token_kernel(GgmlType type)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var k = QuantDot.For(type);
        var rng = new Random(29);
        foreach (int n in new[] { 32, 96, 576, 896 })
            for (int offset = 0; offset < 3; offset++)
            {
                int wBytes = (int)GgmlTypes.RowBytes(type, n), xBytes = QuantDot.ActivationBytes(GgmlType.Q8_0, n), stride = xBytes + 2 * offset + 1;
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[8 * stride + 8]; var xf = RandomRow(rng, 8 * n);
                Quantize.Row(type, RandomRow(rng, n), wbuf.AsSpan(offset, wBytes));
                var got = new float[8];
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf) fixed (float* pg = got)
                {
                    byte* pw = pw0 + offset, px = px0 + 1;
                    for (int t = 0; t < 8; t++) QuantDot.QuantizeActivation(GgmlType.Q8_0, pxf + t * n, px + t * stride, n);
                    k.Dot8(pw, px, stride, n, pg);
                    for (int t = 0; t < 8; t++)
                    {
                        float single = k.Dot(pw, px + t * stride, n);
                        Assert.True(single == got[t], $"{type} n={n} offset={offset} t={t}: single {single} eight {got[t]}");
                    }
                }
            }
    }

    /// <summary>The Q5_K 4-token kernel equals the single-token AVX2 kernel bit for bit on each token (same float sequence).</summary>
    [Fact]
    public void Q5_K_four_token_kernel_is_bit_exact_with_single_token_kernel()
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine");
        var rng = new Random(31);
        foreach (int n in new[] { 256, 768, 2304 })
            for (int offset = 0; offset < 3; offset++)
            {
                int wBytes = (int)GgmlTypes.RowBytes(GgmlType.Q5_K, n), xBytes = QuantDot.ActivationBytes(GgmlType.Q8_K, n), stride = xBytes + 2 * offset + 1;
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[4 * stride + 8]; var xf = RandomRow(rng, 4 * n);
                Quantize.Row(GgmlType.Q5_K, RandomRow(rng, n), wbuf.AsSpan(offset, wBytes));
                var got = new float[4];
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf) fixed (float* pg = got)
                {
                    byte* pw = pw0 + offset, px = px0 + 1;
                    for (int t = 0; t < 4; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * n, px + t * stride, n);
                    QuantDot.DotQ5_KAvx2x4(pw, px, stride, n, pg);
                    for (int t = 0; t < 4; t++)
                    {
                        float single = QuantDot.DotQ5_KAvx2(pw, px + t * stride, n);
                        Assert.True(single == got[t], $"Q5_K n={n} offset={offset} t={t}: single {single} four {got[t]}");
                    }
                }
            }
    }

    /// <summary>
    /// Q5_K scalar reference against the double dot of the dequantized rows (BlockQ5_K.Dequantize, an independent
    /// unpacking of the fifth bit) with qh bytes forced to 0x00 / 0xFF / 0x55 / 0xAA and activations at ±127 and ±32
    /// after Q8_K. Agreement within float rounding (2e-6 relative to Σ|terms|).
    /// </summary>
    [Fact]
    public void Q5_K_scalar_reference_handles_the_fifth_bit_and_extreme_activations()
    {
        var rng = new Random(5);
        foreach (byte qhFill in new byte[] { 0x00, 0xFF, 0x55, 0xAA })
        {
            var wf = RandomRow(rng, 512);
            var wbytes = new byte[2 * 176];
            Quantize.Row(GgmlType.Q5_K, wf, wbytes);
            for (int b = 0; b < 2; b++) for (int l = 0; l < 32; l++) wbytes[b * 176 + 16 + l] = qhFill;
            var xf = new float[512];
            for (int i = 0; i < 512; i++) xf[i] = (i % 3 == 0 ? -1f : 1f) * (i % 5 == 0 ? 1f : 0.25f);
            var xq = new byte[2 * 292];
            var wd = new float[512]; var xd = new float[512];
            fixed (byte* pw = wbytes) fixed (byte* px = xq) fixed (float* pxf = xf)
            {
                QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf, px, 512);
                Dequantize.Row(GgmlType.Q5_K, new ReadOnlySpan<byte>(pw, wbytes.Length), wd);
                BlockQ8_K.Dequantize(new ReadOnlySpan<byte>(px, xq.Length), xd);
                double exact = 0, mag = 0;
                for (int i = 0; i < 512; i++) { exact += (double)wd[i] * xd[i]; mag += Math.Abs((double)wd[i] * xd[i]); }
                float got = QuantDot.DotQ5_KScalar(pw, px, 512);
                Assert.True(Math.Abs(got - exact) <= 2e-6 * mag + 1e-6, $"qh={qhFill:X2}: scalar {got} exact {exact}");
            }
        }
    }

    /// <summary>
    /// MatMul with the 8- and 4-token kernels equals MatMul with the single-token kernels bit for bit (batch invariance),
    /// for odd row counts and batches that are not multiples of 8 or 4 (octets, then quads, then single tokens).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.MXFP4)]
    public void MatMul_four_token_path_matches_single_token_path(GgmlType type)
    {
        int cols = 768;
        var rng = new Random(13);
        long rb = GgmlTypes.RowBytes(type, cols);
        foreach (int rows in new[] { 37, 1 })
        {
            var wbytes = new byte[rows * rb];
            for (int r = 0; r < rows; r++) Quantize.Row(type, RandomRow(rng, cols), wbytes.AsSpan((int)(r * rb), (int)rb));
            foreach (int n in new[] { 4, 7, 8, 13, 21, 40 })
            {
                var x = RandomRow(rng, n * cols);
                var single = new float[n * rows]; var multi = new float[n * rows]; var four = new float[n * rows];
                fixed (byte* pw = wbytes)
                {
                    var m = new WeightMatrix(pw, type, rows, cols);
                    try
                    {
                        QuantDot.UseMultiToken = false;
                        m.MatMul(x, single, n, threads: 2);
                        QuantDot.UseMultiToken = true; QuantDot.UseEightToken = false;
                        m.MatMul(x, four, n, threads: 2);
                    }
                    finally { QuantDot.UseMultiToken = true; QuantDot.UseEightToken = true; }
                    m.MatMul(x, multi, n, threads: 2);
                }
                for (int i = 0; i < single.Length; i++)
                {
                    Assert.True(single[i] == multi[i], $"{type} rows={rows} n={n} i={i}: single {single[i]} multi {multi[i]}");
                    Assert.True(single[i] == four[i], $"{type} rows={rows} n={n} i={i}: single {single[i]} 4-token only {four[i]}");
                }
            }
        }
    }

    [Fact]
    public void Q8_0_activation_quantizer_simd_matches_scalar()
    {
        var rng = new Random(5);
        for (int blocks = 1; blocks < 40; blocks++)
        {
            int n = blocks * 32;
            var x = RandomRow(rng, n);
            if (blocks % 5 == 0) Array.Clear(x, 0, 32); // an all-zero block
            if (blocks % 7 == 0) x[3] = 0.5f * 127f / 127f; // values landing on .5 after scaling are exercised by the random mix
            var a = new byte[blocks * 34]; var b = new byte[blocks * 34];
            fixed (float* px = x) fixed (byte* pa = a) fixed (byte* pb = b)
            {
                QuantDot.QuantizeQ8_0(px, pa, n);
                QuantDot.QuantizeQ8_0Scalar(px, pb, n);
            }
            Assert.Equal(b, a);
        }
    }

    [Fact]
    public void Q8_0_activation_tail_holds_the_block_scales_and_sums()
    {
        var rng = new Random(8);
        foreach (int blocks in new[] { 1, 2, 5, 18 })
        {
            int n = blocks * 32;
            var x = RandomRow(rng, n);
            if (blocks == 5) Array.Clear(x, 64, 32); // an all-zero block: scale 0
            var q = new byte[QuantDot.ActivationBytes(GgmlType.Q8_0, n) + 3];
            fixed (float* px = x) fixed (byte* pq0 = q)
            {
                byte* pq = pq0 + 3; // tail floats unaligned
                QuantDot.QuantizeActivation(GgmlType.Q8_0, px, pq, n);
                for (int b = 0; b < blocks; b++)
                {
                    Assert.Equal(HalfConvert.ReadFp16(pq + b * 34), System.Runtime.CompilerServices.Unsafe.ReadUnaligned<float>(pq + blocks * 34 + 4 * b));
                    int sum = 0;
                    for (int j = 0; j < 32; j++) sum += ((sbyte*)(pq + b * 34 + 2))[j];
                    Assert.Equal(8 * sum, System.Runtime.CompilerServices.Unsafe.ReadUnaligned<int>(pq + blocks * 38 + 4 * b));
                }
            }
        }
    }

    [Fact]
    public void F16_vector_conversion_matches_scalar_for_every_finite_value()
    {
        var h = new short[8];
        for (int v = 0; v < 65536; v += 8)
        {
            for (int j = 0; j < 8; j++) h[j] = (short)(v + j);
            var got = QuantDot.F16ToF32(System.Runtime.Intrinsics.Vector256.Create(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]));
            for (int j = 0; j < 8; j++)
            {
                if (((v + j) & 0x7C00) == 0x7C00) continue; // inf / NaN: never block scales or weights of valid files
                float want = HalfConvert.Fp16ToFp32((ushort)(v + j));
                Assert.True(BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(got[j]), $"f16 0x{v + j:X4}: {got[j]} vs {want}");
            }
        }
    }

    [Fact]
    public void Q4_K_packed_scale_unpacking_matches_the_byte_wise_one()
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("AVX2/FMA not available on this machine (the packed unpacking serves the AVX2 Q4_K kernels only)");
        var rng = new Random(9);
        var q = new byte[12]; byte* sc = stackalloc byte[8]; byte* m = stackalloc byte[8];
        for (int k = 0; k < 2000; k++)
        {
            rng.NextBytes(q);
            if (k == 0) Array.Fill(q, (byte)0xFF);
            fixed (byte* pq = q)
            {
                QuantDot.ScalesMinsK4(pq, sc, m);
                var (scales, mins) = QuantDot.ScalesMinsK4Packed(pq);
                for (int j = 0; j < 8; j++)
                {
                    Assert.Equal(sc[j], (byte)(scales >> (8 * j)));
                    Assert.Equal(m[j], (byte)(mins >> (8 * j)));
                }
                var mm = QuantDot.MinsPerBsum(mins);
                for (int j = 0; j < 16; j++) Assert.Equal(m[j / 2], mm[j]);
            }
        }
    }

    [Fact]
    public void Q8_K_activation_quantizer_matches_reference()
    {
        var rng = new Random(6);
        for (int blocks = 1; blocks < 6; blocks++)
        {
            int n = blocks * 256;
            var x = RandomRow(rng, n);
            if (blocks == 3) Array.Clear(x, 256, 256);
            if (blocks == 4) { x[10] = -5f; x[20] = 5f; } // ties in magnitude: the first one sets the sign
            var a = new byte[blocks * 292]; var b = new byte[blocks * 292];
            fixed (float* px = x) fixed (byte* pa = a) QuantDot.QuantizeQ8_K(px, pa, n);
            BlockQ8_K.Quantize(x, b);
            Assert.Equal(b, a);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.MXFP4)]
    public void MatMul_matches_row_by_row_kernel(GgmlType type)
    {
        int rows = 67, cols = 512;
        var rng = new Random(7);
        var wf = RandomRow(rng, rows * cols);
        long rb = GgmlTypes.RowBytes(type, cols);
        var wbytes = new byte[rows * rb];
        for (int r = 0; r < rows; r++)
        {
            if (type == GgmlType.F32) wf.AsSpan(r * cols, cols).CopyTo(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(wbytes.AsSpan((int)(r * rb), (int)rb)));
            else Quantize.Row(type, wf.AsSpan(r * cols, cols), wbytes.AsSpan((int)(r * rb), (int)rb));
        }
        foreach (int n in new[] { 1, 3, 9 })
        {
            var x = RandomRow(rng, n * cols);
            var y1 = new float[n * rows]; var y2 = new float[n * rows];
            fixed (byte* pw = wbytes)
            {
                var m = new WeightMatrix(pw, type, rows, cols);
                m.MatMul(x, y1, n, threads: 1);
                m.MatMul(x, y2, n, threads: 2);
                var row = new float[cols];
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        Assert.Equal(y1[t * rows + r], y2[t * rows + r]);
                        m.DecodeRow(r, row);
                        double exact = 0, mag = 0;
                        for (int i = 0; i < cols; i++) { exact += (double)row[i] * x[t * cols + i]; mag += Math.Abs((double)row[i] * x[t * cols + i]); }
                        Assert.True(Math.Abs(y1[t * rows + r] - exact) <= 0.01 * mag + 1e-4, $"{type} t={t} r={r}: {y1[t * rows + r]} vs {exact}");
                    }
            }
        }
    }

    private struct SumJob : IPoolJob
    {
        public long* Slots;
        public void Execute(int i) => Slots[i] += i + 1;
    }

    [Fact]
    public void Worker_pool_runs_every_item_once_and_allocates_nothing()
    {
        var slots = new long[1000];
        fixed (long* p = slots)
        {
            var job = new SumJob { Slots = p };
            for (int k = 0; k < 300; k++) WorkerPool.For(2, slots.Length, ref job); // warm up: starts the threads, JIT tiers
            // up to 3 windows of 100 runs (the runtime's own threads may allocate during one): every item runs once per run,
            // and in some window the pool allocates (about) nothing
            var seen = new List<long>();
            for (int w = 0; w < 3 && (seen.Count == 0 || seen[^1] >= 1024); w++)
            {
                Array.Clear(slots);
                long before = GC.GetTotalAllocatedBytes(true);
                for (int k = 0; k < 100; k++) WorkerPool.For(2, slots.Length, ref job);
                long after = GC.GetTotalAllocatedBytes(true);
                for (int i = 0; i < slots.Length; i++) Assert.Equal(100L * (i + 1), slots[i]);
                seen.Add(after - before);
            }
            Assert.True(seen[^1] < 1024, $"allocated {string.Join(", ", seen)} bytes over 100 pool runs in each window");
        }
    }
}

/// <summary>Tests that count process-wide allocations run alone.</summary>
[CollectionDefinition(nameof(SerialAllocationTests), DisableParallelization = true)]
public sealed class SerialAllocationTests;
