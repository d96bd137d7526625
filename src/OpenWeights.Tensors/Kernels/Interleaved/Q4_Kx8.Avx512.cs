using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// AVX-512 (F/BW) kernels of the <see cref="Q4_Kx8"/> layout: two consecutive groups (16 rows) per 512-bit register,
/// lanes 0-7 row j of the first group, lanes 8-15 row j of the second: each 32-byte chunk of a sub-block is loaded from
/// both groups into one register, so every activation broadcast, pmaddubsw and pmaddwd serves 16 rows instead of 8.
/// .NET 10 exposes no 512-bit VNNI for x86 CPUs without AVX10.2 (AvxVnni is 128/256-bit; AvxVnniInt8.V512 is AVX10.2),
/// so the byte products go through vpmaddubsw / vpmaddwd as in the AVX2 kernels.
/// Per (row, token) the integer sums (exact) and the two float FMAs per super-block are those of
/// <see cref="Q4_Kx8.DotScalar"/>: the results equal the scalar reference and the AVX2 kernels bit for bit (tested).
/// </summary>
public static unsafe partial class Q4_Kx8
{
    /// <summary>Chunk (32 bytes) at offset off of super-blocks b0 and b1 (the two groups) in one register: (b0's, b1's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Load2(byte* b0, byte* b1, int off) => Vector512.Create(Vector256.Load(b0 + off), Vector256.Load(b1 + off));

    /// <summary>8 bytes (one per row) of each group as int16 pairs (v, v) in int32 lanes 0-7 (b0) and 8-15 (b1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pairs2(byte* b0, byte* b1, int off)
    {
        var v = Avx512F.ConvertToVector512Int32(Vector128.Create(Unsafe.ReadUnaligned<ulong>(b0 + off), Unsafe.ReadUnaligned<ulong>(b1 + off)).AsByte());
        return (v | Vector512.ShiftLeft(v, 16)).AsInt16();
    }

    /// <summary>Two sub-blocks' bytes (offsets lo, hi) of each group as int16 pairs (lo_j, hi_j), rows of b0 then b1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pairs2(byte* b0, byte* b1, int lo, int hi)
    {
        var l = Avx512F.ConvertToVector512Int32(Vector128.Create(Unsafe.ReadUnaligned<ulong>(b0 + lo), Unsafe.ReadUnaligned<ulong>(b1 + lo)).AsByte());
        var h = Avx512F.ConvertToVector512Int32(Vector128.Create(Unsafe.ReadUnaligned<ulong>(b0 + hi), Unsafe.ReadUnaligned<ulong>(b1 + hi)).AsByte());
        return (l | Vector512.ShiftLeft(h, 16)).AsInt16();
    }

