using System.Runtime.InteropServices;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>
/// Bit-exact comparison with llama.cpp's own ggml-base library (quantize_row_*_ref, dequantize_row_*,
/// ggml_fp32_to_fp16...), loaded straight from the LLamaSharp.Backend.Cpu 0.30.0 package in the NuGet
/// cache (restored by tests/OpenWeights.Tests). Skips when that package is not there.
/// </summary>
public unsafe partial class GgmlOracleTests
{
    private static readonly Lazy<IntPtr> Lib = new(Load);

    private static IntPtr Load()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string rid, file;
        if (OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64) { rid = "linux-x64"; file = "libggml-base.so"; }
        else if (OperatingSystem.IsWindows() && RuntimeInformation.ProcessArchitecture == Architecture.X64) { rid = "win-x64"; file = "ggml-base.dll"; }
        else return IntPtr.Zero;
        foreach (var variant in new[] { "noavx", "avx2", "avx", "avx512", "" })
        {
            string p = Path.Combine(root, "llamasharp.backend.cpu", "0.30.0", "LLamaSharpRuntimes", rid, "native", variant, file);
            if (File.Exists(p) && NativeLibrary.TryLoad(p, out var h)) return h;
        }
        return IntPtr.Zero;
    }

    /// <summary>llama.cpp's CPU backend (libggml-cpu, AVX2 build: its vec_dot kernels), or zero when not in the NuGet cache.</summary>
    private static readonly Lazy<IntPtr> CpuLib = new(() =>
    {
        if (Lib.Value == IntPtr.Zero || !OperatingSystem.IsLinux()) return IntPtr.Zero;
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string p = Path.Combine(root, "llamasharp.backend.cpu", "0.30.0", "LLamaSharpRuntimes", "linux-x64", "native", "avx2", "libggml-cpu.so");
        if (!File.Exists(p) || !NativeLibrary.TryLoad(p, out var h)) return IntPtr.Zero;
        ((delegate* unmanaged<void>)NativeLibrary.GetExport(h, "ggml_cpu_init"))(); // fills the f16 table the kernels read
        return h;
    });

    internal static IntPtr CpuSym(string name)
    {
        if (CpuLib.Value == IntPtr.Zero) Assert.Skip("llama.cpp's libggml-cpu (AVX2 build) from LLamaSharp.Backend.Cpu 0.30.0 is not in the NuGet cache");
        return NativeLibrary.GetExport(CpuLib.Value, name);
    }

    internal static IntPtr Sym(string name)
    {
        if (Lib.Value == IntPtr.Zero) Assert.Skip("llama.cpp's ggml-base from LLamaSharp.Backend.Cpu 0.30.0 is not in the NuGet cache (restore tests/OpenWeights.Tests)");
        return NativeLibrary.GetExport(Lib.Value, name);
    }

    [Fact]
    public void Half_and_bf16_conversions_match_ggml()
    {
        var f2h = (delegate* unmanaged<float, ushort>)Sym("ggml_fp32_to_fp16");
        var h2f = (delegate* unmanaged<ushort, float>)Sym("ggml_fp16_to_fp32");
        var f2b = (delegate* unmanaged<float, ushort>)Sym("ggml_fp32_to_bf16");
        for (int h = 0; h < 65536; h++)
            Assert.Equal(BitConverter.SingleToUInt32Bits(h2f((ushort)h)), BitConverter.SingleToUInt32Bits(HalfConvert.Fp16ToFp32((ushort)h)));
        var rng = new Random(1);
        for (int k = 0; k < 2_000_000; k++)
        {
            uint bits = (uint)rng.NextInt64(1L << 32);
            if (k % 2 == 0) bits = (bits & 0x8FFFFFFF) | 0x30000000 | (uint)(rng.Next(4) << 27); // around the f16 range
            float f = BitConverter.UInt32BitsToSingle(bits);
            if (f2h(f) != HalfConvert.Fp32ToFp16(f)) Assert.Fail($"fp32->fp16 {bits:X8}: ggml {f2h(f):X4} ours {HalfConvert.Fp32ToFp16(f):X4}");
            if (f2b(f) != HalfConvert.Fp32ToBf16(f)) Assert.Fail($"fp32->bf16 {bits:X8}: ggml {f2b(f):X4} ours {HalfConvert.Fp32ToBf16(f):X4}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)] [InlineData(GgmlType.Q4_1)] [InlineData(GgmlType.Q5_0)] [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)] [InlineData(GgmlType.Q2_K)] [InlineData(GgmlType.Q3_K)] [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)] [InlineData(GgmlType.Q6_K)] [InlineData(GgmlType.Q8_K)]
    public void Quantize_and_dequantize_match_ggml_bit_for_bit(GgmlType type)
    {
        string name = type.ToString().ToLowerInvariant().Replace("_k", "_K");
        var q = (delegate* unmanaged<float*, byte*, long, void>)Sym($"quantize_row_{name}_ref");
        var dq = (delegate* unmanaged<byte*, float*, long, void>)Sym($"dequantize_row_{name}");
        int bs = GgmlTypes.BlockSize(type);
        var rng = new Random((int)type);
        for (int trial = 0; trial < 400; trial++)
        {
            int n = (1 + rng.Next(3)) * bs;
            var x = TestData(rng, n, trial % 8);
            if (trial % 40 == 7) Array.Clear(x, 0, bs);
            if (trial % 40 == 9) Array.Fill(x, 0.75f, 0, bs);
            int rb = (int)GgmlTypes.RowBytes(type, n);
            var a = new byte[rb]; var b = new byte[rb];
            fixed (float* px = x) fixed (byte* pa = a) q(px, pa, n);
            Quantize.Row(type, x, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"{type} quantize differs, trial {trial}, kind {trial % 8}");

            // dequantize both the quantized row and random bytes
            var r = new byte[rb]; rng.NextBytes(r);
            if (type == GgmlType.Q8_K) for (int i = 0; i < n / bs; i++) BitConverter.TryWriteBytes(r.AsSpan(i * 292), (float)rng.NextDouble());
            foreach (var blocks in new[] { a, r })
            {
                var ya = new float[n]; var yb = new float[n];
                fixed (byte* pb = blocks) fixed (float* py = ya) dq(pb, py, n);
                Dequantize.Row(type, blocks, yb);
                for (int i = 0; i < n; i++)
                    if (BitConverter.SingleToUInt32Bits(ya[i]) != BitConverter.SingleToUInt32Bits(yb[i]) && !(float.IsNaN(ya[i]) && float.IsNaN(yb[i])))
                        Assert.Fail($"{type} dequantize differs at {i}: ggml {ya[i]} ours {yb[i]}");
            }
        }
    }

    /// <summary>
    /// IQ4_NL, IQ4_XS and MXFP4 against the quantizers llama_model_quantize runs (quantize_iq4_nl / quantize_iq4_xs
    /// without importance matrix; quantize_row_mxfp4_ref) and ggml's dequantizers, bit for bit, on the same data kinds
    /// as above plus values just below and at powers of two (MXFP4's exponent comes from log2f) and random bytes.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ4_NL)] [InlineData(GgmlType.IQ4_XS)] [InlineData(GgmlType.MXFP4)]
    public void Nonlinear_4_bit_types_match_ggml_bit_for_bit(GgmlType type)
    {
        string name = type.ToString().ToLowerInvariant();
        var chunk = (delegate* unmanaged<float*, byte*, long, long, float*, nuint>)Sym(type == GgmlType.MXFP4 ? "quantize_mxfp4" : $"quantize_{name}");
        var dq = (delegate* unmanaged<byte*, float*, long, void>)Sym($"dequantize_row_{name}");
        var rowRef = type == GgmlType.IQ4_NL ? null : (delegate* unmanaged<float*, byte*, long, void>)Sym($"quantize_row_{name}_ref");
        int bs = GgmlTypes.BlockSize(type);
        var rng = new Random((int)type);
        for (int trial = 0; trial < 600; trial++)
        {
            int n = (1 + rng.Next(3)) * bs;
            var x = TestData(rng, n, trial % 8);
            if (trial % 40 == 7) Array.Clear(x, 0, bs);
            if (trial % 40 == 9) Array.Fill(x, 0.75f, 0, bs);
            if (trial % 10 == 3) // a block's largest magnitude just below, at or just above a power of two
            {
                float p = MathF.Pow(2, rng.Next(-20, 20));
                x[rng.Next(bs)] = (rng.Next(2) == 0 ? -1 : 1) * BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(p) + rng.Next(-2, 3));
            }
            int rb = (int)GgmlTypes.RowBytes(type, n);
            var a = new byte[rb]; var b = new byte[rb];
            fixed (float* px = x) fixed (byte* pa = a)
            {
                if (rowRef != null) rowRef(px, pa, n);
                else chunk(px, pa, 1, n, null);
            }
            Quantize.Row(type, x, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"{type} quantize differs, trial {trial}, kind {trial % 8}: first byte {a.AsSpan().CommonPrefixLength(b)}");
            if (rowRef != null) // the chunk entry point (llama_model_quantize's) gives the same bytes as the row reference
            {
                var c = new byte[rb];
                fixed (float* px = x) fixed (byte* pc = c) chunk(px, pc, 1, n, null);
                Assert.True(a.AsSpan().SequenceEqual(c), $"{type}: quantize_{name} and quantize_row_{name}_ref differ");
            }

            var r = new byte[rb]; rng.NextBytes(r);
            foreach (var blocks in new[] { a, r })
            {
                var ya = new float[n]; var yb = new float[n]; var yc = new float[n];
                fixed (byte* pb = blocks) fixed (float* py = ya) dq(pb, py, n);
                Dequantize.Row(type, blocks, yb);
                switch (type)
                {
                    case GgmlType.IQ4_NL: BlockIQ4_NL.DequantizeScalar(blocks, yc); break;
                    case GgmlType.IQ4_XS: BlockIQ4_XS.DequantizeScalar(blocks, yc); break;
                    default: BlockMXFP4.DequantizeScalar(blocks, yc); break;
                }
                for (int i = 0; i < n; i++)
                {
                    uint g = BitConverter.SingleToUInt32Bits(ya[i]);
                    if ((g != BitConverter.SingleToUInt32Bits(yb[i]) || g != BitConverter.SingleToUInt32Bits(yc[i])) && !(float.IsNaN(ya[i]) && float.IsNaN(yb[i]) && float.IsNaN(yc[i])))
                        Assert.Fail($"{type} dequantize differs at {i}: ggml {ya[i]} ours {yb[i]} scalar {yc[i]}");
                }
            }
        }
    }

    /// <summary>
    /// Our dot kernels against ggml's own (libggml-cpu): the scalar references equal ggml's <c>_generic</c> kernels bit for
    /// bit (same integer sums, same float order), and the AVX2 kernels agree with ggml's AVX2 ones to float-order
    /// rounding (measured: at most 1.1e-7 of Σ|w·x|, IQ4_XS identical; bound 1e-5), on the same activation blocks.
    /// Q5_K's AVX2 kernel equals ggml's AVX2 one bit for bit (asserted).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ4_NL)] [InlineData(GgmlType.IQ4_XS)] [InlineData(GgmlType.MXFP4)] [InlineData(GgmlType.Q5_K)]
    public void Dot_kernels_match_ggml_vec_dot(GgmlType type)
    {
        string name = type switch { GgmlType.IQ4_NL => "iq4_nl_q8_0", GgmlType.IQ4_XS => "iq4_xs_q8_K", GgmlType.Q5_K => "q5_K_q8_K", _ => "mxfp4_q8_0" };
        var generic = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym($"ggml_vec_dot_{name}_generic");
        var simd = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym($"ggml_vec_dot_{name}");
        var k = OpenWeights.Tensors.Kernels.QuantDot.For(type);
        delegate*<byte*, byte*, int, float> scalar = type switch
        {
            GgmlType.IQ4_NL => &OpenWeights.Tensors.Kernels.QuantDot.DotIQ4_NLScalar,
            GgmlType.IQ4_XS => &OpenWeights.Tensors.Kernels.QuantDot.DotIQ4_XSScalar,
            GgmlType.Q5_K => &OpenWeights.Tensors.Kernels.QuantDot.DotQ5_KScalar,
            _ => &OpenWeights.Tensors.Kernels.QuantDot.DotMXFP4Scalar,
        };
        int bs = GgmlTypes.BlockSize(type);
        var rng = new Random(3 + (int)type);
        double worst = 0; int simdIdentical = 0, simdCompared = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            int n = (1 + rng.Next(12)) * bs;
            var w = TestData(rng, n, trial % 7); var x = TestData(rng, n, (trial / 7) % 7);
            var wq = new byte[GgmlTypes.RowBytes(type, n)];
            Quantize.Row(type, w, wq);
            var xq = new byte[OpenWeights.Tensors.Kernels.QuantDot.ActivationBytes(k.Activation, n)];
            var wd = new float[n]; var xd = new float[n];
            Dequantize.Row(type, wq, wd);
            fixed (byte* pw = wq) fixed (byte* px = xq) fixed (float* pxf = x)
            {
                OpenWeights.Tensors.Kernels.QuantDot.QuantizeActivation(k.Activation, pxf, px, n);
                Dequantize.Row(k.Activation, xq.AsSpan(0, (int)GgmlTypes.RowBytes(k.Activation, n)), xd);
                float g = 0, gs = 0;
                generic(n, &g, 0, pw, 0, px, 0, 1);
                simd(n, &gs, 0, pw, 0, px, 0, 1);
                float ours = scalar(pw, px, n);
                Assert.True(BitConverter.SingleToUInt32Bits(g) == BitConverter.SingleToUInt32Bits(ours), $"{type} n={n} trial {trial}: ggml generic {g}, our scalar {ours}");
                if (OpenWeights.Tensors.Kernels.QuantDot.Avx2Path)
                {
                    float ourSimd = k.Dot(pw, px, n);
                    simdCompared++;
                    if (BitConverter.SingleToUInt32Bits(gs) == BitConverter.SingleToUInt32Bits(ourSimd)) simdIdentical++;
                    double mag = 0;
                    for (int i = 0; i < n; i++) mag += Math.Abs((double)wd[i] * xd[i]);
                    if (mag == 0) { Assert.Equal(gs, ourSimd); continue; }
                    double rel = Math.Abs(gs - ourSimd) / mag;
                    worst = Math.Max(worst, rel);
                    Assert.True(rel <= 1e-5, $"{type} n={n} trial {trial}: ggml AVX2 {gs}, ours {ourSimd} (|Σ w·x| {mag})");
                }
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{type}: worst |ours − ggml AVX2| / Σ|w·x| = {worst:E2}, bit-identical {simdIdentical} of {simdCompared}");
        // Q5_K's AVX2 kernel keeps ggml's float order exactly (measured 300 of 300 identical): hold it to that
        if (type == GgmlType.Q5_K) Assert.Equal(simdCompared, simdIdentical);
    }

    /// <summary>
    /// The case gpt-oss needs: an MXFP4 matrix (rows of 2880 = its hidden size) times activations through
    /// WeightMatrix.MatMul (1 and 5 tokens: the single- and 4-token kernels) against the F32 product of the weights as
    /// llama.cpp dequantizes them (dequantize_row_mxfp4) with the activations as ggml quantizes them to Q8_0, and
    /// against ggml's own MXFP4 · Q8_0 kernel row by row. The F32 product differs only by float order (bound 1e-5 of
    /// Σ|w·x|), ggml's kernel likewise.
    /// </summary>
    [Fact]
    public void Mxfp4_matrix_product_matches_ggml_dequantized_f32_product()
    {
        var dq = (delegate* unmanaged<byte*, float*, long, void>)Sym("dequantize_row_mxfp4");
        var vecDot = (delegate* unmanaged<int, float*, nuint, byte*, nuint, byte*, nuint, int, void>)CpuSym("ggml_vec_dot_mxfp4_q8_0");
        const int rows = 72, cols = 2880;
        var rng = new Random(2880);
        var w = TestData(rng, rows * cols, 0);
        long rb = GgmlTypes.RowBytes(GgmlType.MXFP4, cols);
        var wq = new byte[rows * rb];
        for (int r = 0; r < rows; r++) Quantize.Row(GgmlType.MXFP4, w.AsSpan(r * cols, cols), wq.AsSpan((int)(r * rb), (int)rb));
        var wd = new float[rows * cols];
        fixed (byte* pw = wq) fixed (float* pd = wd) dq(pw, pd, (long)rows * cols);
        foreach (int n in new[] { 1, 5 })
        {
            var x = TestData(rng, n * cols, 2);
            var y = new float[n * rows];
            var xq = new byte[OpenWeights.Tensors.Kernels.QuantDot.ActivationBytes(GgmlType.Q8_0, cols)];
            var xd = new float[cols];
            fixed (byte* pw = wq) fixed (byte* px = xq) fixed (float* pxf = x)
            {
                new OpenWeights.Tensors.Kernels.WeightMatrix(pw, GgmlType.MXFP4, rows, cols).MatMul(x, y, n, threads: 2);
                for (int t = 0; t < n; t++)
                {
                    OpenWeights.Tensors.Kernels.QuantDot.QuantizeActivation(GgmlType.Q8_0, pxf + t * cols, px, cols);
                    BlockQ8_0.DequantizeScalar(xq.AsSpan(0, cols / 32 * 34), xd);
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, mag = 0;
                        for (int i = 0; i < cols; i++) { exact += (double)wd[r * cols + i] * xd[i]; mag += Math.Abs((double)wd[r * cols + i] * xd[i]); }
                        float ggml = 0;
                        vecDot(cols, &ggml, 0, pw + r * rb, 0, px, 0, 1);
                        float ours = y[t * rows + r];
                        Assert.True(Math.Abs(ours - exact) <= 1e-5 * mag, $"n={n} t={t} r={r}: ours {ours}, F32 product {exact}");
                        Assert.True(Math.Abs(ours - ggml) <= 1e-5 * mag, $"n={n} t={t} r={r}: ours {ours}, ggml {ggml}");
                    }
                }
            }
        }
    }

    internal static float[] TestData(Random rng, int n, int kind)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[i] = kind switch
            {
                0 => (float)g,
                1 => (float)(g * 0.02),
                2 => (float)(rng.NextDouble() * 2 - 1),
                3 => rng.Next(20) == 0 ? (float)(g * 50) : (float)g,  // outliers
                4 => rng.Next(-8, 8) * 0.25f,                         // exact grid values, ties
                5 => rng.Next(3) == 0 ? 0f : (float)(g * 1e-3),       // sparse
                6 => (float)(rng.NextDouble() + 0.5),                 // all positive
                _ => (float)(g * 1e-20),                              // tiny (f16 scales underflow)
            };
        }
        return x;
    }
}
