using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// The portable 128-bit kernels (ARM64's SIMD path), run here on x64 through <see cref="QuantDot.ForceVector128"/>: each
/// against its scalar reference on random data over several lengths, unaligned buffers and padded token strides. The
/// quantized kernels keep the scalar reference's integer sums and per-block float expression, so they must match it bit
/// for bit; the F16 kernel reassociates its float sum (tolerance stated below). The forced switch is process-wide, so these
/// tests run in the serial collection and restore it.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class Vector128KernelTests
{
    /// <summary>Sets <see cref="QuantDot.ForceVector128"/> for a scope and puts the old value back.</summary>
    private sealed class ForcedVector128 : IDisposable
    {
        private readonly bool old = QuantDot.ForceVector128;
        public ForcedVector128(bool on = true) => QuantDot.ForceVector128 = on;
        public void Dispose() => QuantDot.ForceVector128 = old;
    }

    private static void RequireVector128()
    {
        if (!Vector128.IsHardwareAccelerated) Assert.Skip("128-bit SIMD is not accelerated on this machine");
    }

    private static float[] RandomRow(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 1f);
        return x;
    }

    private delegate float DotFn(byte* w, byte* x, int n);
    private delegate void Dot4Fn(byte* w, byte* x, int stride, int n, float* result);

    private static IEnumerable<int> Lengths(GgmlType wType)
    {
        int bs = GgmlTypes.BlockSize(wType) == 1 ? 32 : GgmlTypes.BlockSize(wType);
        foreach (int b in new[] { 1, 2, 3, 5, 8, 9, 17 }) yield return b * bs;
        if (wType == GgmlType.F16) foreach (int n in new[] { 1, 7, 15, 16, 33, 100, 1001 }) yield return n;
    }

    /// <summary>
    /// The 1-token and 4-token 128-bit kernels of a type against the scalar reference on each token. exact: bit for bit;
    /// else within 1e-5 of Σ|w·x| (the float sum is reassociated).
    /// </summary>
    private static void Check(GgmlType wType, DotFn v128, Dot4Fn v128x4, DotFn scalar, bool exact)
    {
        RequireVector128();
        using var _ = new ForcedVector128();
        var aType = QuantDot.For(wType).Activation;
        var rng = new Random((int)wType * 13 + 5);
        foreach (int n in Lengths(wType))
            for (int offset = 0; offset < 3; offset++)
            {
                int wBytes = (int)GgmlTypes.RowBytes(wType, n);
                int xBytes = QuantDot.ActivationBytes(aType, n);
                int stride = xBytes + 4 * offset + 1; // padded, odd: the token rows are unaligned
                var wf = RandomRow(rng, n);
                var wbuf = new byte[wBytes + 8]; var xbuf = new byte[4 * stride + 8];
                if (wType == GgmlType.F16) Quantize.Row(GgmlType.F16, wf, wbuf.AsSpan(offset, wBytes));
                else Quantize.Row(wType, wf, wbuf.AsSpan(offset, wBytes));
                var xf = RandomRow(rng, 4 * n);
                var four = new float[4];
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf) fixed (float* pf = four)
                {
                    byte* pw = pw0 + offset, px = px0 + (2 - offset);
                    for (int t = 0; t < 4; t++) QuantDot.QuantizeActivation(aType, pxf + t * n, px + t * stride, n);
                    v128x4(pw, px, stride, n, pf);
                    for (int t = 0; t < 4; t++)
                    {
                        byte* xt = px + t * stride;
                        float one = v128(pw, xt, n), reference = scalar(pw, xt, n);
                        if (exact)
                        {
                            Assert.True(BitConverter.SingleToInt32Bits(one) == BitConverter.SingleToInt32Bits(reference), $"{wType} n={n} offset={offset} t={t}: vector128 {one} scalar {reference}");
                            Assert.True(BitConverter.SingleToInt32Bits(four[t]) == BitConverter.SingleToInt32Bits(reference), $"{wType} n={n} offset={offset} t={t}: vector128 x4 {four[t]} scalar {reference}");
                        }
                        else
                        {
                            double mag = 0;
                            float* y = (float*)xt;
                            for (int i = 0; i < n; i++) mag += Math.Abs((double)HalfConvert.ReadFp16(pw + 2 * i) * y[i]);
                            double tol = 1e-5 * mag + 1e-6;
                            Assert.True(Math.Abs(one - reference) <= tol, $"{wType} n={n} offset={offset} t={t}: vector128 {one} scalar {reference}");
                            Assert.Equal(one, four[t]); // the 4-token kernel runs the 1-token one per token
                        }
                    }
                }
            }
    }

    [Fact] public void Q8_0_matches_scalar_bit_for_bit() => Check(GgmlType.Q8_0, QuantDot.DotQ8_0V128, QuantDot.DotQ8_0V128x4, QuantDot.DotQ8_0Scalar, exact: true);
    [Fact] public void Q4_0_matches_scalar_bit_for_bit() => Check(GgmlType.Q4_0, QuantDot.DotQ4_0V128, QuantDot.DotQ4_0V128x4, QuantDot.DotQ4_0Scalar, exact: true);
    [Fact] public void Q5_0_matches_scalar_bit_for_bit() => Check(GgmlType.Q5_0, QuantDot.DotQ5_0V128, QuantDot.DotQ5_0V128x4, QuantDot.DotQ5_0Scalar, exact: true);
    [Fact] public void Q4_K_matches_scalar_bit_for_bit() => Check(GgmlType.Q4_K, QuantDot.DotQ4_KV128, QuantDot.DotQ4_KV128x4, QuantDot.DotQ4_KScalar, exact: true);
    [Fact] public void Q5_K_matches_scalar_bit_for_bit() => Check(GgmlType.Q5_K, QuantDot.DotQ5_KV128, QuantDot.DotQ5_KV128x4, QuantDot.DotQ5_KScalar, exact: true);
    [Fact] public void Q6_K_matches_scalar_bit_for_bit() => Check(GgmlType.Q6_K, QuantDot.DotQ6_KV128, QuantDot.DotQ6_KV128x4, QuantDot.DotQ6_KScalar, exact: true);
    [Fact] public void F16_matches_scalar_within_tolerance() => Check(GgmlType.F16, QuantDot.DotF16V128, QuantDot.DotF16V128x4, QuantDot.DotF16Scalar, exact: false);

    /// <summary>Extreme weights and activations (−128 and 127 bytes everywhere): the integer sums must not overflow on any path.</summary>
    [Fact]
    public void Q8_0_extreme_bytes_match_scalar()
    {
        RequireVector128();
        const int n = 256;
        int xBytes = QuantDot.ActivationBytes(GgmlType.Q8_0, n);
        var w = new byte[n / 32 * 34]; var x = new byte[xBytes];
        fixed (byte* pw = w) fixed (byte* px = x)
        {
            for (int b = 0; b < n / 32; b++)
            {
                HalfConvert.WriteFp16(pw + b * 34, 0.5f); HalfConvert.WriteFp16(px + b * 34, 0.25f);
                for (int j = 0; j < 32; j++) { w[b * 34 + 2 + j] = 0x80; x[b * 34 + 2 + j] = (byte)(j % 2 == 0 ? 0x80 : 0x7F); }
            }
            QuantDot.WriteQ8_0Tail(px, n);
            float want = QuantDot.DotQ8_0Scalar(pw, px, n);
            Assert.Equal(8 * (16 * 128 * 128 - 16 * 128 * 127) * 0.125f, want); // the reference itself: Σ over blocks of d_w·d_x·Σq·q
            Assert.Equal(want, QuantDot.DotQ8_0V128(pw, px, n));
        }
    }

    /// <summary>The 128-bit Q8_0 activation quantizer writes the scalar one's bytes (zeros, ties and large values included).</summary>
    [Fact]
    public void Q8_0_activation_quantizer_matches_scalar_bytes()
    {
        RequireVector128();
        var rng = new Random(71);
        foreach (int n in new[] { 32, 64, 96, 1024 })
        {
            var x = RandomRow(rng, n);
            for (int j = 0; j < 32; j++) x[j] = 0; // an all-zero block
            if (n >= 64) { x[32] = 127f; for (int j = 33; j < 64; j++) x[j] = j - 33 + 0.5f; } // scale 1: exact halves, round to even
            var a = new byte[n / 32 * 34]; var b = new byte[n / 32 * 34];
            fixed (float* px = x) fixed (byte* pa = a) fixed (byte* pb = b)
            {
                QuantDot.QuantizeQ8_0V128(px, pa, n);
                QuantDot.QuantizeQ8_0Scalar(px, pb, n);
            }
            Assert.Equal(b, a);
        }
    }

    /// <summary>The 128-bit Q8_K activation quantizer writes BlockQ8_K.Quantize's bytes (d, qs and the 16-value sums).</summary>
    [Fact]
    public void Q8_K_activation_quantizer_matches_reference_bytes()
    {
        RequireVector128();
        var rng = new Random(73);
        foreach (int n in new[] { 256, 512, 2048 })
        {
            var x = RandomRow(rng, n);
            for (int j = 0; j < 256; j++) x[j] = 0; // an all-zero block
            if (n >= 512) { x[300] = -5f; x[400] = 5f; } // ±max tie: the first one sets the sign of the scale
            var a = new byte[n / 256 * 292]; var b = new byte[n / 256 * 292];
            fixed (float* px = x) fixed (byte* pa = a) QuantDot.QuantizeQ8_KV128(px, pa, n);
            BlockQ8_K.Quantize(x, b);
            Assert.Equal(b, a);
        }
    }

    /// <summary>A kernel's entry point as a number (ldftn gives one stable entry per method).</summary>
    private static nint Entry(delegate*<byte*, byte*, int, float> f) => (nint)f;

    /// <summary>With the switch set, For hands out the 128-bit kernels for the covered types, the scalar references for the rest, and KernelPath says so.</summary>
    [Fact]
    public void Forced_dispatch_picks_the_128_bit_kernels_and_reports_the_path()
    {
        RequireVector128();
        using (new ForcedVector128())
        {
            Assert.Equal(Entry(&QuantDot.DotQ8_0V128), Entry(QuantDot.For(GgmlType.Q8_0).Dot));
            Assert.Equal(Entry(&QuantDot.DotQ4_0V128), Entry(QuantDot.For(GgmlType.Q4_0).Dot));
            Assert.Equal(Entry(&QuantDot.DotQ4_KV128), Entry(QuantDot.For(GgmlType.Q4_K).Dot));
            Assert.Equal(Entry(&QuantDot.DotQ5_KV128), Entry(QuantDot.For(GgmlType.Q5_K).Dot));
            Assert.Equal(Entry(&QuantDot.DotQ6_KV128), Entry(QuantDot.For(GgmlType.Q6_K).Dot));
            Assert.Equal(Entry(&QuantDot.DotF16V128), Entry(QuantDot.For(GgmlType.F16).Dot));
            Assert.Equal(Entry(&QuantDot.DotQ5_0V128), Entry(QuantDot.For(GgmlType.Q5_0).Dot));
            Assert.Equal(Entry(&QuantDot.DotIQ4_NLScalar), Entry(QuantDot.For(GgmlType.IQ4_NL).Dot)); // no 128-bit kernel: the reference, as on ARM64
            Assert.Equal(AdvSimd.IsSupported ? "neon" : "vector128", QuantDot.KernelPath);
        }
        using (new ForcedVector128(false))
        {
            bool avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
            bool avx512 = avx2 && QuantDot.UseAvx512 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
                && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported && System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported;
            Assert.Equal(AdvSimd.IsSupported ? "neon" : avx512 ? "avx512" : avx2 ? "avx2" : "scalar", QuantDot.KernelPath);
            var old = QuantDot.UseSimd;
            try { QuantDot.UseSimd = false; Assert.Equal("scalar", QuantDot.KernelPath); }
            finally { QuantDot.UseSimd = old; }
        }
    }

    /// <summary>
    /// A whole MatMul (activation quantizer, dispatch, 4-token and 1-token kernels over the worker pool) on the forced path
    /// equals the scalar path's bit for bit for the quantized types covered.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void MatMul_on_the_forced_path_equals_the_scalar_path(GgmlType type)
    {
        RequireVector128();
        const int rows = 24, cols = 512;
        var rng = new Random((int)type);
        int rb = (int)GgmlTypes.RowBytes(type, cols);
        var wbytes = new byte[rows * rb];
        for (int r = 0; r < rows; r++) Quantize.Row(type, RandomRow(rng, cols), wbytes.AsSpan(r * rb, rb));
        foreach (int n in new[] { 1, 6 })
        {
            var x = RandomRow(rng, n * cols);
            var fast = new float[n * rows]; var slow = new float[n * rows];
            fixed (byte* pw = wbytes)
            {
                using (new ForcedVector128()) new WeightMatrix(pw, type, rows, cols).MatMul(x, fast, n, threads: 2);
                var old = QuantDot.UseSimd;
                try { QuantDot.UseSimd = false; new WeightMatrix(pw, type, rows, cols).MatMul(x, slow, n, threads: 2); }
                finally { QuantDot.UseSimd = old; }
            }
            for (int i = 0; i < fast.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(fast[i]) == BitConverter.SingleToInt32Bits(slow[i]), $"{type} n={n} [{i}]: vector128 {fast[i]} scalar {slow[i]}");
        }
    }
}