    /// <summary>The 16 rows' f16 scales at offset off (8 of b0, 8 of b1) as F32, exactly (the bit trick of <see cref="QuantDot.F16ToF32"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales2(byte* b0, byte* b1, int off)
    {
        var h = Avx512F.ConvertToVector512Int32(Vector256.Create(Vector128.Load((short*)(b0 + off)), Vector128.Load((short*)(b1 + off))));
        return (Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector512.Create(BitConverter.UInt32BitsToSingle(0x77800000));
    }

    /// <summary>4 values of each of 16 rows (lo: values 4c.., hi: 16 + 4c..) against one activation sub-block a, added to 32 int16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Quarter2(Vector512<short> acc, Vector512<byte> lo, Vector512<byte> hi, byte* a) =>
        acc + Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create(Unsafe.ReadUnaligned<int>(a)).AsSByte())
            + Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create(Unsafe.ReadUnaligned<int>(a + 16)).AsSByte());

    /// <summary>Σ_s m[s][j]·bsum32_s for the 16 rows; m01..m67: the mins of sub-block pairs (<see cref="Pairs2(byte*, byte*, int, int)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> MinSums2(Vector512<short> m01, Vector512<short> m23, Vector512<short> m45, Vector512<short> m67, short* bs) =>
        Avx512BW.MultiplyAddAdjacent(m01, BsumPair2(bs, 0)) + Avx512BW.MultiplyAddAdjacent(m23, BsumPair2(bs, 1))
        + Avx512BW.MultiplyAddAdjacent(m45, BsumPair2(bs, 2)) + Avx512BW.MultiplyAddAdjacent(m67, BsumPair2(bs, 3));

    /// <summary>(bsum32 of sub-block 2q, of 2q + 1) of a Q8_K block as one int32 of two int16, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> BsumPair2(short* bs, int q) =>
        Vector512.Create((int)(ushort)(short)(bs[4 * q] + bs[4 * q + 1]) | (bs[4 * q + 2] + bs[4 * q + 3]) << 16).AsInt16();

    /// <summary>acc + (d·d_a)·isum + (−dmin·d_a)·msum, two FMAs per lane: the scalar reference's float steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Accumulate2(Vector512<float> acc, Vector512<int> isum, Vector512<int> msum, Vector512<float> d, Vector512<float> negMin, byte* xa)
    {
        var dy = Vector512.Create(Unsafe.ReadUnaligned<float>(xa));
        acc = Avx512F.FusedMultiplyAdd(d * dy, Vector512.ConvertToSingle(isum), acc);
        return Avx512F.FusedMultiplyAdd(negMin * dy, Vector512.ConvertToSingle(msum), acc);
    }

    /// <summary>AVX-512: consecutive groups (groupBytes apart) against one activation row, two groups at a time; y: (8·groups).</summary>
    public static void DotGroupsAvx512(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        int g = 0;
        for (; g + 2 <= groups; g += 2) DotPairAvx512(w + g * groupBytes, groupBytes, x, n, y + 8 * g);
        if (g < groups) DotAvx2(w + g * groupBytes, x, n, y + 8 * g); // an odd last group (the same float steps)
    }

    /// <summary>AVX-512: groups wg and wg + groupBytes (16 rows) against one activation row; y: (16).</summary>
    public static void DotPairAvx512(byte* wg, long groupBytes, byte* x, int n, float* y)
    {
        var mask = Vector512.Create((byte)0x0F);
        var acc = Vector512<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b0 = wg + (long)i * BlockBytes, b1 = b0 + groupBytes, xa = x + i * 292;
            byte* ahead0 = b0 + Q8_0x8.PrefetchDistance, ahead1 = b1 + Q8_0x8.PrefetchDistance; // decode streams the weights
            for (int l = 0; l < BlockBytes; l += 64) { Sse.Prefetch0(ahead0 + l); Sse.Prefetch0(ahead1 + l); }
            var isum = Vector512<int>.Zero;
            for (int s = 0; s < 8; s++)
            {
                int qo = QOffset + 128 * s;
                byte* a = xa + 4 + 32 * s;
                // the 4 chunks' sums as a tree (one token: short dependency chains)
                var p0 = Load2(b0, b1, qo); var p1 = Load2(b0, b1, qo + 32); var p2 = Load2(b0, b1, qo + 64); var p3 = Load2(b0, b1, qo + 96);
                var q01 = Quarter2(Vector512<short>.Zero, p0 & mask, Vector512.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & mask, a)
                          + Quarter2(Vector512<short>.Zero, p1 & mask, Vector512.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & mask, a + 4);
                var q23 = Quarter2(Vector512<short>.Zero, p2 & mask, Vector512.ShiftRightLogical(p2.AsUInt16(), 4).AsByte() & mask, a + 8)
                          + Quarter2(Vector512<short>.Zero, p3 & mask, Vector512.ShiftRightLogical(p3.AsUInt16(), 4).AsByte() & mask, a + 12);
                isum += Avx512BW.MultiplyAddAdjacent(q01 + q23, Pairs2(b0, b1, ScOffset + 8 * s));
            }
            var msum = MinSums2(Pairs2(b0, b1, MinOffset, MinOffset + 8), Pairs2(b0, b1, MinOffset + 16, MinOffset + 24),
                Pairs2(b0, b1, MinOffset + 32, MinOffset + 40), Pairs2(b0, b1, MinOffset + 48, MinOffset + 56), (short*)(xa + 260));
            acc = Accumulate2(acc, isum, msum, Scales2(b0, b1, 0), -Scales2(b0, b1, 16), xa);
        }
        acc.Store(y);
    }

    /// <summary>
    /// AVX-512: groups wg and wg + groupBytes (16 rows) against 6 activation rows x + t·xStride; y[t·yStride + r], r &lt; 16.
    /// Each chunk of weights is loaded and its nibbles split once for 6 tokens.
    /// </summary>
    public static void DotPairAvx512x6(byte* wg, long groupBytes, byte* x, int xStride, int n, float* y, int yStride)
    {
        var mask = Vector512.Create((byte)0x0F);
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride, x4 = x3 + xStride, x5 = x4 + xStride;
        var acc0 = Vector512<float>.Zero; var acc1 = Vector512<float>.Zero; var acc2 = Vector512<float>.Zero;
        var acc3 = Vector512<float>.Zero; var acc4 = Vector512<float>.Zero; var acc5 = Vector512<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b0 = wg + (long)i * BlockBytes, b1 = b0 + groupBytes;
            int o = i * 292;
            var i0 = Vector512<int>.Zero; var i1 = Vector512<int>.Zero; var i2 = Vector512<int>.Zero;
            var i3 = Vector512<int>.Zero; var i4 = Vector512<int>.Zero; var i5 = Vector512<int>.Zero;
            for (int s = 0; s < 8; s++)
            {
                int qo = QOffset + 128 * s, oa = o + 4 + 32 * s;
                var q0 = Vector512<short>.Zero; var q1 = Vector512<short>.Zero; var q2 = Vector512<short>.Zero;
                var q3 = Vector512<short>.Zero; var q4 = Vector512<short>.Zero; var q5 = Vector512<short>.Zero;
                for (int c = 0; c < 4; c++)
                {
                    var p = Load2(b0, b1, qo + 32 * c);
                    var lo = p & mask; var hi = Vector512.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & mask;
                    int oc = oa + 4 * c;
                    q0 = Quarter2(q0, lo, hi, x + oc); q1 = Quarter2(q1, lo, hi, x1 + oc); q2 = Quarter2(q2, lo, hi, x2 + oc);
                    q3 = Quarter2(q3, lo, hi, x3 + oc); q4 = Quarter2(q4, lo, hi, x4 + oc); q5 = Quarter2(q5, lo, hi, x5 + oc);
                }
                var sc = Pairs2(b0, b1, ScOffset + 8 * s);
                i0 += Avx512BW.MultiplyAddAdjacent(q0, sc); i1 += Avx512BW.MultiplyAddAdjacent(q1, sc); i2 += Avx512BW.MultiplyAddAdjacent(q2, sc);
                i3 += Avx512BW.MultiplyAddAdjacent(q3, sc); i4 += Avx512BW.MultiplyAddAdjacent(q4, sc); i5 += Avx512BW.MultiplyAddAdjacent(q5, sc);
            }
            Vector512<short> m01 = Pairs2(b0, b1, MinOffset, MinOffset + 8), m23 = Pairs2(b0, b1, MinOffset + 16, MinOffset + 24),
                m45 = Pairs2(b0, b1, MinOffset + 32, MinOffset + 40), m67 = Pairs2(b0, b1, MinOffset + 48, MinOffset + 56);
            var d = Scales2(b0, b1, 0); var negMin = -Scales2(b0, b1, 16);
            acc0 = Accumulate2(acc0, i0, MinSums2(m01, m23, m45, m67, (short*)(x + o + 260)), d, negMin, x + o);
            acc1 = Accumulate2(acc1, i1, MinSums2(m01, m23, m45, m67, (short*)(x1 + o + 260)), d, negMin, x1 + o);
            acc2 = Accumulate2(acc2, i2, MinSums2(m01, m23, m45, m67, (short*)(x2 + o + 260)), d, negMin, x2 + o);
            acc3 = Accumulate2(acc3, i3, MinSums2(m01, m23, m45, m67, (short*)(x3 + o + 260)), d, negMin, x3 + o);
            acc4 = Accumulate2(acc4, i4, MinSums2(m01, m23, m45, m67, (short*)(x4 + o + 260)), d, negMin, x4 + o);
            acc5 = Accumulate2(acc5, i5, MinSums2(m01, m23, m45, m67, (short*)(x5 + o + 260)), d, negMin, x5 + o);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride); acc4.Store(y + 4 * yStride); acc5.Store(y + 5 * yStride);
    }
}
