using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// Q8_0 weights repacked at load into groups of 8 interleaved rows (as <see cref="Q4_0x8"/>): one 256-bit register
/// holds 4 consecutive values of each of the 8 rows, multiplied with 4 activation values broadcast to every row.
///
/// Layout: group g (rows 8g .. 8g+7) is nb = cols/32 consecutive 272-byte blocks (the size of the 8 rows' GGUF blocks); block i of group g:
///   f16    d[8]           row j's block scale
///   sbyte  q[8][8][4]     q[c][j][k] = row j's value 4c + k
/// pmaddubsw needs one unsigned operand: |w| against the activations with w's sign (ggml's sign trick), one
/// pmaddwd per 4 values (two int16 pairs may reach 2·127·127, so they are not summed in int16).
///
/// Per (row, token) the result is Σ_i fma(d_w·d_a, float(isum_i), acc) in block order, the same float sequence in the
/// 1- and 4-token kernels and the scalar reference (all three agree bit for bit).
/// </summary>
public static unsafe partial class Q8_0x8
{
    public const int Rows = 8;
    public const int BlockBytes = Rows * sizeof(ushort) + Rows * 32; // 272: the size of the 8 GGUF blocks

    /// <summary>Bytes of the repacked form of a (rows, cols) Q8_0 matrix; rows must be a multiple of 8, cols of 32.</summary>
    public static long Bytes(int rows, int cols) => (long)(rows / Rows) * (cols / 32) * BlockBytes;

    /// <summary>Repacks a Q8_0 matrix src: (rows, cols), rowBytes apart, into dst (<see cref="Bytes"/> long).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 32 != 0) throw new ArgumentException($"Q8_0x8 needs rows % 8 == 0 and cols % 32 == 0, got {rows}x{cols}");
        int nb = cols / 32;
        for (int g = 0; g < rows / Rows; g++)
            for (int i = 0; i < nb; i++)
            {
                byte* o = dst + ((long)g * nb + i) * BlockBytes;
                for (int j = 0; j < Rows; j++)
                {
                    byte* a = src + (g * Rows + j) * rowBytes + i * 34;
                    Unsafe.WriteUnaligned(o + 2 * j, Unsafe.ReadUnaligned<ushort>(a));
                    for (int c = 0; c < 8; c++) Unsafe.WriteUnaligned(o + 16 + c * 32 + j * 4, Unsafe.ReadUnaligned<uint>(a + 2 + 4 * c));
                }
            }
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the Q8_0 row (q·d).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        for (int i = 0; i < n / 32; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
            for (int c = 0; c < 8; c++)
                for (int k = 0; k < 4; k++) dst[i * 32 + 4 * c + k] = ((sbyte*)b)[16 + c * 32 + j * 4 + k] * d;
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
            for (int j = 0; j < Rows; j++)
            {
                float acc = 0;
                for (int i = 0; i < nb; i++)
                {
                    byte* b = wg + (long)i * BlockBytes;
                    sbyte* a = (sbyte*)(xt + i * 34 + 2);
                    int sum = 0;
                    for (int c = 0; c < 8; c++)
                        for (int k = 0; k < 4; k++) sum += ((sbyte*)b)[16 + c * 32 + j * 4 + k] * a[4 * c + k];
                    float dw = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
                    acc = MathF.FusedMultiplyAdd(dw * Unsafe.ReadUnaligned<float>(dx + i), sum, acc);
                }
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>
    /// acc + Σ over 4 values of each row (|w| = aw, signs from w) · the 4 activation values at a, broadcast. With AVX-VNNI one
    /// vpdpbusd (u8 × s8, 4 products summed into each int32) replaces vpmaddubsw + vpmaddwd; the result is the same integer:
    /// |w| ≤ 128 and |a| ≤ 127, so the int16 pair sums of vpmaddubsw (≤ 32,512) never saturate.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quad(Vector256<int> acc, Vector256<byte> aw, Vector256<sbyte> w, byte* a)
    {
        var sa = Avx2.Sign(Avx2.BroadcastScalarToVector256((int*)a).AsSByte(), w);
        return AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(acc, aw, sa)
            : acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, sa), Vector256.Create((short)1));
    }

    /// <summary>acc + (d_w · d_a) · float(isum) for the 8 rows of one block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> isum, Vector256<float> dw, float* dx) =>
        Fma.MultiplyAdd(dw * Vector256.Create(*dx), Vector256.ConvertToSingle(isum), acc);

    /// <summary>How far ahead (bytes) the single-token interleaved kernels prefetch weights.</summary>
    internal const int PrefetchDistance = 8192;

    /// <summary>Asks for the 5 cache lines of a block ahead of use (decode streams weights faster than the hardware prefetcher alone fetches them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* p)
    {
        Sse.Prefetch0(p); Sse.Prefetch0(p + 64); Sse.Prefetch0(p + 128); Sse.Prefetch0(p + 192); Sse.Prefetch0(p + 256);
    }

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
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            byte* a = x + i * 34 + 2;
            Prefetch(b + PrefetchDistance);
            var s = Vector256<int>.Zero;
            for (int c = 0; c < 8; c++)
            {
                var w = Vector256.Load((sbyte*)(b + 16 + 32 * c));
                s = Quad(s, Avx2.Abs(w), w, a + 4 * c);
            }
            acc = Accumulate(acc, s, Q4_0x8.Scales(b), dx + i);
        }
        acc.Store(y);
    }

    /// <summary>AVX2: one group (8 rows) against 4 activation rows x + t·xStride; y[t·yStride + j].</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            int o = i * 34 + 2;
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int c = 0; c < 8; c++)
            {
                var w = Vector256.Load((sbyte*)(b + 16 + 32 * c));
                var aw = Avx2.Abs(w);
                int oc = o + 4 * c;
                s0 = Quad(s0, aw, w, x + oc); s1 = Quad(s1, aw, w, x1 + oc); s2 = Quad(s2, aw, w, x2 + oc); s3 = Quad(s3, aw, w, x3 + oc);
            }
            var dw = Q4_0x8.Scales(b);
            acc0 = Accumulate(acc0, s0, dw, d0 + i);
            acc1 = Accumulate(acc1, s1, dw, d1 + i);
            acc2 = Accumulate(acc2, s2, dw, d2 + i);
            acc3 = Accumulate(acc3, s3, dw, d3 + i);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }
}
