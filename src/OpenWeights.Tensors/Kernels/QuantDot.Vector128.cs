using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// The portable 128-bit kernels: the SIMD path on ARM64 (NEON; SDOT where the CPU has the dot-product extension), and on
/// x64 only when <see cref="QuantDot.ForceVector128"/> is set (tests run this code there). Written with the cross-platform
/// <see cref="Vector128"/> API; <see cref="AdvSimd"/> / <see cref="Dp"/> only behind their IsSupported checks, each with a
/// portable fallback that gives the same integers.
/// Every quantized kernel here computes each block's integer sum exactly as its scalar reference does and then applies
/// the same float expression per block, in the same block order, so its result is bit-identical to the scalar reference
/// (and the 4-token kernels to the 1-token ones). Only the F16 kernels reassociate the float sum (stated tolerance in
/// the tests).
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>
    /// The portable 128-bit kernels are the path in use: SIMD on, 128-bit vectors accelerated, and either an ARM64 CPU
    /// (AdvSimd: NEON) or <see cref="ForceVector128"/>. An x64 CPU without AVX2 keeps the scalar references (as .ci/run's
    /// DOTNET_EnableAVX2=0 step checks).
    /// </summary>
    internal static bool Vector128Path => UseSimd && Vector128.IsHardwareAccelerated && (ForceVector128 || AdvSimd.IsSupported);

    /// <summary>
    /// The 128-bit kernel of a weight type, or an invalid one for the types that have none (<see cref="For"/> then gives
    /// their scalar reference): Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, F16.
    /// </summary>
    internal static Kernel ForVector128(GgmlType weight) => weight switch
    {
        GgmlType.Q8_0 => new(GgmlType.Q8_0, &DotQ8_0V128, &DotQ8_0V128x4),
        GgmlType.Q4_0 => new(GgmlType.Q8_0, &DotQ4_0V128, &DotQ4_0V128x4),
        GgmlType.Q5_0 => new(GgmlType.Q8_0, &DotQ5_0V128, &DotQ5_0V128x4),
        GgmlType.Q4_K => new(GgmlType.Q8_K, &DotQ4_KV128, &DotQ4_KV128x4),
        GgmlType.Q5_K => new(GgmlType.Q8_K, &DotQ5_KV128, &DotQ5_KV128x4),
        GgmlType.Q6_K => new(GgmlType.Q8_K, &DotQ6_KV128, &DotQ6_KV128x4),
        GgmlType.F16 => new(GgmlType.F16, &DotF16V128, &DotF16V128x4),
        _ => default,
    };

    // ---------------------------------------------------------------- integer helpers

    /// <summary>
    /// acc + the 16 products a[i]·b[i] of signed bytes, spread over 4 int32 lanes (which lane gets which product differs
    /// between the paths; the lane total is exact on all). SDOT; else smull/smull2 + sadalp; else widening multiplies.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<int> DotAcc(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b)
    {
        if (Dp.IsSupported) return Dp.DotProduct(acc, a, b);
        if (AdvSimd.IsSupported)
        {
            var lo = AdvSimd.MultiplyWideningLower(a.GetLower(), b.GetLower()); // (8) int16, |p| ≤ 128·128
            var hi = AdvSimd.MultiplyWideningUpper(a, b);
            return AdvSimd.AddPairwiseWideningAndAdd(AdvSimd.AddPairwiseWideningAndAdd(acc, lo), hi);
        }
        var (a0, a1) = Vector128.Widen(a);
        var (b0, b1) = Vector128.Widen(b);
        var (p0, p1) = Vector128.Widen(a0 * b0); // int16 products are exact: |p| ≤ 128·128
        var (p2, p3) = Vector128.Widen(a1 * b1);
        return acc + ((p0 + p1) + (p2 + p3));
    }

    /// <summary>Σ a[i]·b[i] over 32 signed bytes at a and b, as exact int32 lanes (sum them for the total).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Dot32(sbyte* a, sbyte* b) =>
        DotAcc(DotAcc(Vector128<int>.Zero, Vector128.Load(a), Vector128.Load(b)), Vector128.Load(a + 16), Vector128.Load(b + 16));

    // ---------------------------------------------------------------- Q8_0 x Q8_0

    /// <summary>Q8_0 · Q8_0, bit-identical to <see cref="DotQ8_0Scalar"/>; x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotQ8_0V128(byte* w, byte* x, int n)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 34;
            int s = Vector128.Sum(Dot32((sbyte*)(a + 2), (sbyte*)(x + i * 34 + 2)));
            sum += s * (Fp16(a) * dx[i]);
        }
        return sum;
    }

    /// <summary>Four activation rows (x, x + stride, ...) per pass over the weight row; each result as <see cref="DotQ8_0V128"/>.</summary>
    public static void DotQ8_0V128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        int nb = n / 32;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 34; int o = i * 34 + 2;
            var w0 = Vector128.Load((sbyte*)(a + 2)); var w1 = Vector128.Load((sbyte*)(a + 18));
            float dw = Fp16(a);
            s0 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, w0, Vector128.Load((sbyte*)(x + o))), w1, Vector128.Load((sbyte*)(x + o + 16)))) * (dw * d0[i]);
            s1 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, w0, Vector128.Load((sbyte*)(x1 + o))), w1, Vector128.Load((sbyte*)(x1 + o + 16)))) * (dw * d1[i]);
            s2 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, w0, Vector128.Load((sbyte*)(x2 + o))), w1, Vector128.Load((sbyte*)(x2 + o + 16)))) * (dw * d2[i]);
            s3 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, w0, Vector128.Load((sbyte*)(x3 + o))), w1, Vector128.Load((sbyte*)(x3 + o + 16)))) * (dw * d3[i]);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    // ---------------------------------------------------------------- Q4_0 x Q8_0

    /// <summary>The 32 values of a Q4_0 block's 16 nibble bytes at q as signed bytes − 8: (values 0..15, values 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Q4_0Values(byte* q)
    {
        var v = Vector128.Load(q);
        var eight = Vector128.Create((sbyte)8);
        return ((v & Vector128.Create((byte)0x0F)).AsSByte() - eight, Vector128.ShiftRightLogical(v, 4).AsSByte() - eight);
    }

    /// <summary>Q4_0 · Q8_0, bit-identical to <see cref="DotQ4_0Scalar"/>; x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotQ4_0V128(byte* w, byte* x, int n)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 18; sbyte* y = (sbyte*)(x + i * 34 + 2);
            var (lo, hi) = Q4_0Values(a + 2);
            int s = Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load(y)), hi, Vector128.Load(y + 16)));
            sum += s * (Fp16(a) * dx[i]);
        }
        return sum;
    }

    /// <summary>Four activation rows per pass over the weight row (nibbles unpacked once); each result as <see cref="DotQ4_0V128"/>.</summary>
    public static void DotQ4_0V128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        int nb = n / 32;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 18; int o = i * 34 + 2;
            var (lo, hi) = Q4_0Values(a + 2);
            float dw = Fp16(a);
            s0 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x + o))), hi, Vector128.Load((sbyte*)(x + o + 16)))) * (dw * d0[i]);
            s1 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x1 + o))), hi, Vector128.Load((sbyte*)(x1 + o + 16)))) * (dw * d1[i]);
            s2 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x2 + o))), hi, Vector128.Load((sbyte*)(x2 + o + 16)))) * (dw * d2[i]);
            s3 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x3 + o))), hi, Vector128.Load((sbyte*)(x3 + o + 16)))) * (dw * d3[i]);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    // ---------------------------------------------------------------- Q5_0 x Q8_0

    /// <summary>
    /// The 32 values of a Q5_0 block (22 bytes at a: f16 d, 32-bit qh, 16 nibble bytes) as signed bytes
    /// ((nibble | bit k of qh · 16) − 16): (values 0..15, values 16..31), as <see cref="DotQ5_0Scalar"/> forms them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<sbyte> Lo, Vector128<sbyte> Hi) Q5_0Values(byte* a)
    {
        var qh = Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(a + 2)).AsByte();
        var bits = Vector128.Create(0x8040201008040201UL).AsByte(); // byte k: bit k mod 8
        var b16 = Vector128.Create((byte)0x10);
        // byte k of each shuffle: byte k / 8 of qh (values 0..15 from qh bytes 0-1, 16..31 from bytes 2-3); constant
        // indices, so the JIT emits one tbl (ARM64) / pshufb (x64)
        var hLo = Vector128.Equals(Vector128.Shuffle(qh, Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)) & bits, bits) & b16;
        var hHi = Vector128.Equals(Vector128.Shuffle(qh, Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)) & bits, bits) & b16;
        var v = Vector128.Load(a + 6);
        var sixteen = Vector128.Create((sbyte)16);
        return (((v & Vector128.Create((byte)0x0F)) | hLo).AsSByte() - sixteen, (Vector128.ShiftRightLogical(v, 4) | hHi).AsSByte() - sixteen);
    }

    /// <summary>Q5_0 · Q8_0, bit-identical to <see cref="DotQ5_0Scalar"/>; x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotQ5_0V128(byte* w, byte* x, int n)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 22; sbyte* y = (sbyte*)(x + i * 34 + 2);
            var (lo, hi) = Q5_0Values(a);
            int s = Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load(y)), hi, Vector128.Load(y + 16)));
            sum += s * (Fp16(a) * dx[i]);
        }
        return sum;
    }

    /// <summary>Four activation rows per pass over the weight row (values unpacked once); each result as <see cref="DotQ5_0V128"/>.</summary>
    public static void DotQ5_0V128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        int nb = n / 32;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 22; int o = i * 34 + 2;
            var (lo, hi) = Q5_0Values(a);
            float dw = Fp16(a);
            s0 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x + o))), hi, Vector128.Load((sbyte*)(x + o + 16)))) * (dw * d0[i]);
            s1 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x1 + o))), hi, Vector128.Load((sbyte*)(x1 + o + 16)))) * (dw * d1[i]);
            s2 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x2 + o))), hi, Vector128.Load((sbyte*)(x2 + o + 16)))) * (dw * d2[i]);
            s3 += Vector128.Sum(DotAcc(DotAcc(Vector128<int>.Zero, lo, Vector128.Load((sbyte*)(x3 + o))), hi, Vector128.Load((sbyte*)(x3 + o + 16)))) * (dw * d3[i]);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    // ---------------------------------------------------------------- Q4_K x Q8_K

    /// <summary>
    /// The integer sums of one Q4_K block (144 bytes at a) against one Q8_K block (292 bytes at b), as
    /// <see cref="DotQ4_KScalar"/> forms them: sumi = Σ_j sc_j·Σ(q·y over sub-block j), summ = Σ_j m_j·(bsum_2j + bsum_2j+1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (int SumI, int SumM) Q4_KBlockSums(byte* a, byte* b)
    {
        var (scales, mins) = ScalesMinsK4Packed(a + 4);
        sbyte* y = (sbyte*)(b + 4);
        short* bsums = (short*)(b + 260);
        byte* q = a + 16;
        var mask = Vector128.Create((byte)0x0F);
        var acc = Vector128<int>.Zero;
        for (int c = 0; c < 4; c++)
        {
            // values 64c .. 64c+31: low nibbles of q[32c ..]; 64c+32 .. 64c+63: high nibbles
            var v0 = Vector128.Load(q + 32 * c); var v1 = Vector128.Load(q + 32 * c + 16);
            sbyte* yc = y + 64 * c;
            var lo = DotAcc(DotAcc(Vector128<int>.Zero, (v0 & mask).AsSByte(), Vector128.Load(yc)), (v1 & mask).AsSByte(), Vector128.Load(yc + 16));
            var hi = DotAcc(DotAcc(Vector128<int>.Zero, Vector128.ShiftRightLogical(v0, 4).AsSByte(), Vector128.Load(yc + 32)),
                Vector128.ShiftRightLogical(v1, 4).AsSByte(), Vector128.Load(yc + 48));
            acc += lo * Vector128.Create((int)(byte)(scales >> (16 * c))) + hi * Vector128.Create((int)(byte)(scales >> (16 * c + 8)));
        }
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += (byte)(mins >> (8 * j)) * (bsums[2 * j] + bsums[2 * j + 1]);
        return (Vector128.Sum(acc), summ);
    }

    /// <summary>Q4_K · Q8_K, bit-identical to <see cref="DotQ4_KScalar"/>.</summary>
    public static float DotQ4_KV128(byte* w, byte* x, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 144, b = x + i * 292;
            var (sumi, summ) = Q4_KBlockSums(a, b);
            float dy = Unsafe.ReadUnaligned<float>(b);
            sum += dy * Fp16(a) * sumi - dy * Fp16(a + 2) * summ;
        }
        return sum;
    }

    /// <summary>Four activation rows per call; each result as <see cref="DotQ4_KV128"/> (the weight block stays in L1 between them).</summary>
    public static void DotQ4_KV128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 144; int o = i * 292;
            float d = Fp16(a), dmin = Fp16(a + 2);
            s0 += Q4_KBlock(a, x + o, d, dmin);
            s1 += Q4_KBlock(a, x + stride + o, d, dmin);
            s2 += Q4_KBlock(a, x + 2 * stride + o, d, dmin);
            s3 += Q4_KBlock(a, x + 3 * stride + o, d, dmin);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q4_KBlock(byte* a, byte* b, float d, float dmin)
    {
        var (sumi, summ) = Q4_KBlockSums(a, b);
        float dy = Unsafe.ReadUnaligned<float>(b);
        return dy * d * sumi - dy * dmin * summ;
    }

    // ---------------------------------------------------------------- Q6_K x Q8_K

    /// <summary>Σ_s sc[s]·Σ(q·y over the 16 values of sub-block s) of one Q6_K block (210 bytes at a) against the Q8_K block at b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q6_KBlockSum(byte* a, byte* b)
    {
        sbyte* sc = (sbyte*)(a + 192);
        sbyte* y = (sbyte*)(b + 4);
        var m4 = Vector128.Create((byte)0x0F);
        var m2 = Vector128.Create((byte)0x03);
        var off = Vector128.Create((sbyte)32);
        var acc = Vector128<int>.Zero;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 2; k++)
            {
                // values 128h + 16k + l (l < 16) and +32, +64, +96: sub-blocks 8h + k, 8h + k + 2, 8h + k + 4, 8h + k + 6
                var L0 = Vector128.Load(a + 64 * h + 16 * k);
                var L1 = Vector128.Load(a + 64 * h + 32 + 16 * k);
                var H = Vector128.Load(a + 128 + 32 * h + 16 * k);
                var q1 = ((L0 & m4) | Vector128.ShiftLeft(H & m2, 4)).AsSByte() - off;
                var q2 = ((L1 & m4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(H, 2) & m2, 4)).AsSByte() - off;
                var q3 = (Vector128.ShiftRightLogical(L0, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(H, 4) & m2, 4)).AsSByte() - off;
                var q4 = (Vector128.ShiftRightLogical(L1, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(H, 6), 4)).AsSByte() - off;
                sbyte* yy = y + 128 * h + 16 * k;
                int s = 8 * h + k;
                acc += DotAcc(Vector128<int>.Zero, q1, Vector128.Load(yy)) * Vector128.Create((int)sc[s]);
                acc += DotAcc(Vector128<int>.Zero, q2, Vector128.Load(yy + 32)) * Vector128.Create((int)sc[s + 2]);
                acc += DotAcc(Vector128<int>.Zero, q3, Vector128.Load(yy + 64)) * Vector128.Create((int)sc[s + 4]);
                acc += DotAcc(Vector128<int>.Zero, q4, Vector128.Load(yy + 96)) * Vector128.Create((int)sc[s + 6]);
            }
        return Vector128.Sum(acc);
    }

    /// <summary>Q6_K · Q8_K, bit-identical to <see cref="DotQ6_KScalar"/>.</summary>
    public static float DotQ6_KV128(byte* w, byte* x, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210, b = x + i * 292;
            sum += Unsafe.ReadUnaligned<float>(b) * Fp16(a + 208) * Q6_KBlockSum(a, b);
        }
        return sum;
    }

    /// <summary>Four activation rows per call; each result as <see cref="DotQ6_KV128"/>.</summary>
    public static void DotQ6_KV128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210; int o = i * 292;
            float d = Fp16(a + 208);
            s0 += Unsafe.ReadUnaligned<float>(x + o) * d * Q6_KBlockSum(a, x + o);
            s1 += Unsafe.ReadUnaligned<float>(x + stride + o) * d * Q6_KBlockSum(a, x + stride + o);
            s2 += Unsafe.ReadUnaligned<float>(x + 2 * stride + o) * d * Q6_KBlockSum(a, x + 2 * stride + o);
            s3 += Unsafe.ReadUnaligned<float>(x + 3 * stride + o) * d * Q6_KBlockSum(a, x + 3 * stride + o);
        }
        result[0] = s0; result[1] = s1; result[2] = s2; result[3] = s3;
    }

    // ---------------------------------------------------------------- Q5_K x Q8_K

    /// <summary>The 256 5-bit values (0..31) of the Q5_K block at a into q, in value order (as <see cref="DotQ5_KScalar"/> unpacks them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5_KValues(byte* a, sbyte* q)
    {
        byte* qh = a + 16, qs = a + 48;
        var mask = Vector128.Create((byte)0x0F); var one = Vector128.Create((byte)1);
        for (int k = 0; k < 2; k++)
        {
            var h = Vector128.Load(qh + 16 * k);
            for (int c = 0; c < 4; c++)
            {
                var v = Vector128.Load(qs + 32 * c + 16 * k);
                var lo = (v & mask) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h, 2 * c) & one, 4);
                var hi = Vector128.ShiftRightLogical(v, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h, 2 * c + 1) & one, 4);
                lo.AsSByte().Store(q + 64 * c + 16 * k);
                hi.AsSByte().Store(q + 64 * c + 32 + 16 * k);
            }
        }
    }

    /// <summary>
    /// aux32[l] = Σ_j sc_j·Σ_g y[32j + 8g + l]·q[32j + 8g + l] of one Q5_K block (values q, scales at sc) against Q8_K values y,
    /// lane l = value index mod 8, as (lanes 0-3, lanes 4-7): the scalar reference's integers exactly.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int> Lo, Vector128<int> Hi) Q5_KLanes(sbyte* q, sbyte* y, byte* sc)
    {
        var lo = Vector128<int>.Zero; var hi = Vector128<int>.Zero;
        for (int j = 0; j < 8; j++)
        {
            // 4 groups of 8 values, each product |q·y| ≤ 31·128: their lane sums fit int16 (≤ 15872)
            var (q0, q1) = Vector128.Widen(Vector128.Load(q + 32 * j));
            var (y0, y1) = Vector128.Widen(Vector128.Load(y + 32 * j));
            var (q2, q3) = Vector128.Widen(Vector128.Load(q + 32 * j + 16));
            var (y2, y3) = Vector128.Widen(Vector128.Load(y + 32 * j + 16));
            var p = (q0 * y0 + q1 * y1) + (q2 * y2 + q3 * y3);
            var (p0, p1) = Vector128.Widen(p);
            var s = Vector128.Create((int)sc[j]);
            lo += p0 * s; hi += p1 * s;
        }
        return (lo, hi);
    }

    /// <summary>Σ_j bsum_j·m_(j/2) of a Q8_K block b (the scalar reference's mins term).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Q5_KMins(byte* b, byte* m)
    {
        short* bsums = (short*)(b + 260);
        int summ = 0;
        for (int j = 0; j < 16; j++) summ += bsums[j] * m[j / 2];
        return summ;
    }

    /// <summary>
    /// Q5_K · Q8_K, bit-identical to <see cref="DotQ5_KScalar"/>: the same 8 float lane sums d·aux32[l] (fused), the mins
    /// term fused into one float, the lanes added in order at the end.
    /// </summary>
    public static float DotQ5_KV128(byte* w, byte* x, int n)
    {
        byte* sc = stackalloc byte[8]; byte* m = stackalloc byte[8];
        sbyte* q = stackalloc sbyte[256];
        var sumsLo = Vector128<float>.Zero; var sumsHi = Vector128<float>.Zero;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes, b = x + i * Q8KBytes;
            Q5_KValues(a, q);
            ScalesMinsK4(a + 4, sc, m);
            int summ = Q5_KMins(b, m);
            var (lo, hi) = Q5_KLanes(q, (sbyte*)(b + 4), sc);
            float dy = Unsafe.ReadUnaligned<float>(b);
            var d = Vector128.Create(Fp16(a) * dy);
            sumsLo = Vector128.FusedMultiplyAdd(d, Vector128.ConvertToSingle(lo), sumsLo);
            sumsHi = Vector128.FusedMultiplyAdd(d, Vector128.ConvertToSingle(hi), sumsHi);
            float dmin = Fp16(a + 2) * dy;
            sumf = MathF.FusedMultiplyAdd(-dmin, summ, sumf);
        }
        return Q5_KFinish(sumf, sumsLo, sumsHi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q5_KFinish(float sumf, Vector128<float> lo, Vector128<float> hi)
    {
        for (int l = 0; l < 4; l++) sumf += lo[l];
        for (int l = 0; l < 4; l++) sumf += hi[l];
        return sumf;
    }

    /// <summary>Four activation rows per call, the weight block unpacked once; each result as <see cref="DotQ5_KV128"/>.</summary>
    public static void DotQ5_KV128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        byte* sc = stackalloc byte[8]; byte* m = stackalloc byte[8];
        sbyte* q = stackalloc sbyte[256];
        var lo0 = Vector128<float>.Zero; var hi0 = Vector128<float>.Zero; var lo1 = Vector128<float>.Zero; var hi1 = Vector128<float>.Zero;
        var lo2 = Vector128<float>.Zero; var hi2 = Vector128<float>.Zero; var lo3 = Vector128<float>.Zero; var hi3 = Vector128<float>.Zero;
        float f0 = 0, f1 = 0, f2 = 0, f3 = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes; int o = i * Q8KBytes;
            Q5_KValues(a, q);
            ScalesMinsK4(a + 4, sc, m);
            float dw = Fp16(a), dmw = Fp16(a + 2);
            Q5_KToken(q, sc, m, dw, dmw, x + o, ref lo0, ref hi0, ref f0);
            Q5_KToken(q, sc, m, dw, dmw, x + stride + o, ref lo1, ref hi1, ref f1);
            Q5_KToken(q, sc, m, dw, dmw, x + 2 * stride + o, ref lo2, ref hi2, ref f2);
            Q5_KToken(q, sc, m, dw, dmw, x + 3 * stride + o, ref lo3, ref hi3, ref f3);
        }
        result[0] = Q5_KFinish(f0, lo0, hi0); result[1] = Q5_KFinish(f1, lo1, hi1);
        result[2] = Q5_KFinish(f2, lo2, hi2); result[3] = Q5_KFinish(f3, lo3, hi3);
    }

    /// <summary>One unpacked Q5_K block against one token's Q8_K block b: the float steps of <see cref="DotQ5_KV128"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5_KToken(sbyte* q, byte* sc, byte* m, float dw, float dmw, byte* b, ref Vector128<float> sumsLo, ref Vector128<float> sumsHi, ref float sumf)
    {
        int summ = Q5_KMins(b, m);
        var (lo, hi) = Q5_KLanes(q, (sbyte*)(b + 4), sc);
        float dy = Unsafe.ReadUnaligned<float>(b);
        var d = Vector128.Create(dw * dy);
        sumsLo = Vector128.FusedMultiplyAdd(d, Vector128.ConvertToSingle(lo), sumsLo);
        sumsHi = Vector128.FusedMultiplyAdd(d, Vector128.ConvertToSingle(hi), sumsHi);
        sumf = MathF.FusedMultiplyAdd(-(dmw * dy), summ, sumf);
    }

    // ---------------------------------------------------------------- F16 x F32

    /// <summary>4 f16 values (sign-extended to int32) as F32: the bit trick of <see cref="F16ToF32(Vector256{int})"/>, 128 bits wide.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> F16ToF32(Vector128<int> h) =>
        (Vector128.ShiftLeft(h, 13) & Vector128.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector128.Create(BitConverter.UInt32BitsToSingle(0x77800000));

    /// <summary>F16 weights widened to F32 in registers, 4 FMA chains of 4 lanes; the tail per element. Reassociates the float sum.</summary>
    public static float DotF16V128(byte* w, byte* x, int n)
    {
        short* h = (short*)w; float* y = (float*)x;
        var acc0 = Vector128<float>.Zero; var acc1 = Vector128<float>.Zero; var acc2 = Vector128<float>.Zero; var acc3 = Vector128<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var (a, b) = Vector128.Widen(Vector128.Load(h + i));
            var (c, d) = Vector128.Widen(Vector128.Load(h + i + 8));
            acc0 = Vector128.FusedMultiplyAdd(F16ToF32(a), Vector128.Load(y + i), acc0);
            acc1 = Vector128.FusedMultiplyAdd(F16ToF32(b), Vector128.Load(y + i + 4), acc1);
            acc2 = Vector128.FusedMultiplyAdd(F16ToF32(c), Vector128.Load(y + i + 8), acc2);
            acc3 = Vector128.FusedMultiplyAdd(F16ToF32(d), Vector128.Load(y + i + 12), acc3);
        }
        float sum = Vector128.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < n; i++) sum += HalfConvert.Fp16ToFp32((ushort)h[i]) * y[i];
        return sum;
    }

    /// <summary>Four activation rows (F32, stride bytes apart) per pass over the F16 weight row; each as <see cref="DotF16V128"/>.</summary>
    public static void DotF16V128x4(byte* w, byte* x, int stride, int n, float* result)
    {
        for (int t = 0; t < 4; t++) result[t] = DotF16V128(w, x + t * stride, n);
    }

    // ---------------------------------------------------------------- activation quantizers

    /// <summary><see cref="QuantizeQ8_0Scalar"/> with 128-bit vectors: the same bytes (max is exact, round-half-even as MathF.Round).</summary>
    public static void QuantizeQ8_0V128(float* x, byte* dst, int n)
    {
        var signMask = Vector128.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < n / 32; i++)
        {
            float* p = x + i * 32;
            byte* b = dst + i * 34;
            var v0 = Vector128.Load(p); var v1 = Vector128.Load(p + 4); var v2 = Vector128.Load(p + 8); var v3 = Vector128.Load(p + 12);
            var v4 = Vector128.Load(p + 16); var v5 = Vector128.Load(p + 20); var v6 = Vector128.Load(p + 24); var v7 = Vector128.Load(p + 28);
            var m = Vector128.Max(Vector128.Max(Vector128.Max(v0 & signMask, v1 & signMask), Vector128.Max(v2 & signMask, v3 & signMask)),
                Vector128.Max(Vector128.Max(v4 & signMask, v5 & signMask), Vector128.Max(v6 & signMask, v7 & signMask)));
            float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            float d = amax / 127f;
            float id = amax != 0 ? 127f / amax : 0f;
            HalfConvert.WriteFp16(b, d);
            var mul = Vector128.Create(id);
            var s0 = Vector128.Narrow(Vector128.ConvertToInt32(Vector128.Round(v0 * mul)), Vector128.ConvertToInt32(Vector128.Round(v1 * mul)));
            var s1 = Vector128.Narrow(Vector128.ConvertToInt32(Vector128.Round(v2 * mul)), Vector128.ConvertToInt32(Vector128.Round(v3 * mul)));
            var s2 = Vector128.Narrow(Vector128.ConvertToInt32(Vector128.Round(v4 * mul)), Vector128.ConvertToInt32(Vector128.Round(v5 * mul)));
            var s3 = Vector128.Narrow(Vector128.ConvertToInt32(Vector128.Round(v6 * mul)), Vector128.ConvertToInt32(Vector128.Round(v7 * mul)));
            Vector128.Narrow(s0, s1).Store((sbyte*)(b + 2));
            Vector128.Narrow(s2, s3).Store((sbyte*)(b + 18));
        }
    }

    /// <summary>Q8_K activations with 128-bit vectors: the same bytes as BlockQ8_K.Quantize (ggml's quantize_row_q8_K_ref).</summary>
    public static void QuantizeQ8_KV128(float* x, byte* dst, int n)
    {
        var signMask = Vector128.Create(0x7FFFFFFF).AsSingle();
        for (int i = 0; i < n / 256; i++)
        {
            float* p = x + i * 256;
            byte* b = dst + i * 292;
            var m = Vector128<float>.Zero;
            for (int j = 0; j < 256; j += 4) m = Vector128.Max(m, Vector128.Load(p + j) & signMask);
            float amax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
            if (amax == 0) { new Span<byte>(b, 292).Clear(); continue; }
            float max = 0;
            for (int j = 0; j < 256; j++) if (MathF.Abs(p[j]) == amax) { max = p[j]; break; } // the first, as the reference's strict '>'
            float iscale = -127f / max;
            var vs = Vector128.Create(iscale);
            var lim = Vector128.Create(127);
            sbyte* qs = (sbyte*)(b + 4);
            short* bs = (short*)(b + 260);
            for (int j = 0; j < 256; j += 16)
            {
                var i0 = Vector128.Min(lim, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(p + j) * vs)));
                var i1 = Vector128.Min(lim, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(p + j + 4) * vs)));
                var i2 = Vector128.Min(lim, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(p + j + 8) * vs)));
                var i3 = Vector128.Min(lim, Vector128.ConvertToInt32(Vector128.Round(Vector128.Load(p + j + 12) * vs)));
                var q = Vector128.Narrow(Vector128.Narrow(i0, i1), Vector128.Narrow(i2, i3));
                q.Store(qs + j);
                var (lo, hi) = Vector128.Widen(q);
                bs[j / 16] = Vector128.Sum(lo + hi);
            }
            Unsafe.WriteUnaligned(b, 1 / iscale);
        }
    }
}
