using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// Q5_0 weights repacked at load into groups of 8 interleaved rows (as <see cref="Q4_0x8"/>, with the 5th bits
/// rearranged so that one shift and one mask bring them beside the nibbles). Q5_0 is llama.cpp's fallback for K-quant
/// files whose rows are not a multiple of 256 (SmolLM2's 576, Qwen2.5-0.5B's 896).
///
/// Layout: group g (rows 8g .. 8g+7) is nb = cols/32 consecutive 176-byte blocks (the size of the 8 rows' GGUF
/// blocks); block i of group g:
///   f16   d[8]            row j's block scale
///   byte  q[4][8][4]      q[c][j][k] = row j's Q5_0 byte qs[4c + k]: low nibble = value 4c + k, high = value 16 + 4c + k
///   byte  h[8][4]         h[j][k], bit c' = 5th bit of row j's value 4c' + k (c' &lt; 4) or 16 + 4(c' − 4) + k (c' ≥ 4)
/// The values stay unsigned u = w + 16 ∈ [0, 31]: Σ w·a = Σ u·a − 16·Σ a, with 8·Σ a from the Q8_0 activation tail.
/// pmaddubsw lanes |u0·a0 + u1·a1| ≤ 7874: 4 of them are summed in int16, then pmaddwd.
///
/// Per (row, token) the result is Σ_i fma(d_w·d_a, float(isum_i), acc) in block order, the same float sequence in the
/// 1- and 4-token kernels and the scalar reference (all three agree bit for bit).
/// </summary>
public static unsafe partial class Q5_0x8
{
    public const int Rows = 8;
    public const int BlockBytes = Rows * sizeof(ushort) + Rows * 16 + Rows * 4; // 176: the size of the 8 GGUF blocks
    private const int QOffset = 16, HOffset = 144;

