using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Multi-token kernels (prefill, batched decode): one weight row against 4 activation rows x, x + stride,
/// x + 2·stride, x + 3·stride in one pass over the weight row. Each weight block is loaded and unpacked once
/// (nibbles, 5th/6th bits, scales and mins) and multiplied with the 4 activation blocks; result: (4).
/// The integer sums per block and the float operations per token are exactly those of the single-token AVX2 kernels,
/// so a token's logits do not depend on how many tokens share its batch (same seed, same output, alone or batched;
/// tested bit for bit). Scalar reference: <see cref="Dot4Reference"/> (the scalar single-token kernel, once per row).
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>Use the 4-token kernels in <see cref="WeightMatrix.MatMul"/> (tests turn this off to compare).</summary>
    public static bool UseMultiToken { get; set; } = true;

    /// <summary>Scalar reference of every 4-token kernel: the single-token <paramref name="dot"/> on each of the 4 rows.</summary>
    public static void Dot4Reference(delegate*<byte*, byte*, int, float> dot, byte* w, byte* x, int stride, int n, float* result)
    {
        for (int k = 0; k < 4; k++) result[k] = dot(w, x + (long)k * stride, n);
    }

    /// <summary>acc + d_w·d_x·Σ w·y over one block of 32 signed weights w (|w| = <paramref name="ax"/>) and activations y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedBlock(Vector256<float> acc, Vector256<byte> ax, Vector256<sbyte> wv, sbyte* y, Vector256<float> dw, float dx) =>
        Fma.MultiplyAdd(dw * Vector256.Create(dx), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(Vector256.Load(y), wv))), acc);

    // ---------------------------------------------------------------- Q4_0 x Q8_0, 4 tokens

    /// <summary>
    /// Q4_0 weights (18-byte blocks) against 4 Q8_0 activation rows (with their F32 tails): the nibbles are unpacked,
    /// offset by −8 and their |w| taken once per block; the activation scales come from the tails as F32.
    /// </summary>
    public static void DotQ4_0Avx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector256.Create((sbyte)8);
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        int nb = n / 32;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 18; int o = i * 34;
            var q = Vector128.Load(a + 2);
            var wv = Vector256.Create(q & mask, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask).AsSByte() - eight; // (32) in [-8, 7]
            var ax = Avx2.Abs(wv);
            var dw = Vector256.Create(Fp16(a));
            acc0 = SignedBlock(acc0, ax, wv, (sbyte*)(x + o + 2), dw, d0[i]);
            acc1 = SignedBlock(acc1, ax, wv, (sbyte*)(x1 + o + 2), dw, d1[i]);
            acc2 = SignedBlock(acc2, ax, wv, (sbyte*)(x2 + o + 2), dw, d2[i]);
            acc3 = SignedBlock(acc3, ax, wv, (sbyte*)(x3 + o + 2), dw, d3[i]);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    // ---------------------------------------------------------------- Q5_0 x Q8_0, 4 tokens

    /// <summary>Q5_0 weights (22-byte blocks) against 4 Q8_0 activation rows: the signed 5-bit values are built once per block.</summary>
    public static void DotQ5_0Avx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        var shuf = Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        var bits = Vector256.Create(0x8040201008040201UL).AsByte();
        var f0 = Vector256.Create((byte)0xF0);
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        int nb = n / 32;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 22; int o = i * 34;
            var q = Vector128.Load(a + 6);
            var lo = Vector256.Create(q & mask, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask);
            var hv = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(a + 2)).AsByte(), shuf);
            var wv = (lo | Vector256.AndNot(f0, Vector256.Equals(hv & bits, bits))).AsSByte(); // (32) in [-16, 15]
            var ax = Avx2.Abs(wv);
            var dw = Vector256.Create(Fp16(a));
            acc0 = SignedBlock(acc0, ax, wv, (sbyte*)(x + o + 2), dw, d0[i]);
            acc1 = SignedBlock(acc1, ax, wv, (sbyte*)(x1 + o + 2), dw, d1[i]);
            acc2 = SignedBlock(acc2, ax, wv, (sbyte*)(x2 + o + 2), dw, d2[i]);
            acc3 = SignedBlock(acc3, ax, wv, (sbyte*)(x3 + o + 2), dw, d3[i]);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    // ---------------------------------------------------------------- Q4_K x Q8_K, 4 tokens

    /// <summary>Σ over 2 sub-blocks of 32: lo·y[0..32]·scLo + hi·y[32..64]·scHi, as 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> K4Pair(Vector256<byte> lo, Vector256<byte> hi, sbyte* y, Vector256<short> scLo, Vector256<short> scHi) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y)), scLo)
        + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + 32)), scHi);

    /// <summary>
    /// Q4_K weights (144-byte super-blocks of 256) against 4 Q8_K activation rows (292-byte blocks): the 6-bit scales
    /// and mins and the nibbles are unpacked once per block. The mins term d_y·dmin·Σ m_j·bsum_j goes into the same
    /// float accumulator as a vector (no horizontal sum per block).
    /// </summary>
    public static void DotQ4_KAvx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x0F);
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 144; int o = i * 292;
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            float d = Fp16(a), dmin = -Fp16(a + 2);
            var mm = MinsPerBsum(mins);
            var sc = ScalesBothLanes(scales).AsByte(); // (16) int16: s0..s7 twice
            byte* q = a + 16;
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var q4 = Vector256.Load(q + 32 * c);
                var lo = q4 & mask;
                var hi = Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask;
                // broadcast scales 2c and 2c+1 (pshufb within each 128-bit half, which both hold s0..s7)
                var scLo = Avx2.Shuffle(sc, Vector256.Create((ushort)(4 * c | (4 * c + 1) << 8)).AsByte()).AsInt16();
                var scHi = Avx2.Shuffle(sc, Vector256.Create((ushort)((4 * c + 2) | (4 * c + 3) << 8)).AsByte()).AsInt16();
                int yo = 64 * c;
                s0 += K4Pair(lo, hi, y0 + yo, scLo, scHi);
                s1 += K4Pair(lo, hi, y1 + yo, scLo, scHi);
                s2 += K4Pair(lo, hi, y2 + yo, scLo, scHi);
                s3 += K4Pair(lo, hi, y3 + yo, scLo, scHi);
            }
            acc0 = K4Block(acc0, x + o, d, dmin, s0, mm);
            acc1 = K4Block(acc1, x1 + o, d, dmin, s1, mm);
            acc2 = K4Block(acc2, x2 + o, d, dmin, s2, mm);
            acc3 = K4Block(acc3, x3 + o, d, dmin, s3, mm);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    /// <summary>acc + d_y·d·sumi − d_y·dmin·(bsums·mins), with <paramref name="negDmin"/> = −dmin; b: the Q8_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> K4Block(Vector256<float> acc, byte* b, float d, float negDmin, Vector256<int> sumi, Vector256<short> mins)
    {
        float dy = Unsafe.ReadUnaligned<float>(b);
        acc = Fma.MultiplyAdd(Vector256.Create(dy * d), Vector256.ConvertToSingle(sumi), acc);
        var summ = Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(b + 260)), mins);
        return Fma.MultiplyAdd(Vector256.Create(dy * negDmin), Vector256.ConvertToSingle(summ), acc);
    }

    // ---------------------------------------------------------------- Q6_K x Q8_K, 4 tokens

    /// <summary>
    /// Q6_K weights (210-byte super-blocks of 256) against 4 Q8_K activation rows: each group of 32 6-bit values is
    /// built once and multiplied with the 4 rows; the −32 offset is 32·Σ sc·bsum, subtracted as a vector.
    /// </summary>
    public static void DotQ6_KAvx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((byte)0x03);
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210; int o = i * 292;
            sbyte* sc = (sbyte*)(a + 192);
            var scv = Vector256.WidenLower(Vector256.Create(Vector128.Load(sc), Vector128<sbyte>.Zero)); // (16) int16
            // start from −32·Σ_s sc[s]·bsum[s] (8 lanes of pair sums)
            var s0 = Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(x + o + 260)), scv), 5);
            var s1 = Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(x1 + o + 260)), scv), 5);
            var s2 = Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(x2 + o + 260)), scv), 5);
            var s3 = Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(x3 + o + 260)), scv), 5);
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            for (int h = 0; h < 2; h++)
            {
                var A = Vector256.Load(a + 64 * h);
                var B = Vector256.Load(a + 64 * h + 32);
                var H16 = Vector256.Load(a + 128 + 32 * h).AsUInt16();
                sbyte* ss = sc + 8 * h;
                int yo = 128 * h;
                // the 4 groups of 32 6-bit values (0..63): low nibbles of A, B, high nibbles of A, B | 2 bits of H each
                var q = (A & m4) | Vector256.ShiftLeft((H16.AsByte() & m2).AsUInt16(), 4).AsByte();
                var sj = Scale2(ss[0], ss[1]);
                s0 += Q6Mul(q, y0 + yo, sj); s1 += Q6Mul(q, y1 + yo, sj); s2 += Q6Mul(q, y2 + yo, sj); s3 += Q6Mul(q, y3 + yo, sj);
                q = (B & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 2).AsByte() & m2).AsUInt16(), 4).AsByte();
                sj = Scale2(ss[2], ss[3]);
                s0 += Q6Mul(q, y0 + yo + 32, sj); s1 += Q6Mul(q, y1 + yo + 32, sj); s2 += Q6Mul(q, y2 + yo + 32, sj); s3 += Q6Mul(q, y3 + yo + 32, sj);
                q = (Vector256.ShiftRightLogical(A.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 4).AsByte() & m2).AsUInt16(), 4).AsByte();
                sj = Scale2(ss[4], ss[5]);
                s0 += Q6Mul(q, y0 + yo + 64, sj); s1 += Q6Mul(q, y1 + yo + 64, sj); s2 += Q6Mul(q, y2 + yo + 64, sj); s3 += Q6Mul(q, y3 + yo + 64, sj);
                q = (Vector256.ShiftRightLogical(B.AsUInt16(), 4).AsByte() & m4) | Vector256.ShiftLeft((Vector256.ShiftRightLogical(H16, 6).AsByte() & m2).AsUInt16(), 4).AsByte();
                sj = Scale2(ss[6], ss[7]);
                s0 += Q6Mul(q, y0 + yo + 96, sj); s1 += Q6Mul(q, y1 + yo + 96, sj); s2 += Q6Mul(q, y2 + yo + 96, sj); s3 += Q6Mul(q, y3 + yo + 96, sj);
            }
            float d = Fp16(a + 208);
            acc0 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x + o) * d), Vector256.ConvertToSingle(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x1 + o) * d), Vector256.ConvertToSingle(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x2 + o) * d), Vector256.ConvertToSingle(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x3 + o) * d), Vector256.ConvertToSingle(s3), acc3);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    /// <summary>Σ q·y[0..32], each 16-value half scaled by its lane of <paramref name="scales"/>, as 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Mul(Vector256<byte> q, sbyte* y, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(y)), scales);

    // ---------------------------------------------------------------- F16 x F32, 4 tokens

    /// <summary>F16 weights widened to F32 once per 16 values and FMA'd with 4 activation rows (F32, rounded to F16).</summary>
    public static void DotF16Avx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        short* h = (short*)w;
        float* y0 = (float*)x, y1 = (float*)(x + stride), y2 = (float*)(x + 2 * stride), y3 = (float*)(x + 3 * stride);
        var a0 = Vector256<float>.Zero; var b0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var b1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero; var b2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero; var b3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            if ((i & 31) == 0) Sse.Prefetch0(h + i + PrefetchF16);
            var (lo, hi) = Vector256.Widen(Vector256.Load(h + i));
            var fa = F16ToF32(lo); var fb = F16ToF32(hi);
            a0 = Fma.MultiplyAdd(fa, Vector256.Load(y0 + i), a0); b0 = Fma.MultiplyAdd(fb, Vector256.Load(y0 + i + 8), b0);
            a1 = Fma.MultiplyAdd(fa, Vector256.Load(y1 + i), a1); b1 = Fma.MultiplyAdd(fb, Vector256.Load(y1 + i + 8), b1);
            a2 = Fma.MultiplyAdd(fa, Vector256.Load(y2 + i), a2); b2 = Fma.MultiplyAdd(fb, Vector256.Load(y2 + i + 8), b2);
            a3 = Fma.MultiplyAdd(fa, Vector256.Load(y3 + i), a3); b3 = Fma.MultiplyAdd(fb, Vector256.Load(y3 + i + 8), b3);
        }
        float r0 = Hsum(a0 + b0), r1 = Hsum(a1 + b1), r2 = Hsum(a2 + b2), r3 = Hsum(a3 + b3);
        for (; i < n; i++)
        {
            float wi = HalfConvert.Fp16ToFp32((ushort)h[i]);
            r0 += wi * y0[i]; r1 += wi * y1[i]; r2 += wi * y2[i]; r3 += wi * y3[i];
        }
        result[0] = r0; result[1] = r1; result[2] = r2; result[3] = r3;
    }
}
