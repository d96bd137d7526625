using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// IQ4_XS weights repacked at load into groups of 8 interleaved rows: each 32-value group of a super-block is a
/// <see cref="Lut4x8"/> block (table lookup, |w|·sign(a, w) summed into one int32 per row), multiplied by the 8 rows'
/// signed 6-bit group scales in int32 (|Σ| ≤ 8 groups · 32·127·127 · 32 &lt; 2^31), then one FMA per super-block and row.
///
/// Layout: group g (rows 8g .. 8g+7) is cols/256 consecutive 1104-byte super-blocks (+1.5% over the GGUF rows); super-block i:
///   f16   d[8]             row j's super-block scale
///   i8    ls[8][8]         ls[k][j] = row j's group k scale − 32 (−32..31)
///   byte  q[8][4][8][4]    q[k][c][j][b] = row j's byte qs[16k + 4c + b]: low nibble = value 32k + 4c + b, high = 32k + 16 + 4c + b
///
/// Per (row, token) the result is Σ_i fma(d_w·d_a, float(Σ_k ls_k·isum_k), acc) in super-block order, the same float
/// sequence in the 1- and 4-token kernels and in the scalar reference (bit for bit; batch invariant).
/// </summary>
public static unsafe class IQ4_XSx8
{
    public const int Rows = 8;
    public const int BlockBytes = 16 + 64 + 1024;
    private const int ScalesAt = 16, NibblesAt = 80;

    private static readonly Vector256<sbyte> table = NonLinear4.Table256(NonLinear4.Iq4Values);

    public static long Bytes(int rows, int cols) => (long)(rows / Rows) * (cols / 256) * BlockBytes;

