using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>
/// IQ2_XXS, IQ2_XS and IQ2_S against llama.cpp's own ggml: its quantizer makes the blocks (ggml_quantize_chunk, with a
/// uniform importance matrix where ggml requires one; we have no quantizer of our own for these types), its
/// dequantize_row_iq2_* and vec_dot kernels are the reference, on quantized data and on random bytes (every grid entry
/// and sign pattern is reached).
/// </summary>
public unsafe partial class GgmlOracleTests
{
    /// <summary>Quantizes rows × cols values with ggml (ggml_quantize_chunk), with an importance matrix of ones when the type requires one.</summary>
    private static byte[] GgmlQuantize(GgmlType type, float[] x, int rows, int cols)
    {
        var chunk = (delegate* unmanaged<int, float*, byte*, long, long, long, float*, nuint>)Sym("ggml_quantize_chunk");
        var requires = (delegate* unmanaged<int, byte>)Sym("ggml_quantize_requires_imatrix");
        var dst = new byte[rows * GgmlTypes.RowBytes(type, cols)];
        var ones = new float[cols];
        Array.Fill(ones, 1f);
        fixed (float* px = x) fixed (byte* pd = dst) fixed (float* pi = ones)
        {
            nuint written = chunk((int)type, px, pd, 0, rows, cols, requires((int)type) != 0 ? pi : null);
            Assert.Equal((nuint)dst.Length, written);
        }
        return dst;
    }

    /// <summary>Random bytes as IQ2 super-blocks (every bit pattern is a valid block), with a finite f16 scale d in each.</summary>
    internal static byte[] RandomIq2Blocks(Random rng, GgmlType type, int n)
    {
        var b = new byte[GgmlTypes.RowBytes(type, n)];
        rng.NextBytes(b);
        int bb = GgmlTypes.BlockBytes(type);
        for (int i = 0; i < b.Length / bb; i++)
            BitConverter.TryWriteBytes(b.AsSpan(i * bb), HalfConvert.Fp32ToFp16((float)(rng.NextDouble() * 0.02 - 0.005)));
        return b;
    }

    public static TheoryData<GgmlType> Iq2Types() => [GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S];

    [Theory]
    [MemberData(nameof(Iq2Types))]
    public void IQ2_dequantization_matches_ggml_bit_for_bit(GgmlType type)
    {
        var dq = (delegate* unmanaged<byte*, float*, long, void>)Sym($"dequantize_row_{type.ToString().ToLowerInvariant()}");
        var rng = new Random(100 + (int)type);
        for (int trial = 0; trial < 300; trial++)
        {
            int n = (1 + rng.Next(3)) * 256;
            byte[] blocks;
            if (trial % 3 == 0) { blocks = new byte[GgmlTypes.RowBytes(type, n)]; rng.NextBytes(blocks); } // any f16 d: inf, NaN, subnormal
            else if (trial % 3 == 1) blocks = RandomIq2Blocks(rng, type, n);
            else blocks = GgmlQuantize(type, TestData(rng, n, trial % 8), 1, n);
            var ya = new float[n]; var yb = new float[n];
            fixed (byte* pb = blocks) fixed (float* py = ya) dq(pb, py, n);
            Dequantize.Row(type, blocks, yb);
            for (int i = 0; i < n; i++)
                if (BitConverter.SingleToUInt32Bits(ya[i]) != BitConverter.SingleToUInt32Bits(yb[i]) && !(float.IsNaN(ya[i]) && float.IsNaN(yb[i])))
                    Assert.Fail($"{type} trial {trial}: dequantize differs at {i}: ggml {ya[i]} ours {yb[i]}");
        }
    }

