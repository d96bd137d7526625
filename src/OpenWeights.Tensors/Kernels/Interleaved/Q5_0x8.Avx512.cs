using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// AVX-512 (F + BW) kernels of <see cref="Q5_0x8"/>: two groups (16 rows) at a time (<see cref="GroupPair"/>), 1 or 6
/// tokens; the integer work of the 256-bit kernels, twice as wide (unsigned 5-bit u = w + 16, 4 pmaddubsw results
/// summed in int16, then pmaddwd; minus 16·Σ a).
/// </summary>
public static unsafe partial class Q5_0x8
{
    /// <summary>AVX-512: consecutive groups (groupBytes apart) against one activation row, two at a time; y: (8·groups).</summary>
    public static void DotGroupsAvx512(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        int g = 0;
        for (; g + 2 <= groups; g += 2) DotPairAvx512(w + g * groupBytes, groupBytes, x, n, y + 8 * g);
        if (g < groups) DotAvx2(w + g * groupBytes, x, n, y + 8 * g); // an odd last group: the same float chain
    }

    /// <summary>The unsigned 5-bit values of byte column c of both groups (as <see cref="Unpack"/>): lo = values 4c + k, hi = 16 + 4c + k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte> Lo, Vector512<byte> Hi) Unpack512(byte* b0, byte* b1, int c, Vector512<ushort> h)
    {
        var p = GroupPair.Load(b0 + QOffset + 32 * c, b1 + QOffset + 32 * c);
        var m4 = Vector512.Create((byte)0x0F); var b4 = Vector512.Create((byte)0x10);
        var lo = (p & m4) | (Vector512.ShiftLeft(h, 4 - c).AsByte() & b4);
        var hi = (Vector512.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & m4) | (Vector512.ShiftRightLogical(h, c).AsByte() & b4);
        return (lo, hi);
    }

    /// <summary>Column pair (c, c + 1) of the 16 rows against one activation block a: Σ as 16 int32 lanes (4 pmaddubsw lanes ≤ 31496 in int16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair512(Vector512<byte> lo0, Vector512<byte> hi0, Vector512<byte> lo1, Vector512<byte> hi1, byte* a) =>
        Avx512BW.MultiplyAddAdjacent(
            Avx512BW.MultiplyAddAdjacent(lo0, GroupPair.Broadcast(a)) + Avx512BW.MultiplyAddAdjacent(hi0, GroupPair.Broadcast(a + 16))
            + Avx512BW.MultiplyAddAdjacent(lo1, GroupPair.Broadcast(a + 4)) + Avx512BW.MultiplyAddAdjacent(hi1, GroupPair.Broadcast(a + 20)),
            Vector512.Create((short)1));

    /// <summary>AVX-512: groups at w and w + groupBytes (16 rows) against one activation row; y: (16).</summary>
    public static void DotPairAvx512(byte* w, long groupBytes, byte* x, int n, float* y)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        int* sx = (int*)(x + nb * 38);
        var acc = Vector512<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b0 = w + (long)i * BlockBytes, b1 = b0 + groupBytes;
            GroupPair.Prefetch(b0 + Q8_0x8.PrefetchDistance, b1 + Q8_0x8.PrefetchDistance, 3);
            byte* a = x + i * 34 + 2;
            var h = GroupPair.Load(b0 + HOffset, b1 + HOffset).AsUInt16();
            var (l0, h0) = Unpack512(b0, b1, 0, h); var (l1, h1) = Unpack512(b0, b1, 1, h);
            var s = Pair512(l0, h0, l1, h1, a);
            var (l2, h2) = Unpack512(b0, b1, 2, h); var (l3, h3) = Unpack512(b0, b1, 3, h);
            s += Pair512(l2, h2, l3, h3, a + 8);
            acc = GroupPair.Accumulate(acc, s - Vector512.Create(2 * sx[i]), GroupPair.Scales(b0, b1), dx[i]);
        }
        acc.Store(y);
    }

    /// <summary>
    /// AVX-512: groups at w and w + groupBytes (16 rows) against 6 activation rows x + t·xStride; y[t·yStride + r], r &lt; 16.
    /// </summary>
    public static void DotPairAvx512x6(byte* w, long groupBytes, byte* x, int xStride, int n, float* y, int yStride)
    {
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride, x4 = x3 + xStride, x5 = x4 + xStride;
        int tail = nb * 34; // the F32 scales, then the int32 sums 8·Σ a
        var acc0 = Vector512<float>.Zero; var acc1 = Vector512<float>.Zero; var acc2 = Vector512<float>.Zero;
        var acc3 = Vector512<float>.Zero; var acc4 = Vector512<float>.Zero; var acc5 = Vector512<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b0 = w + (long)i * BlockBytes, b1 = b0 + groupBytes;
            int o = i * 34 + 2;
            var h = GroupPair.Load(b0 + HOffset, b1 + HOffset).AsUInt16();
            var (l0, h0) = Unpack512(b0, b1, 0, h); var (l1, h1) = Unpack512(b0, b1, 1, h);
            var s0 = Pair512(l0, h0, l1, h1, x + o); var s1 = Pair512(l0, h0, l1, h1, x1 + o); var s2 = Pair512(l0, h0, l1, h1, x2 + o);
            var s3 = Pair512(l0, h0, l1, h1, x3 + o); var s4 = Pair512(l0, h0, l1, h1, x4 + o); var s5 = Pair512(l0, h0, l1, h1, x5 + o);
            var (l2, h2) = Unpack512(b0, b1, 2, h); var (l3, h3) = Unpack512(b0, b1, 3, h);
            s0 += Pair512(l2, h2, l3, h3, x + o + 8); s1 += Pair512(l2, h2, l3, h3, x1 + o + 8); s2 += Pair512(l2, h2, l3, h3, x2 + o + 8);
            s3 += Pair512(l2, h2, l3, h3, x3 + o + 8); s4 += Pair512(l2, h2, l3, h3, x4 + o + 8); s5 += Pair512(l2, h2, l3, h3, x5 + o + 8);
            var dw = GroupPair.Scales(b0, b1);
            int fo = tail + 4 * i, so = tail + 4 * nb + 4 * i;
            acc0 = GroupPair.Accumulate(acc0, s0 - Vector512.Create(2 * *(int*)(x + so)), dw, *(float*)(x + fo));
            acc1 = GroupPair.Accumulate(acc1, s1 - Vector512.Create(2 * *(int*)(x1 + so)), dw, *(float*)(x1 + fo));
            acc2 = GroupPair.Accumulate(acc2, s2 - Vector512.Create(2 * *(int*)(x2 + so)), dw, *(float*)(x2 + fo));
            acc3 = GroupPair.Accumulate(acc3, s3 - Vector512.Create(2 * *(int*)(x3 + so)), dw, *(float*)(x3 + fo));
            acc4 = GroupPair.Accumulate(acc4, s4 - Vector512.Create(2 * *(int*)(x4 + so)), dw, *(float*)(x4 + fo));
            acc5 = GroupPair.Accumulate(acc5, s5 - Vector512.Create(2 * *(int*)(x5 + so)), dw, *(float*)(x5 + fo));
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride); acc4.Store(y + 4 * yStride); acc5.Store(y + 5 * yStride);
    }
}
