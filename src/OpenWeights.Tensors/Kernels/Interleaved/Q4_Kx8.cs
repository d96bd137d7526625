using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// Q4_K weights repacked at load into groups of 8 interleaved rows: each 32-value sub-block is laid out as a
/// <see cref="Q4_0x8"/> block (4 values of each of 8 rows per register, broadcast activations, pmaddubsw sums in int16),
/// then one pmaddwd applies the 8 rows' 6-bit sub-block scales; the mins term uses the Q8_K activation's block sums.
///
/// Layout: group g (rows 8g .. 8g+7) is nb = cols/256 consecutive 1184-byte super-blocks (the 8 rows' GGUF blocks take
/// 1152: the scales and mins are stored unpacked, a byte each); super-block i of group g:
///   f16   d[8], dmin[8]              row j's scale of scales and of mins
///   byte  sc[8][8], m[8][8]          sc[s][j], m[s][j]: row j's 6-bit scale and min of sub-block s
///   byte  q[8][4][8][4]              q[s][c][j][k]: low nibble = row j's value 32s + 4c + k, high = 32s + 16 + 4c + k
/// Row j's dot with a Q8_K activation block (d_a, a[256], bsums) is
///   d_j·d_a·Σ_s sc[s][j]·Σ_e q·a  −  dmin_j·d_a·Σ_s m[s][j]·(bsum[2s] + bsum[2s+1])
/// both integer sums exact; per (row, token) acc = fma(d_j·d_a, isum, acc), then fma(−dmin_j·d_a, msum, acc), per
/// super-block in order: the same float sequence in the 1- and 4-token kernels and the scalar reference (bit for bit).
/// </summary>
public static unsafe partial class Q4_Kx8
{
    public const int Rows = 8;
    public const int BlockBytes = 160 + 8 * 128; // 1184
    private const int ScOffset = 32, MinOffset = 96, QOffset = 160;

