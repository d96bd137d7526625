using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// Q4_0 weights repacked at load into groups of 8 interleaved rows, so that one 256-bit register holds 4 values of each
/// of the 8 rows and the integer and float work of a block is shared by 8 rows (the idea of llama.cpp's q4_0_8x8
/// repack; our own layout and kernels).
///
/// Layout: group g (rows 8g .. 8g+7) is nb = cols/32 consecutive 144-byte blocks (the size of the 8 rows' GGUF blocks); block i of group g:
///   f16   d[8]            row j's block scale
///   byte  q[4][8][4]      q[c][j][k] = row j's Q4_0 byte qs[4c + k]: low nibble = value 4c + k, high = value 16 + 4c + k
/// The nibbles stay unsigned u = w + 8: Σ w·a = Σ u·a − 8·Σ a, with 8·Σ a per activation block from the Q8_0
/// activation row's tail (<see cref="QuantDot.WriteQ8_0Tail"/>).
///
/// Per (row, token) the result is Σ_i fma(d_w·d_a, float(isum_i), acc) in block order, the same float sequence in the
/// 1- and 4-token kernels and in the scalar reference (all three agree bit for bit; a token's result does not depend
/// on its batch).
/// </summary>
public static unsafe partial class Q4_0x8
{
    public const int Rows = 8;
    public const int BlockBytes = Rows * sizeof(ushort) + Rows * 16; // 144: the size of the 8 GGUF blocks

    /// <summary>Bytes of the repacked form of a (rows, cols) Q4_0 matrix; rows must be a multiple of 8, cols of 32.</summary>
    public static long Bytes(int rows, int cols) => (long)(rows / Rows) * (cols / 32) * BlockBytes;

