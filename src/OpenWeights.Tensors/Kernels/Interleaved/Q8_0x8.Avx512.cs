using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// AVX-512 kernels of <see cref="Q8_0x8"/>: two groups (16 rows) at a time (<see cref="GroupPair"/>), 1 or 6 tokens.
///
/// The products: .NET 10 exposes no 512-bit vpdpbusd (AVX512_VNNI), and 512-bit vpmaddubsw + vpmaddwd with the sign
/// trick costs as many instructions per product as the 256-bit AVX-VNNI vpdpbusd. So the integer sums stay 256-bit
/// vpdpbusd (one per group), but without the per-token sign of the AVX2 kernels: the weights are made unsigned once per
/// load, u = w + 128 (w XOR 0x80), shared by all tokens, and Σ w·a = Σ u·a − 128·Σ a, with 128·Σ a = 16 · (8·Σ a)
/// from the activation row's tail (<see cref="QuantDot.WriteQ8_0Tail"/>); |Σ u·a| ≤ 32·255·127 fits int32. (vpmaddubsw
/// could not take u: its int16 pair sums would saturate, so this needs VNNI.) The float stage is 512-bit: one scale
/// conversion, multiply-add and store for the 16 rows. Needs AVX-VNNI (<see cref="Avx512Ready"/>); without it the
/// 256-bit kernels run. Part of the gain over the AVX2 kernels (not measured apart) is the dropped sign, which a 256-bit
/// AVX-VNNI kernel could have too.
/// </summary>
public static unsafe partial class Q8_0x8
{
    /// <summary>The AVX-512 kernels may run: the AVX-512 path is on and the CPU has AVX-VNNI.</summary>
    internal static bool Avx512Ready => QuantDot.Avx512Path && AvxVnni.IsSupported;

    /// <summary>AVX-512: consecutive groups (groupBytes apart) against one activation row, two at a time; y: (8·groups).</summary>
    public static void DotGroupsAvx512(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        int g = 0;
        for (; g + 2 <= groups; g += 2) DotPairAvx512(w + g * groupBytes, groupBytes, x, n, y + 8 * g);
        if (g < groups) DotAvx2(w + g * groupBytes, x, n, y + 8 * g); // an odd last group: the same float chain
    }

    /// <summary>AVX-512: groups at w and w + groupBytes (16 rows) against one activation row; y: (16).</summary>
    public static void DotPairAvx512(byte* w, long groupBytes, byte* x, int n, float* y)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        int* sx = (int*)(x + nb * 38);
        var flip = Vector256.Create((byte)0x80);
        var acc = Vector512<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b0 = w + (long)i * BlockBytes, b1 = b0 + groupBytes;
            byte* a = x + i * 34 + 2;
            GroupPair.Prefetch(b0 + PrefetchDistance, b1 + PrefetchDistance, 5);
            // even and odd columns in separate sums (two vpdpbusd chains per group, not one of 8); e0 starts at −128·Σ a,
            // the offset of u = w + 128
            var e0 = Vector256.Create(-16 * sx[i]); var e1 = e0; var o0 = Vector256<int>.Zero; var o1 = o0;
            for (int c = 0; c < 8; c += 2)
            {
                var av = Avx2.BroadcastScalarToVector256((int*)(a + 4 * c)).AsSByte();
                e0 = AvxVnni.MultiplyWideningAndAdd(e0, Vector256.Load(b0 + 16 + 32 * c) ^ flip, av);
                e1 = AvxVnni.MultiplyWideningAndAdd(e1, Vector256.Load(b1 + 16 + 32 * c) ^ flip, av);
                av = Avx2.BroadcastScalarToVector256((int*)(a + 4 * c + 4)).AsSByte();
                o0 = AvxVnni.MultiplyWideningAndAdd(o0, Vector256.Load(b0 + 48 + 32 * c) ^ flip, av);
                o1 = AvxVnni.MultiplyWideningAndAdd(o1, Vector256.Load(b1 + 48 + 32 * c) ^ flip, av);
            }
            acc = GroupPair.Accumulate(acc, Vector512.Create(e0 + o0, e1 + o1), GroupPair.Scales(b0, b1), dx[i]);
        }
        acc.Store(y);
    }

    /// <summary>
    /// AVX-512: groups at w and w + groupBytes (16 rows) against 6 activation rows x + t·xStride; y[t·yStride + r], r &lt; 16.
    /// Two passes of 3 tokens: the VEX-encoded vpdpbusd reaches only registers 0-15, which hold 6 integer sums, the two
    /// weight vectors and the broadcast activations of 3 tokens, not those of 6 (the JIT would shuffle them through).
    /// </summary>
    public static void DotPairAvx512x6(byte* w, long groupBytes, byte* x, int xStride, int n, float* y, int yStride)
    {
        DotPairAvx512x3(w, groupBytes, x, xStride, n, y, yStride);
        DotPairAvx512x3(w, groupBytes, x + 3 * xStride, xStride, n, y + 3 * yStride, yStride);
    }

    /// <summary>AVX-512: groups at w and w + groupBytes (16 rows) against 3 activation rows x + t·xStride; y[t·yStride + r], r &lt; 16.</summary>
    public static void DotPairAvx512x3(byte* w, long groupBytes, byte* x, int xStride, int n, float* y, int yStride)
    {
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride;
        int tail = nb * 34; // the F32 scales, then the int32 sums 8·Σ a
        var flip = Vector256.Create((byte)0x80);
        var acc0 = Vector512<float>.Zero; var acc1 = Vector512<float>.Zero; var acc2 = Vector512<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b0 = w + (long)i * BlockBytes, b1 = b0 + groupBytes;
            int o = i * 34 + 2, so = tail + 4 * nb + 4 * i;
            // (group, token) integer sums, started at −128·Σ a of the token's block
            var p0 = Vector256.Create(-16 * *(int*)(x + so)); var q0 = p0;
            var p1 = Vector256.Create(-16 * *(int*)(x1 + so)); var q1 = p1;
            var p2 = Vector256.Create(-16 * *(int*)(x2 + so)); var q2 = p2;
            for (int c = 0; c < 8; c++)
            {
                var u0 = Vector256.Load(b0 + 16 + 32 * c) ^ flip;
                var u1 = Vector256.Load(b1 + 16 + 32 * c) ^ flip;
                int oc = o + 4 * c;
                var a = Avx2.BroadcastScalarToVector256((int*)(x + oc)).AsSByte();
                p0 = AvxVnni.MultiplyWideningAndAdd(p0, u0, a); q0 = AvxVnni.MultiplyWideningAndAdd(q0, u1, a);
                a = Avx2.BroadcastScalarToVector256((int*)(x1 + oc)).AsSByte();
                p1 = AvxVnni.MultiplyWideningAndAdd(p1, u0, a); q1 = AvxVnni.MultiplyWideningAndAdd(q1, u1, a);
                a = Avx2.BroadcastScalarToVector256((int*)(x2 + oc)).AsSByte();
                p2 = AvxVnni.MultiplyWideningAndAdd(p2, u0, a); q2 = AvxVnni.MultiplyWideningAndAdd(q2, u1, a);
            }
            var dw = GroupPair.Scales(b0, b1);
            acc0 = GroupPair.Accumulate(acc0, Vector512.Create(p0, q0), dw, *(float*)(x + tail + 4 * i));
            acc1 = GroupPair.Accumulate(acc1, Vector512.Create(p1, q1), dw, *(float*)(x1 + tail + 4 * i));
            acc2 = GroupPair.Accumulate(acc2, Vector512.Create(p2, q2), dw, *(float*)(x2 + tail + 4 * i));
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride);
    }
}