    /// <summary>Repacks a Q4_K matrix src: (rows, cols), rowBytes apart, into dst (rows/8 · cols/256 · 1184 bytes).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 256 != 0) throw new ArgumentException($"Q4_Kx8 needs rows % 8 == 0 and cols % 256 == 0, got {rows}x{cols}");
        int nb = cols / 256;
        for (int g = 0; g < rows / Rows; g++)
            for (int i = 0; i < nb; i++)
            {
                byte* o = dst + ((long)g * nb + i) * BlockBytes;
                for (int j = 0; j < Rows; j++)
                {
                    byte* a = src + (g * Rows + j) * rowBytes + i * 144;
                    Unsafe.WriteUnaligned(o + 2 * j, Unsafe.ReadUnaligned<ushort>(a));
                    Unsafe.WriteUnaligned(o + 16 + 2 * j, Unsafe.ReadUnaligned<ushort>(a + 2));
                    var scales = new ReadOnlySpan<byte>(a + 4, 12);
                    for (int s = 0; s < 8; s++)
                    {
                        QuantMath.GetScaleMinK4(s, scales, out byte sc, out byte m);
                        o[ScOffset + 8 * s + j] = sc;
                        o[MinOffset + 8 * s + j] = m;
                        for (int c = 0; c < 4; c++)
                            for (int k = 0; k < 4; k++)
                                o[QOffset + 128 * s + 32 * c + 4 * j + k] = (byte)(Nibble(a + 16, 32 * s + 4 * c + k) | Nibble(a + 16, 32 * s + 16 + 4 * c + k) << 4);
                    }
                }
            }
    }

    /// <summary>Value v (0..255) of a Q4_K super-block's qs: chunk v/64, low nibble for v%64 &lt; 32, else high.</summary>
    private static int Nibble(byte* qs, int v) => (v % 64 < 32 ? qs[v / 64 * 32 + v % 32] : qs[v / 64 * 32 + v % 32] >> 4) & 0x0F;

    /// <summary>Row j's value 32s + e of a packed super-block.</summary>
    private static int Q(byte* b, int j, int s, int e)
    {
        int c = e % 16 / 4, k = e % 4;
        byte q = b[QOffset + 128 * s + 32 * c + 4 * j + k];
        return e < 16 ? q & 0x0F : q >> 4;
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the row ((d·sc)·q − dmin·m).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j)), dmin = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 16 + 2 * j));
            for (int s = 0; s < 8; s++)
            {
                float d1 = d * b[ScOffset + 8 * s + j], m1 = dmin * b[MinOffset + 8 * s + j];
                for (int e = 0; e < 32; e++) dst[i * 256 + 32 * s + e] = d1 * Q(b, j, s, e) - m1;
            }
        }
    }

    /// <summary>
    /// Scalar reference: y[t·yStride + j] = row j of group wg · activation row t (Q8_K, x + t·xStride), for t &lt; tokens,
    /// j &lt; 8.
    /// </summary>
    public static void DotScalar(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride)
    {
        for (int t = 0; t < tokens; t++)
        {
            byte* xt = x + (long)t * xStride;
            for (int j = 0; j < Rows; j++)
            {
                float acc = 0;
                for (int i = 0; i < n / 256; i++)
                {
                    byte* b = wg + (long)i * BlockBytes, xa = xt + i * 292;
                    float dy = Unsafe.ReadUnaligned<float>(xa);
                    sbyte* a = (sbyte*)(xa + 4);
                    short* bs = (short*)(xa + 260);
                    int isum = 0, msum = 0;
                    for (int s = 0; s < 8; s++)
                    {
                        int dot = 0;
                        for (int e = 0; e < 32; e++) dot += Q(b, j, s, e) * a[32 * s + e];
                        isum += b[ScOffset + 8 * s + j] * dot;
                        msum += b[MinOffset + 8 * s + j] * (Unsafe.ReadUnaligned<short>(bs + 2 * s) + Unsafe.ReadUnaligned<short>(bs + 2 * s + 1));
                    }
                    float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j)), dmin = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 16 + 2 * j));
                    acc = MathF.FusedMultiplyAdd(d * dy, isum, acc);
                    acc = MathF.FusedMultiplyAdd(-dmin * dy, msum, acc);
                }
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>8 bytes (one per row) as int16 pairs (v_j, v_j) in int32 lane j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Pairs(byte* p)
    {
        var v = Avx2.ConvertToVector256Int32(p);
        return (v | Vector256.ShiftLeft(v, 16)).AsInt16();
    }

    /// <summary>Two sub-blocks' bytes (rows j) as int16 pairs (lo_j, hi_j) in int32 lane j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Pairs(byte* lo, byte* hi) =>
        (Avx2.ConvertToVector256Int32(lo) | Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(hi), 16)).AsInt16();

    /// <summary>(bsum32 of sub-block 2q, of 2q + 1) of a Q8_K block as one int32 of two int16, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> BsumPair(short* bs, int q) =>
        Vector256.Create((int)(ushort)(short)(bs[4 * q] + bs[4 * q + 1]) | (bs[4 * q + 2] + bs[4 * q + 3]) << 16).AsInt16();

    /// <summary>Σ_s m[s][j]·bsum32_s for the 8 rows (4 pmaddwd over pairs of sub-blocks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> MinSums(Vector256<short> m01, Vector256<short> m23, Vector256<short> m45, Vector256<short> m67, short* bs) =>
        Avx2.MultiplyAddAdjacent(m01, BsumPair(bs, 0)) + Avx2.MultiplyAddAdjacent(m23, BsumPair(bs, 1))
        + Avx2.MultiplyAddAdjacent(m45, BsumPair(bs, 2)) + Avx2.MultiplyAddAdjacent(m67, BsumPair(bs, 3));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> isum, Vector256<int> msum, Vector256<float> d, Vector256<float> negMin, byte* xa)
    {
        var dy = Vector256.Create(Unsafe.ReadUnaligned<float>(xa));
        acc = Fma.MultiplyAdd(d * dy, Vector256.ConvertToSingle(isum), acc);
        return Fma.MultiplyAdd(negMin * dy, Vector256.ConvertToSingle(msum), acc);
    }

    /// <summary>AVX2: consecutive groups (groupBytes apart) against one activation row; y: (8·groups).</summary>
    public static void DotGroupsAvx2(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        for (int g = 0; g < groups; g++) DotAvx2(w + g * groupBytes, x, n, y + 8 * g);
    }

    /// <summary>AVX2: one group (8 rows) against one activation row; y: (8).</summary>
    public static void DotAvx2(byte* wg, byte* x, int n, float* y)
    {
        var mask = Vector256.Create((byte)0x0F);
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = wg + (long)i * BlockBytes, xa = x + i * 292;
            byte* ahead = b + Q8_0x8.PrefetchDistance;
            for (int l = 0; l < BlockBytes; l += 64) Sse.Prefetch0(ahead + l);
            var isum = Vector256<int>.Zero;
            for (int s = 0; s < 8; s++)
            {
                byte* q = b + QOffset + 128 * s;
                var p0 = Vector256.Load(q); var p1 = Vector256.Load(q + 32); var p2 = Vector256.Load(q + 64); var p3 = Vector256.Load(q + 96);
                var pairs = Q4_0x8.BlockPairs(p0 & mask, Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & mask, p1 & mask, Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & mask,
                    p2 & mask, Avx2.ShiftRightLogical(p2.AsUInt16(), 4).AsByte() & mask, p3 & mask, Avx2.ShiftRightLogical(p3.AsUInt16(), 4).AsByte() & mask, xa + 4 + 32 * s);
                isum += Avx2.MultiplyAddAdjacent(pairs, Pairs(b + ScOffset + 8 * s));
            }
            byte* m = b + MinOffset;
            var msum = MinSums(Pairs(m, m + 8), Pairs(m + 16, m + 24), Pairs(m + 32, m + 40), Pairs(m + 48, m + 56), (short*)(xa + 260));
            acc = Accumulate(acc, isum, msum, Q4_0x8.Scales(b), -Q4_0x8.Scales(b + 16), xa);
        }
        acc.Store(y);
    }

    /// <summary>AVX2: one group (8 rows) against 4 activation rows x + t·xStride; y[t·yStride + j].</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        var mask = Vector256.Create((byte)0x0F);
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            int o = i * 292;
            var i0 = Vector256<int>.Zero; var i1 = Vector256<int>.Zero; var i2 = Vector256<int>.Zero; var i3 = Vector256<int>.Zero;
            for (int s = 0; s < 8; s++)
            {
                byte* q = b + QOffset + 128 * s;
                int oa = o + 4 + 32 * s;
                var q0 = Vector256<short>.Zero; var q1 = Vector256<short>.Zero; var q2 = Vector256<short>.Zero; var q3 = Vector256<short>.Zero;
                for (int c = 0; c < 4; c++)
                {
                    var p = Vector256.Load(q + 32 * c);
                    var lo = p & mask; var hi = Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & mask;
                    int oc = oa + 4 * c;
                    q0 = Q4_0x8.Quarter(q0, lo, hi, x + oc); q1 = Q4_0x8.Quarter(q1, lo, hi, x1 + oc); q2 = Q4_0x8.Quarter(q2, lo, hi, x2 + oc); q3 = Q4_0x8.Quarter(q3, lo, hi, x3 + oc);
                }
                var sc = Pairs(b + ScOffset + 8 * s);
                i0 += Avx2.MultiplyAddAdjacent(q0, sc); i1 += Avx2.MultiplyAddAdjacent(q1, sc);
                i2 += Avx2.MultiplyAddAdjacent(q2, sc); i3 += Avx2.MultiplyAddAdjacent(q3, sc);
            }
            byte* m = b + MinOffset;
            Vector256<short> m01 = Pairs(m, m + 8), m23 = Pairs(m + 16, m + 24), m45 = Pairs(m + 32, m + 40), m67 = Pairs(m + 48, m + 56);
            var d = Q4_0x8.Scales(b); var negMin = -Q4_0x8.Scales(b + 16);
            acc0 = Accumulate(acc0, i0, MinSums(m01, m23, m45, m67, (short*)(x + o + 260)), d, negMin, x + o);
            acc1 = Accumulate(acc1, i1, MinSums(m01, m23, m45, m67, (short*)(x1 + o + 260)), d, negMin, x1 + o);
            acc2 = Accumulate(acc2, i2, MinSums(m01, m23, m45, m67, (short*)(x2 + o + 260)), d, negMin, x2 + o);
            acc3 = Accumulate(acc3, i3, MinSums(m01, m23, m45, m67, (short*)(x3 + o + 260)), d, negMin, x3 + o);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }
}