    /// <summary>Repacks a Q4_0 matrix src: (rows, cols), rowBytes apart, into dst (<see cref="Bytes"/> long).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 32 != 0) throw new ArgumentException($"Q4_0x8 needs rows % 8 == 0 and cols % 32 == 0, got {rows}x{cols}");
        int nb = cols / 32;
        for (int g = 0; g < rows / Rows; g++) RepackGroup(src + g * Rows * rowBytes, rowBytes, nb, dst + (long)g * nb * BlockBytes);
    }

    /// <summary>Repacks 8 rows (rowBytes apart, nb Q4_0 blocks each) into one group.</summary>
    public static void RepackGroup(byte* src, long rowBytes, int nb, byte* dst)
    {
        for (int i = 0; i < nb; i++)
        {
            byte* o = dst + (long)i * BlockBytes;
            for (int j = 0; j < Rows; j++)
            {
                byte* a = src + j * rowBytes + i * 18;
                Unsafe.WriteUnaligned(o + 2 * j, Unsafe.ReadUnaligned<ushort>(a));
                for (int c = 0; c < 4; c++) Unsafe.WriteUnaligned(o + 16 + c * 32 + j * 4, Unsafe.ReadUnaligned<uint>(a + 2 + 4 * c));
            }
        }
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the Q4_0 row ((u − 8)·d).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        for (int i = 0; i < n / 32; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
            for (int c = 0; c < 4; c++)
                for (int k = 0; k < 4; k++)
                {
                    int q = b[16 + c * 32 + j * 4 + k];
                    dst[i * 32 + 4 * c + k] = ((q & 0x0F) - 8) * d;
                    dst[i * 32 + 16 + 4 * c + k] = ((q >> 4) - 8) * d;
                }
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
                    for (int c = 0; c < 4; c++)
                        for (int k = 0; k < 4; k++)
                        {
                            int q = b[16 + c * 32 + j * 4 + k];
                            sum += (q & 0x0F) * a[4 * c + k] + (q >> 4) * a[16 + 4 * c + k];
                        }
                    float dw = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
                    acc = MathF.FusedMultiplyAdd(dw * Unsafe.ReadUnaligned<float>(dx + i), sum - Unsafe.ReadUnaligned<int>(sx + i), acc);
                }
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>Σ over the 32 values of one block as 16 int16 lanes (lanes 2j, 2j+1: row j), with a: the activation block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> BlockPairs(Vector256<byte> lo0, Vector256<byte> hi0, Vector256<byte> lo1, Vector256<byte> hi1,
        Vector256<byte> lo2, Vector256<byte> hi2, Vector256<byte> lo3, Vector256<byte> hi3, byte* a)
    {
        // u ∈ [0, 15], a ∈ [−127, 127]: each pmaddubsw lane |u0·a0 + u1·a1| ≤ 3810, 8 of them ≤ 30480: no int16 overflow
        var s0 = Avx2.MultiplyAddAdjacent(lo0, Avx2.BroadcastScalarToVector256((int*)a).AsSByte())
               + Avx2.MultiplyAddAdjacent(hi0, Avx2.BroadcastScalarToVector256((int*)(a + 16)).AsSByte());
        var s1 = Avx2.MultiplyAddAdjacent(lo1, Avx2.BroadcastScalarToVector256((int*)(a + 4)).AsSByte())
               + Avx2.MultiplyAddAdjacent(hi1, Avx2.BroadcastScalarToVector256((int*)(a + 20)).AsSByte());
        var s2 = Avx2.MultiplyAddAdjacent(lo2, Avx2.BroadcastScalarToVector256((int*)(a + 8)).AsSByte())
               + Avx2.MultiplyAddAdjacent(hi2, Avx2.BroadcastScalarToVector256((int*)(a + 24)).AsSByte());
        var s3 = Avx2.MultiplyAddAdjacent(lo3, Avx2.BroadcastScalarToVector256((int*)(a + 12)).AsSByte())
               + Avx2.MultiplyAddAdjacent(hi3, Avx2.BroadcastScalarToVector256((int*)(a + 28)).AsSByte());
        return (s0 + s1) + (s2 + s3);
    }

    /// <summary>acc + (d_w · d_a) · float(Σ u·a − 8·Σ a) for the 8 rows of one block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<short> pairs, Vector256<float> dw, float* dx, int* sx) =>
        Fma.MultiplyAdd(dw * Vector256.Create(*dx), Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)) - Vector256.Create(*sx)), acc);

    /// <summary>The 8 rows' block scales (f16 at the block's start) as F32, exactly (<see cref="QuantDot.F16ToF32"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Scales(byte* b) => QuantDot.F16ToF32(Avx2.ConvertToVector256Int32((short*)b));

    /// <summary>AVX2: consecutive groups (groupBytes apart) against one activation row; y: (8·groups).</summary>
    public static void DotGroupsAvx2(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        for (int g = 0; g < groups; g++) DotAvx2(w + g * groupBytes, x, n, y + 8 * g);
    }

    /// <summary>AVX2: one group (8 rows) against one activation row; y: (8).</summary>
    public static void DotAvx2(byte* wg, byte* x, int n, float* y)
    {
        var mask = Vector256.Create((byte)0x0F);
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        int* sx = (int*)(x + nb * 38);
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            byte* ahead = b + Q8_0x8.PrefetchDistance; // the block's 3 cache lines, ahead of use (decode streams the weights)
            Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128);
            var p0 = Vector256.Load(b + 16); var p1 = Vector256.Load(b + 48); var p2 = Vector256.Load(b + 80); var p3 = Vector256.Load(b + 112);
            var pairs = BlockPairs(p0 & mask, Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte() & mask, p1 & mask, Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte() & mask,
                p2 & mask, Avx2.ShiftRightLogical(p2.AsUInt16(), 4).AsByte() & mask, p3 & mask, Avx2.ShiftRightLogical(p3.AsUInt16(), 4).AsByte() & mask, x + i * 34 + 2);
            acc = Accumulate(acc, pairs, Scales(b), dx + i, sx + i);
        }
        acc.Store(y);
    }

    /// <summary>4 values of each row (lo: values 4c.., hi: 16 + 4c..) against one activation block a, added to 16 int16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> Quarter(Vector256<short> acc, Vector256<byte> lo, Vector256<byte> hi, byte* a) =>
        acc + Avx2.MultiplyAddAdjacent(lo, Avx2.BroadcastScalarToVector256((int*)a).AsSByte())
            + Avx2.MultiplyAddAdjacent(hi, Avx2.BroadcastScalarToVector256((int*)(a + 16)).AsSByte());

    /// <summary>AVX2: one group (8 rows) against 4 activation rows x + t·xStride; y[t·yStride + j].</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        var mask = Vector256.Create((byte)0x0F);
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        int* s0 = (int*)(x + nb * 38), s1 = (int*)(x1 + nb * 38), s2 = (int*)(x2 + nb * 38), s3 = (int*)(x3 + nb * 38);
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            int o = i * 34 + 2;
            // c outer, tokens inner: one quarter of the group's nibbles live at a time (4 int16 sums + 4 float sums)
            var q0 = Vector256<short>.Zero; var q1 = Vector256<short>.Zero; var q2 = Vector256<short>.Zero; var q3 = Vector256<short>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var p = Vector256.Load(b + 16 + 32 * c);
                var lo = p & mask; var hi = Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte() & mask;
                int oc = o + 4 * c;
                q0 = Quarter(q0, lo, hi, x + oc); q1 = Quarter(q1, lo, hi, x1 + oc); q2 = Quarter(q2, lo, hi, x2 + oc); q3 = Quarter(q3, lo, hi, x3 + oc);
            }
            var dw = Scales(b);
            acc0 = Accumulate(acc0, q0, dw, d0 + i, s0 + i);
            acc1 = Accumulate(acc1, q1, dw, d1 + i, s1 + i);
            acc2 = Accumulate(acc2, q2, dw, d2 + i, s2 + i);
            acc3 = Accumulate(acc3, q3, dw, d3 + i, s3 + i);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }
}
