using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>
/// IQ3_XXS, IQ3_S, IQ1_S and IQ1_M (the grid types of the large DeepSeek GGUFs) against llama.cpp's own ggml
/// (LLamaSharp.Backend.Cpu 0.30.0, loaded as in <see cref="GgmlOracleTests"/>): the weights come from ggml's quantizer
/// (ggml_quantize_chunk with a random positive importance matrix, which IQ1_S requires) or are random bytes (every grid
/// entry, sign pattern and scale), and we check ggml's dequantizer and dot kernels against ours. We have no quantizer of
/// our own for these types.
/// </summary>
public unsafe class IQGridOracleTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.IQ3_XXS, GgmlType.IQ1_S, GgmlType.IQ3_S, GgmlType.IQ1_M];

    private static string Name(GgmlType t) => t.ToString().ToLowerInvariant();

    /// <summary>ggml_quantize_chunk (llama_model_quantize's entry point) of a (rows, cols) matrix with an importance matrix (cols).</summary>
    private static byte[] GgmlQuantize(GgmlType type, float[] x, int rows, int cols, float[] imatrix)
    {
        var chunk = (delegate* unmanaged<int, float*, byte*, long, long, long, float*, nuint>)GgmlOracleTests.Sym("ggml_quantize_chunk");
        var q = new byte[rows * GgmlTypes.RowBytes(type, cols)];
        fixed (float* px = x, pm = imatrix) fixed (byte* pq = q)
        {
            nuint written = chunk((int)type, px, pq, 0, rows, cols, pm);
            Assert.Equal((nuint)q.Length, written);
        }
        return q;
    }

    private static float[] Imatrix(Random rng, int cols)
    {
        var m = new float[cols];
        for (int i = 0; i < cols; i++) m[i] = (float)(0.05 + rng.NextDouble() * 2);
        return m;
    }

    /// <summary>Random bytes as blocks of the type, with each super-block scale set to a random normal f16 (no Inf/NaN sums).</summary>
    private static byte[] RandomBlocks(Random rng, GgmlType type, int n)
    {
        var r = new byte[GgmlTypes.RowBytes(type, n)];
        rng.NextBytes(r);
        int bb = GgmlTypes.BlockBytes(type);
        for (int i = 0; i < n / 256; i++)
        {
            ushort h = HalfConvert.Fp32ToFp16((float)(rng.NextDouble() * 0.1 + 1e-4) * (rng.Next(2) == 0 ? -1 : 1));
            if (type == GgmlType.IQ1_M) // the f16 sits in the top nibbles of the 4 scale words
                for (int k = 0; k < 4; k++)
                {
                    int at = i * bb + 48 + 2 * k;
                    r[at + 1] = (byte)((r[at + 1] & 0x0F) | ((h >> 4 * k) & 0xF) << 4);
                }
            else BitConverter.TryWriteBytes(r.AsSpan(i * bb), h);
        }
        return r;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Dequantize_matches_ggml_bit_for_bit(GgmlType type)
    {
        var dq = (delegate* unmanaged<byte*, float*, long, void>)GgmlOracleTests.Sym($"dequantize_row_{Name(type)}");
        var rng = new Random(100 + (int)type);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = (1 + rng.Next(3)) * 256;
            byte[] blocks;
            if (trial % 2 == 0) blocks = GgmlQuantize(type, GgmlOracleTests.TestData(rng, n, trial / 2 % 8), 1, n, Imatrix(rng, n));
            else { blocks = new byte[GgmlTypes.RowBytes(type, n)]; rng.NextBytes(blocks); } // any bytes, Inf and NaN scales included
            var ya = new float[n]; var yb = new float[n];
            fixed (byte* pb = blocks) fixed (float* py = ya) dq(pb, py, n);
            Dequantize.Row(type, blocks, yb);
            for (int i = 0; i < n; i++)
                if (BitConverter.SingleToUInt32Bits(ya[i]) != BitConverter.SingleToUInt32Bits(yb[i]) && !(float.IsNaN(ya[i]) && float.IsNaN(yb[i])))
                    Assert.Fail($"{type} trial {trial}: dequantize differs at {i}: ggml {ya[i]} ours {yb[i]}");
        }
    }

    private static (IntPtr Scalar, IntPtr Simd, IntPtr Simd4) Ours(GgmlType type) => type switch
    {
        GgmlType.IQ3_XXS => ((IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ3_XXSScalar, (IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ3_XXSAvx2,
            (IntPtr)(delegate*<byte*, byte*, int, int, float*, void>)&QuantDot.DotIQ3_XXSAvx2x4),
        GgmlType.IQ3_S => ((IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ3_SScalar, (IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ3_SAvx2,
            (IntPtr)(delegate*<byte*, byte*, int, int, float*, void>)&QuantDot.DotIQ3_SAvx2x4),
        GgmlType.IQ1_S => ((IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ1_SScalar, (IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ1_SAvx2,
            (IntPtr)(delegate*<byte*, byte*, int, int, float*, void>)&QuantDot.DotIQ1_SAvx2x4),
        _ => ((IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ1_MScalar, (IntPtr)(delegate*<byte*, byte*, int, float>)&QuantDot.DotIQ1_MAvx2,
            (IntPtr)(delegate*<byte*, byte*, int, int, float*, void>)&QuantDot.DotIQ1_MAvx2x4),
    };

    /// <summary>
    /// Our scalar kernel equals ggml's <c>ggml_vec_dot_*_q8_K_generic</c> bit for bit; our AVX2 kernel (and its 4-token
    /// form, token by token) equals our scalar kernel bit for bit; ggml's AVX2 kernel sums in another float order and
    /// agrees within 1e-5 of Σ|w·x| (the measured worst is written to the test output).
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Dot_kernels_match_ggml_vec_dot(GgmlType type)
    {
        string name = $"ggml_vec_dot_{Name(type)}_q8_K";
        var generic = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)GgmlOracleTests.CpuSym(name + "_generic");
        var simd = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)GgmlOracleTests.CpuSym(name);
        var (s, v, v4) = Ours(type);
        var scalar = (delegate*<byte*, byte*, int, float>)s;
        var ourSimd = (delegate*<byte*, byte*, int, float>)v;
        var ourSimd4 = (delegate*<byte*, byte*, int, int, float*, void>)v4;
        Assert.Equal(GgmlType.Q8_K, QuantDot.For(type).Activation);
        var rng = new Random(7 + (int)type);
        double worst = 0;
        float* four = stackalloc float[4];
        for (int trial = 0; trial < 200; trial++)
        {
            int n = (1 + rng.Next(8)) * 256;
            byte[] wq = trial % 2 == 0
                ? GgmlQuantize(type, GgmlOracleTests.TestData(rng, n, trial / 2 % 7), 1, n, Imatrix(rng, n))
                : RandomBlocks(rng, type, n);
            int xb = QuantDot.ActivationBytes(GgmlType.Q8_K, n);
            var xq = new byte[4 * xb];
            var wd = new float[n]; var xd = new float[n];
            Dequantize.Row(type, wq, wd);
            fixed (byte* pw = wq) fixed (byte* px = xq)
            {
                for (int t = 0; t < 4; t++)
                {
                    var x = GgmlOracleTests.TestData(rng, n, (trial + t) % 7);
                    fixed (float* pxf = x) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf, px + t * xb, n);
                }
                if (QuantDot.Avx2Path) ourSimd4(pw, px, xb, n, four);
                for (int t = 0; t < 4; t++)
                {
                    byte* xt = px + t * xb;
                    float g = 0, gs = 0;
                    generic(n, &g, 0, pw, 0, xt, 0, 1);
                    simd(n, &gs, 0, pw, 0, xt, 0, 1);
                    float ours = scalar(pw, xt, n);
                    Assert.True(BitConverter.SingleToUInt32Bits(g) == BitConverter.SingleToUInt32Bits(ours), $"{type} n={n} trial {trial}: ggml generic {g}, our scalar {ours}");
                    if (!QuantDot.Avx2Path) continue;
                    float one = ourSimd(pw, xt, n);
                    Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(ours), $"{type} n={n} trial {trial}: our AVX2 {one}, our scalar {ours}");
                    Assert.True(BitConverter.SingleToUInt32Bits(four[t]) == BitConverter.SingleToUInt32Bits(one), $"{type} n={n} trial {trial} token {t}: 4-token {four[t]}, 1-token {one}");
                    Dequantize.Row(GgmlType.Q8_K, xq.AsSpan(t * xb, xb), xd);
                    double mag = 0;
                    for (int i = 0; i < n; i++) mag += Math.Abs((double)wd[i] * xd[i]);
                    if (mag == 0) { Assert.Equal(gs, one); continue; }
                    double rel = Math.Abs(gs - one) / mag;
                    worst = Math.Max(worst, rel);
                    Assert.True(rel <= 1e-5, $"{type} n={n} trial {trial}: ggml AVX2 {gs}, ours {one} (Σ|w·x| {mag})");
                }
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: worst |ours − ggml AVX2| / Σ|w·x| = {worst:E2}");
    }

    /// <summary>
    /// A GGUF tensor of the type through <see cref="WeightMatrix.MatMul"/> (1 and 5 tokens: the single- and 4-token
    /// kernels, 2 threads): a random (48, 2048) matrix quantized by ggml's quantizer, against the F32 product of the
    /// weights as ggml dequantizes them with the activations as Q8_K holds them (float order only: 1e-5 of Σ|w·x|),
    /// against ggml's generic kernel row by row (bit for bit) and against ggml's AVX2 kernel (1e-5 of Σ|w·x|).
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Matrix_product_matches_ggml(GgmlType type)
    {
        var dq = (delegate* unmanaged<byte*, float*, long, void>)GgmlOracleTests.Sym($"dequantize_row_{Name(type)}");
        var generic = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)GgmlOracleTests.CpuSym($"ggml_vec_dot_{Name(type)}_q8_K_generic");
        var vecDot = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)GgmlOracleTests.CpuSym($"ggml_vec_dot_{Name(type)}_q8_K");
        const int rows = 48, cols = 2048;
        var rng = new Random(2048 + (int)type);
        var wq = GgmlQuantize(type, GgmlOracleTests.TestData(rng, rows * cols, 0), rows, cols, Imatrix(rng, cols));
        long rb = GgmlTypes.RowBytes(type, cols);
        var wd = new float[rows * cols];
        fixed (byte* pw = wq) fixed (float* pd = wd) dq(pw, pd, (long)rows * cols);
        foreach (int n in new[] { 1, 5 })
        {
            var x = GgmlOracleTests.TestData(rng, n * cols, 2);
            var y = new float[n * rows];
            var xq = new byte[QuantDot.ActivationBytes(GgmlType.Q8_K, cols)];
            var xd = new float[cols];
            fixed (byte* pw = wq) fixed (byte* px = xq) fixed (float* pxf = x)
            {
                new WeightMatrix(pw, type, rows, cols).MatMul(x, y, n, threads: 2);
                for (int t = 0; t < n; t++)
                {
                    QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * cols, px, cols);
                    Dequantize.Row(GgmlType.Q8_K, xq, xd);
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, mag = 0;
                        for (int i = 0; i < cols; i++) { exact += (double)wd[r * cols + i] * xd[i]; mag += Math.Abs((double)wd[r * cols + i] * xd[i]); }
                        float g = 0, gs = 0;
                        generic(cols, &g, 0, pw + r * rb, 0, px, 0, 1);
                        vecDot(cols, &gs, 0, pw + r * rb, 0, px, 0, 1);
                        float ours = y[t * rows + r];
                        Assert.True(Math.Abs(ours - exact) <= 1e-5 * mag, $"{type} n={n} t={t} r={r}: ours {ours}, F32 product {exact}");
                        Assert.True(BitConverter.SingleToUInt32Bits(ours) == BitConverter.SingleToUInt32Bits(g), $"{type} n={n} t={t} r={r}: ours {ours}, ggml generic {g}");
                        Assert.True(Math.Abs(ours - gs) <= 1e-5 * mag, $"{type} n={n} t={t} r={r}: ours {ours}, ggml AVX2 {gs}");
                    }
                }
            }
        }
    }
}