    /// <summary>Repacks a Q5_0 matrix src: (rows, cols), rowBytes apart, into dst (rows/8 · cols/32 · 176 bytes).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 32 != 0) throw new ArgumentException($"Q5_0x8 needs rows % 8 == 0 and cols % 32 == 0, got {rows}x{cols}");
        int nb = cols / 32;
        for (int g = 0; g < rows / Rows; g++)
            for (int i = 0; i < nb; i++)
            {
                byte* o = dst + ((long)g * nb + i) * BlockBytes;
                for (int j = 0; j < Rows; j++)
                {
                    byte* a = src + (g * Rows + j) * rowBytes + i * 22;
                    Unsafe.WriteUnaligned(o + 2 * j, Unsafe.ReadUnaligned<ushort>(a));
                    uint qh = Unsafe.ReadUnaligned<uint>(a + 2);
                    for (int c = 0; c < 4; c++) Unsafe.WriteUnaligned(o + QOffset + c * 32 + j * 4, Unsafe.ReadUnaligned<uint>(a + 6 + 4 * c));
                    for (int k = 0; k < 4; k++)
                    {
                        int h = 0;
                        for (int c = 0; c < 8; c++) h |= (int)((qh >> Value(c, k)) & 1) << c;
                        o[HOffset + 4 * j + k] = (byte)h;
                    }
                }
            }
    }

    /// <summary>The value index held by bit c' of h[j][k] (and by nibble c' of the byte column k).</summary>
    private static int Value(int c, int k) => c < 4 ? 4 * c + k : 16 + 4 * (c - 4) + k;

    /// <summary>Row j of a block as unsigned 5-bit values u = w + 16, value index v.</summary>
    private static int U(byte* b, int j, int v)
    {
        int e = v % 16, c = e / 4, k = e % 4;
        byte q = b[QOffset + c * 32 + j * 4 + k];
        int nib = v < 16 ? q & 0x0F : q >> 4;
        int bit = (b[HOffset + 4 * j + k] >> (v < 16 ? c : c + 4)) & 1;
        return nib | bit << 4;
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the Q5_0 row ((u − 16)·d).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        for (int i = 0; i < n / 32; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
            for (int v = 0; v < 32; v++) dst[i * 32 + v] = (U(b, j, v) - 16) * d;
        }
    }

    /// <summary>
    /// Scalar reference: y[t·yStride + j] = row j of group wg · activation row t (Q8_0 with tails, x + t·xStride), for
    /// t &lt; tokens, j &lt; 8.
    /// </summary>
    public static void DotScalar(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride)
    {
        int nb = n / 32;
        for (int t = 0; t < tokens; t++)
        {
            byte* xt = x + (long)t * xStride;
            float* dx = (float*)(xt + nb * 34);
            int* sx = (int*)(xt + nb * 38);
            for (int j = 0; j < Rows; j++)
            {
                float acc = 0;
                for (int i = 0; i < nb; i++)
                {
                    byte* b = wg + (long)i * BlockBytes;
                    sbyte* a = (sbyte*)(xt + i * 34 + 2);
                    int sum = 0;
                    for (int v = 0; v < 32; v++) sum += U(b, j, v) * a[v];
                    float dw = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
                    acc = MathF.FusedMultiplyAdd(dw * Unsafe.ReadUnaligned<float>(dx + i), sum - 2 * Unsafe.ReadUnaligned<int>(sx + i), acc);
                }
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>
    /// The unsigned 5-bit values of byte column c: lo = values 4c + k, hi = 16 + 4c + k (k = 0..3) of each row, from
    /// the nibbles p and the 5th bits h (bit c for lo, bit c + 4 for hi, moved to bit 4; bits that cross into the
    /// neighbouring byte of the 16-bit shift never land on bit 4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Lo, Vector256<byte> Hi) Unpack(byte* b, int c, Vector256<ushort> h)
    {
        var p = Vector256.Load(b + QOffset + 32 * c);
        var m4 = Vector256.Create((byte)0x0F); var b4 = Vector256.Create((byte)0x10);
        var lo = (p & m4) | (Vector256.ShiftLeft(h, 4 - c).AsByte() & b4); // c is a constant once inlined
        var hi = (Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & m4) | (Vector256.ShiftRightLogical(h, c).AsByte() & b4);
        return (lo, hi);
    }

    /// <summary>Column pair (c, c + 1) against one activation block a: Σ as 8 int32 lanes (one per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair(Vector256<byte> lo0, Vector256<byte> hi0, Vector256<byte> lo1, Vector256<byte> hi1, byte* a) =>
        Avx2.MultiplyAddAdjacent(
            Avx2.MultiplyAddAdjacent(lo0, Avx2.BroadcastScalarToVector256((int*)a).AsSByte())
            + Avx2.MultiplyAddAdjacent(hi0, Avx2.BroadcastScalarToVector256((int*)(a + 16)).AsSByte())
            + Avx2.MultiplyAddAdjacent(lo1, Avx2.BroadcastScalarToVector256((int*)(a + 4)).AsSByte())
            + Avx2.MultiplyAddAdjacent(hi1, Avx2.BroadcastScalarToVector256((int*)(a + 20)).AsSByte()),
            Vector256.Create((short)1));

    /// <summary>acc + (d_w · d_a) · float(Σ u·a − 16·Σ a) for the 8 rows of one block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> isum, Vector256<float> dw, float* dx, int* sx) =>
        Fma.MultiplyAdd(dw * Vector256.Create(*dx), Vector256.ConvertToSingle(isum - Vector256.Create(2 * *sx)), acc);

    /// <summary>AVX2: consecutive groups (groupBytes apart) against one activation row; y: (8·groups).</summary>
    public static void DotGroupsAvx2(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        for (int g = 0; g < groups; g++) DotAvx2(w + g * groupBytes, x, n, y + 8 * g);
    }

    /// <summary>AVX2: one group (8 rows) against one activation row; y: (8).</summary>
    public static void DotAvx2(byte* wg, byte* x, int n, float* y)
    {
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        int* sx = (int*)(x + nb * 38);
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            byte* ahead = b + Q8_0x8.PrefetchDistance;
            Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128);
            byte* a = x + i * 34 + 2;
            var h = Vector256.Load(b + HOffset).AsUInt16();
            var (l0, h0) = Unpack(b, 0, h); var (l1, h1) = Unpack(b, 1, h);
            var s = Pair(l0, h0, l1, h1, a);
            var (l2, h2) = Unpack(b, 2, h); var (l3, h3) = Unpack(b, 3, h);
            s += Pair(l2, h2, l3, h3, a + 8);
            acc = Accumulate(acc, s, Q4_0x8.Scales(b), dx + i, sx + i);
        }
        acc.Store(y);
    }

    /// <summary>AVX2: one group (8 rows) against 4 activation rows x + t·xStride; y[t·yStride + j].</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        int* s0 = (int*)(x + nb * 38), s1 = (int*)(x1 + nb * 38), s2 = (int*)(x2 + nb * 38), s3 = (int*)(x3 + nb * 38);
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            int o = i * 34 + 2;
            var h = Vector256.Load(b + HOffset).AsUInt16();
            var (l0, h0) = Unpack(b, 0, h); var (l1, h1) = Unpack(b, 1, h);
            var q0 = Pair(l0, h0, l1, h1, x + o); var q1 = Pair(l0, h0, l1, h1, x1 + o);
            var q2 = Pair(l0, h0, l1, h1, x2 + o); var q3 = Pair(l0, h0, l1, h1, x3 + o);
            var (l2, h2) = Unpack(b, 2, h); var (l3, h3) = Unpack(b, 3, h);
            q0 += Pair(l2, h2, l3, h3, x + o + 8); q1 += Pair(l2, h2, l3, h3, x1 + o + 8);
            q2 += Pair(l2, h2, l3, h3, x2 + o + 8); q3 += Pair(l2, h2, l3, h3, x3 + o + 8);
            var dw = Q4_0x8.Scales(b);
            acc0 = Accumulate(acc0, q0, dw, d0 + i, s0 + i);
            acc1 = Accumulate(acc1, q1, dw, d1 + i, s1 + i);
            acc2 = Accumulate(acc2, q2, dw, d2 + i, s2 + i);
            acc3 = Accumulate(acc3, q3, dw, d3 + i, s3 + i);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }
}
