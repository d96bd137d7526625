using System.Runtime.InteropServices;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>
/// Bit-exact comparison with llama.cpp's own ggml-base library (quantize_row_*_ref, dequantize_row_*,
/// ggml_fp32_to_fp16...), loaded straight from the LLamaSharp.Backend.Cpu 0.30.0 package in the NuGet
/// cache (restored by tests/OpenWeights.Tests). Skips when that package is not there.
/// </summary>
public unsafe class GgmlOracleTests
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

    private static IntPtr Sym(string name)
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

    private static float[] TestData(Random rng, int n, int kind)
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
