using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels;

public static unsafe partial class QuantDot
{
    // ---------------------------------------------------------------- Q5_K x Q8_K

    // Q5_K block (176 bytes): f16 d at 0, f16 dmin at 2, 12 packed 6-bit scales/mins at 4 (as Q4_K), qh[32] at 16,
    // qs[128] at 48. Value 64c + l (l < 32) = (qs[32c + l] & 0xF) | bit 2c of qh[l] << 4, value 64c + 32 + l =
    // (qs[32c + l] >> 4) | bit 2c+1 of qh[l] << 4; dequantized d·sc_j·q − dmin·m_j for sub-block j.
    private const int Q5KBytes = 176, Q8KBytes = 292;

    /// <summary>
    /// Scalar reference (ggml ggml_vec_dot_q5_K_q8_K_generic, same float order): the 5-bit values are unpacked, each
    /// sub-block's products scaled into 8 int32 lanes (value index mod 8), the lanes go into 8 float sums d·aux32[l]
    /// over all blocks, the mins term dmin·Σ m_j·bsum_j is subtracted from one float, and the 8 sums are added at the end.
    /// The two multiply-adds are fused, as gcc compiles ggml's C (-mfma, fp-contract): bit-exact with the _generic
    /// symbol of LLamaSharp's libggml-cpu (GgmlOracleTests.Dot_kernels_match_ggml_vec_dot).
    /// </summary>
    public static float DotQ5_KScalar(byte* w, byte* x, int n)
    {
        byte* sc = stackalloc byte[8]; byte* m = stackalloc byte[8];
        sbyte* q = stackalloc sbyte[256];
        int* aux32 = stackalloc int[8];
        float* sums = stackalloc float[8];
        for (int l = 0; l < 8; l++) sums[l] = 0;
        float sumf = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes, b = x + i * Q8KBytes;
            byte* qh = a + 16, qs = a + 48;
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                {
                    q[64 * c + l] = (sbyte)((qs[32 * c + l] & 0xF) | ((qh[l] >> (2 * c)) & 1) << 4);
                    q[64 * c + 32 + l] = (sbyte)((qs[32 * c + l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4);
                }
            ScalesMinsK4(a + 4, sc, m);
            short* bsums = (short*)(b + 260);
            int summ = 0;
            for (int j = 0; j < 16; j++) summ += bsums[j] * m[j / 2];
            sbyte* y = (sbyte*)(b + 4);
            for (int l = 0; l < 8; l++) aux32[l] = 0;
            for (int j = 0; j < 8; j++)
                for (int g = 0; g < 4; g++)
                    for (int l = 0; l < 8; l++)
                    {
                        int k = 32 * j + 8 * g + l;
                        aux32[l] += sc[j] * (short)(y[k] * q[k]);
                    }
            float dy = Unsafe.ReadUnaligned<float>(b);
            float d = Fp16(a) * dy;
            for (int l = 0; l < 8; l++) sums[l] = MathF.FusedMultiplyAdd(d, aux32[l], sums[l]);
            float dmin = Fp16(a + 2) * dy;
            sumf = MathF.FusedMultiplyAdd(-dmin, summ, sumf);
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }

    /// <summary>Σ_j m_j·(bsum_2j + bsum_2j+1) of a Q8_K block b: the integer mins term of Q4_K / Q5_K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MinsTerm(byte* b, ulong mins) => Vector256.Sum(Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(b + 260)), MinsPerBsum(mins)));

    /// <summary>The 5-bit values of sub-blocks 2c (low nibbles) and 2c+1 (high nibbles) of a Q5_K block: 32 bytes each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Lo, Vector256<byte> Hi) Q5Pair(byte* qs, Vector256<byte> qh, int c)
    {
        var mask = Vector256.Create((byte)0x0F); var bit4 = Vector256.Create((byte)0x10);
        var q4 = Vector256.Load(qs + 32 * c);
        // bit 2c (2c+1) of each qh byte moved to bit 4; 16-bit shifts, the bits that cross bytes are masked off
        var hLo = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh.AsUInt16(), 2 * c), 4).AsByte() & bit4;
        var hHi = Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh.AsUInt16(), 2 * c + 1), 4).AsByte() & bit4;
        return ((q4 & mask) | hLo, (Vector256.ShiftRightLogical(q4.AsUInt16(), 4).AsByte() & mask) | hHi);
    }

    /// <summary>
    /// AVX2 (ggml's ggml_vec_dot_q5_K_q8_K AVX2 path, same float order): per block the 8 int32 lanes of
    /// Σ sc_j·q·y go into one float vector by FMA with d_y·d, the mins term −d_y·dmin·Σ m_j·bsum_j into one float
    /// (an FMA, as gcc contracts ggml's <c>summs += dmin * x</c>); result Hsum(acc) + summs. Bit-exact with ggml's
    /// AVX2 ggml_vec_dot_q5_K_q8_K (GgmlOracleTests).
    /// </summary>
    public static float DotQ5_KAvx2(byte* w, byte* x, int n)
    {
        var acc = Vector256<float>.Zero;
        float summs = 0;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes, b = x + i * Q8KBytes;
            PrefetchAhead(a, Q5KBytes);
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            float dy = Unsafe.ReadUnaligned<float>(b);
            float d = dy * Fp16(a), negDmin = -dy * Fp16(a + 2);
            summs = MathF.FusedMultiplyAdd(negDmin, MinsTerm(b, mins), summs);
            var sc = ScalesBothLanes(scales).AsByte(); // (16) int16: s0..s7 twice
            var qh = Vector256.Load(a + 16);
            sbyte* y = (sbyte*)(b + 4);
            var (lo, hi) = Q5Pair(a + 48, qh, 0);
            var sumi = K4Pair(lo, hi, y, Avx2.Shuffle(sc, bc0).AsInt16(), Avx2.Shuffle(sc, bc1).AsInt16());
            (lo, hi) = Q5Pair(a + 48, qh, 1);
            sumi += K4Pair(lo, hi, y + 64, Avx2.Shuffle(sc, bc2).AsInt16(), Avx2.Shuffle(sc, bc3).AsInt16());
            (lo, hi) = Q5Pair(a + 48, qh, 2);
            sumi += K4Pair(lo, hi, y + 128, Avx2.Shuffle(sc, bc4).AsInt16(), Avx2.Shuffle(sc, bc5).AsInt16());
            (lo, hi) = Q5Pair(a + 48, qh, 3);
            sumi += K4Pair(lo, hi, y + 192, Avx2.Shuffle(sc, bc6).AsInt16(), Avx2.Shuffle(sc, bc7).AsInt16());
            acc = Fma.MultiplyAdd(Vector256.Create(d), Vector256.ConvertToSingle(sumi), acc);
        }
        return Hsum(acc) + summs;
    }

    /// <summary>
    /// Q5_K weights against 4 Q8_K activation rows (x, x + stride, ...): the scales, mins and 5-bit values are unpacked
    /// once per block; each token's float sequence is the one of <see cref="DotQ5_KAvx2"/> (bit-exact with it).
    /// </summary>
    public static void DotQ5_KAvx2x4(byte* w, byte* x, int stride, int n, float* result)
    {
        var acc0 = Vector256<float>.Zero; var acc1 = Vector256<float>.Zero; var acc2 = Vector256<float>.Zero; var acc3 = Vector256<float>.Zero;
        float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        for (int i = 0; i < n / 256; i++)
        {
            byte* a = w + i * Q5KBytes; int o = i * Q8KBytes;
            var (scales, mins) = ScalesMinsK4Packed(a + 4);
            float wd = Fp16(a), wdmin = Fp16(a + 2);
            var sc = ScalesBothLanes(scales).AsByte();
            var qh = Vector256.Load(a + 16);
            sbyte* y0 = (sbyte*)(x + o + 4), y1 = (sbyte*)(x1 + o + 4), y2 = (sbyte*)(x2 + o + 4), y3 = (sbyte*)(x3 + o + 4);
            var s0 = Vector256<int>.Zero; var s1 = Vector256<int>.Zero; var s2 = Vector256<int>.Zero; var s3 = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var (lo, hi) = Q5Pair(a + 48, qh, c);
                var scLo = Avx2.Shuffle(sc, Vector256.Create((ushort)(4 * c | (4 * c + 1) << 8)).AsByte()).AsInt16();
                var scHi = Avx2.Shuffle(sc, Vector256.Create((ushort)((4 * c + 2) | (4 * c + 3) << 8)).AsByte()).AsInt16();
                int yo = 64 * c;
                s0 += K4Pair(lo, hi, y0 + yo, scLo, scHi);
                s1 += K4Pair(lo, hi, y1 + yo, scLo, scHi);
                s2 += K4Pair(lo, hi, y2 + yo, scLo, scHi);
                s3 += K4Pair(lo, hi, y3 + yo, scLo, scHi);
            }
            acc0 = Q5Block(acc0, ref m0, x + o, wd, wdmin, s0, mins);
            acc1 = Q5Block(acc1, ref m1, x1 + o, wd, wdmin, s1, mins);
            acc2 = Q5Block(acc2, ref m2, x2 + o, wd, wdmin, s2, mins);
            acc3 = Q5Block(acc3, ref m3, x3 + o, wd, wdmin, s3, mins);
        }
        result[0] = Hsum(acc0) + m0; result[1] = Hsum(acc1) + m1; result[2] = Hsum(acc2) + m2; result[3] = Hsum(acc3) + m3;
    }

    /// <summary>One block of one token for <see cref="DotQ5_KAvx2x4"/>, in the float order of <see cref="DotQ5_KAvx2"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q5Block(Vector256<float> acc, ref float summs, byte* b, float wd, float wdmin, Vector256<int> sumi, ulong mins)
    {
        float dy = Unsafe.ReadUnaligned<float>(b);
        summs = MathF.FusedMultiplyAdd(-dy * wdmin, MinsTerm(b, mins), summs);
        return Fma.MultiplyAdd(Vector256.Create(dy * wd), Vector256.ConvertToSingle(sumi), acc);
    }
}
