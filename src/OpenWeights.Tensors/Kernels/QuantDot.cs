using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Dot products of a weight row in its GGUF block format with an activation row quantized to 8 bits, the way ggml
/// does it (its <c>vec_dot_type</c>): Q8_0 / Q4_0 / Q5_0 / IQ4_NL / MXFP4 weights against Q8_0 activations, Q4_K / Q5_K / Q6_K /
/// IQ4_XS against Q8_K,
/// F16 against F32 activations rounded to F16. Integer sums per block, one float multiply-add per block.
/// Each kernel has a scalar reference (ggml's <c>_generic</c> code) beside its AVX2 / AVX-VNNI path; the integer
/// parts are identical, only the order of the float accumulation differs.
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>Set to use the reference path everywhere (decode each weight row to F32, F32 activations).</summary>
    public static bool UseF32Reference { get; set; } = Environment.GetEnvironmentVariable("OPENWEIGHTS_F32_MATMUL") == "1";

    /// <summary>Use the SIMD kernels when the CPU has them (tests turn this off to run the scalar references).</summary>
    public static bool UseSimd { get; set; } = true;

    internal static bool Avx2Path => UseSimd && !ForceVector128 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Use the AVX-512 kernels where the CPU has them (tests turn this off to run the AVX2 kernels on the same machine).</summary>
    public static bool UseAvx512 { get; set; } = true;

    /// <summary>
    /// Whether one-token products (decode) of the interleaved layouts use the 512-bit two-group kernels. Off by default:
    /// a one-token product reads each weight byte once and is bound by memory, and out of cache the 256-bit one-group
    /// kernels stream more bytes per second (AMD EPYC, AVX-512: Q4_K 1.2–1.4×, Q4_0 1.4×, Q5_0 1.4×, Q8_0 1.2× the
    /// 512-bit pairs; `bench --decode-bandwidth`), while several tokens per weight load (prefill) keep the 512-bit kernels.
    /// Both give the same bits. Read when a layout is made (<see cref="WeightMatrix.Repack"/>);
    /// OPENWEIGHTS_AVX512_ONE_TOKEN=1 turns it on for a process (to compare).
    /// </summary>
    public static bool Avx512OneToken { get; set; } = Environment.GetEnvironmentVariable("OPENWEIGHTS_AVX512_ONE_TOKEN") == "1";

    /// <summary>The 512-bit kernels may run: AVX2 path on, AVX-512 F/BW/VL present (.NET's DOTNET_EnableAVX512=0 hides them) and not turned off.</summary>
    internal static bool Avx512Path => Avx2Path && UseAvx512 && Avx512F.IsSupported && Avx512BW.IsSupported && Avx512F.VL.IsSupported;

    /// <summary>
    /// Run the portable 128-bit kernels (Vector128: NEON on ARM64) instead of the AVX2 ones: tests set it on x64 to exercise
    /// the ARM64 path's code; on ARM64 those kernels are the SIMD path. It turns the AVX2 (and AVX-512) path off, so the
    /// types without a 128-bit kernel run their scalar references and weights are not repacked, as on ARM64.
    /// OPENWEIGHTS_FORCE_VECTOR128=1 sets it for a whole process (to compare an x64 run with an ARM64 one).
    /// </summary>
    public static bool ForceVector128 { get; set; } = Environment.GetEnvironmentVariable("OPENWEIGHTS_FORCE_VECTOR128") == "1";

    /// <summary>
    /// The kernel path the engine takes on this machine: "avx512" (<see cref="Avx512Path"/>: the AVX-512 kernels where
    /// they exist, the AVX2 ones for the rest), "avx2" (256-bit AVX2/FMA kernels, with AVX-VNNI where the CPU has it),
    /// "neon" (the portable 128-bit kernels on ARM64, <see cref="Vector128Path"/>), "vector128" (those same kernels forced on
    /// x64 by <see cref="ForceVector128"/>: a test mode, named apart so it is never mistaken for NEON) or "scalar" (the
    /// references): what runs, not what the CPU could do.
    /// </summary>
    public static string KernelPath => Avx512Path ? "avx512" : Avx2Path ? "avx2"
        : Vector128Path ? (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported ? "neon" : "vector128") : "scalar";

    /// <summary>A row dot product: weight row (cols values in its block format) · activation row (in the kernel's activation format).</summary>
    public readonly struct Kernel(GgmlType activation, delegate*<byte*, byte*, int, float> dot, delegate*<byte*, byte*, int, int, float*, void> dot4 = null,
        delegate*<byte*, byte*, int, int, float*, void> dot8 = null)
    {
        /// <summary>Optional (with <see cref="Dot4"/>): one weight row against 8 activation rows in one pass; out: (8).</summary>
        public delegate*<byte*, byte*, int, int, float*, void> Dot8 { get; } = dot8;
        /// <summary>Optional: one weight row against 4 activation rows (x, x + stride, ...) in one pass over the weights; out: (4).</summary>
        public delegate*<byte*, byte*, int, int, float*, void> Dot4 { get; } = dot4;
        /// <summary>Q8_0 or Q8_K blocks; F16: F32 values rounded to F16 (kept as F32); F32: the activations as they are.</summary>
        public GgmlType Activation { get; } = activation;
        public delegate*<byte*, byte*, int, float> Dot { get; } = dot;
        public bool IsValid => Dot != null;
    }

    /// <summary>The kernel for a weight type, or an invalid one when the type has none (the caller falls back to F32).</summary>
    public static Kernel For(GgmlType weight)
    {
        if (UseF32Reference) return default;
        bool simd = Avx2Path;
        if (Vector128Path && ForVector128(weight) is { IsValid: true } v128) return v128;
        return weight switch
        {
            GgmlType.Q8_0 => simd ? new(GgmlType.Q8_0, &DotQ8_0Avx2, &DotQ8_0Avx2x4) : new(GgmlType.Q8_0, &DotQ8_0Scalar),
            GgmlType.Q4_0 => simd ? new(GgmlType.Q8_0, &DotQ4_0Avx2, &DotQ4_0Avx2x4) : new(GgmlType.Q8_0, &DotQ4_0Scalar),
            GgmlType.Q5_0 => simd ? new(GgmlType.Q8_0, &DotQ5_0Avx2, &DotQ5_0Avx2x4, &DotQ5_0Avx2x8) : new(GgmlType.Q8_0, &DotQ5_0Scalar),
            GgmlType.Q4_K => simd ? new(GgmlType.Q8_K, &DotQ4_KAvx2, &DotQ4_KAvx2x4) : new(GgmlType.Q8_K, &DotQ4_KScalar),
            GgmlType.Q5_K => simd ? Avx512Path ? new(GgmlType.Q8_K, &DotQ5_KAvx2, &DotQ5_KAvx512x4, &DotQ5_KAvx512x8) : new(GgmlType.Q8_K, &DotQ5_KAvx2, &DotQ5_KAvx2x4) : new(GgmlType.Q8_K, &DotQ5_KScalar),
            GgmlType.Q6_K => simd ? Avx512Path ? new(GgmlType.Q8_K, &DotQ6_KAvx2, &DotQ6_KAvx512x4, &DotQ6_KAvx512x8) : new(GgmlType.Q8_K, &DotQ6_KAvx2, &DotQ6_KAvx2x4) : new(GgmlType.Q8_K, &DotQ6_KScalar),
            GgmlType.IQ4_NL => simd ? new(GgmlType.Q8_0, &DotIQ4_NLAvx2, &DotIQ4_NLAvx2x4) : new(GgmlType.Q8_0, &DotIQ4_NLScalar),
            GgmlType.MXFP4 => simd ? new(GgmlType.Q8_0, &DotMXFP4Avx2, &DotMXFP4Avx2x4) : new(GgmlType.Q8_0, &DotMXFP4Scalar),
            GgmlType.IQ4_XS => simd ? new(GgmlType.Q8_K, &DotIQ4_XSAvx2, &DotIQ4_XSAvx2x4) : new(GgmlType.Q8_K, &DotIQ4_XSScalar),
            GgmlType.IQ3_XXS => simd ? new(GgmlType.Q8_K, &DotIQ3_XXSAvx2, &DotIQ3_XXSAvx2x4) : new(GgmlType.Q8_K, &DotIQ3_XXSScalar),
            GgmlType.IQ3_S => simd ? new(GgmlType.Q8_K, &DotIQ3_SAvx2, &DotIQ3_SAvx2x4) : new(GgmlType.Q8_K, &DotIQ3_SScalar),
            GgmlType.IQ1_S => simd ? new(GgmlType.Q8_K, &DotIQ1_SAvx2, &DotIQ1_SAvx2x4) : new(GgmlType.Q8_K, &DotIQ1_SScalar),
            GgmlType.IQ1_M => simd ? new(GgmlType.Q8_K, &DotIQ1_MAvx2, &DotIQ1_MAvx2x4) : new(GgmlType.Q8_K, &DotIQ1_MScalar),
            GgmlType.IQ2_XXS => simd ? new(GgmlType.Q8_K, &DotIQ2_XXSAvx2, &DotIQ2_XXSAvx2x4) : new(GgmlType.Q8_K, &DotIQ2_XXSScalar),
            GgmlType.IQ2_XS => simd ? new(GgmlType.Q8_K, &DotIQ2_XSAvx2, &DotIQ2_XSAvx2x4) : new(GgmlType.Q8_K, &DotIQ2_XSScalar),
            GgmlType.IQ2_S => simd ? new(GgmlType.Q8_K, &DotIQ2_SAvx2, &DotIQ2_SAvx2x4) : new(GgmlType.Q8_K, &DotIQ2_SScalar),
            GgmlType.F16 => simd ? new(GgmlType.F16, &DotF16, &DotF16Avx2x4) : new(GgmlType.F16, &DotF16),
            GgmlType.F32 => new(GgmlType.F32, &DotF32),
            _ => default,
        };
    }

    /// <summary>
    /// Bytes of one activation row of n values in format <paramref name="activation"/>. A Q8_0 activation row is its
    /// n/32 Q8_0 blocks followed by a tail of their n/32 scales as F32 and then n/32 int32 sums 8·Σq
    /// (<see cref="WriteQ8_0Tail"/>), so the kernels need not convert the f16 activation scales again for every weight
    /// row, and the interleaved Q4_0 kernels can use unsigned nibbles (Σ(u−8)·q = Σu·q − 8·Σq).
    /// </summary>
    public static int ActivationBytes(GgmlType activation, int n) => activation switch
    {
        GgmlType.Q8_0 => n / 32 * (BlockQ8_0.BlockBytes + sizeof(float) + sizeof(int)),
        GgmlType.Q8_K => n / 256 * BlockQ8_K.BlockBytes,
        _ => n * sizeof(float),
    };

    /// <summary>Converts an F32 activation row x: (n) into the kernel's activation format at dst.</summary>
    public static void QuantizeActivation(GgmlType activation, float* x, byte* dst, int n)
    {
        switch (activation)
        {
            case GgmlType.Q8_0: QuantizeQ8_0(x, dst, n); WriteQ8_0Tail(dst, n); break;
            case GgmlType.Q8_K: QuantizeQ8_K(x, dst, n); break;
            case GgmlType.F16: RoundToF16(x, (float*)dst, n); break;
            default: new ReadOnlySpan<float>(x, n).CopyTo(new Span<float>(dst, n)); break;
        }
    }

    // ---------------------------------------------------------------- activation quantizers

    /// <summary>
    /// Q8_0 activations as ggml's x86 quantize_row_q8_0 makes them: d = amax/127 (stored f16), id = 127/amax,
    /// q = round-half-even(x*id). (The weight quantizer, BlockQ8_0.Quantize, is the _ref one with roundf.)
    /// </summary>
    public static void QuantizeQ8_0(float* x, byte* dst, int n)
    {
        if (Vector128Path) { QuantizeQ8_0V128(x, dst, n); return; }
        if (!Vector256.IsHardwareAccelerated || !UseSimd) { QuantizeQ8_0Scalar(x, dst, n); return; }
        var signMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < n / 32; i++)
        {
            float* p = x + i * 32;
            byte* b = dst + i * 34;
            var v0 = Vector256.Load(p); var v1 = Vector256.Load(p + 8); var v2 = Vector256.Load(p + 16); var v3 = Vector256.Load(p + 24);
            var m = Vector256.Max(Vector256.Max(v0 & signMask, v1 & signMask), Vector256.Max(v2 & signMask, v3 & signMask));
            var m4 = Vector128.Max(m.GetLower(), m.GetUpper());
            float amax = MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            HalfConvert.WriteFp16(b, d);
            var mul = Vector256.Create(id);
            var i0 = Vector256.ConvertToInt32(Vector256.Round(v0 * mul));
            var i1 = Vector256.ConvertToInt32(Vector256.Round(v1 * mul));
            var i2 = Vector256.ConvertToInt32(Vector256.Round(v2 * mul));
            var i3 = Vector256.ConvertToInt32(Vector256.Round(v3 * mul));
            var s01 = Vector256.Narrow(i0, i1); var s23 = Vector256.Narrow(i2, i3);
            Vector256.Narrow(s01, s23).Store((sbyte*)(b + 2));
        }
    }

    /// <summary>
    /// Writes the tails of a Q8_0 activation row after its n/32 blocks at dst: d[b] = the f16 scale of block b, exactly,
    /// as F32, then s[b] = 8·Σ q over block b as int32.
    /// </summary>
    public static void WriteQ8_0Tail(byte* dst, int n)
    {
        int nb = n / 32;
        float* d = (float*)(dst + nb * 34);
        int* s = (int*)(dst + nb * 38);
        for (int b = 0; b < nb; b++)
        {
            Unsafe.WriteUnaligned(d + b, HalfConvert.ReadFp16(dst + b * 34));
            sbyte* q = (sbyte*)(dst + b * 34 + 2);
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += q[j];
            Unsafe.WriteUnaligned(s + b, 8 * sum);
        }
    }

    /// <summary>Scalar reference of <see cref="QuantizeQ8_0"/>.</summary>
    public static void QuantizeQ8_0Scalar(float* x, byte* dst, int n)
    {
        for (int i = 0; i < n / 32; i++)
        {
            float* p = x + i * 32;
            byte* b = dst + i * 34;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(p[j]));
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            HalfConvert.WriteFp16(b, d);
            for (int j = 0; j < 32; j++) ((sbyte*)(b + 2))[j] = (sbyte)(int)MathF.Round(p[j] * id, MidpointRounding.ToEven);
        }
    }

    /// <summary>Q8_K activations, bit-exact with ggml's quantize_row_q8_K_ref (BlockQ8_K.Quantize), vectorized.</summary>
    public static void QuantizeQ8_K(float* x, byte* dst, int n)
    {
        if (Vector128Path) { QuantizeQ8_KV128(x, dst, n); return; }
        if (!Vector256.IsHardwareAccelerated || !UseSimd) { BlockQ8_K.Quantize(new ReadOnlySpan<float>(x, n), new Span<byte>(dst, n / 256 * 292)); return; }
        var signMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < n / 256; i++)
        {
            float* p = x + i * 256;
            byte* b = dst + i * 292;
            var m = Vector256<float>.Zero;
            for (int j = 0; j < 256; j += 8) m = Vector256.Max(m, Vector256.Load(p + j) & signMask);
            var m4 = Vector128.Max(m.GetLower(), m.GetUpper());
            float amax = MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
            if (amax == 0) { new Span<byte>(b, 292).Clear(); continue; }
            float max = 0;
            for (int j = 0; j < 256; j++) if (MathF.Abs(p[j]) == amax) { max = p[j]; break; }
            float iscale = -127f / max;
            var vs = Vector256.Create(iscale);
            var lim = Vector256.Create(127);
            sbyte* qs = (sbyte*)(b + 4);
            for (int j = 0; j < 256; j += 32)
            {
                var i0 = Vector256.Min(lim, Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(p + j) * vs)));
                var i1 = Vector256.Min(lim, Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(p + j + 8) * vs)));
                var i2 = Vector256.Min(lim, Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(p + j + 16) * vs)));
                var i3 = Vector256.Min(lim, Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(p + j + 24) * vs)));
                Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3)).Store(qs + j);
                var (a, c) = Vector256.Widen(Vector256.Load(qs + j));
                short* bs = (short*)(b + 260) + j / 16;
                bs[0] = Vector256.Sum(a); bs[1] = Vector256.Sum(c);
            }
            Unsafe.WriteUnaligned(b, 1 / iscale);
        }
    }

    /// <summary>F32 activations rounded to F16 (ggml multiplies F16 weights with F16-converted activations).</summary>
    public static void RoundToF16(float* x, float* dst, int n)
    {
        Span<Half> buf = stackalloc Half[256];
        for (int i = 0; i < n; i += 256)
        {
            int c = Math.Min(256, n - i);
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(x + i, c), buf[..c]);
            TensorPrimitives.ConvertToSingle(buf[..c], new Span<float>(dst + i, c));
        }
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>f16 → f32 of every f16 bit pattern (256 KiB, never freed): a block scale costs one load. Scales of one
    /// tensor have few distinct exponents, so the entries in use stay in cache.</summary>
    private static readonly float* f16Table = MakeF16Table();

    private static float* MakeF16Table()
    {
        var t = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int i = 0; i < 65536; i++) t[i] = HalfConvert.Fp16ToFp32((ushort)i);
        return t;
    }

    /// <summary>The f16 value at p as f32 (exact, as <see cref="HalfConvert.Fp16ToFp32"/>), by table lookup.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Fp16(byte* p) => f16Table[Unsafe.ReadUnaligned<ushort>(p)];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Hsum(Vector256<float> v)
    {
        var s = v.GetLower() + v.GetUpper();
        s += Vector128.Shuffle(s, Vector128.Create(2, 3, 0, 1));
        s += Vector128.Shuffle(s, Vector128.Create(1, 0, 3, 2));
        return s.ToScalar();
    }

    /// <summary>Σ pairs of |a|·sign(b,a) (signed×signed bytes) summed into 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> MulSigned(Vector256<sbyte> a, Vector256<sbyte> b)
    {
        var ax = Avx2.Abs(a);
        var sb = Avx2.Sign(b, a);
        return MulUnsigned(ax, sb);
    }

    /// <summary>Σ u8×s8 products into 8 int32 lanes (groups of 4 adjacent bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> MulUnsigned(Vector256<byte> u, Vector256<sbyte> s)
    {
        if (AvxVnni.IsSupported) return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s);
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
    }

    // ---------------------------------------------------------------- Q8_0 x Q8_0

    /// <summary>Scalar reference (ggml ggml_vec_dot_q8_0_q8_0_generic).</summary>
    public static float DotQ8_0Scalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / 32; i++)
        {
            byte* a = w + i * 34, b = x + i * 34;
            int s = 0;
            for (int j = 0; j < 32; j++) s += ((sbyte*)(a + 2))[j] * ((sbyte*)(b + 2))[j];
            sum += s * (HalfConvert.ReadFp16(a) * HalfConvert.ReadFp16(b));
        }
        return sum;
    }

    /// <summary>AVX2 Q8_0 · Q8_0; x: a Q8_0 activation row with its F32 tail (<see cref="ActivationBytes"/>).</summary>
    public static float DotQ8_0Avx2(byte* w, byte* x, int n)
    {
        // One accumulator, block after block: the float sequence of DotQ8_0Avx2x4 for one token, so a token gets the
        // same logits whether it is decoded alone or in a batch (and the same as ggml's AVX2 loop).
        var acc = Vector256<float>.Zero;
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 34, b = x + i * 34;
            var p0 = MulSigned(Vector256.Load((sbyte*)(a + 2)), Vector256.Load((sbyte*)(b + 2)));
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16(a) * dx[i]), Vector256.ConvertToSingle(p0), acc);
        }
        return Hsum(acc);
    }

    /// <summary>Four activation rows at once (prefill): each weight block is loaded and its sign taken once.</summary>
    public static void DotQ8_0Avx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        int nb = n / 32;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 34; int o = i * 34;
            var wv = Vector256.Load((sbyte*)(a + 2));
            var ax = Avx2.Abs(wv);
            var dw = Vector256.Create(Fp16(a));
            acc0 = Fma.MultiplyAdd(dw * Vector256.Create(d0[i]), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(Vector256.Load((sbyte*)(x + o + 2)), wv))), acc0);
            acc1 = Fma.MultiplyAdd(dw * Vector256.Create(d1[i]), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(Vector256.Load((sbyte*)(x1 + o + 2)), wv))), acc1);
            acc2 = Fma.MultiplyAdd(dw * Vector256.Create(d2[i]), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(Vector256.Load((sbyte*)(x2 + o + 2)), wv))), acc2);
            acc3 = Fma.MultiplyAdd(dw * Vector256.Create(d3[i]), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(Vector256.Load((sbyte*)(x3 + o + 2)), wv))), acc3);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    // ---------------------------------------------------------------- Q4_0 x Q8_0

    /// <summary>Scalar reference (ggml ggml_vec_dot_q4_0_q8_0_generic).</summary>
    public static float DotQ4_0Scalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / 32; i++)
        {
            byte* a = w + i * 18, b = x + i * 34;
            sbyte* y = (sbyte*)(b + 2);
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int v0 = (a[2 + j] & 0x0F) - 8, v1 = (a[2 + j] >> 4) - 8;
                s += v0 * y[j] + v1 * y[j + 16];
            }
            sum += s * (HalfConvert.ReadFp16(a) * HalfConvert.ReadFp16(b));
        }
        return sum;
    }

    /// <summary>AVX2 Q4_0 · Q8_0 (nibbles − 8, signed products); x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotQ4_0Avx2(byte* w, byte* x, int n)
    {
        // One accumulator: the float sequence of DotQ4_0Avx2x4 for one token (batch-invariant results).
        var acc = Vector256<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector256.Create((sbyte)8);
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 18, b = x + i * 34;
            var q0 = Vector128.Load(a + 2);
            var w0 = Vector256.Create(q0 & mask, Vector128.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & mask).AsSByte() - eight;
            var p0 = MulSigned(w0, Vector256.Load((sbyte*)(b + 2)));
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16(a) * dx[i]), Vector256.ConvertToSingle(p0), acc);
        }
        return Hsum(acc);
    }

    // ---------------------------------------------------------------- Q5_0 x Q8_0

    /// <summary>Scalar reference (ggml ggml_vec_dot_q5_0_q8_0_generic).</summary>
    public static float DotQ5_0Scalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / 32; i++)
        {
            byte* a = w + i * 22, b = x + i * 34;
            uint qh = Unsafe.ReadUnaligned<uint>(a + 2);
            sbyte* y = (sbyte*)(b + 2);
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int h0 = (int)((qh >> j) << 4) & 0x10, h1 = (int)(qh >> (j + 12)) & 0x10;
                int v0 = ((a[6 + j] & 0x0F) | h0) - 16, v1 = ((a[6 + j] >> 4) | h1) - 16;
                s += v0 * y[j] + v1 * y[j + 16];
            }
            sum += s * (HalfConvert.ReadFp16(a) * HalfConvert.ReadFp16(b));
        }
        return sum;
    }

    /// <summary>AVX2 Q5_0 · Q8_0 (signed 5-bit values); x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotQ5_0Avx2(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        var shuf = Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        var bits = Vector256.Create(0x8040201008040201UL).AsByte();
        var f0 = Vector256.Create((byte)0xF0);
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 22, b = x + i * 34;
            var q = Vector128.Load(a + 6);
            var lo = Vector256.Create(q & mask, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask);
            // byte j gets bit j of qh; where the bit is clear, OR 0xF0 (= nibble - 16 as signed)
            var hv = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(a + 2)).AsByte(), shuf);
            var set = Vector256.Equals(hv & bits, bits);
            var wv = (lo | Vector256.AndNot(f0, set)).AsSByte();
            var p = MulSigned(wv, Vector256.Load((sbyte*)(b + 2)));
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16(a) * dx[i]), Vector256.ConvertToSingle(p), acc);
        }
        return Hsum(acc);
    }

    // ---------------------------------------------------------------- Q4_K x Q8_K

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalesMinsK4(byte* q, byte* sc, byte* m)
    {
        for (int j = 0; j < 4; j++) { sc[j] = (byte)(q[j] & 63); m[j] = (byte)(q[j + 4] & 63); }
        for (int j = 4; j < 8; j++)
        {
            sc[j] = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m[j] = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    /// <summary>
    /// The 8 6-bit scales and 8 6-bit mins of a Q4_K/Q5_K block from its 12 packed bytes q, with 32-bit word
    /// operations (the same values as <see cref="ScalesMinsK4"/>): scales and mins as 8 bytes each, byte j = sub-block j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) ScalesMinsK4Packed(byte* q)
    {
        uint w0 = Unsafe.ReadUnaligned<uint>(q), w1 = Unsafe.ReadUnaligned<uint>(q + 4), w2 = Unsafe.ReadUnaligned<uint>(q + 8);
        // sub-blocks 0-3: low 6 bits of q[0..3] (scales), q[4..7] (mins); 4-7: a nibble of q[8..11] | the top 2 bits of q[0..7] << 4
        uint sc47 = (w2 & 0x0F0F0F0F) | ((w0 >> 2) & 0x30303030);
        uint m47 = ((w2 >> 4) & 0x0F0F0F0F) | ((w1 >> 2) & 0x30303030);
        return ((w0 & 0x3F3F3F3F) | (ulong)sc47 << 32, (w1 & 0x3F3F3F3F) | (ulong)m47 << 32);
    }

    /// <summary>The 8 mins as 16 int16, each twice (m0, m0, m1, m1, ...): one per 16-value bsum of Q8_K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> MinsPerBsum(ulong mins)
    {
        var b = Vector128.CreateScalar(mins).AsByte();
        return Avx2.ConvertToVector256Int16(Sse2.UnpackLow(b, b)).AsInt16();
    }

    /// <summary>8 bytes of sub-block scales as int16 in both 128-bit lanes: (s0..s7, s0..s7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> ScalesBothLanes(ulong scales)
    {
        var s = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte());
        return Vector256.Create(s, s);
    }

    /// <summary>
    /// pshufb controls picking int16 lane 2k in the low 128 bits and 2k+1 in the high 128 bits of a
    /// <see cref="ScalesBothLanes"/> vector, k = 0..3: the scales of 2 consecutive 16-value sub-blocks (Q6_K), or
    /// k' = 0..7 broadcast in both halves (<see cref="BroadcastShortControl"/>, Q4_K).
    /// </summary>
    private static readonly Vector256<byte> pairCtl0 = PairControl(0), pairCtl1 = PairControl(1), pairCtl2 = PairControl(2), pairCtl3 = PairControl(3);

    private static Vector256<byte> PairControl(int k)
    {
        byte lo0 = (byte)(4 * k), hi0 = (byte)(4 * k + 2);
        return Vector256.Create(lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1),
            lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1), lo0, (byte)(lo0 + 1),
            hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1),
            hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1), hi0, (byte)(hi0 + 1));
    }

    /// <summary>pshufb control broadcasting int16 lane k of each 128-bit half.</summary>
    private static Vector256<byte> BroadcastShortControl(int k) => Vector256.Create((ushort)(2 * k | (2 * k + 1) << 8)).AsByte();
    private static readonly Vector256<byte> bc0 = BroadcastShortControl(0), bc1 = BroadcastShortControl(1), bc2 = BroadcastShortControl(2), bc3 = BroadcastShortControl(3),
        bc4 = BroadcastShortControl(4), bc5 = BroadcastShortControl(5), bc6 = BroadcastShortControl(6), bc7 = BroadcastShortControl(7);

    /// <summary>Scalar reference (ggml ggml_vec_dot_q4_K_q8_K_generic, integer sums per sub-block).</summary>
    public static float DotQ4_KScalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        byte* sc = stackalloc byte[8]; byte* m = stackalloc byte[8];
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 144, b = x + i * 292;
            ScalesMinsK4(a + 4, sc, m);
            sbyte* y = (sbyte*)(b + 4);
            short* bsums = (short*)(b + 260);
            byte* q = a + 16;
            int sumi = 0, summ = 0;
            for (int j = 0; j < 8; j++) summ += m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
            for (int c = 0; c < 4; c++)
            {
                int s0 = 0, s1 = 0;
                for (int l = 0; l < 32; l++)
                {
                    s0 += (q[32 * c + l] & 0xF) * y[64 * c + l];
                    s1 += (q[32 * c + l] >> 4) * y[64 * c + 32 + l];
                }
                sumi += sc[2 * c] * s0 + sc[2 * c + 1] * s1;
            }
            float dy = Unsafe.ReadUnaligned<float>(b);
            sum += dy * HalfConvert.ReadFp16(a) * sumi - dy * HalfConvert.ReadFp16(a + 2) * summ;
        }
        return sum;
    }

    public static float DotQ4_KAvx2(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x0F);
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 144, b = x + i * 292;
            PrefetchAhead(a, 144);
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            sbyte* y = (sbyte*)(b + 4);
            var sc = ScalesBothLanes(scales); // (16) int16: s0..s7 twice
            byte* q = a + 16;
            var q4 = Vector256.Load(q);
            var sumi = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4 & mask, Vector256.Load(y)), Avx2.Shuffle(sc.AsByte(), bc0).AsInt16());
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask, Vector256.Load(y + 32)), Avx2.Shuffle(sc.AsByte(), bc1).AsInt16());
            q4 = Vector256.Load(q + 32);
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4 & mask, Vector256.Load(y + 64)), Avx2.Shuffle(sc.AsByte(), bc2).AsInt16());
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask, Vector256.Load(y + 96)), Avx2.Shuffle(sc.AsByte(), bc3).AsInt16());
            q4 = Vector256.Load(q + 64);
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4 & mask, Vector256.Load(y + 128)), Avx2.Shuffle(sc.AsByte(), bc4).AsInt16());
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask, Vector256.Load(y + 160)), Avx2.Shuffle(sc.AsByte(), bc5).AsInt16());
            q4 = Vector256.Load(q + 96);
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4 & mask, Vector256.Load(y + 192)), Avx2.Shuffle(sc.AsByte(), bc6).AsInt16());
            sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask, Vector256.Load(y + 224)), Avx2.Shuffle(sc.AsByte(), bc7).AsInt16());
            // + d_y·d·sumi − d_y·dmin·Σ m_j·(sum of the 32 activations of sub-block j), as in DotQ4_KAvx2x4
            acc = K4Block(acc, b, Fp16(a), -Fp16(a + 2), sumi, MinsPerBsum(mins));
        }
        return Hsum(acc);
    }

    // ---------------------------------------------------------------- Q6_K x Q8_K

    /// <summary>Scalar reference (ggml ggml_vec_dot_q6_K_q8_K_generic, integer sums per 16-value sub-block).</summary>
    public static float DotQ6_KScalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        int* q = stackalloc int[256];
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210, b = x + i * 292;
            byte* ql = a; byte* qh = a + 128; sbyte* sc = (sbyte*)(a + 192);
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++)
                {
                    byte* L = ql + 64 * h; byte H = qh[32 * h + l];
                    q[128 * h + l] = ((L[l] & 0xF) | ((H & 3) << 4)) - 32;
                    q[128 * h + l + 32] = ((L[l + 32] & 0xF) | (((H >> 2) & 3) << 4)) - 32;
                    q[128 * h + l + 64] = ((L[l] >> 4) | (((H >> 4) & 3) << 4)) - 32;
                    q[128 * h + l + 96] = ((L[l + 32] >> 4) | (((H >> 6) & 3) << 4)) - 32;
                }
            sbyte* y = (sbyte*)(b + 4);
            int sumi = 0;
            for (int s = 0; s < 16; s++)
            {
                int t = 0;
                for (int l = 0; l < 16; l++) t += q[16 * s + l] * y[16 * s + l];
                sumi += sc[s] * t;
            }
            sum += Unsafe.ReadUnaligned<float>(b) * HalfConvert.ReadFp16(a + 208) * sumi;
        }
        return sum;
    }

    /// <summary>
    /// Whether the one-token row kernels of the K-quants ask for each block's cache lines a fixed distance ahead
    /// (<see cref="PrefetchAhead"/>). On by default: out of cache the Q6_K row kernel streamed 80–91% of a plain read's
    /// bytes/s without it and 95–100% with it (AMD EPYC, `bench --decode-bandwidth`, which alternates both).
    /// </summary>
    public static bool RowPrefetch { get; set; } = true;

    /// <summary>Prefetches the cache lines of the block of <paramref name="bytes"/> at a, <see cref="Interleaved.Q8_0x8.PrefetchDistance"/> bytes ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchAhead(byte* a, int bytes)
    {
        if (!RowPrefetch) return;
        byte* p = a + Interleaved.Q8_0x8.PrefetchDistance;
        for (int l = 0; l < bytes; l += 64) Sse.Prefetch0(p + l);
        Sse.Prefetch0(p + bytes - 1); // the last line of a block that straddles one more
    }

    public static float DotQ6_KAvx2(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((byte)0x03);
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210, b = x + i * 292;
            PrefetchAhead(a, 210);
            sbyte* sc = (sbyte*)(a + 192);
            sbyte* y = (sbyte*)(b + 4);
            // start from the -32 offset, −32·Σ_s sc[s]·bsum[s], kept in 8 lanes of pair sums as in DotQ6_KAvx2x4
            var scv = Vector256.WidenLower(Vector256.Create(Vector128.Load(sc), Vector128<sbyte>.Zero));
            var sumi = Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(b + 260)), scv), 5);
            for (int h = 0; h < 2; h++)
            {
                var A = Vector256.Load(a + 64 * h);
                var B = Vector256.Load(a + 64 * h + 32);
                var H = Vector256.Load(a + 128 + 32 * h);
                var H16 = H.AsUInt16();
                var q1 = (A & m4) | Vector256.ShiftLeft((H & m2).AsUInt16(), 4).AsByte();
                var q2 = (B & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 2).AsByte() & m2).AsUInt16(), 4).AsByte();
                var q3 = (Vector256.ShiftRightLogical(A.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 4).AsByte() & m2).AsUInt16(), 4).AsByte();
                var q4 = (Vector256.ShiftRightLogical(B.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 6).AsByte() & m2).AsUInt16(), 4).AsByte();
                sbyte* yy = y + 128 * h;
                var ss = Q6ScalesBothLanes(sc + 8 * h); // (16) int16: sc[8h..8h+8] twice
                sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(yy)), Avx2.Shuffle(ss, pairCtl0).AsInt16());
                sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.Load(yy + 32)), Avx2.Shuffle(ss, pairCtl1).AsInt16());
                sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.Load(yy + 64)), Avx2.Shuffle(ss, pairCtl2).AsInt16());
                sumi += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.Load(yy + 96)), Avx2.Shuffle(ss, pairCtl3).AsInt16());
            }
            acc = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(b) * Fp16(a + 208)), Vector256.ConvertToSingle(sumi), acc);
        }
        return Hsum(acc);
    }

    /// <summary>8 signed Q6_K scales (int8 at p) as int16 in both 128-bit lanes, as bytes for pshufb.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Q6ScalesBothLanes(sbyte* p)
    {
        var s = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(Unsafe.ReadUnaligned<ulong>(p)).AsSByte());
        return Vector256.Create(s, s).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> Scale2(sbyte lo, sbyte hi) => Vector256.Create(Vector128.Create((short)lo), Vector128.Create((short)hi));

    // ---------------------------------------------------------------- F32 x F32, F16 x F32

    public static float DotF32(byte* w, byte* x, int n) => TensorPrimitives.Dot(new ReadOnlySpan<float>(w, n), new ReadOnlySpan<float>(x, n));

    /// <summary>Scalar reference: Σ f16(w[i]) · x[i], F32 accumulation.</summary>
    public static float DotF16Scalar(byte* w, byte* x, int n)
    {
        float sum = 0;
        ushort* h = (ushort*)w; float* y = (float*)x;
        for (int i = 0; i < n; i++) sum += HalfConvert.Fp16ToFp32(h[i]) * y[i];
        return sum;
    }

    /// <summary>
    /// 8 f16 values, sign-extended to int32, as F32 in 3 operations: shifted left by 13 the 5 exponent and 10 mantissa bits
    /// land in an f32's places and the sign bit at bit 31; masking the copies of the sign out of bits 28-30 and
    /// multiplying by 2^112 rebiases the exponent. Exact for normals, subnormals and zeros, as <see cref="Fp16"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> F16ToF32(Vector256<int> h) =>
        (Vector256.ShiftLeft(h, 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000));

    /// <summary>How far ahead (in f16 values: 8 KiB) the F16 kernels prefetch weights.</summary>
    internal const int PrefetchF16 = 4096;

    /// <summary>F16 weights widened to F32 in registers (<see cref="F16ToF32"/>), FMA dot.</summary>
    public static float DotF16(byte* w, byte* x, int n)
    {
        if (!Avx2Path) return DotF16Scalar(w, x, n);
        short* h = (short*)w; float* y = (float*)x;
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Sse.Prefetch0(h + i + PrefetchF16); // one 64-byte line per iteration, 8 KiB ahead: more loads in flight than the hardware prefetcher keeps
            var (a, b) = Vector256.Widen(Vector256.Load(h + i));
            acc0 = Fma.MultiplyAdd(F16ToF32(a), Vector256.Load(y + i), acc0);
            acc1 = Fma.MultiplyAdd(F16ToF32(b), Vector256.Load(y + i + 8), acc1);
            (a, b) = Vector256.Widen(Vector256.Load(h + i + 16));
            acc0 = Fma.MultiplyAdd(F16ToF32(a), Vector256.Load(y + i + 16), acc0);
            acc1 = Fma.MultiplyAdd(F16ToF32(b), Vector256.Load(y + i + 24), acc1);
        }
        for (; i + 16 <= n; i += 16)
        {
            var (a, b) = Vector256.Widen(Vector256.Load(h + i));
            acc0 = Fma.MultiplyAdd(F16ToF32(a), Vector256.Load(y + i), acc0);
            acc1 = Fma.MultiplyAdd(F16ToF32(b), Vector256.Load(y + i + 8), acc1);
        }
        float sum = Hsum(acc0 + acc1);
        for (; i < n; i++) sum += HalfConvert.Fp16ToFp32((ushort)h[i]) * y[i];
        return sum;
    }
}
