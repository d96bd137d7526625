using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Dot kernels of the table ("non-linear") 4-bit types, with the activation types ggml pairs them with: IQ4_NL and MXFP4
/// against Q8_0 activations, IQ4_XS against Q8_K. They are Q4_0's kernels with the nibble → value step done by a
/// vpshufb lookup in the 16-entry int8 table instead of "− 8": the looked-up values are signed bytes, so the products
/// are the signed ones of Q8_0 · Q8_0 (|w| · sign(y, w), vpdpbusd on AVX-VNNI). MXFP4's table holds the FP4 values
/// doubled and its E8M0 scale is halved (ggml's convention), so the integer sums stay int8 × int8.
/// One FMA per 32-value block (IQ4_NL, MXFP4) or per 256-value super-block (IQ4_XS, whose 8 6-bit group scales are
/// applied in integers with pmaddwd); the 4-token kernels keep each token's float sequence exactly that of the
/// single-token kernel (batch invariance, tested bit for bit). Scalar references: ggml's <c>_generic</c> kernels.
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>A 32-value table block format: its size, where its nibbles start, its scale and its table.</summary>
    private interface ILutBlock
    {
        static abstract int Bytes { get; }
        static abstract int Nibbles { get; }
        static abstract float Scale(byte* block);
        static abstract Vector256<sbyte> Table { get; }
        static abstract ReadOnlySpan<sbyte> Values { get; }
    }

    private static readonly Vector256<sbyte> iq4Table = NonLinear4.Table256(NonLinear4.Iq4Values);
    private static readonly Vector256<sbyte> mxfp4Table = NonLinear4.Table256(NonLinear4.Mxfp4Values);

    /// <summary>IQ4_NL: f16 d, then 16 bytes of nibbles.</summary>
    private readonly struct Iq4NlBlock : ILutBlock
    {
        public static int Bytes => BlockIQ4_NL.BlockBytes;
        public static int Nibbles => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* block) => Fp16(block);
        public static Vector256<sbyte> Table => iq4Table;
        public static ReadOnlySpan<sbyte> Values => NonLinear4.Iq4Values;
    }

    /// <summary>MXFP4: E8M0 exponent e (scale 2^(e−128) with the doubled table), then 16 bytes of nibbles.</summary>
    private readonly struct Mxfp4Block : ILutBlock
    {
        public static int Bytes => BlockMXFP4.BlockBytes;
        public static int Nibbles => 1;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* block) => BlockMXFP4.ScaleHalf(*block);
        public static Vector256<sbyte> Table => mxfp4Table;
        public static ReadOnlySpan<sbyte> Values => NonLinear4.Mxfp4Values;
    }

    // ---------------------------------------------------------------- IQ4_NL / MXFP4 x Q8_0

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_iq4_nl_q8_0_generic / ggml_vec_dot_mxfp4_q8_0_generic, bit for bit as the
    /// AVX2 build of libggml-cpu computes it: its sumf += d·isum is one FMA).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotLutScalar<B>(byte* w, byte* x, int n) where B : struct, ILutBlock
    {
        var values = B.Values;
        float sum = 0;
        for (int i = 0; i < n / 32; i++)
        {
            byte* a = w + i * B.Bytes, b = x + i * 34;
            byte* qs = a + B.Nibbles;
            sbyte* y = (sbyte*)(b + 2);
            int s1 = 0, s2 = 0;
            for (int j = 0; j < 16; j++)
            {
                s1 += y[j] * values[qs[j] & 0xF];
                s2 += y[j + 16] * values[qs[j] >> 4];
            }
            float d = HalfConvert.ReadFp16(b) * B.Scale(a);
            sum = MathF.FusedMultiplyAdd(d, s1 + s2, sum); // contracted, as gcc compiles ggml's generic kernel in the FMA builds
        }
        return sum;
    }

    /// <summary>AVX2: per block the 32 looked-up weights times the Q8_0 activations, one FMA; x: a Q8_0 row with its F32 tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotLutAvx2<B>(byte* w, byte* x, int n) where B : struct, ILutBlock
    {
        var acc = Vector256<float>.Zero;
        var table = B.Table;
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * B.Bytes;
            var wv = NonLinear4.Lookup32(a + B.Nibbles, table);
            var p = MulSigned(wv, Vector256.Load((sbyte*)(x + i * 34 + 2)));
            acc = Fma.MultiplyAdd(Vector256.Create(B.Scale(a) * dx[i]), Vector256.ConvertToSingle(p), acc);
        }
        return Hsum(acc);
    }

    /// <summary>4 activation rows at once: each block's weights are looked up and their |w| taken once (float sequence per token = <see cref="DotLutAvx2"/>'s).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotLutAvx2x4<B>(byte* w, byte* x, int stride, int n, float* result) where B : struct, ILutBlock
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var table = B.Table;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        int nb = n / 32;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * B.Bytes; int o = i * 34 + 2;
            var wv = NonLinear4.Lookup32(a + B.Nibbles, table);
            var ax = Avx2.Abs(wv);
            var dw = Vector256.Create(B.Scale(a));
            acc0 = SignedBlock(acc0, ax, wv, (sbyte*)(x + o), dw, d0[i]);
            acc1 = SignedBlock(acc1, ax, wv, (sbyte*)(x1 + o), dw, d1[i]);
            acc2 = SignedBlock(acc2, ax, wv, (sbyte*)(x2 + o), dw, d2[i]);
            acc3 = SignedBlock(acc3, ax, wv, (sbyte*)(x3 + o), dw, d3[i]);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }

    /// <summary>Scalar reference (ggml ggml_vec_dot_iq4_nl_q8_0_generic).</summary>
    public static float DotIQ4_NLScalar(byte* w, byte* x, int n) => DotLutScalar<Iq4NlBlock>(w, x, n);
    /// <summary>AVX2 IQ4_NL · Q8_0; x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotIQ4_NLAvx2(byte* w, byte* x, int n) => DotLutAvx2<Iq4NlBlock>(w, x, n);
    /// <summary>AVX2 IQ4_NL against 4 Q8_0 activation rows; result: (4).</summary>
    public static void DotIQ4_NLAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotLutAvx2x4<Iq4NlBlock>(w, x, stride, n, result);

    /// <summary>Scalar reference (ggml ggml_vec_dot_mxfp4_q8_0_generic).</summary>
    public static float DotMXFP4Scalar(byte* w, byte* x, int n) => DotLutScalar<Mxfp4Block>(w, x, n);
    /// <summary>AVX2 MXFP4 · Q8_0; x: a Q8_0 activation row with its F32 tail.</summary>
    public static float DotMXFP4Avx2(byte* w, byte* x, int n) => DotLutAvx2<Mxfp4Block>(w, x, n);
    /// <summary>AVX2 MXFP4 against 4 Q8_0 activation rows; result: (4).</summary>
    public static void DotMXFP4Avx2x4(byte* w, byte* x, int stride, int n, float* result) => DotLutAvx2x4<Mxfp4Block>(w, x, stride, n, result);

    // ---------------------------------------------------------------- IQ4_XS x Q8_K

    /// <summary>Scalar reference (ggml ggml_vec_dot_iq4_xs_q8_K_generic: one fused float multiply-add per 32-value group).</summary>
    public static float DotIQ4_XSScalar(byte* w, byte* x, int n)
    {
        var values = NonLinear4.Iq4Values;
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ4_XS.BlockBytes, b = x + i * BlockQ8_K.BlockBytes;
            float d4d8 = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            sbyte* y = (sbyte*)(b + 4);
            for (int g = 0; g < 8; g++)
            {
                byte* qs = a + 8 + 16 * g;
                sbyte* yg = y + 32 * g;
                int s1 = 0, s2 = 0;
                for (int j = 0; j < 16; j++)
                {
                    s1 += yg[j] * values[qs[j] & 0xF];
                    s2 += yg[j + 16] * values[qs[j] >> 4];
                }
                float dg = d4d8 * (BlockIQ4_XS.GroupScale(a, g) - 32);
                sum = MathF.FusedMultiplyAdd(dg, s1 + s2, sum); // contracted, as gcc compiles ggml's generic kernel in the FMA builds
            }
        }
        return sum;
    }

    /// <summary>Σ over one 32-value group of w·y, times the group's scale, as 8 int32 lanes (pmaddubsw, then pmaddwd with the scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> XsGroup(Vector256<byte> ax, Vector256<sbyte> wv, sbyte* y, Vector256<short> scale) =>
        // |w| ≤ 127, |y| ≤ 127: a pmaddubsw pair is at most 32258, no int16 saturation
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ax, Avx2.Sign(Vector256.Load(y), wv)), scale);

    /// <summary>
    /// Groups 2k and 2k+1 of an IQ4_XS super-block (32 bytes of nibbles at qs) as table values in the activation order:
    /// (values 0..31 of group 2k, values 0..31 of group 2k+1). One 256-bit load, one lookup per nibble half, two lane permutes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<sbyte> A, Vector256<sbyte> B) XsPair(byte* qs, Vector256<sbyte> table)
    {
        var q = Vector256.Load(qs);
        var mask = Vector256.Create((byte)0x0F);
        var lo = Avx2.Shuffle(table, (q & mask).AsSByte());                                               // (2k: 0..15 | 2k+1: 0..15)
        var hi = Avx2.Shuffle(table, (Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask).AsSByte()); // (2k: 16..31 | 2k+1: 16..31)
        return (Avx2.Permute2x128(lo, hi, 0x20), Avx2.Permute2x128(lo, hi, 0x31));
    }

    /// <summary>The signed scale (ls − 32) of group g as 16 int16 lanes; sl: scales_l as one u32, sh: scales_h.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> XsScale(uint sl, uint sh, int g) =>
        Vector256.Create((short)((int)(((sl >> 4 * g) & 0xF) | (((sh >> 2 * g) & 3) << 4)) - 32));

    /// <summary>
    /// AVX2 IQ4_XS · Q8_K: per super-block the 8 groups' integer sums times their signed 6-bit scales (exact in int32:
    /// |Σ| ≤ 8·32·127·127·32), then one FMA with d_w·d_y.
    /// </summary>
    public static float DotIQ4_XSAvx2(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        var table = iq4Table;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ4_XS.BlockBytes, b = x + i * BlockQ8_K.BlockBytes;
            sbyte* y = (sbyte*)(b + 4);
            uint sh = Unsafe.ReadUnaligned<ushort>(a + 2), sl = Unsafe.ReadUnaligned<uint>(a + 4);
            var sumi = Vector256<int>.Zero;
            for (int k = 0; k < 4; k++)
            {
                var (wa, wb) = XsPair(a + 8 + 32 * k, table);
                sumi += XsGroup(Avx2.Abs(wa), wa, y + 64 * k, XsScale(sl, sh, 2 * k));
                sumi += XsGroup(Avx2.Abs(wb), wb, y + 64 * k + 32, XsScale(sl, sh, 2 * k + 1));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16(a) * Unsafe.ReadUnaligned<float>(b)), Vector256.ConvertToSingle(sumi), acc);
        }
        return Hsum(acc);
    }

    /// <summary>IQ4_XS against 4 Q8_K activation rows: each pair of groups is unpacked, and its scales made, once for the 4 tokens.</summary>
    public static void DotIQ4_XSAvx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        var table = iq4Table;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ4_XS.BlockBytes; int o = i * BlockQ8_K.BlockBytes;
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            uint sh = Unsafe.ReadUnaligned<ushort>(a + 2), sl = Unsafe.ReadUnaligned<uint>(a + 4);
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int k = 0; k < 4; k++)
            {
                var (wa, wb) = XsPair(a + 8 + 32 * k, table);
                var aa = Avx2.Abs(wa); var ab = Avx2.Abs(wb);
                var sa = XsScale(sl, sh, 2 * k); var sb = XsScale(sl, sh, 2 * k + 1);
                int ya = 64 * k, yb = 64 * k + 32;
                s0 += XsGroup(aa, wa, y0 + ya, sa) + XsGroup(ab, wb, y0 + yb, sb);
                s1 += XsGroup(aa, wa, y1 + ya, sa) + XsGroup(ab, wb, y1 + yb, sb);
                s2 += XsGroup(aa, wa, y2 + ya, sa) + XsGroup(ab, wb, y2 + yb, sb);
                s3 += XsGroup(aa, wa, y3 + ya, sa) + XsGroup(ab, wb, y3 + yb, sb);
            }
            float d = Fp16(a);
            acc0 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x + o)), Vector256.ConvertToSingle(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x1 + o)), Vector256.ConvertToSingle(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x2 + o)), Vector256.ConvertToSingle(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x3 + o)), Vector256.ConvertToSingle(s3), acc3);
        }
        result[0] = Hsum(acc0); result[1] = Hsum(acc1); result[2] = Hsum(acc2); result[3] = Hsum(acc3);
    }
}
