using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// AVX-512 (F/BW) row kernels of the K-quants (Q6_K so far) against Q8_K activations. .NET 10 has no 512-bit VNNI for
/// CPUs without AVX10.2, so the byte products are vpmaddubsw / vpmaddwd as in the AVX2 kernels, 64 bytes at a time.
/// Each 512-bit integer sum holds two of the AVX2 kernel's 256-bit sums (lanes 0-7 one group of 32 values, lanes 8-15
/// the next); its two halves are added (exact) into the very int32 lanes of the AVX2 kernel before the same float steps,
/// so every result is bit for bit the one of <see cref="DotQ6_KAvx2"/> (tested), in the 1-, 4- and 8-token kernels alike.
/// <see cref="For"/> takes the 4- and 8-token ones (prefill: 1.6-1.7× the AVX2 kernels' CPU time per MatMul on a 2048×8192
/// Q6_K matrix) and keeps the AVX2 single-token kernel (decode is memory-bound: the AVX-512 one measured no faster), which
/// gives the same bits, so a token's result still does not depend on its batch.
/// </summary>
public static unsafe partial class QuantDot
{
    // ---------------------------------------------------------------- Q6_K x Q8_K, AVX-512

    /// <summary>vpermw controls: int16 scale lane 8h + 4p + k broadcast over 128-bit lane k (k = 0..3), for half h, part p.</summary>
    private static readonly Vector512<short> q6Perm00 = Q6Perm(0), q6Perm01 = Q6Perm(4), q6Perm10 = Q6Perm(8), q6Perm11 = Q6Perm(12);

    private static Vector512<short> Q6Perm(int first)
    {
        var e = new short[32];
        for (int i = 0; i < 32; i++) e[i] = (short)(first + i / 8);
        return Vector512.Create(e);
    }

    /// <summary>Per 16-bit word: shift the high 256 bits right by 2 (the next 2-bit field of qh), the low ones by 0.</summary>
    private static readonly Vector512<ushort> q6Shift = Vector512.Create(Vector256<ushort>.Zero, Vector256.Create((ushort)2));

    /// <summary>
    /// The 128 6-bit values (0..63) of half h of a Q6_K block a as two registers: q12 = (values 128h + 0..31, 32..63),
    /// q34 = (64..95, 96..127), i.e. the AVX2 kernel's q1, q2 and q3, q4 side by side.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte> Q12, Vector512<byte> Q34) Q6Half(byte* a, int h)
    {
        var m4 = Vector512.Create((byte)0x0F); var m2 = Vector512.Create((byte)0x03);
        var v = Vector512.Load(a + 64 * h);                                              // (A, B): ql[64h .. 64h + 64]
        // (H, H). Not Avx512F.BroadcastVector256ToVector512(ulong*): on .NET 10.0 here it returned other bytes than those at the address
        var h256 = Vector256.Load(a + 128 + 32 * h);
        var hh = Vector512.Create(h256, h256).AsUInt16();
        var hs = Avx512BW.ShiftRightLogicalVariable(hh, q6Shift);                         // (H, H >> 2), per 16 bits
        // 16-bit shifts: the bits that cross into a neighbouring byte are masked off
        var q12 = (v & m4) | Vector512.ShiftLeft((hs.AsByte() & m2).AsUInt16(), 4).AsByte();
        var q34 = (Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m4)
                  | Vector512.ShiftLeft((Vector512.ShiftRightLogical(hs, 4).AsByte() & m2).AsUInt16(), 4).AsByte();
        return (q12, q34);
    }

    /// <summary>Σ q·y over 64 values (y: 64 activations) scaled per 16 values (<paramref name="sc"/>), as 16 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6Mul512(Vector512<byte> q, sbyte* y, Vector512<short> sc) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q, Vector512.Load(y)), sc);

