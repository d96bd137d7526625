using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Kernels.Interleaved;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

// the dispatch checks compare function pointers: ldftn of one method gives its one stable entry point in this runtime
#pragma warning disable CS8909

/// <summary>
/// The AVX-512 K-quant kernels (interleaved Q4_Kx8 with 2 groups per register, Q6_K rows) against the AVX2 kernels and
/// the scalar references of the same process: every path the machine has runs (scalar always, AVX2 and AVX-512 where
/// present, toggled with <see cref="QuantDot.UseAvx512"/>); a test that could not run a path says which in its skip reason.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class Avx512KQuantTests
{
    private static bool HasAvx2 => Avx2.IsSupported && Fma.IsSupported;
    private static bool HasAvx512 => HasAvx2 && Avx512F.IsSupported && Avx512BW.IsSupported && Avx512F.VL.IsSupported;
    private const string NoAvx512 = "AVX-512 F/BW/VL not available here (or hidden by DOTNET_EnableAVX512=0): the AVX-512 path did not run";

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

    /// <summary>The Q4_K layout as dispatched with AVX-512 allowed or not (the property is read when the layout is made).</summary>
    private static InterleavedLayout Q4KLayout(bool avx512)
    {
        bool was = QuantDot.UseAvx512, wasOne = QuantDot.Avx512OneToken;
        try { QuantDot.UseAvx512 = QuantDot.Avx512OneToken = avx512; return InterleavedLayout.For(GgmlType.Q4_K); }
        finally { QuantDot.UseAvx512 = was; QuantDot.Avx512OneToken = wasOne; }
    }

    [Fact]
    public void Q4_K_interleaved_avx512_kernels_equal_the_scalar_reference_and_avx2_bit_for_bit()
    {
        if (!HasAvx2) Assert.Skip("AVX2/FMA not available: neither the AVX2 nor the AVX-512 path ran");
        var avx2 = Q4KLayout(false);
        Assert.True(avx2.DotGroups == (delegate*<byte*, long, int, byte*, int, float*, void>)&Q4_Kx8.DotGroupsAvx2 && avx2.DotPair6 == null, "AVX-512 off: the AVX2 kernels");
        var rng = new Random(517);
        const int tokens = 6;
        foreach (int rows in new[] { 16, 24 }) // 2 groups, and 3: an odd last group for the 1-token kernel
            foreach (int blocks in new[] { 1, 2, 3, 5, 8 })
                for (int offset = 0; offset < 3; offset++)
                {
                    int n = 256 * blocks, groups = rows / 8;
                    long rb = GgmlTypes.RowBytes(GgmlType.Q4_K, n), gb = avx2.GroupBytes(n);
                    var w = RandomRows(GgmlType.Q4_K, rng, rows, n);
                    var packed = new byte[avx2.Bytes(rows, n) + 8];
                    int stride = QuantDot.ActivationBytes(GgmlType.Q8_K, n) + 2 * offset + 1; // odd strides: unaligned rows
                    var xbuf = new byte[tokens * stride + 8];
                    var xf = RandomRow(rng, tokens * n);
                    var scalar = new float[tokens * rows]; var single = new float[tokens * rows]; var pair = new float[tokens * rows];
                    fixed (byte* pw = w) fixed (byte* pp0 = packed) fixed (byte* px0 = xbuf) fixed (float* pxf = xf)
                    fixed (float* ps = scalar) fixed (float* p1 = single) fixed (float* p6 = pair)
                    {
                        byte* pp = pp0 + offset, px = px0 + (3 - offset);
                        Q4_Kx8.Repack(pw, rb, rows, n, pp);
                        for (int t = 0; t < tokens; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * n, px + t * stride, n);
                        for (int g = 0; g < groups; g++) Q4_Kx8.DotScalar(pp + g * gb, px, stride, n, tokens, ps + 8 * g, rows);
                        // AVX2 against the scalar reference (runs on every AVX2 machine)
                        for (int t = 0; t < tokens; t++) avx2.DotGroups(pp, gb, groups, px + t * stride, n, p1 + t * rows);
                        for (int k = 0; k < scalar.Length; k++) Assert.True(scalar[k] == single[k], $"AVX2 rows={rows} n={n} offset={offset} k={k}: scalar {scalar[k]} 1-token {single[k]}");
                        if (!HasAvx512) continue;
                        var avx512 = Q4KLayout(true);
                        Assert.True(avx512.DotGroups == (delegate*<byte*, long, int, byte*, int, float*, void>)&Q4_Kx8.DotGroupsAvx512, "AVX-512 on: the AVX-512 1-token kernel");
                        Assert.True(avx512.DotPair6 == (delegate*<byte*, long, byte*, int, int, float*, int, void>)&Q4_Kx8.DotPairAvx512x6, "AVX-512 on: the AVX-512 6-token kernel");
                        Array.Clear(single); Array.Clear(pair);
                        for (int t = 0; t < tokens; t++) avx512.DotGroups(pp, gb, groups, px + t * stride, n, p1 + t * rows);
                        for (int g = 0; g + 2 <= groups; g += 2) avx512.DotPair6(pp + g * gb, gb, px, stride, n, p6 + 8 * g, rows);
                        for (int k = 0; k < scalar.Length; k++)
                        {
                            Assert.True(scalar[k] == single[k], $"AVX-512 rows={rows} n={n} offset={offset} k={k}: scalar {scalar[k]} 1-token {single[k]}");
                            if (k % rows < groups / 2 * 16)
                                Assert.True(scalar[k] == pair[k], $"AVX-512 rows={rows} n={n} offset={offset} k={k}: scalar {scalar[k]} 6-token {pair[k]}");
                        }
                    }
                }
        if (!HasAvx512) Assert.Skip(NoAvx512 + " (scalar and AVX2 did, and agree)");
    }

    [Fact]
    public void Q4_K_repacked_matmul_gives_the_same_bits_on_every_path()
    {
        if (!HasAvx2) Assert.Skip("AVX2/FMA not available: the repacked MatMul does not run (no layout without AVX2)");
        const int rows = 40, cols = 512; // 5 groups: pairs and an odd one
        var rng = new Random(518);
        var w = RandomRows(GgmlType.Q4_K, rng, rows, cols);
        var paths = HasAvx512 ? new[] { false, true } : new[] { false };
        foreach (int n in new[] { 1, 4, 6, 7, 13, 16, 23 }) // sextets, quads and single tokens
        {
            var x = RandomRow(rng, n * cols);
            var scalar = new float[n * rows];
            float[]? first = null; // the AVX2 result
            fixed (byte* pw = w)
            {
                var m = new WeightMatrix(pw, GgmlType.Q4_K, rows, cols);
                try { QuantDot.UseSimd = false; m.MatMul(x, scalar, n, threads: 2); }
                finally { QuantDot.UseSimd = true; }
                foreach (bool avx512 in paths)
                {
                    bool was = QuantDot.UseAvx512;
                    var y = new float[n * rows];
                    try
                    {
                        QuantDot.UseAvx512 = avx512;
                        var packed = new WeightMatrix(pw, GgmlType.Q4_K, rows, cols);
                        Assert.True(packed.Repack());
                        packed.MatMul(x, y, n, threads: 2);
                        packed.ReleasePacked();
                    }
                    finally { QuantDot.UseAvx512 = was; }
                    for (int i = 0; i < y.Length; i++)
                    {
                        // the scalar row kernel sums floats in another order than the layout's kernels: a tolerance; AVX2 and AVX-512: the same bits
                        Assert.True(Math.Abs(y[i] - scalar[i]) <= 1e-4f * (1 + Math.Abs(scalar[i])), $"avx512={avx512} n={n} i={i}: repacked {y[i]} row kernels (scalar) {scalar[i]}");
                        if (avx512) Assert.True(y[i] == first![i], $"n={n} i={i}: AVX-512 {y[i]} AVX2 {first[i]}");
                    }
                    first ??= y;
                }
            }
        }
        if (!HasAvx512) Assert.Skip(NoAvx512 + " (AVX2 did)");
    }

    [Fact]
    public void Q6_K_avx512_row_kernels_equal_avx2_bit_for_bit_and_the_scalar_reference()
    {
        if (!HasAvx2) Assert.Skip("AVX2/FMA not available: neither the AVX2 nor the AVX-512 path ran");
        if (!HasAvx512) Assert.Skip(NoAvx512 + " (the AVX2 Q6_K kernels are tested in QuantDotTests)");
        CheckDispatch(GgmlType.Q6_K, &QuantDot.DotQ6_KAvx2, &QuantDot.DotQ6_KAvx512x4, &QuantDot.DotQ6_KAvx512x8);
        CheckRowKernels(GgmlType.Q6_K, &QuantDot.DotQ6_KScalar, &QuantDot.DotQ6_KAvx2, &QuantDot.DotQ6_KAvx512x4, &QuantDot.DotQ6_KAvx512x8, &QuantDot.DotQ6_KAvx512);
    }

    [Fact]
    public void Q5_K_avx512_multi_token_kernels_equal_avx2_bit_for_bit_and_the_scalar_reference()
    {
        if (!HasAvx2) Assert.Skip("AVX2/FMA not available: neither the AVX2 nor the AVX-512 path ran");
        if (!HasAvx512) Assert.Skip(NoAvx512 + " (the AVX2 Q5_K kernels are tested in QuantDotTests)");
        CheckDispatch(GgmlType.Q5_K, &QuantDot.DotQ5_KAvx2, &QuantDot.DotQ5_KAvx512x4, &QuantDot.DotQ5_KAvx512x8);
        CheckRowKernels(GgmlType.Q5_K, &QuantDot.DotQ5_KScalar, &QuantDot.DotQ5_KAvx2, &QuantDot.DotQ5_KAvx512x4, &QuantDot.DotQ5_KAvx512x8, null);
    }

    /// <summary>With AVX-512 on, <see cref="QuantDot.For"/> gives the AVX2 single-token kernel and the AVX-512 4- and 8-token ones.</summary>
    private static void CheckDispatch(GgmlType type, delegate*<byte*, byte*, int, float> dot, delegate*<byte*, byte*, int, int, float*, void> dot4, delegate*<byte*, byte*, int, int, float*, void> dot8)
    {
        bool was = QuantDot.UseAvx512;
        try
        {
            QuantDot.UseAvx512 = true;
            var k = QuantDot.For(type);
            // one token: the AVX2 kernel (memory-bound, the AVX-512 one measured no faster; the same bits)
            Assert.True(k.Dot == dot && k.Dot4 == dot4 && k.Dot8 == dot8, $"{type}, AVX-512 on: the AVX-512 multi-token kernels");
            QuantDot.UseAvx512 = false;
            k = QuantDot.For(type);
            Assert.True(k.Dot == dot && k.Dot4 != dot4 && k.Dot8 == null, $"{type}, AVX-512 off: the AVX2 kernels");
        }
        finally { QuantDot.UseAvx512 = was; }
    }

    /// <summary>
    /// The AVX-512 4- and 8-token kernels (and the 1-token one where given) against the AVX2 single-token kernel, bit for
    /// bit per token, and against the scalar reference within a tolerance (it sums the block floats in another order).
    /// </summary>
    private static void CheckRowKernels(GgmlType type, delegate*<byte*, byte*, int, float> scalar, delegate*<byte*, byte*, int, float> avx2,
        delegate*<byte*, byte*, int, int, float*, void> x4, delegate*<byte*, byte*, int, int, float*, void> x8, delegate*<byte*, byte*, int, float> single512)
    {
        var rng = new Random(619 + (int)type);
        foreach (int blocks in new[] { 1, 2, 3, 5, 8, 9, 17 })
            for (int offset = 0; offset < 4; offset++)
            {
                int n = 256 * blocks;
                int wb = (int)GgmlTypes.RowBytes(type, n), xb = QuantDot.ActivationBytes(GgmlType.Q8_K, n), stride = xb + 4 * offset + 1;
                var wbuf = new byte[wb + 8]; var xbuf = new byte[8 * stride + 8];
                Quantize.Row(type, RandomRow(rng, n), wbuf.AsSpan(offset, wb));
                var xf = RandomRow(rng, 8 * n);
                var four = new float[4]; var eight = new float[8];
                fixed (byte* pw0 = wbuf) fixed (byte* px0 = xbuf) fixed (float* pxf = xf) fixed (float* p4 = four) fixed (float* p8 = eight)
                {
                    byte* pw = pw0 + offset, px = px0 + (3 - offset);
                    for (int t = 0; t < 8; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * n, px + t * stride, n);
                    x4(pw, px, stride, n, p4);
                    x8(pw, px, stride, n, p8);
                    for (int t = 0; t < 8; t++)
                    {
                        byte* xt = px + t * stride;
                        float v2 = avx2(pw, xt, n), vs = scalar(pw, xt, n);
                        if (single512 != null) Assert.True(single512(pw, xt, n) == v2, $"{type} n={n} offset={offset} t={t}: AVX-512 1-token {single512(pw, xt, n)} AVX2 {v2}");
                        if (t < 4) Assert.True(four[t] == v2, $"{type} n={n} offset={offset} t={t}: AVX-512 4-token {four[t]} AVX2 {v2}");
                        Assert.True(eight[t] == v2, $"{type} n={n} offset={offset} t={t}: AVX-512 8-token {eight[t]} AVX2 {v2}");
                        double mag = 0;
                        for (int i = 0; i < n; i++) mag += Math.Abs(xf[t * n + i]);
                        Assert.True(Math.Abs(v2 - vs) <= 1e-5 * mag * 8 + 1e-5, $"{type} n={n} offset={offset} t={t}: AVX2 {v2} scalar {vs}");
                    }
                }
            }
    }
}
