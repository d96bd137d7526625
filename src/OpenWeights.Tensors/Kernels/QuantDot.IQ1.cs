using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

public static unsafe partial class QuantDot
{
    // ---------------------------------------------------------------- IQ1_S / IQ1_M x Q8_K
    //
    // A value is (grid value g ± 1/8)·scale with g in {−1, 0, 1}. The AVX2 kernels use the int8 weight c = 8g ± 1 (odd,
    // never 0, |c| ≤ 9): Σ scale·c·y = 8·Σ scale·g·y + Σ scale·(±1)·y, i.e. 8·sumi + sumi1 of ggml's _generic kernels,
    // exactly (|Σ| < 2^23 for a super-block). ggml's float step is fma(d_w·d_y, sumi + 1/8·sumi1, sumf), where
    // sumi + 1/8·sumi1 is exact in f32 (< 2^20 with 3 fraction bits), so it is Σ·1/8, bit for bit.

    /// <summary>
    /// (2048 grid entries) × (shift +1/8, −1/8): the 8 bytes 8g + 1 (entry i) or 8g − 1 (entry 2048 + i) of
    /// <see cref="IQ1Grid.Values"/> entry i, derived from it. Index: the 11-bit grid index with the shift's sign in bit 11.
    /// </summary>
    private static readonly ulong* iq1Grid8 = MakeIq1Grid8();

    private static ulong* MakeIq1Grid8()
    {
        var grid = IQ1Grid.Values;
        var t = new ulong[2 * grid.Length];
        for (int i = 0; i < grid.Length; i++)
            for (int j = 0; j < 8; j++)
            {
                int g = (sbyte)(grid[i] >> 8 * j);
                t[i] |= (ulong)(byte)(sbyte)(8 * g + 1) << 8 * j;
                t[grid.Length + i] |= (ulong)(byte)(sbyte)(8 * g - 1) << 8 * j;
            }
        return NativeCopy<ulong>(t);
    }

    /// <summary>u16 multipliers 2^(8−3l) (low product) and 2^15 (high product) for lane l = 0..3 of each 4.</summary>
    private static readonly Vector256<ushort> iq1sMulLo = Vector256.Create((ushort)256, 32, 4, 0, 256, 32, 4, 0, 256, 32, 4, 0, 256, 32, 4, 0),
        iq1sMulHi = Vector256.Create((ushort)0, 0, 0, 0x8000, 0, 0, 0, 0x8000, 0, 0, 0, 0x8000, 0, 0, 0, 0x8000);
    /// <summary>pshufb controls: u16 qh[g] over 4 lanes, groups 0..3 (low half 0, 1; high half 2, 3) and 4..7.</summary>
    private static readonly Vector256<byte> iq1sQhLo = Iq1QhSpread(0), iq1sQhHi = Iq1QhSpread(4);

    private static Vector256<byte> Iq1QhSpread(int g0)
    {
        var c = new byte[32];
        for (int p = 0; p < 32; p++) { int g = g0 + (p / 16) * 2 + (p % 16) / 8; c[p] = (byte)(2 * g + p % 2); }
        return Vector256.Create(c);
    }

    /// <summary>IQ1_S (<see cref="BlockIQ1_S"/>): 4 grid lookups per group (the shift sign of the group in bit 11 of each index), one 3-bit scale.</summary>
    private readonly struct Iq1SBlock : IGridBlock
    {
        public static int Bytes => BlockIQ1_S.BlockBytes;
        public static float SumScale => 0.125f;
        public static float Final => 1f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* a) => Fp16(a);