    /// <summary>Repacks an IQ4_XS matrix src: (rows, cols), rowBytes apart, into dst (<see cref="Bytes"/> long).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 256 != 0) throw new ArgumentException($"IQ4_XSx8 needs rows % 8 == 0 and cols % 256 == 0, got {rows}x{cols}");
        int nb = cols / 256;
        for (int g = 0; g < rows / Rows; g++)
            for (int i = 0; i < nb; i++)
            {
                byte* o = dst + ((long)g * nb + i) * BlockBytes;
                for (int j = 0; j < Rows; j++)
                {
                    byte* a = src + (g * Rows + j) * rowBytes + i * BlockIQ4_XS.BlockBytes;
                    Unsafe.WriteUnaligned(o + 2 * j, Unsafe.ReadUnaligned<ushort>(a));
                    for (int k = 0; k < 8; k++)
                    {
                        o[ScalesAt + 8 * k + j] = (byte)(sbyte)(BlockIQ4_XS.GroupScale(a, k) - 32);
                        for (int c = 0; c < 4; c++)
                            Unsafe.WriteUnaligned(o + NibblesAt + 128 * k + 32 * c + 4 * j, Unsafe.ReadUnaligned<uint>(a + 8 + 16 * k + 4 * c));
                    }
                }
            }
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the row ((d · (ls − 32)) · grid[q]).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        var values = NonLinear4.Iq4Values;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            float d = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
            for (int k = 0; k < 8; k++)
            {
                float dl = d * (sbyte)b[ScalesAt + 8 * k + j];
                float* y = dst + 256 * i + 32 * k;
                for (int c = 0; c < 4; c++)
                    for (int e = 0; e < 4; e++)
                    {
                        int q = b[NibblesAt + 128 * k + 32 * c + 4 * j + e];
                        y[4 * c + e] = dl * values[q & 0x0F];
                        y[16 + 4 * c + e] = dl * values[q >> 4];
                    }
            }
        }
    }

    /// <summary>Scalar reference: y[t·yStride + j] = row j of group wg · activation row t (Q8_K, x + t·xStride).</summary>
    public static void DotScalar(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride)
    {
        var values = NonLinear4.Iq4Values;
        for (int t = 0; t < tokens; t++)
        {
            byte* xt = x + (long)t * xStride;
            for (int j = 0; j < Rows; j++)
            {
                float acc = 0;
                for (int i = 0; i < n / 256; i++)
                {
                    byte* b = wg + (long)i * BlockBytes;
                    byte* xb = xt + i * BlockQ8_K.BlockBytes;
                    sbyte* a = (sbyte*)(xb + 4);
                    int total = 0;
                    for (int k = 0; k < 8; k++)
                    {
                        int sum = 0;
                        for (int c = 0; c < 4; c++)
                            for (int e = 0; e < 4; e++)
                            {
                                int q = b[NibblesAt + 128 * k + 32 * c + 4 * j + e];
                                sum += values[q & 0x0F] * a[32 * k + 4 * c + e] + values[q >> 4] * a[32 * k + 16 + 4 * c + e];
                            }
                        total += (sbyte)b[ScalesAt + 8 * k + j] * sum;
                    }
                    float dw = HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(b + 2 * j));
                    acc = MathF.FusedMultiplyAdd(dw * Unsafe.ReadUnaligned<float>(xb), total, acc);
                }
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>acc + Σ over 4 values of each row (|w| = aw, signs from w) · the 4 activation values at a, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quad(Vector256<int> acc, Vector256<byte> aw, Vector256<sbyte> w, byte* a)
    {
        var sa = Avx2.Sign(Avx2.BroadcastScalarToVector256((int*)a).AsSByte(), w);
        return AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(acc, aw, sa)
            : acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, sa), Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<sbyte> Lo, Vector256<sbyte> Hi) Unpack(byte* p)
    {
        var q = Vector256.Load(p);
        var mask = Vector256.Create((byte)0x0F);
        return (Avx2.Shuffle(table, (q & mask).AsSByte()), Avx2.Shuffle(table, (Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask).AsSByte()));
    }

    /// <summary>The 8 rows' scales of group k as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GroupScales(byte* b, int k) => Avx2.ConvertToVector256Int32((sbyte*)(b + ScalesAt + 8 * k));

    /// <summary>AVX2: consecutive groups (groupBytes apart) against one Q8_K activation row; y: (8·groups).</summary>
    public static void DotGroupsAvx2(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        int nb = n / 256;
        for (int g = 0; g < groups; g++)
        {
            byte* wg = w + g * groupBytes;
            var acc = Vector256<float>.Zero;
            for (int i = 0; i < nb; i++)
            {
                byte* b = wg + (long)i * BlockBytes;
                byte* xb = x + i * BlockQ8_K.BlockBytes;
                byte* a = xb + 4;
                var total = Vector256<int>.Zero;
                for (int k = 0; k < 8; k++)
                {
                    byte* ahead = b + NibblesAt + 128 * k + Q8_0x8.PrefetchDistance;
                    Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64);
                    var s = Vector256<int>.Zero;
                    for (int c = 0; c < 4; c++)
                    {
                        var (lo, hi) = Unpack(b + NibblesAt + 128 * k + 32 * c);
                        s = Quad(s, Avx2.Abs(lo), lo, a + 32 * k + 4 * c);
                        s = Quad(s, Avx2.Abs(hi), hi, a + 32 * k + 16 + 4 * c);
                    }
                    total += Avx2.MultiplyLow(s, GroupScales(b, k));
                }
                acc = Fma.MultiplyAdd(Q4_0x8.Scales(b) * Vector256.Create(Unsafe.ReadUnaligned<float>(xb)), Vector256.ConvertToSingle(total), acc);
            }
            acc.Store(y + 8 * g);
        }
    }

    /// <summary>AVX2: one group (8 rows) against 4 Q8_K activation rows x + t·xStride; y[t·yStride + j]. Each group of 32 is unpacked once.</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* b = wg + (long)i * BlockBytes;
            int o = i * BlockQ8_K.BlockBytes;
            var t0 = Vector256<int>.Zero; var t1 = Vector256<int>.Zero; var t2 = Vector256<int>.Zero; var t3 = Vector256<int>.Zero;
            for (int k = 0; k < 8; k++)
            {
                var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
                for (int c = 0; c < 4; c++)
                {
                    var (lo, hi) = Unpack(b + NibblesAt + 128 * k + 32 * c);
                    var alo = Avx2.Abs(lo); var ahi = Avx2.Abs(hi);
                    int ol = o + 4 + 32 * k + 4 * c, oh = ol + 16;
                    s0 = Quad(Quad(s0, alo, lo, x + ol), ahi, hi, x + oh);
                    s1 = Quad(Quad(s1, alo, lo, x1 + ol), ahi, hi, x1 + oh);
                    s2 = Quad(Quad(s2, alo, lo, x2 + ol), ahi, hi, x2 + oh);
                    s3 = Quad(Quad(s3, alo, lo, x3 + ol), ahi, hi, x3 + oh);
                }
                var sc = GroupScales(b, k);
                t0 += Avx2.MultiplyLow(s0, sc); t1 += Avx2.MultiplyLow(s1, sc); t2 += Avx2.MultiplyLow(s2, sc); t3 += Avx2.MultiplyLow(s3, sc);
            }
            var dw = Q4_0x8.Scales(b);
            acc0 = Fma.MultiplyAdd(dw * Vector256.Create(Unsafe.ReadUnaligned<float>(x + o)), Vector256.ConvertToSingle(t0), acc0);
            acc1 = Fma.MultiplyAdd(dw * Vector256.Create(Unsafe.ReadUnaligned<float>(x1 + o)), Vector256.ConvertToSingle(t1), acc1);
            acc2 = Fma.MultiplyAdd(dw * Vector256.Create(Unsafe.ReadUnaligned<float>(x2 + o)), Vector256.ConvertToSingle(t2), acc2);
            acc3 = Fma.MultiplyAdd(dw * Vector256.Create(Unsafe.ReadUnaligned<float>(x3 + o)), Vector256.ConvertToSingle(t3), acc3);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }
}
