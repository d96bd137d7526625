using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// IQ4_NL and MXFP4 weights (4-bit indices into a 16-entry int8 table) repacked at load into groups of 8 interleaved
/// rows, Q4_0x8's layout with the table types' scales: one 256-bit register holds 4 nibble pairs of each of the 8 rows,
/// a vpshufb turns the nibbles into the signed table values, and each group of 4 values is multiplied with the 4
/// activation values broadcast to all rows (|w| · sign(a, w): vpdpbusd on AVX-VNNI, else vpmaddubsw + vpmaddwd; the
/// int16 pair sums, ≤ 2·127·127, never saturate). Same bytes as the GGUF rows.
///
/// Layout: group g (rows 8g .. 8g+7) is cols/32 consecutive blocks; block i of group g:
///   scales                  IQ4_NL: f16 d[8] (16 bytes, the block is Q4_0x8's 144 bytes); MXFP4: u8 e[8] (8 bytes, 136 in all)
///   byte  q[4][8][4]        q[c][j][k] = row j's byte qs[4c + k]: low nibble = value 4c + k, high = value 16 + 4c + k
///
/// Per (row, token) the result is Σ_i fma(d_w·d_a, float(isum_i), acc) in block order, the same float sequence in the
/// 1- and 4-token kernels and in the scalar reference (all three agree bit for bit; batch invariant).
/// </summary>
public static unsafe class Lut4x8
{
    public const int Rows = 8;

    /// <summary>What differs between the two table types' interleaved blocks.</summary>
    internal interface IFormat
    {
        /// <summary>Bytes of one interleaved block (8 rows × 32 values).</summary>
        static abstract int BlockBytes { get; }
        /// <summary>Where the nibbles start in an interleaved block.</summary>
        static abstract int Nibbles { get; }
        /// <summary>Bytes of one GGUF block and where its nibbles start.</summary>
        static abstract int SourceBytes { get; }
        static abstract int SourceNibbles { get; }
        static abstract ReadOnlySpan<sbyte> Values { get; }
        static abstract Vector256<sbyte> Table { get; }
        /// <summary>Row j's block scale as f32, exactly as ggml's dequantizer computes it.</summary>
        static abstract float Scale(byte* block, int j);
        /// <summary>The 8 rows' block scales as f32 (the same values as <see cref="Scale"/>).</summary>
        static abstract Vector256<float> Scales(byte* block);
        /// <summary>Copies row j's scale from its GGUF block into the interleaved block.</summary>
        static abstract void CopyScale(byte* src, byte* block, int j);
    }

    private static readonly Vector256<sbyte> iq4Table = NonLinear4.Table256(NonLinear4.Iq4Values);
    private static readonly Vector256<sbyte> mxfp4Table = NonLinear4.Table256(NonLinear4.Mxfp4Values);