        /// <summary>
        /// Index 4g + l = qs[4g + l] | ((qh[g] >> 3l) &amp; 7) &lt;&lt; 8 | (bit 15 of qh[g]) &lt;&lt; 11 − 15: 16 indices (4 groups)
        /// per vector, qh[g] broadcast over its group's 4 lanes; the 3 bits of lane l reach bits 8..10 by a multiply by
        /// 2^(8−3l) (l &lt; 3) or a high multiply by 2^15 (l = 3: a shift right by 1).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Prepare(byte* a, ushort* idx)
        {
            var (q0, q1) = Vector256.Widen(Vector256.Load(a + 2));
            var qh = Vector128.Load(a + 34);
            var both = Vector256.Create(qh, qh);
            var bits = Vector256.Create((ushort)0x700); var neg = Vector256.Create((ushort)0x800);
            var h = Avx2.Shuffle(both, iq1sQhLo).AsUInt16();
            (q0 | ((Avx2.MultiplyLow(h, iq1sMulLo) | Avx2.MultiplyHigh(h, iq1sMulHi)) & bits) | (Vector256.ShiftRightLogical(h, 4) & neg)).Store(idx);
            h = Avx2.Shuffle(both, iq1sQhHi).AsUInt16();
            (q1 | ((Avx2.MultiplyLow(h, iq1sMulLo) | Avx2.MultiplyHigh(h, iq1sMulHi)) & bits) | (Vector256.ShiftRightLogical(h, 4) & neg)).Store(idx + 16);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, ushort* idx, out Vector256<byte> abs, out Vector256<sbyte> w, out Vector256<short> scale)
        {
            int qh = Unsafe.ReadUnaligned<ushort>(a + 34 + 2 * g);
            ushort* ix = idx + 4 * g;
            ulong* t = iq1Grid8;
            w = Vector256.Create(t[ix[0]], t[ix[1]], t[ix[2]], t[ix[3]]).AsSByte();
            abs = Vector256.Abs(w).AsByte();
            scale = Vector256.Create((short)(2 * ((qh >> 12) & 7) + 1));
        }
    }

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_iq1_s_q8_K_generic, same integer sums and float order: sumi = Σ_g ls_g·Σ g·y,
    /// sumi1 = Σ_g ls_g·(±1)·(the group's two Q8_K bsums), sumf = fma(d_w·d_y, sumi + 1/8·sumi1, sumf)).
    /// </summary>
    public static float DotIQ1_SScalar(byte* w, byte* x, int n)
    {
        var grid = IQ1Grid.Values;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ1_S.BlockBytes, b = x + i * Q8KBytes;
            sbyte* q8 = (sbyte*)(b + 4);
            short* bsums = (short*)(b + 260);
            byte* qs = a + 2;
            int sumi = 0, sumi1 = 0;
            for (int g = 0; g < 8; g++)
            {
                int qh = Unsafe.ReadUnaligned<ushort>(a + 34 + 2 * g);
                int ls = 2 * ((qh >> 12) & 7) + 1;
                int delta = (qh & 0x8000) != 0 ? -1 : 1;
                int lsum = 0;
                for (int l = 0; l < 4; l++)
                {
                    ulong q = grid[qs[l] | ((qh >> 3 * l) & 7) << 8];
                    for (int j = 0; j < 8; j++) lsum += q8[j] * (sbyte)(q >> 8 * j);
                    q8 += 8;
                }
                sumi += ls * lsum;
                sumi1 += ls * delta * (bsums[2 * g] + bsums[2 * g + 1]);
                qs += 4;
            }
            // contracted, as gcc compiles ggml's generic kernel in the FMA builds (sumi + 1/8·sumi1 is exact either way)
            sumf = MathF.FusedMultiplyAdd(HalfConvert.ReadFp16(a) * Unsafe.ReadUnaligned<float>(b), sumi + BlockIQ1_S.Delta * sumi1, sumf);
        }
        return sumf;
    }

    /// <summary>AVX2 IQ1_S · Q8_K (bit-exact with <see cref="DotIQ1_SScalar"/>).</summary>
    public static float DotIQ1_SAvx2(byte* w, byte* x, int n) => DotGridAvx2<Iq1SBlock>(w, x, n);
    /// <summary>AVX2 IQ1_S against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ1_SAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotGridAvx2x4<Iq1SBlock>(w, x, stride, n, result);

    private static readonly Vector256<uint> iq1mWords01 = Vector256.Create(0u, 0, 0, 0, 1, 1, 1, 1), iq1mWords23 = Vector256.Create(2u, 2, 2, 2, 3, 3, 3, 3);
    private static readonly Vector256<uint> iq1mScaleShifts = Vector256.Create(0u, 3, 6, 9, 0, 3, 6, 9);
    /// <summary>pshufb control: u16 0 of a 32-bit broadcast over the low half, u16 1 over the high half.</summary>
    private static readonly Vector256<byte> iq1mScaleSpread = Vector256.Create(Vector128.Create((ushort)0x0100).AsByte(), Vector128.Create((ushort)0x0302).AsByte());

    /// <summary>IQ1_M (<see cref="BlockIQ1_M"/>): 4 grid lookups per group (each nibble of qh: index bits 8..10 and, in bit 3, the shift sign), 2 scales.</summary>
    private readonly struct Iq1MBlock : IGridBlock
    {
        public static int Bytes => BlockIQ1_M.BlockBytes;
        public static float SumScale => 0.125f;
        public static float Final => 1f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scale(byte* a) => f16Table[BlockIQ1_M.ScaleBits(a)];

        /// <summary>Index 4g + l = qs[4g + l] | (nibble l of qh[2g], qh[2g + 1]) &lt;&lt; 8: the 32 nibbles of qh in order, widened and shifted.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Prepare(byte* a, ushort* idx)
        {
            var (q0, q1) = Vector256.Widen(Vector256.Load(a));
            var qh = Vector128.Load(a + 32);
            var mask = Vector128.Create((byte)0x0F);
            var lo = qh & mask; var hi = Vector128.ShiftRightLogical(qh.AsUInt16(), 4).AsByte() & mask;
            (q0 | Vector256.ShiftLeft(Avx2.ConvertToVector256Int16(Sse2.UnpackLow(lo, hi)).AsUInt16(), 8)).Store(idx);
            (q1 | Vector256.ShiftLeft(Avx2.ConvertToVector256Int16(Sse2.UnpackHigh(lo, hi)).AsUInt16(), 8)).Store(idx + 16);
            // the 16 odd scales 2s + 1 at idx[32 + 2g + h] (h: half of group g): 4 per scale word g/2, at bits 0, 3, 6, 9
            var words = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(Unsafe.ReadUnaligned<ulong>(a + 48)).AsUInt16()).AsUInt32();
            var s0 = Avx2.ShiftRightLogicalVariable(Avx2.PermuteVar8x32(words, iq1mWords01), iq1mScaleShifts) & Vector256.Create(7u);
            var s1 = Avx2.ShiftRightLogicalVariable(Avx2.PermuteVar8x32(words, iq1mWords23), iq1mScaleShifts) & Vector256.Create(7u);
            Vector256.Narrow(s0 + s0 + Vector256<uint>.One, s1 + s1 + Vector256<uint>.One).Store(idx + 32);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group(byte* a, int g, ushort* idx, out Vector256<byte> abs, out Vector256<sbyte> w, out Vector256<short> scale)
        {
            ushort* ix = idx + 4 * g;
            ulong* t = iq1Grid8;
            w = Vector256.Create(t[ix[0]], t[ix[1]], t[ix[2]], t[ix[3]]).AsSByte();
            abs = Vector256.Abs(w).AsByte();
            // (idx[32 + 2g] in the low half, idx[33 + 2g] in the high half), from one 32-bit broadcast
            scale = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(idx + 32 + 2 * g)).AsByte(), iq1mScaleSpread).AsInt16();
        }
    }

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_iq1_m_q8_K_generic, same integer sums and float order: per 16 values
    /// ls·Σ g·y into sumi1 and ls·(±1)·Σ y per 8 values into sumi2, sumf = fma(d·d_y, sumi1 + 1/8·sumi2, sumf)).
    /// </summary>
    public static float DotIQ1_MScalar(byte* w, byte* x, int n)
    {
        var grid = IQ1Grid.Values;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * BlockIQ1_M.BlockBytes, b = x + i * Q8KBytes;
            sbyte* q8 = (sbyte*)(b + 4);
            int sumi1 = 0, sumi2 = 0;
            for (int g = 0; g < 8; g++)
            {
                int s10 = 0, s11 = 0, s20 = 0, s21 = 0;
                for (int l = 0; l < 4; l++)
                {
                    ulong q = grid[BlockIQ1_M.GridIndex(a, g, l)];
                    int lsum1 = 0, lsum2 = 0;
                    for (int j = 0; j < 8; j++) { lsum1 += q8[j] * (sbyte)(q >> 8 * j); lsum2 += q8[j]; }
                    q8 += 8;
                    int delta = BlockIQ1_M.NegativeShift(a, g, l) ? -1 : 1;
                    if (l < 2) { s10 += lsum1; s20 += lsum2 * delta; }
                    else { s11 += lsum1; s21 += lsum2 * delta; }
                }
                int ls1 = BlockIQ1_M.HalfScale(a, g, 0), ls2 = BlockIQ1_M.HalfScale(a, g, 1);
                sumi1 += s10 * ls1 + s11 * ls2;
                sumi2 += s20 * ls1 + s21 * ls2;
            }
            float d = HalfConvert.Fp16ToFp32(BlockIQ1_M.ScaleBits(a));
            sumf = MathF.FusedMultiplyAdd(d * Unsafe.ReadUnaligned<float>(b), sumi1 + BlockIQ1_S.Delta * sumi2, sumf); // contracted, as gcc compiles ggml's generic kernel
        }
        return sumf;
    }

    /// <summary>AVX2 IQ1_M · Q8_K (bit-exact with <see cref="DotIQ1_MScalar"/>).</summary>
    public static float DotIQ1_MAvx2(byte* w, byte* x, int n) => DotGridAvx2<Iq1MBlock>(w, x, n);
    /// <summary>AVX2 IQ1_M against 4 Q8_K activation rows; result: (4).</summary>
    public static void DotIQ1_MAvx2x4(byte* w, byte* x, int stride, int n, float* result) => DotGridAvx2x4<Iq1MBlock>(w, x, stride, n, result);
}
