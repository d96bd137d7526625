using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// AVX-512 (F + BW) kernels of <see cref="Q4_0x8"/>: two groups (16 rows) at a time (<see cref="GroupPair"/>), 1 or 6
/// tokens. The same integer work as the 256-bit kernels, twice as wide: unsigned nibbles u ∈ [0, 15] against the signed
/// activations with vpmaddubsw (lanes |u0·a0 + u1·a1| ≤ 3810), the 8 pmaddubsw results of a block summed in int16
/// (≤ 30480), one vpmaddwd per block and token, minus 8·Σ a from the activation tail.
/// </summary>
public static unsafe partial class Q4_0x8
{
    /// <summary>AVX-512: consecutive groups (groupBytes apart) against one activation row, two at a time; y: (8·groups).</summary>
    public static void DotGroupsAvx512(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        int g = 0;
        for (; g + 2 <= groups; g += 2) DotPairAvx512(w + g * groupBytes, groupBytes, x, n, y + 8 * g);
        if (g < groups) DotAvx2(w + g * groupBytes, x, n, y + 8 * g); // an odd last group: the same float chain
    }

    /// <summary>Low and high nibbles of the 32 bytes of column c of both groups' blocks: values 4c + k and 16 + 4c + k of each row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte> Lo, Vector512<byte> Hi) Nibbles(byte* b0, byte* b1, int c)
    {
        var p = GroupPair.Load(b0 + 16 + 32 * c, b1 + 16 + 32 * c);
        var m = Vector512.Create((byte)0x0F);
        return (p & m, Vector512.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & m);
    }

    /// <summary>acc + Σ over 4 values (lo) and 4 more (hi) of each of the 16 rows against the activation block a (column c), in int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Quarter(Vector512<short> acc, Vector512<byte> lo, Vector512<byte> hi, byte* a) =>
        acc + Avx512BW.MultiplyAddAdjacent(lo, GroupPair.Broadcast(a)) + Avx512BW.MultiplyAddAdjacent(hi, GroupPair.Broadcast(a + 16));

    /// <summary>The block's int32 sums Σ w·a = Σ u·a − 8·Σ a of the 16 rows, from their int16 pair sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Sums(Vector512<short> pairs, int s8) =>
        Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1)) - Vector512.Create(s8);

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
            byte* a = x + i * 34 + 2;
            GroupPair.Prefetch(b0 + Q8_0x8.PrefetchDistance, b1 + Q8_0x8.PrefetchDistance, 3);
            // the 4 columns as independent sums, added as a tree (one token: no other work to hide a serial chain)
            var (l0, h0) = Nibbles(b0, b1, 0); var (l1, h1) = Nibbles(b0, b1, 1);
            var (l2, h2) = Nibbles(b0, b1, 2); var (l3, h3) = Nibbles(b0, b1, 3);
            var q = (Quarter(Vector512<short>.Zero, l0, h0, a) + Quarter(Vector512<short>.Zero, l1, h1, a + 4))
                  + (Quarter(Vector512<short>.Zero, l2, h2, a + 8) + Quarter(Vector512<short>.Zero, l3, h3, a + 12));
            acc = GroupPair.Accumulate(acc, Sums(q, sx[i]), GroupPair.Scales(b0, b1), dx[i]);
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
            var q0 = Vector512<short>.Zero; var q1 = Vector512<short>.Zero; var q2 = Vector512<short>.Zero;
            var q3 = Vector512<short>.Zero; var q4 = Vector512<short>.Zero; var q5 = Vector512<short>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var (lo, hi) = Nibbles(b0, b1, c);
                int oc = o + 4 * c;
                q0 = Quarter(q0, lo, hi, x + oc); q1 = Quarter(q1, lo, hi, x1 + oc); q2 = Quarter(q2, lo, hi, x2 + oc);
                q3 = Quarter(q3, lo, hi, x3 + oc); q4 = Quarter(q4, lo, hi, x4 + oc); q5 = Quarter(q5, lo, hi, x5 + oc);
            }
            var dw = GroupPair.Scales(b0, b1);
            int fo = tail + 4 * i, so = tail + 4 * nb + 4 * i;
            acc0 = GroupPair.Accumulate(acc0, Sums(q0, *(int*)(x + so)), dw, *(float*)(x + fo));
            acc1 = GroupPair.Accumulate(acc1, Sums(q1, *(int*)(x1 + so)), dw, *(float*)(x1 + fo));
            acc2 = GroupPair.Accumulate(acc2, Sums(q2, *(int*)(x2 + so)), dw, *(float*)(x2 + fo));
            acc3 = GroupPair.Accumulate(acc3, Sums(q3, *(int*)(x3 + so)), dw, *(float*)(x3 + fo));
            acc4 = GroupPair.Accumulate(acc4, Sums(q4, *(int*)(x4 + so)), dw, *(float*)(x4 + fo));
            acc5 = GroupPair.Accumulate(acc5, Sums(q5, *(int*)(x5 + so)), dw, *(float*)(x5 + fo));
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride);
        acc3.Store(y + 3 * yStride); acc4.Store(y + 4 * yStride); acc5.Store(y + 5 * yStride);
    }
}