    /// <summary>IQ4_NL: f16 scales first (Q4_0x8's block geometry).</summary>
    internal readonly struct Iq4Nl : IFormat
    {
        public static int BlockBytes => 144;
        public static int Nibbles => 16;
        public static int SourceBytes => BlockIQ4_NL.BlockBytes;
        public static int SourceNibbles => 2;
        public static ReadOnlySpan<sbyte> Values => NonLinear4.Iq4Values;
        public static Vector256<sbyte> Table => iq4Table;
        public static float Scale(byte* block, int j) => HalfConvert.Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(block + 2 * j));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Scales(byte* block) => Q4_0x8.Scales(block);
        public static void CopyScale(byte* src, byte* block, int j) => Unsafe.WriteUnaligned(block + 2 * j, Unsafe.ReadUnaligned<ushort>(src));
    }

    /// <summary>MXFP4: the 8 E8M0 exponents first.</summary>
    internal readonly struct Mxfp4 : IFormat
    {
        public static int BlockBytes => 136;
        public static int Nibbles => 8;
        public static int SourceBytes => BlockMXFP4.BlockBytes;
        public static int SourceNibbles => 1;
        public static ReadOnlySpan<sbyte> Values => NonLinear4.Mxfp4Values;
        public static Vector256<sbyte> Table => mxfp4Table;
        public static float Scale(byte* block, int j) => BlockMXFP4.ScaleHalf(block[j]);

        /// <summary>2^(e − 128) for the 8 exponents: (e − 1) &lt;&lt; 23 as f32 bits, and the subnormals 2^-128, 2^-127 for e = 0, 1.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Scales(byte* block)
        {
            var e = Avx2.ConvertToVector256Int32(block);
            var normal = Vector256.ShiftLeft(e - Vector256<int>.One, 23);
            var sub = Avx2.ShiftLeftLogicalVariable(Vector256.Create(0x00200000), e.AsUInt32()).AsInt32();
            return Vector256.ConditionalSelect(Vector256.LessThan(e, Vector256.Create(2)), sub, normal).AsSingle();
        }

        public static void CopyScale(byte* src, byte* block, int j) => block[j] = *src;
    }

    internal static long Bytes<F>(int rows, int cols) where F : struct, IFormat => (long)(rows / Rows) * (cols / 32) * F.BlockBytes;

    /// <summary>Repacks a (rows, cols) matrix src (rowBytes apart) into dst (<see cref="Bytes{F}"/> long).</summary>
    internal static void Repack<F>(byte* src, long rowBytes, int rows, int cols, byte* dst) where F : struct, IFormat
    {
        if (rows % Rows != 0 || cols % 32 != 0) throw new ArgumentException($"8-row interleaving needs rows % 8 == 0 and cols % 32 == 0, got {rows}x{cols}");
        int nb = cols / 32;
        for (int g = 0; g < rows / Rows; g++)
        {
            byte* s = src + g * Rows * rowBytes, d = dst + (long)g * nb * F.BlockBytes;
            for (int i = 0; i < nb; i++)
            {
                byte* o = d + (long)i * F.BlockBytes;
                for (int j = 0; j < Rows; j++)
                {
                    byte* a = s + j * rowBytes + i * F.SourceBytes;
                    F.CopyScale(a, o, j);
                    for (int c = 0; c < 4; c++) Unsafe.WriteUnaligned(o + F.Nibbles + c * 32 + j * 4, Unsafe.ReadUnaligned<uint>(a + F.SourceNibbles + 4 * c));
                }
            }
        }
    }

    /// <summary>Decodes row j of group wg into dst: (n), exactly as ggml dequantizes the row (d · values[q]).</summary>
    internal static void DecodeRow<F>(byte* wg, int j, int n, float* dst) where F : struct, IFormat
    {
        var values = F.Values;
        for (int i = 0; i < n / 32; i++)
        {
            byte* b = wg + (long)i * F.BlockBytes;
            float d = F.Scale(b, j);
            for (int c = 0; c < 4; c++)
                for (int k = 0; k < 4; k++)
                {
                    int q = b[F.Nibbles + c * 32 + j * 4 + k];
                    dst[i * 32 + 4 * c + k] = d * values[q & 0x0F];
                    dst[i * 32 + 16 + 4 * c + k] = d * values[q >> 4];
                }
        }
    }

    /// <summary>Scalar reference: y[t·yStride + j] = row j of group wg · activation row t (Q8_0 with tails, x + t·xStride).</summary>
    internal static void DotScalar<F>(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride) where F : struct, IFormat
    {
        var values = F.Values;
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
                    byte* b = wg + (long)i * F.BlockBytes;
                    sbyte* a = (sbyte*)(xt + i * 34 + 2);
                    int sum = 0;
                    for (int c = 0; c < 4; c++)
                        for (int k = 0; k < 4; k++)
                        {
                            int q = b[F.Nibbles + c * 32 + j * 4 + k];
                            sum += values[q & 0x0F] * a[4 * c + k] + values[q >> 4] * a[16 + 4 * c + k];
                        }
                    acc = MathF.FusedMultiplyAdd(F.Scale(b, j) * Unsafe.ReadUnaligned<float>(dx + i), sum, acc);
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

    /// <summary>The 32 bytes of c-th nibble register as table values: (values 4c.. of each row, values 16 + 4c.. of each row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<sbyte> Lo, Vector256<sbyte> Hi) Unpack(byte* p, Vector256<sbyte> table)
    {
        var q = Vector256.Load(p);
        var mask = Vector256.Create((byte)0x0F);
        return (Avx2.Shuffle(table, (q & mask).AsSByte()), Avx2.Shuffle(table, (Avx2.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask).AsSByte()));
    }

    /// <summary>AVX2: consecutive groups (groupBytes apart) against one activation row; y: (8·groups).</summary>
    internal static void DotGroupsAvx2<F>(byte* w, long groupBytes, int groups, byte* x, int n, float* y) where F : struct, IFormat
    {
        var table = F.Table;
        int nb = n / 32;
        float* dx = (float*)(x + nb * 34);
        for (int g = 0; g < groups; g++)
        {
            byte* wg = w + g * groupBytes;
            var acc = Vector256<float>.Zero;
            for (int i = 0; i < nb; i++)
            {
                byte* b = wg + (long)i * F.BlockBytes;
                byte* ahead = b + Q8_0x8.PrefetchDistance; // the block's 3 cache lines, ahead of use (decode streams the weights)
                Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128);
                byte* a = x + i * 34 + 2;
                var s = Vector256<int>.Zero;
                for (int c = 0; c < 4; c++)
                {
                    var (lo, hi) = Unpack(b + F.Nibbles + 32 * c, table);
                    s = Quad(s, Avx2.Abs(lo), lo, a + 4 * c);
                    s = Quad(s, Avx2.Abs(hi), hi, a + 16 + 4 * c);
                }
                acc = Fma.MultiplyAdd(F.Scales(b) * Vector256.Create(dx[i]), Vector256.ConvertToSingle(s), acc);
            }
            acc.Store(y + 8 * g);
        }
    }

    /// <summary>AVX2: one group (8 rows) against 4 activation rows x + t·xStride; y[t·yStride + j]. Each block is unpacked once.</summary>
    internal static void DotAvx2x4<F>(byte* wg, byte* x, int xStride, int n, float* y, int yStride) where F : struct, IFormat
    {
        var table = F.Table;
        int nb = n / 32;
        byte* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        float* d0 = (float*)(x + nb * 34), d1 = (float*)(x1 + nb * 34), d2 = (float*)(x2 + nb * 34), d3 = (float*)(x3 + nb * 34);
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* b = wg + (long)i * F.BlockBytes;
            int o = i * 34 + 2;
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var (lo, hi) = Unpack(b + F.Nibbles + 32 * c, table);
                var alo = Avx2.Abs(lo); var ahi = Avx2.Abs(hi);
                int ol = o + 4 * c, oh = o + 16 + 4 * c;
                s0 = Quad(Quad(s0, alo, lo, x + ol), ahi, hi, x + oh);
                s1 = Quad(Quad(s1, alo, lo, x1 + ol), ahi, hi, x1 + oh);
                s2 = Quad(Quad(s2, alo, lo, x2 + ol), ahi, hi, x2 + oh);
                s3 = Quad(Quad(s3, alo, lo, x3 + ol), ahi, hi, x3 + oh);
            }
            var dw = F.Scales(b);
            acc0 = Fma.MultiplyAdd(dw * Vector256.Create(d0[i]), Vector256.ConvertToSingle(s0), acc0);
            acc1 = Fma.MultiplyAdd(dw * Vector256.Create(d1[i]), Vector256.ConvertToSingle(s1), acc1);
            acc2 = Fma.MultiplyAdd(dw * Vector256.Create(d2[i]), Vector256.ConvertToSingle(s2), acc2);
            acc3 = Fma.MultiplyAdd(dw * Vector256.Create(d3[i]), Vector256.ConvertToSingle(s3), acc3);
        }
        acc0.Store(y); acc1.Store(y + yStride); acc2.Store(y + 2 * yStride); acc3.Store(y + 3 * yStride);
    }

    // non-generic entry points for InterleavedLayout's function pointers
    public static void RepackIq4Nl(byte* src, long rowBytes, int rows, int cols, byte* dst) => Repack<Iq4Nl>(src, rowBytes, rows, cols, dst);
    public static void DecodeRowIq4Nl(byte* wg, int j, int n, float* dst) => DecodeRow<Iq4Nl>(wg, j, n, dst);
    public static void DotScalarIq4Nl(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride) => DotScalar<Iq4Nl>(wg, x, xStride, n, tokens, y, yStride);
    public static void DotGroupsIq4Nl(byte* w, long groupBytes, int groups, byte* x, int n, float* y) => DotGroupsAvx2<Iq4Nl>(w, groupBytes, groups, x, n, y);
    public static void Dot4Iq4Nl(byte* wg, byte* x, int xStride, int n, float* y, int yStride) => DotAvx2x4<Iq4Nl>(wg, x, xStride, n, y, yStride);

    public static void RepackMxfp4(byte* src, long rowBytes, int rows, int cols, byte* dst) => Repack<Mxfp4>(src, rowBytes, rows, cols, dst);
    public static void DecodeRowMxfp4(byte* wg, int j, int n, float* dst) => DecodeRow<Mxfp4>(wg, j, n, dst);
    public static void DotScalarMxfp4(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride) => DotScalar<Mxfp4>(wg, x, xStride, n, tokens, y, yStride);
    public static void DotGroupsMxfp4(byte* w, long groupBytes, int groups, byte* x, int n, float* y) => DotGroupsAvx2<Mxfp4>(w, groupBytes, groups, x, n, y);
    public static void Dot4Mxfp4(byte* wg, byte* x, int xStride, int n, float* y, int yStride) => DotAvx2x4<Mxfp4>(wg, x, xStride, n, y, yStride);
}
