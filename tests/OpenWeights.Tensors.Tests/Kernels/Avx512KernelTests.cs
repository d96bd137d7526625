using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Kernels.Interleaved;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// The AVX-512 kernels of the Q8_0-activation family (interleaved Q8_0 / Q4_0 / Q5_0) against the AVX2 kernels and the
/// scalar references, in one process: <see cref="QuantDot.UseAvx512"/> switches between the two SIMD paths, UseSimd off
/// gives the references. All three give the same bits (the same integer sums, the same float chain per row and token).
/// On a CPU without AVX-512 (or with DOTNET_EnableAVX512=0) the AVX-512 parts skip and say so.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class Avx512KernelTests
{
    private static string? Missing()
    {
        if (!(Avx2.IsSupported && Fma.IsSupported)) return "AVX2/FMA not available: only the scalar references can run here";
        if (!(Avx512F.IsSupported && Avx512BW.IsSupported && Avx512F.VL.IsSupported))
            return "AVX-512 F/BW/VL not available (or hidden by DOTNET_EnableAVX512=0): only the AVX2 kernels and the scalar references ran";
        return null;
    }

    private static float[] RandomRow(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 1f);
        return x;
    }

    /// <summary>Random weight rows: quantized random values, and for Q8_0 also raw random bytes (values −128 and 127 included) with small scales.</summary>
    private static byte[] RandomWeights(GgmlType type, Random rng, int rows, int cols, bool extremes)
    {
        long rb = GgmlTypes.RowBytes(type, cols);
        var w = new byte[rows * rb];
        for (int r = 0; r < rows; r++) Quantize.Row(type, RandomRow(rng, cols), w.AsSpan((int)(r * rb), (int)rb));
        if (extremes && type == GgmlType.Q8_0)
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < cols / 32; i++)
                {
                    var blk = w.AsSpan((int)(r * rb + i * 34), 34);
                    rng.NextBytes(blk[2..]);
                    if (i % 3 == 0) blk[2..].Fill(0x80); // all −128
                    if (i % 3 == 1) blk[2..].Fill(0x7F); // all 127
                    BitConverter.TryWriteBytes(blk, HalfConvert.Fp32ToFp16(0.01f + 0.001f * i));
                }
        return w;
    }

    /// <summary>Layout for a type with the AVX-512 path on or off (the dispatch reads the switch when the layout is made).</summary>
    private static InterleavedLayout LayoutFor(GgmlType type, bool avx512)
    {
        bool was = QuantDot.UseAvx512, wasOne = QuantDot.Avx512OneToken;
        try { QuantDot.UseAvx512 = QuantDot.Avx512OneToken = avx512; return InterleavedLayout.For(type); }
        finally { QuantDot.UseAvx512 = was; QuantDot.Avx512OneToken = wasOne; }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q4_K)]
    public void By_default_one_token_takes_the_256_bit_kernel_and_several_tokens_the_512_bit_pairs(GgmlType type)
    {
        if (Missing() is { } why) Assert.Skip(why);
        if (type == GgmlType.Q8_0 && !AvxVnni.IsSupported) Assert.Skip("AVX-VNNI not available: the Q8_0 AVX-512 kernels do not run here");
        Assert.False(QuantDot.Avx512OneToken, "default: one-token products on the 256-bit kernels (bound by memory, they stream faster)");
        var byDefault = InterleavedLayout.For(type);
        var narrow = LayoutFor(type, avx512: false);
        var wide = LayoutFor(type, avx512: true);
        Assert.True((nint)byDefault.DotGroups == (nint)narrow.DotGroups, $"{type}: the default one-token kernel is the AVX2 one");
        Assert.True((nint)byDefault.DotGroups != (nint)wide.DotGroups, $"{type}: and not the 512-bit pair kernel");
        Assert.True(byDefault.DotPair6 != null && (nint)byDefault.DotPair6 == (nint)wide.DotPair6, $"{type}: several tokens keep the 512-bit pair kernel");
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    public void Interleaved_avx512_kernels_equal_the_avx2_kernels_and_the_scalar_reference(GgmlType type)
    {
        if (Missing() is { } why) Assert.Skip(why);
        var wide = LayoutFor(type, avx512: true);
        var narrow = LayoutFor(type, avx512: false);
        if (type == GgmlType.Q8_0 && !AvxVnni.IsSupported)
        {
            // Q8_0's AVX-512 kernels need AVX-VNNI: without it the dispatch keeps the AVX2 ones
            Assert.True(wide.DotPair6 == null);
            Assert.Skip("AVX-VNNI not available: the Q8_0 AVX-512 kernels do not run here (the AVX2 ones do)");
        }
        Assert.True(wide.DotPair6 != null, "the AVX-512 layout has the 2-group, 6-token kernel");
        Assert.True(narrow.DotPair6 == null, "the AVX2 layout has no 2-group kernel");
        var rng = new Random(71 + (int)type);
        const int tokens = 6;
        foreach (int groups in new[] { 2, 3 }) // 3: an odd last group
            foreach (int blocks in new[] { 1, 2, 3, 5, 18, 48 })
                foreach (bool extremes in new[] { false, true })
                {
                    int rows = 8 * groups, n = 32 * blocks;
                    long rb = GgmlTypes.RowBytes(type, n), gb = wide.GroupBytes(n);
                    var w = RandomWeights(type, rng, rows, n, extremes);
                    var packed = new byte[wide.Bytes(rows, n) + 3];
                    int xb = QuantDot.ActivationBytes(GgmlType.Q8_0, n), stride = xb + 5; // unaligned rows
                    var xbuf = new byte[tokens * stride + 3];
                    var xf = RandomRow(rng, tokens * n);
                    if (extremes) for (int i = 0; i < xf.Length; i += 32) xf[i] = 1000f; // activations at ±127
                    var scalar = new float[tokens * rows]; var one512 = new float[tokens * rows]; var one256 = new float[tokens * rows];
                    var six512 = new float[tokens * rows];
                    fixed (byte* pw = w) fixed (byte* pp0 = packed) fixed (byte* px0 = xbuf) fixed (float* pxf = xf)
                    fixed (float* ps = scalar) fixed (float* p1 = one512) fixed (float* p2 = one256) fixed (float* p6 = six512)
                    {
                        byte* pp = pp0 + 1, px = px0 + 3;
                        wide.Repack(pw, rb, rows, n, pp);
                        for (int t = 0; t < tokens; t++) QuantDot.QuantizeActivation(GgmlType.Q8_0, pxf + t * n, px + t * stride, n);
                        for (int g = 0; g < groups; g++) wide.DotScalar(pp + g * gb, px, stride, n, tokens, ps + 8 * g, rows);
                        for (int t = 0; t < tokens; t++)
                        {
                            wide.DotGroups(pp, gb, groups, px + t * stride, n, p1 + t * rows);
                            narrow.DotGroups(pp, gb, groups, px + t * stride, n, p2 + t * rows);
                        }
                        wide.DotPair6(pp, gb, px, stride, n, p6, rows); // groups 0 and 1
                        if (groups == 3) for (int t = 0; t < tokens; t++) new Span<float>(ps + t * rows + 16, 8).CopyTo(new Span<float>(p6 + t * rows + 16, 8));
                    }
                    for (int k = 0; k < tokens * rows; k++)
                    {
                        string at = $"{type} groups={groups} n={n} extremes={extremes} t={k / rows} row={k % rows}";
                        Assert.True(scalar[k] == one256[k], $"{at}: scalar {scalar[k]} avx2 1-token {one256[k]}");
                        Assert.True(scalar[k] == one512[k], $"{at}: scalar {scalar[k]} avx512 1-token {one512[k]}");
                        Assert.True(scalar[k] == six512[k], $"{at}: scalar {scalar[k]} avx512 6-token {six512[k]}");
                    }
                }
    }

    /// <summary>
    /// WeightMatrix over a copy repacked with the AVX-512 kernels gives the bits of one repacked with the AVX2 kernels and of
    /// the scalar path, for token counts that take every branch of the driver (sextets, a quad, single tokens, an odd group).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    public void MatMul_with_avx512_kernels_equals_avx2_and_scalar(GgmlType type)
    {
        if (Missing() is { } why) Assert.Skip(why);
        var rng = new Random(73);
        int rows = 56, cols = 576; // 7 groups
        var w = RandomWeights(type, rng, rows, cols, extremes: false);
        fixed (byte* pw = w)
        {
            var m512 = new WeightMatrix(pw, type, rows, cols);
            var m256 = new WeightMatrix(pw, type, rows, cols);
            bool was = QuantDot.UseAvx512;
            try
            {
                QuantDot.UseAvx512 = true; Assert.True(m512.Repack());
                QuantDot.UseAvx512 = false; Assert.True(m256.Repack());
            }
            finally { QuantDot.UseAvx512 = was; }
            try
            {
                foreach (int n in new[] { 1, 5, 6, 10, 13, 64 })
                {
                    var x = RandomRow(rng, n * cols);
                    var a = new float[n * rows]; var b = new float[n * rows]; var s = new float[n * rows];
                    m512.MatMul(x, a, n, threads: 2);
                    m256.MatMul(x, b, n, threads: 2);
                    try { QuantDot.UseSimd = false; m512.MatMul(x, s, n, threads: 2); }
                    finally { QuantDot.UseSimd = true; }
                    for (int k = 0; k < n * rows; k++)
                    {
                        Assert.True(a[k] == b[k], $"{type} n={n} t={k / rows} r={k % rows}: avx512 {a[k]} avx2 {b[k]}");
                        Assert.True(a[k] == s[k], $"{type} n={n} t={k / rows} r={k % rows}: avx512 {a[k]} scalar {s[k]}");
                    }
                }
            }
            finally { m512.ReleasePacked(); m256.ReleasePacked(); }
        }
    }

    [Fact]
    public void KernelPath_says_avx512_exactly_when_the_avx512_path_is_on()
    {
        bool was = QuantDot.UseAvx512;
        try
        {
            QuantDot.UseAvx512 = true;
            Assert.Equal(QuantDot.Avx512Path, QuantDot.KernelPath == "avx512");
            Assert.Equal(QuantDot.Avx512Path, Missing() is null);
            QuantDot.UseAvx512 = false;
            Assert.False(QuantDot.Avx512Path);
            Assert.Equal(QuantDot.Avx2Path ? "avx2" : "scalar", QuantDot.KernelPath);
        }
        finally { QuantDot.UseAvx512 = was; }
    }
}
