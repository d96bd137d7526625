using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Dot kernels of the 2-bit grid types IQ2_XXS, IQ2_XS and IQ2_S against Q8_K activations (ggml's vec_dot_type for
/// them). A weight value is (d/8)·(2s+1)·g·±1 with g a grid byte in {8, 25, 43} and s a 4-bit scale, so the integer
/// part of a super-block is Σ_groups (2s+1)·Σ g·(±y) and its float part one multiply-add with d_w·d_y, the 1/8 applied
/// once at the end (as ggml does). The AVX2 kernels put the sign on the activations (vpsignb with ±1 bytes looked up
/// per 8 values), multiply the unsigned grid bytes with them (pmaddubsw: |pair| ≤ 2·43·127, no int16 saturation) and
/// scale each 16-value half by its 2s+1 in pmaddwd. Lane k of the 8 int32 sums holds values 4k..4k+3 of every 32-value
/// group, as ggml's AVX2 kernels have it, and the float steps are theirs (one FMA per super-block, ggml's horizontal sum,
/// × 0.125): the result is ggml's AVX2 result bit for bit (GgmlOracleTests). Scalar references: ggml's <c>_generic</c>
/// kernels, same integer sums, one fused multiply-add per super-block.
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>An IQ2 super-block format as the AVX2 kernels see it: per 32-value group, its 32 grid bytes, its 32 ±1 signs and its scales.</summary>
    private interface IIq2Block
    {
        static abstract int Bytes { get; }

        /// <summary>Group g (0..7) of the super-block at a: grid bytes (32 u8), signs (32 × ±1), 2s+1 of values 0..15 in the low 8 int16 lanes, of 16..31 in the high 8.</summary>
        static abstract void Group(byte* a, int g, out Vector256<byte> grid, out Vector256<sbyte> signs, out Vector256<short> scales);
    }

    /// <summary>The scales of a group whose two 16-value halves have 4-bit scales lo and hi: (2lo+1) × 8 lanes, (2hi+1) × 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> HalfScales(uint sc) =>
        Vector256.Create(Vector128.Create((short)(2 * (sc & 0xF) + 1)), Vector128.Create((short)(2 * (sc >> 4) + 1)));

    private readonly struct Iq2XxsBlock : IIq2Block
    {
        public static int Bytes => BlockIQ2_XXS.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, out Vector256<byte> grid, out Vector256<sbyte> signs, out Vector256<short> scales)
        {
            byte* q = a + 2 + 8 * g;
            uint s = Unsafe.ReadUnaligned<uint>(q + 4);
            ulong* G = IQ2Grids.Xxs, S = IQ2Grids.SignsByIndex;
            grid = Vector256.Create(G[q[0]], G[q[1]], G[q[2]], G[q[3]]).AsByte();
            signs = Vector256.Create(S[s & 127], S[(s >> 7) & 127], S[(s >> 14) & 127], S[(s >> 21) & 127]).AsSByte();
            scales = Vector256.Create((short)(2 * (s >> 28) + 1));
        }
    }

    private readonly struct Iq2XsBlock : IIq2Block
    {
        public static int Bytes => BlockIQ2_XS.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, out Vector256<byte> grid, out Vector256<sbyte> signs, out Vector256<short> scales)
        {
            ulong q = Unsafe.ReadUnaligned<ulong>(a + 2 + 8 * g); // 4 × u16: 9-bit grid index, 7-bit sign index
            uint q0 = (uint)q & 0xFFFF, q1 = (uint)(q >> 16) & 0xFFFF, q2 = (uint)(q >> 32) & 0xFFFF, q3 = (uint)(q >> 48);
            ulong* G = IQ2Grids.Xs, S = IQ2Grids.SignsByIndex;
            grid = Vector256.Create(G[q0 & 511], G[q1 & 511], G[q2 & 511], G[q3 & 511]).AsByte();
            signs = Vector256.Create(S[q0 >> 9], S[q1 >> 9], S[q2 >> 9], S[q3 >> 9]).AsSByte();
            scales = HalfScales(a[66 + g]);
        }
    }

    private readonly struct Iq2SBlock : IIq2Block
    {
        public static int Bytes => BlockIQ2_S.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, out Vector256<byte> grid, out Vector256<sbyte> signs, out Vector256<short> scales)
        {
            byte* q = a + 2 + 4 * g, sg = a + 34 + 4 * g;
            uint h = a[66 + g];
            ulong* G = IQ2Grids.S, S = IQ2Grids.SignsByByte;
            grid = Vector256.Create(G[q[0] | (h << 8 & 0x300)], G[q[1] | (h << 6 & 0x300)], G[q[2] | (h << 4 & 0x300)], G[q[3] | (h << 2 & 0x300)]).AsByte();
            signs = Vector256.Create(S[sg[0]], S[sg[1]], S[sg[2]], S[sg[3]]).AsSByte();
            scales = HalfScales(a[74 + g]);
        }
    }

    /// <summary>Σ over one 32-value group of (2s+1)·g·(±y) as 8 int32 lanes (lane k: values 4k..4k+3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Iq2Group(Vector256<byte> grid, Vector256<sbyte> signs, Vector256<short> scales, sbyte* y) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(grid, Avx2.Sign(Vector256.Load(y), signs)), scales);

    /// <summary>AVX2 IQ2 · Q8_K: per super-block 8 int32 lanes, one FMA with d_w·d_y; 0.125 · the sum of the lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotIq2Avx2<B>(byte* w, byte* x, int n) where B : struct, IIq2Block
    {
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * B.Bytes, b = x + i * BlockQ8_K.BlockBytes;
            sbyte* y = (sbyte*)(b + 4);
            var sumi = Vector256<int>.Zero;
            for (int g = 0; g < 8; g++)
            {
                B.Group(a, g, out var grid, out var signs, out var scales);
                sumi += Iq2Group(grid, signs, scales, y + 32 * g);
            }
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16(a) * Unsafe.ReadUnaligned<float>(b)), Vector256.ConvertToSingle(sumi), acc);
        }
        return 0.125f * Hsum(acc);
    }

    /// <summary>IQ2 against 4 Q8_K activation rows: each group's grid bytes, signs and scales are looked up once (float sequence per token = <see cref="DotIq2Avx2"/>'s).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotIq2Avx2x4<B>(byte* w, byte* x, int stride, int n, float* result) where B : struct, IIq2Block
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * B.Bytes; int o = i * BlockQ8_K.BlockBytes;
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int g = 0; g < 8; g++)
            {
                B.Group(a, g, out var grid, out var signs, out var scales);
                int yo = 32 * g;
                s0 += Iq2Group(grid, signs, scales, y0 + yo);
                s1 += Iq2Group(grid, signs, scales, y1 + yo);
                s2 += Iq2Group(grid, signs, scales, y2 + yo);
                s3 += Iq2Group(grid, signs, scales, y3 + yo);
            }
            float d = Fp16(a);
            acc0 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x + o)), Vector256.ConvertToSingle(s0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x1 + o)), Vector256.ConvertToSingle(s1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x2 + o)), Vector256.ConvertToSingle(s2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(d * Unsafe.ReadUnaligned<float>(x3 + o)), Vector256.ConvertToSingle(s3), acc3);
        }
        result[0] = 0.125f * Hsum(acc0); result[1] = 0.125f * Hsum(acc1); result[2] = 0.125f * Hsum(acc2); result[3] = 0.125f * Hsum(acc3);
    }

    /// <summary>Σ_j g_j · y_j · (bit j of signs ? −1 : 1) over 8 values (the inner loop of ggml's generic IQ2 kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Iq2EightScalar(ulong grid, byte signs, sbyte* y)
    {
        int s = 0;
        for (int j = 0; j < 8; j++)
        {
            int p = (byte)(grid >> 8 * j) * y[j];
            s += (signs >> j & 1) != 0 ? -p : p; // bit j = KMaskIq2xs[j]
        }
        return s;
    }

    // ---------------------------------------------------------------- IQ2_XXS x Q8_K

    /// <summary>Scalar reference (ggml ggml_vec_dot_iq2_xxs_q8_K_generic: sumf += d·bsum per super-block, fused as gcc compiles it; 0.125·sumf).</summary>
    public static float DotIQ2_XXSScalar(byte* w, byte* x, int n)
    {
        ulong* grid = IQ2Grids.Xxs;
        byte[] ks = IQSigns.KSignsIq2xs;
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ2_XXS.BlockBytes, b = x + i * BlockQ8_K.BlockBytes;
            float d = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            sbyte* y = (sbyte*)(b + 4);
            int bsum = 0;
            for (int g = 0; g < 8; g++)
            {
                byte* q = a + 2 + 8 * g;
                uint s = Unsafe.ReadUnaligned<uint>(q + 4);
                int sumi = 0;
                for (int l = 0; l < 4; l++)
                    sumi += Iq2EightScalar(grid[q[l]], ks[(int)(s >> 7 * l) & 127], y + 32 * g + 8 * l);
                bsum += sumi * (int)(2 * (s >> 28) + 1);
            }
            sum = MathF.FusedMultiplyAdd(d, bsum, sum);
        }
        return 0.125f * sum;
    }

    /// <summary>AVX2 IQ2_XXS · Q8_K (bit-exact with ggml's AVX2 ggml_vec_dot_iq2_xxs_q8_K).</summary>
    public static float DotIQ2_XXSAvx2(byte* w, byte* x, int n) => DotIq2Avx2<Iq2XxsBlock>(w, x, n);
    /// <summary>AVX2 IQ2_XXS against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ2_XXSAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotIq2Avx2x4<Iq2XxsBlock>(w, x, stride, n, result);

    // ---------------------------------------------------------------- IQ2_XS x Q8_K

    /// <summary>Scalar reference (ggml ggml_vec_dot_iq2_xs_q8_K_generic).</summary>
    public static float DotIQ2_XSScalar(byte* w, byte* x, int n)
    {
        ulong* grid = IQ2Grids.Xs;
        byte[] ks = IQSigns.KSignsIq2xs;
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ2_XS.BlockBytes, b = x + i * BlockQ8_K.BlockBytes;
            float d = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            sbyte* y = (sbyte*)(b + 4);
            int bsum = 0;
            for (int g = 0; g < 8; g++)
            {
                byte sc = a[66 + g];
                int sumi1 = 0, sumi2 = 0;
                for (int l = 0; l < 4; l++)
                {
                    int q = Unsafe.ReadUnaligned<ushort>(a + 2 + 8 * g + 2 * l);
                    int p = Iq2EightScalar(grid[q & 511], ks[q >> 9], y + 32 * g + 8 * l);
                    if (l < 2) sumi1 += p; else sumi2 += p;
                }
                bsum += sumi1 * (2 * (sc & 0xF) + 1) + sumi2 * (2 * (sc >> 4) + 1);
            }
            sum = MathF.FusedMultiplyAdd(d, bsum, sum);
        }
        return 0.125f * sum;
    }

    /// <summary>AVX2 IQ2_XS · Q8_K (bit-exact with ggml's AVX2 ggml_vec_dot_iq2_xs_q8_K).</summary>
    public static float DotIQ2_XSAvx2(byte* w, byte* x, int n) => DotIq2Avx2<Iq2XsBlock>(w, x, n);
    /// <summary>AVX2 IQ2_XS against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ2_XSAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotIq2Avx2x4<Iq2XsBlock>(w, x, stride, n, result);

    // ---------------------------------------------------------------- IQ2_S x Q8_K

    /// <summary>Scalar reference (ggml ggml_vec_dot_iq2_s_q8_K_generic).</summary>
    public static float DotIQ2_SScalar(byte* w, byte* x, int n)
    {
        ulong* grid = IQ2Grids.S;
        float sum = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ2_S.BlockBytes, b = x + i * BlockQ8_K.BlockBytes;
            float d = HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b);
            sbyte* y = (sbyte*)(b + 4);
            int bsum = 0;
            for (int g = 0; g < 8; g++)
            {
                byte sc = a[74 + g];
                int sumi1 = 0, sumi2 = 0;
                for (int l = 0; l < 4; l++)
                {
                    int p = Iq2EightScalar(grid[BlockIQ2_S.GridIndex(a, g, l)], a[34 + 4 * g + l], y + 32 * g + 8 * l);
                    if (l < 2) sumi1 += p; else sumi2 += p;
                }
                bsum += (1 + 2 * (sc & 0xF)) * sumi1 + (1 + 2 * (sc >> 4)) * sumi2;
            }
            sum = MathF.FusedMultiplyAdd(d, bsum, sum);
        }
        return 0.125f * sum;
    }

    /// <summary>AVX2 IQ2_S · Q8_K (bit-exact with ggml's AVX2 ggml_vec_dot_iq2_s_q8_K).</summary>
    public static float DotIQ2_SAvx2(byte* w, byte* x, int n) => DotIq2Avx2<Iq2SBlock>(w, x, n);
    /// <summary>AVX2 IQ2_S against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ2_SAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotIq2Avx2x4<Iq2SBlock>(w, x, stride, n, result);
}