    /// <summary>The −32 offset of a Q6_K block as the AVX2 kernel keeps it: −32·Σ sc·bsum in 8 lanes of pair sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Offset(Vector256<short> scv, byte* b) =>
        Vector256.ShiftLeft(Vector256<int>.Zero - Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(b + 260)), scv), 5);

    /// <summary>The 16 int32 lanes of a 512-bit sum folded into the AVX2 kernel's 8 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Fold(Vector512<int> v) => v.GetLower() + v.GetUpper();

    /// <summary>AVX-512 Q6_K · Q8_K: the values of a block 64 at a time; the float steps of <see cref="DotQ6_KAvx2"/>.</summary>
    public static float DotQ6_KAvx512(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210, b = x + i * 292;
            var sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(a + 192))); // (16) int16
            var sc = Vector512.Create(sc16, sc16);
            sbyte* y = (sbyte*)(b + 4);
            var (q12, q34) = Q6Half(a, 0);
            var s = Q6Mul512(q12, y, Avx512BW.PermuteVar32x16(sc, q6Perm00)) + Q6Mul512(q34, y + 64, Avx512BW.PermuteVar32x16(sc, q6Perm01));
            (q12, q34) = Q6Half(a, 1);
            s += Q6Mul512(q12, y + 128, Avx512BW.PermuteVar32x16(sc, q6Perm10)) + Q6Mul512(q34, y + 192, Avx512BW.PermuteVar32x16(sc, q6Perm11));
            var sumi = Q6Offset(sc16, b) + Fold(s);
            acc = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(b) * Fp16(a + 208)), Vector256.ConvertToSingle(sumi), acc);
        }
        return Hsum(acc);
    }

    /// <summary>AVX-512 Q6_K against 4 Q8_K activation rows: each block unpacked once; per token the steps of <see cref="DotQ6_KAvx512"/>.</summary>
    public static void DotQ6_KAvx512x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210; int o = i * 292;
            var sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(a + 192)));
            var sc = Vector512.Create(sc16, sc16);
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            var (q12, q34) = Q6Half(a, 0);
            var p12 = Avx512BW.PermuteVar32x16(sc, q6Perm00); var p34 = Avx512BW.PermuteVar32x16(sc, q6Perm01);
            var s0 = Q6Mul512(q12, y0, p12) + Q6Mul512(q34, y0 + 64, p34);
            var s1 = Q6Mul512(q12, y1, p12) + Q6Mul512(q34, y1 + 64, p34);
            var s2 = Q6Mul512(q12, y2, p12) + Q6Mul512(q34, y2 + 64, p34);
            var s3 = Q6Mul512(q12, y3, p12) + Q6Mul512(q34, y3 + 64, p34);
            (q12, q34) = Q6Half(a, 1);
            p12 = Avx512BW.PermuteVar32x16(sc, q6Perm10); p34 = Avx512BW.PermuteVar32x16(sc, q6Perm11);
            s0 += Q6Mul512(q12, y0 + 128, p12) + Q6Mul512(q34, y0 + 192, p34);
            s1 += Q6Mul512(q12, y1 + 128, p12) + Q6Mul512(q34, y1 + 192, p34);
            s2 += Q6Mul512(q12, y2 + 128, p12) + Q6Mul512(q34, y2 + 192, p34);
            s3 += Q6Mul512(q12, y3 + 128, p12) + Q6Mul512(q34, y3 + 192, p34);
            float d = Fp16(a + 208);
            acc0 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x + o) * d), Vector256.ConvertToSingle(Q6Offset(sc16, x + o) + Fold(s0)), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x1 + o) * d), Vector256.ConvertToSingle(Q6Offset(sc16, x1 + o) + Fold(s1)), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x2 + o) * d), Vector256.ConvertToSingle(Q6Offset(sc16, x2 + o) + Fold(s2)), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(x3 + o) * d), Vector256.ConvertToSingle(Q6Offset(sc16, x3 + o) + Fold(s3)), acc3);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }
    /// <summary>One token's share of a Q6_K half-block: Σ over its 128 values, 16 int32 lanes (q12, q34 with their scales).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6Tok(Vector512<byte> q12, Vector512<byte> q34, Vector512<short> p12, Vector512<short> p34, sbyte* y) =>
        Q6Mul512(q12, y, p12) + Q6Mul512(q34, y + 64, p34);

    /// <summary>acc + (d_y·d)·float(offset + folded sum): the float step of <see cref="DotQ6_KAvx512"/> for one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q6Step(Vector256<float> acc, Vector512<int> s, Vector256<short> sc16, byte* b, float d) =>
        Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>(b) * d), Vector256.ConvertToSingle(Q6Offset(sc16, b) + Fold(s)), acc);

    /// <summary>
    /// AVX-512 Q6_K against 8 Q8_K activation rows (prefill): each block is unpacked (bits, scales) once for 8 tokens;
    /// per token the steps of <see cref="DotQ6_KAvx512"/> (bit for bit). result: (8).
    /// </summary>
    public static void DotQ6_KAvx512x8(byte* w, byte* x, int stride, int n, float* result)
    {
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        var a4 = Vector256<float>.Zero; var a5 = Vector256<float>.Zero; var a6 = Vector256<float>.Zero; var a7 = Vector256<float>.Zero;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride, x4 = x + 4 * stride, x5 = x + 5 * stride, x6 = x + 6 * stride, x7 = x + 7 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * 210; int o = i * 292, oy = o + 4;
            var sc16 = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(a + 192)));
            var sc = Vector512.Create(sc16, sc16);
            var (q12, q34) = Q6Half(a, 0);
            var p12 = Avx512BW.PermuteVar32x16(sc, q6Perm00); var p34 = Avx512BW.PermuteVar32x16(sc, q6Perm01);
            var s0 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x + oy)); var s1 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x1 + oy));
            var s2 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x2 + oy)); var s3 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x3 + oy));
            var s4 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x4 + oy)); var s5 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x5 + oy));
            var s6 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x6 + oy)); var s7 = Q6Tok(q12, q34, p12, p34, (sbyte*)(x7 + oy));
            (q12, q34) = Q6Half(a, 1);
            p12 = Avx512BW.PermuteVar32x16(sc, q6Perm10); p34 = Avx512BW.PermuteVar32x16(sc, q6Perm11);
            oy += 128;
            s0 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x + oy)); s1 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x1 + oy));
            s2 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x2 + oy)); s3 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x3 + oy));
            s4 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x4 + oy)); s5 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x5 + oy));
            s6 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x6 + oy)); s7 += Q6Tok(q12, q34, p12, p34, (sbyte*)(x7 + oy));
            float d = Fp16(a + 208);
            a0 = Q6Step(a0, s0, sc16, x + o, d); a1 = Q6Step(a1, s1, sc16, x1 + o, d); a2 = Q6Step(a2, s2, sc16, x2 + o, d); a3 = Q6Step(a3, s3, sc16, x3 + o, d);
            a4 = Q6Step(a4, s4, sc16, x4 + o, d); a5 = Q6Step(a5, s5, sc16, x5 + o, d); a6 = Q6Step(a6, s6, sc16, x6 + o, d); a7 = Q6Step(a7, s7, sc16, x7 + o, d);
        }
        result[0] = Hsum(a0); result[1] = Hsum(a1); result[2] = Hsum(a2); result[3] = Hsum(a3);
        result[4] = Hsum(a4); result[5] = Hsum(a5); result[6] = Hsum(a6); result[7] = Hsum(a7);
    }
    // ---------------------------------------------------------------- Q5_K x Q8_K, AVX-512

    /// <summary>vpermw controls: int16 scale lane 2c in the low 256 bits, 2c + 1 in the high 256 bits (scales s0..s7 in lanes 0-7).</summary>
    private static readonly Vector512<short> q5Perm0 = Q5Perm(0), q5Perm1 = Q5Perm(1), q5Perm2 = Q5Perm(2), q5Perm3 = Q5Perm(3);

    private static Vector512<short> Q5Perm(int c) => Vector512.Create(Vector256.Create((short)(2 * c)), Vector256.Create((short)(2 * c + 1)));

    /// <summary>Per 16-bit word: low 256 bits shifted by 0, high by <paramref name="hi"/>.</summary>
    private static readonly Vector512<ushort> shift0and4 = Vector512.Create(Vector256<ushort>.Zero, Vector256.Create((ushort)4)),
        shift0and1 = Vector512.Create(Vector256<ushort>.Zero, Vector256.Create((ushort)1));

    /// <summary>
    /// The 64 5-bit values of sub-blocks 2c (low 256 bits) and 2c + 1 (high) of a Q5_K block: <see cref="Q5Pair"/>'s two
    /// registers side by side. qs2: the block's qs[32c..] chunk in both halves is built per c; hs: (qh, qh >> 1) per 16 bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q5Pair512(byte* qs, Vector512<ushort> hs, int c)
    {
        var q4 = Vector256.Load(qs + 32 * c);
        var nib = Avx512BW.ShiftRightLogicalVariable(Vector512.Create(q4, q4).AsUInt16(), shift0and4).AsByte() & Vector512.Create((byte)0x0F);
        // bit 2c (low half) / 2c + 1 (high half) of each qh byte moved to bit 4; the bits that cross bytes are masked off
        var h = Vector512.ShiftLeft(Vector512.ShiftRightLogical(hs, 2 * c), 4).AsByte() & Vector512.Create((byte)0x10);
        return nib | h;
    }

    /// <summary>(qh, qh >> 1) per 16 bits: the Q5_K block a's 32 high-bit bytes for <see cref="Q5Pair512"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ushort> Q5High(byte* a)
    {
        var qh = Vector256.Load(a + 16);
        return Avx512BW.ShiftRightLogicalVariable(Vector512.Create(qh, qh).AsUInt16(), shift0and1);
    }

    /// <summary>Σ_c over the block's 4 pairs of sub-blocks for one token: 16 int32 lanes (y: the token's 256 activations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q5Tok(Vector512<byte> v0, Vector512<byte> v1, Vector512<byte> v2, Vector512<byte> v3,
        Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3, sbyte* y) =>
        (Q6Mul512(v0, y, s0) + Q6Mul512(v1, y + 64, s1)) + (Q6Mul512(v2, y + 128, s2) + Q6Mul512(v3, y + 192, s3));

    /// <summary>One block of one token in the float order of <see cref="DotQ5_KAvx2"/>: the folded sum into acc, the mins into summs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q5Step(Vector256<float> acc, ref float summs, byte* b, float wd, float wdmin, Vector512<int> s, ulong mins)
    {
        float dy = Unsafe.ReadUnaligned<float>(b);
        summs = MathF.FusedMultiplyAdd(-dy * wdmin, MinsTerm(b, mins), summs);
        return Fma.MultiplyAdd(Vector256.Create(dy * wd), Vector256.ConvertToSingle(Fold(s)), acc);
    }

    /// <summary>
    /// AVX-512 Q5_K against 4 Q8_K activation rows: two sub-blocks (64 values) per register; each token's lanes folded
    /// into those of <see cref="DotQ5_KAvx2"/> before its float steps (bit for bit). result: (4).
    /// </summary>
    public static void DotQ5_KAvx512x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes; int o = i * Q8KBytes, oy = o + 4;
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            float wd = Fp16(a), wdmin = Fp16(a + 2);
            var sc = Avx512BW.ConvertToVector512Int16(Vector256.Create(Vector128.CreateScalar(scales).AsByte(), Vector128<byte>.Zero));
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(sc, q5Perm0), s1 = Avx512BW.PermuteVar32x16(sc, q5Perm1),
                s2 = Avx512BW.PermuteVar32x16(sc, q5Perm2), s3 = Avx512BW.PermuteVar32x16(sc, q5Perm3);
            var hs = Q5High(a);
            Vector512<byte> v0 = Q5Pair512(a + 48, hs, 0), v1 = Q5Pair512(a + 48, hs, 1), v2 = Q5Pair512(a + 48, hs, 2), v3 = Q5Pair512(a + 48, hs, 3);
            acc0 = Q5Step(acc0, ref m0, x + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x + oy)), mins);
            acc1 = Q5Step(acc1, ref m1, x1 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x1 + oy)), mins);
            acc2 = Q5Step(acc2, ref m2, x2 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x2 + oy)), mins);
            acc3 = Q5Step(acc3, ref m3, x3 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x3 + oy)), mins);
        }
        result[0] = Hsum(acc0) + m0; result[1] = Hsum(acc1) + m1; result[2] = Hsum(acc2) + m2; result[3] = Hsum(acc3) + m3;
    }

    /// <summary>AVX-512 Q5_K against 8 Q8_K activation rows (prefill): the steps of <see cref="DotQ5_KAvx512x4"/>, 8 tokens per unpacked block.</summary>
    public static void DotQ5_KAvx512x8(byte* w, byte* x, int stride, int n, float* result)
    {
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        var a4 = Vector256<float>.Zero; var a5 = Vector256<float>.Zero; var a6 = Vector256<float>.Zero; var a7 = Vector256<float>.Zero;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0, m7 = 0;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride, x4 = x + 4 * stride, x5 = x + 5 * stride, x6 = x + 6 * stride, x7 = x + 7 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes; int o = i * Q8KBytes, oy = o + 4;
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            float wd = Fp16(a), wdmin = Fp16(a + 2);
            var sc = Avx512BW.ConvertToVector512Int16(Vector256.Create(Vector128.CreateScalar(scales).AsByte(), Vector128<byte>.Zero));
            Vector512<short> s0 = Avx512BW.PermuteVar32x16(sc, q5Perm0), s1 = Avx512BW.PermuteVar32x16(sc, q5Perm1),
                s2 = Avx512BW.PermuteVar32x16(sc, q5Perm2), s3 = Avx512BW.PermuteVar32x16(sc, q5Perm3);
            var hs = Q5High(a);
            Vector512<byte> v0 = Q5Pair512(a + 48, hs, 0), v1 = Q5Pair512(a + 48, hs, 1), v2 = Q5Pair512(a + 48, hs, 2), v3 = Q5Pair512(a + 48, hs, 3);
            a0 = Q5Step(a0, ref m0, x + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x + oy)), mins);
            a1 = Q5Step(a1, ref m1, x1 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x1 + oy)), mins);
            a2 = Q5Step(a2, ref m2, x2 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x2 + oy)), mins);
            a3 = Q5Step(a3, ref m3, x3 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x3 + oy)), mins);
            a4 = Q5Step(a4, ref m4, x4 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x4 + oy)), mins);
            a5 = Q5Step(a5, ref m5, x5 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x5 + oy)), mins);
            a6 = Q5Step(a6, ref m6, x6 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x6 + oy)), mins);
            a7 = Q5Step(a7, ref m7, x7 + o, wd, wdmin, Q5Tok(v0, v1, v2, v3, s0, s1, s2, s3, (sbyte*)(x7 + oy)), mins);
        }
        result[0] = Hsum(a0) + m0; result[1] = Hsum(a1) + m1; result[2] = Hsum(a2) + m2; result[3] = Hsum(a3) + m3;
        result[4] = Hsum(a4) + m4; result[5] = Hsum(a5) + m5; result[6] = Hsum(a6) + m6; result[7] = Hsum(a7) + m7;
    }
}