    /// <summary>
    /// Our scalar kernels equal ggml's <c>_generic</c> ones bit for bit, our AVX2 kernels equal ggml's AVX2 ones bit for bit
    /// (same int32 lanes, same float steps), and the 4-token kernels give each token the single-token kernel's bits.
    /// </summary>
    [Theory]
    [MemberData(nameof(Iq2Types))]
    public void IQ2_dot_kernels_match_ggml_vec_dot_bit_for_bit(GgmlType type)
    {
        string name = type.ToString().ToLowerInvariant() + "_q8_K";
        var generic = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym($"ggml_vec_dot_{name}_generic");
        var simd = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym($"ggml_vec_dot_{name}");
        delegate*<byte*, byte*, int, float> scalar = type switch
        {
            GgmlType.IQ2_XXS => &QuantDot.DotIQ2_XXSScalar,
            GgmlType.IQ2_XS => &QuantDot.DotIQ2_XSScalar,
            _ => &QuantDot.DotIQ2_SScalar,
        };
        var k = QuantDot.For(type);
        Assert.Equal(GgmlType.Q8_K, k.Activation);
        var rng = new Random(7 + (int)type);
        int simdCompared = 0;
        var four = stackalloc float[4];
        for (int trial = 0; trial < 200; trial++)
        {
            int n = (1 + rng.Next(12)) * 256;
            var wq = trial % 2 == 0 ? GgmlQuantize(type, TestData(rng, n, trial % 7), 1, n) : RandomIq2Blocks(rng, type, n);
            int xb = QuantDot.ActivationBytes(GgmlType.Q8_K, n);
            var xq = new byte[4 * xb];
            var xf = TestData(rng, 4 * n, (trial / 2) % 7);
            fixed (byte* pw = wq) fixed (byte* px = xq) fixed (float* pxf = xf)
            {
                for (int t = 0; t < 4; t++) QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * n, px + t * xb, n);
                float g = 0, gs = 0;
                generic(n, &g, 0, pw, 0, px, 0, 1);
                simd(n, &gs, 0, pw, 0, px, 0, 1);
                float ours = scalar(pw, px, n);
                Assert.True(BitConverter.SingleToUInt32Bits(g) == BitConverter.SingleToUInt32Bits(ours), $"{type} n={n} trial {trial}: ggml generic {g}, our scalar {ours}");
                if (!QuantDot.Avx2Path) continue;
                float ourSimd = k.Dot(pw, px, n);
                Assert.True(BitConverter.SingleToUInt32Bits(gs) == BitConverter.SingleToUInt32Bits(ourSimd), $"{type} n={n} trial {trial}: ggml AVX2 {gs}, ours {ourSimd}");
                k.Dot4(pw, px, xb, n, four);
                for (int t = 0; t < 4; t++)
                {
                    float one = k.Dot(pw, px + t * xb, n);
                    Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(four[t]), $"{type} n={n} trial {trial} token {t}: 4-token {four[t]}, single {one}");
                }
                simdCompared++;
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: scalar = ggml generic on 200 of 200, AVX2 = ggml AVX2 on {simdCompared}");
    }

    /// <summary>
    /// The case DeepSeek needs: an IQ2 matrix quantized by ggml, rows of 7168 (V3's hidden size), through WeightMatrix.MatMul
    /// (1 and 5 tokens: the single- and 4-token kernels, 2 threads) against the F32 product of the weights as llama.cpp
    /// dequantizes them with the activations as quantized to Q8_K (float order only: bound 1e-5 of Σ|w·x|), and against
    /// ggml's own kernel row by row (bit for bit on the AVX2 path).
    /// </summary>
    [Theory]
    [MemberData(nameof(Iq2Types))]
    public void IQ2_matrix_product_matches_ggml(GgmlType type)
    {
        var dq = (delegate* unmanaged<byte*, float*, long, void>)Sym($"dequantize_row_{type.ToString().ToLowerInvariant()}");
        var vecDot = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym($"ggml_vec_dot_{type.ToString().ToLowerInvariant()}_q8_K");
        const int rows = 24, cols = 7168;
        var rng = new Random(7168 + (int)type);
        var wq = GgmlQuantize(type, TestData(rng, rows * cols, 0), rows, cols);
        long rb = GgmlTypes.RowBytes(type, cols);
        var wd = new float[rows * cols];
        fixed (byte* pw = wq) fixed (float* pd = wd) dq(pw, pd, (long)rows * cols);
        foreach (int n in new[] { 1, 5 })
        {
            var x = TestData(rng, n * cols, 2);
            var y = new float[n * rows];
            var xq = new byte[QuantDot.ActivationBytes(GgmlType.Q8_K, cols)];
            var xd = new float[cols];
            fixed (byte* pw = wq) fixed (byte* px = xq) fixed (float* pxf = x)
            {
                new WeightMatrix(pw, type, rows, cols).MatMul(x, y, n, threads: 2);
                for (int t = 0; t < n; t++)
                {
                    QuantDot.QuantizeActivation(GgmlType.Q8_K, pxf + t * cols, px, cols);
                    BlockQ8_K.Dequantize(xq, xd);
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, mag = 0;
                        for (int i = 0; i < cols; i++) { exact += (double)wd[r * cols + i] * xd[i]; mag += Math.Abs((double)wd[r * cols + i] * xd[i]); }
                        float ggml = 0;
                        vecDot(cols, &ggml, 0, pw + r * rb, 0, px, 0, 1);
                        float ours = y[t * rows + r];
                        Assert.True(Math.Abs(ours - exact) <= 1e-5 * mag, $"{type} n={n} t={t} r={r}: ours {ours}, F32 product {exact}");
                        if (QuantDot.Avx2Path) Assert.True(BitConverter.SingleToUInt32Bits(ours) == BitConverter.SingleToUInt32Bits(ggml), $"{type} n={n} t={t} r={r}: ours {ours}, ggml {ggml}");
                        else Assert.True(Math.Abs(ours - ggml) <= 1e-5 * mag, $"{type} n={n} t={t} r={r}: ours {ours}, ggml {ggml}");
                    }
                }
            }
        }
    }
}
