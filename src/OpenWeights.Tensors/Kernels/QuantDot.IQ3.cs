using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Dot kernels of the grid types IQ3_XXS, IQ3_S (this file), IQ1_S and IQ1_M (QuantDot.IQ1.cs) against Q8_K activations.
/// Each 32-value group of a weight super-block is decoded into 32 signed int8 weights w (grid lookups, signs, for IQ1 the
/// shift folded in) and a 16-bit scale per 16 values; Σ w·y is pmaddubsw(|w|, sign(y, w)) then pmaddwd with the
/// scale. The integer sum of a super-block is exact, so it is the integer sum of ggml's <c>_generic</c> kernel, and the
/// float step after it is that kernel's own (one fused multiply-add per super-block): the AVX2 kernels equal the scalar
/// references bit for bit, and the scalar references equal ggml's <c>_generic</c> kernels bit for bit
/// (IQGridOracleTests).
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>A 256-value grid super-block format as the generic AVX2 drivers below see it.</summary>
    private interface IGridBlock
    {
        /// <summary>Bytes per super-block.</summary>
        static abstract int Bytes { get; }
        /// <summary>Writes the grid indices of the super-block at a to idx (up to 64), computed with vector operations
        /// (index bits spread over several fields cost many scalar operations each); a no-op where they are plain bytes.</summary>
        static abstract void Prepare(byte* a, ushort* idx);
        /// <summary>Group g (values 32g..32g+31) of the super-block at a (idx: from <see cref="Prepare"/>): |w|, w as int8, and
        /// the scale of each int16 lane of pmaddubsw's result (lanes 0..7: values 0..15, lanes 8..15: values 16..31).</summary>
        static abstract void Group(byte* a, int g, ushort* idx, out Vector256<byte> abs, out Vector256<sbyte> w, out Vector256<short> scale);
        /// <summary>The f32 super-block scale.</summary>
        static abstract float Scale(byte* a);
        /// <summary>What the integer sum is multiplied by before the FMA (IQ1: 1/8, its weights are 8× the grid values).</summary>
        static abstract float SumScale { get; }
        /// <summary>What the final sum is multiplied by (ggml's constant factor of the format, e.g. 0.25 for IQ3_XXS).</summary>
        static abstract float Final { get; }
    }

    /// <summary>
    /// AVX2 grid-type · Q8_K: per super-block the exact integer Σ scale·w·y in 8 int32 lanes, summed, then
    /// sumf = fma(d_w·d_y, Σ·SumScale, sumf) as ggml's _generic kernel does; returns Final·sumf.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotGridAvx2<F>(byte* w, byte* x, int n) where F : struct, IGridBlock
    {
        float sumf = 0;
        ushort* idx = stackalloc ushort[64];
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * F.Bytes, b = x + i * Q8KBytes;
            sbyte* y = (sbyte*)(b + 4);
            var acc = Vector256<int>.Zero;
            F.Prepare(a, idx);
            for (int g = 0; g < 8; g++)
            {
                F.Group(a, g, idx, out var abs, out var wv, out var sc);
                acc += XsGroup(abs, wv, y + 32 * g, sc);
            }
            sumf = MathF.FusedMultiplyAdd(F.Scale(a) * Unsafe.ReadUnaligned<float>(b), Vector256.Sum(acc) * F.SumScale, sumf);
        }
        return F.Final * sumf;
    }

    /// <summary>4 activation rows at once: each group is decoded once; each token's result equals <see cref="DotGridAvx2"/>'s bit for bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotGridAvx2x4<F>(byte* w, byte* x, int stride, int n, float* result) where F : struct, IGridBlock
    {
        float f0 = 0, f1 = 0, f2 = 0, f3 = 0;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        ushort* idx = stackalloc ushort[64];
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * F.Bytes; int o = i * Q8KBytes;
            F.Prepare(a, idx);
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int g = 0; g < 8; g++)
            {
                F.Group(a, g, idx, out var abs, out var wv, out var sc);
                int k = 32 * g;
                s0 += XsGroup(abs, wv, y0 + k, sc);
                s1 += XsGroup(abs, wv, y1 + k, sc);
                s2 += XsGroup(abs, wv, y2 + k, sc);
                s3 += XsGroup(abs, wv, y3 + k, sc);
            }
            float d = F.Scale(a);
            f0 = MathF.FusedMultiplyAdd(d * Unsafe.ReadUnaligned<float>(x + o), Vector256.Sum(s0) * F.SumScale, f0);
            f1 = MathF.FusedMultiplyAdd(d * Unsafe.ReadUnaligned<float>(x1 + o), Vector256.Sum(s1) * F.SumScale, f1);
            f2 = MathF.FusedMultiplyAdd(d * Unsafe.ReadUnaligned<float>(x2 + o), Vector256.Sum(s2) * F.SumScale, f2);
            f3 = MathF.FusedMultiplyAdd(d * Unsafe.ReadUnaligned<float>(x3 + o), Vector256.Sum(s3) * F.SumScale, f3);
        }
        result[0] = F.Final * f0; result[1] = F.Final * f1; result[2] = F.Final * f2; result[3] = F.Final * f3;
    }

    /// <summary>A copy of a format table in native memory (never freed), so the kernels index it without bounds checks.</summary>
    private static T* NativeCopy<T>(ReadOnlySpan<T> table) where T : unmanaged
    {
        var p = (T*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(table.Length * sizeof(T)), 64);
        table.CopyTo(new Span<T>(p, table.Length));
        return p;
    }

    /// <summary>The 128 sign indices of <see cref="IQSigns.KSignsIq2xs"/> as 8 byte masks (0xFF: negative), derived from it.</summary>
    private static readonly ulong* signMasks = MakeSignMasks();

    private static ulong* MakeSignMasks()
    {
        Span<ulong> t = stackalloc ulong[128];
        for (int i = 0; i < 128; i++)
            for (int j = 0; j < 8; j++)
                if ((IQSigns.KSignsIq2xs[i] & IQSigns.KMaskIq2xs[j]) != 0) t[i] |= 0xFFUL << 8 * j;
        return NativeCopy<ulong>(t);
    }

    private static readonly uint* iq3xxsGrid = NativeCopy(IQ3Grids.Xxs);
    private static readonly uint* iq3sGrid = NativeCopy(IQ3Grids.S);

    /// <summary>(byte p of a 256-bit vector) ← byte p/8 of each 128-bit lane's copy of 4 sign bytes: lane 0 takes bytes 0, 1, lane 1 bytes 2, 3.</summary>
    private static readonly Vector256<byte> signByteSpread = Vector256.Create(
        (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    /// <summary>Bit p % 8 of each byte p.</summary>
    private static readonly Vector256<byte> signBitOfByte = Vector256.Create(
        (byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);

    /// <summary>(m ^ v) − m: v negated where the mask byte m is 0xFF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> ApplySigns(Vector256<byte> v, Vector256<sbyte> m) => (v.AsSByte() ^ m) - m;

    // ---------------------------------------------------------------- IQ3_XXS x Q8_K

    /// <summary>IQ3_XXS (<see cref="BlockIQ3_XXS"/>): 8 grid lookups per group, 4 sign indices, one 4-bit scale.</summary>
    private readonly struct Iq3XxsBlock : IGridBlock
    {
        public static int Bytes => BlockIQ3_XXS.BlockBytes;
        public static float SumScale => 1f;
        public static float Final => 0.25f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* a) => Fp16(a);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Prepare(byte* a, ushort* idx) { } // the indices are the qs bytes

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, ushort* idx, out Vector256<byte> abs, out Vector256<sbyte> w, out Vector256<short> scale)
        {
            byte* qs = a + 2 + 8 * g;
            uint* grid = iq3xxsGrid;
            abs = Vector256.Create(grid[qs[0]], grid[qs[1]], grid[qs[2]], grid[qs[3]], grid[qs[4]], grid[qs[5]], grid[qs[6]], grid[qs[7]]).AsByte();
            uint aux = Unsafe.ReadUnaligned<uint>(a + 66 + 4 * g);
            var m = Vector256.Create(signMasks[aux & 127], signMasks[(aux >> 7) & 127], signMasks[(aux >> 14) & 127], signMasks[(aux >> 21) & 127]).AsSByte();
            w = ApplySigns(abs, m);
            scale = Vector256.Create((short)(2 * (aux >> 28) + 1));
        }
    }

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_iq3_xxs_q8_K_generic, same integer sums and float order: per super-block
    /// sumf = fma(d_w·d_y, Σ_g (2 s_g + 1)·Σ w·y, sumf), then 0.25·sumf; the grid bytes are 2× the values' magnitudes
    /// relative to the (0.5 + s)·0.5 scale of the dequantizer).
    /// </summary>
    public static float DotIQ3_XXSScalar(byte* w, byte* x, int n)
    {
        var grid = IQ3Grids.Xxs;
        var signs = IQSigns.KSignsIq2xs;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ3_XXS.BlockBytes, b = x + i * Q8KBytes;
            float d = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            byte* q3 = a + 2;
            sbyte* q8 = (sbyte*)(b + 4);
            int bsum = 0;
            for (int g = 0; g < 8; g++)
            {
                uint aux = Unsafe.ReadUnaligned<uint>(a + 66 + 4 * g);
                int ls = (int)(2 * (aux >> 28) + 1);
                int sumi = 0;
                for (int l = 0; l < 4; l++)
                {
                    uint g1 = grid[q3[2 * l]], g2 = grid[q3[2 * l + 1]];
                    int s = signs[(int)(aux >> 7 * l) & 127];
                    for (int j = 0; j < 4; j++)
                    {
                        sumi += (byte)(g1 >> 8 * j) * q8[j] * ((s & (1 << j)) != 0 ? -1 : 1);
                        sumi += (byte)(g2 >> 8 * j) * q8[j + 4] * ((s & (1 << (j + 4))) != 0 ? -1 : 1);
                    }
                    q8 += 8;
                }
                q3 += 8;
                bsum += sumi * ls;
            }
            sumf = MathF.FusedMultiplyAdd(d, bsum, sumf); // contracted, as gcc compiles ggml's generic kernel in the FMA builds
        }
        return 0.25f * sumf;
    }

    /// <summary>AVX2 IQ3_XXS · Q8_K (bit-exact with <see cref="DotIQ3_XXSScalar"/>).</summary>
    public static float DotIQ3_XXSAvx2(byte* w, byte* x, int n) => DotGridAvx2<Iq3XxsBlock>(w, x, n);
    /// <summary>AVX2 IQ3_XXS against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ3_XXSAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotGridAvx2x4<Iq3XxsBlock>(w, x, stride, n, result);

    // ---------------------------------------------------------------- IQ3_S x Q8_K

    private const ushort Iq3sHighBit = 256;
    /// <summary>2^(8−k) in u16 lane k of each 8 (both halves).</summary>
    private static readonly Vector256<ushort> Iq3sBitToBit8 = Vector256.Create((ushort)256, 128, 64, 32, 16, 8, 4, 2, 256, 128, 64, 32, 16, 8, 4, 2);
    /// <summary>pshufb controls: u16 qh[2p] in the 8 lanes of the low half, qh[2p + 1] in the high half.</summary>
    private static readonly Vector256<byte> iq3sQh0 = QhSpread(0), iq3sQh1 = QhSpread(1), iq3sQh2 = QhSpread(2), iq3sQh3 = QhSpread(3);

    private static Vector256<byte> QhSpread(int p) =>
        Vector256.Create(Vector128.Create((ushort)((4 * p) | (4 * p + 1) << 8)).AsByte(), Vector128.Create((ushort)((4 * p + 2) | (4 * p + 3) << 8)).AsByte());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Iq3sQhSpread(int p) => p switch { 0 => iq3sQh0, 1 => iq3sQh1, 2 => iq3sQh2, _ => iq3sQh3 };

    /// <summary>IQ3_S (<see cref="BlockIQ3_S"/>): 8 grid lookups with 9-bit indices per group, one sign bit per value, one 4-bit scale.</summary>
    private readonly struct Iq3SBlock : IGridBlock
    {
        public static int Bytes => BlockIQ3_S.BlockBytes;
        public static float SumScale => 1f;
        public static float Final => 1f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* a) => Fp16(a);

        /// <summary>Index 8g + k = qs[8g + k] | (bit k of qh[g]) &lt;&lt; 8: 16 indices (2 groups) per vector, the qh byte
        /// broadcast over its group's 8 lanes and multiplied by 2^(8−k), so that bit k lands on bit 8.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Prepare(byte* a, ushort* idx)
        {
            var qh = Vector128.CreateScalar(Unsafe.ReadUnaligned<ulong>(a + 66)).AsByte();
            var qh16 = Avx2.ConvertToVector256Int16(qh).AsByte(); // qh[0..7] as u16 (lane 1 unused)
            var both = Avx2.Permute2x128(qh16, qh16, 0x00);      // both 128-bit halves: qh[0..7]
            var m = Vector256.Create(Iq3sHighBit);
            for (int p = 0; p < 4; p++)
            {
                var q = Avx2.ConvertToVector256Int16(Vector128.Load(a + 2 + 16 * p)).AsUInt16();
                var h = Avx2.Shuffle(both, Iq3sQhSpread(p)).AsUInt16();
                (q | (Avx2.MultiplyLow(h, Iq3sBitToBit8) & m)).Store(idx + 16 * p);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, ushort* idx, out Vector256<byte> abs, out Vector256<sbyte> w, out Vector256<short> scale)
        {
            ushort* ix = idx + 8 * g;
            uint* grid = iq3sGrid;
            abs = Vector256.Create(grid[ix[0]], grid[ix[1]], grid[ix[2]], grid[ix[3]], grid[ix[4]], grid[ix[5]], grid[ix[6]], grid[ix[7]]).AsByte();
            // the 32 sign bits: byte p of the mask is 0xFF where bit p % 8 of sign byte p / 8 is set
            var sb = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(a + 74 + 4 * g)).AsByte(), signByteSpread) & signBitOfByte;
            w = ApplySigns(abs, Vector256.Equals(sb, signBitOfByte).AsSByte());
            scale = Vector256.Create((short)BlockIQ3_S.GroupScale(a, g));
        }
    }

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_iq3_s_q8_K_generic, same integer sums and float order: per super-block
    /// sumf = fma(d_w·d_y, Σ_g (1 + 2 s_g)·Σ w·y, sumf)).
    /// </summary>
    public static float DotIQ3_SScalar(byte* w, byte* x, int n)
    {
        var grid = IQ3Grids.S;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ3_S.BlockBytes, b = x + i * Q8KBytes;
            float d = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            sbyte* q8 = (sbyte*)(b + 4);
            int bsum = 0;
            for (int g = 0; g < 8; g++)
            {
                int sumi = 0;
                for (int l = 0; l < 4; l++)
                {
                    uint g1 = grid[BlockIQ3_S.GridIndex(a, g, 2 * l)], g2 = grid[BlockIQ3_S.GridIndex(a, g, 2 * l + 1)];
                    int s = a[74 + 4 * g + l];
                    for (int j = 0; j < 4; j++)
                    {
                        sumi += (byte)(g1 >> 8 * j) * q8[j] * ((s & (1 << j)) != 0 ? -1 : 1);
                        sumi += (byte)(g2 >> 8 * j) * q8[j + 4] * ((s & (1 << (j + 4))) != 0 ? -1 : 1);
                    }
                    q8 += 8;
                }
                bsum += sumi * BlockIQ3_S.GroupScale(a, g);
            }
            sumf = MathF.FusedMultiplyAdd(d, bsum, sumf); // contracted, as gcc compiles ggml's generic kernel in the FMA builds
        }
        return sumf;
    }

    /// <summary>AVX2 IQ3_S · Q8_K (bit-exact with <see cref="DotIQ3_SScalar"/>).</summary>
    public static float DotIQ3_SAvx2(byte* w, byte* x, int n) => DotGridAvx2<Iq3SBlock>(w, x, n);
    /// <summary>AVX2 IQ3_S against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ3_SAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotGridAvx2x4<Iq3SBlock>(w, x, stride, n, result);
}
