using System.Runtime.Intrinsics;
namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q4_K: super-blocks of 256 values, 144 bytes; 8 sub-blocks of 32 values.
/// <code>
/// offset 0  : f16 d           scale of the 6-bit scales
/// offset 2  : f16 dmin        scale of the 6-bit mins
/// offset 4  : u8  scales[12]  8 scales + 8 mins, 6 bits each (see QuantMath.GetScaleMinK4)
/// offset 16 : u8  qs[128]     for chunk c (0..3): qs[32c + l] low nibble = value 64c + l,
///                             high nibble = value 64c + 32 + l
/// value = (d*sc) * q - (dmin*m)
/// </code>
/// </summary>
public static unsafe class BlockQ4_K
{
    public const int BlockSize = 256, BlockBytes = 144;

    /// <summary>Dequantizes whole blocks: Vector256 when accelerated (same float operations as the reference, so bit-identical).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) { DequantizeScalar(src, dst); return; }
        DequantizeSimd(src, dst);
    }

    /// <summary>Vector256 path: each 32-value half of a chunk is 4 x 8 floats d1·q − m1 (multiply, then subtract: no FMA).</summary>
    public static void DequantizeSimd(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        var mask = System.Runtime.Intrinsics.Vector256.Create((byte)0x0F);
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            float* y = y0;
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                var scales = new ReadOnlySpan<byte>(b + 4, 12);
                byte* q = b + 16;
                float d = HalfConvert.ReadFp16(b);
                float min = HalfConvert.ReadFp16(b + 2);
                for (int j = 0, isc = 0; j < BlockSize; j += 64, isc += 2, q += 32, y += 64)
                {
                    QuantMath.GetScaleMinK4(isc + 0, scales, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    QuantMath.GetScaleMinK4(isc + 1, scales, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    var qv = System.Runtime.Intrinsics.Vector256.Load(q);
                    QuantMath.Affine32(qv & mask, d1, m1, y);
                    QuantMath.Affine32(System.Runtime.Intrinsics.Vector256.ShiftRightLogical(qv.AsUInt16(), 4).AsByte() & mask, d2, m2, y + 32);
                }
            }
        }
    }

    /// <summary>Scalar reference (ggml dequantize_row_q4_K): d1 = d*sc, m1 = dmin*m, y = d1*q - m1.</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            float* y = y0;
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                var scales = new ReadOnlySpan<byte>(b + 4, 12);
                byte* q = b + 16;
                float d = HalfConvert.ReadFp16(b);
                float min = HalfConvert.ReadFp16(b + 2);
                int isc = 0;
                for (int j = 0; j < BlockSize; j += 64)
                {
                    QuantMath.GetScaleMinK4(isc + 0, scales, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    QuantMath.GetScaleMinK4(isc + 1, scales, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
                    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
                    q += 32; isc += 2;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q4_K_ref): per sub-block make_qkx2_quants(32, 15,
    /// w = rms(x) + |x|, rmin -1, rdelta 0.1, 20 steps), 6-bit scales/mins relative to their maxima,
    /// then requantize with the stored scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) =>
        KQuantAsym.Quantize(src, dst, BlockBytes, nmax: 15, rmin: -1f, rdelta: 0.1f, nstep: 20, fiveBit: false);
}

/// <summary>The shared Q4_K / Q5_K reference quantizer (they differ in nmax, search range and packing).</summary>
internal static unsafe class KQuantAsym
{
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, int blockBytes, int nmax, float rmin, float rdelta, int nstep, bool fiveBit)
    {
        const int QK = 256;
        int nb = src.Length / QK;
        Span<byte> L = stackalloc byte[QK];
        Span<byte> Laux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<byte> ls = stackalloc byte[8];
        Span<byte> lm = stackalloc byte[8];
        fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                ReadOnlySpan<float> x = src.Slice(i * QK, QK);
                byte* b = d0 + i * blockBytes;
                float maxScale = 0, maxMin = 0;
                for (int j = 0; j < 8; ++j)
                {
                    float sumX2 = 0;
                    for (int l = 0; l < 32; ++l) sumX2 += x[32 * j + l] * x[32 * j + l];
                    float avX = MathF.Sqrt(sumX2 / 32);
                    for (int l = 0; l < 32; ++l) weights[l] = avX + MathF.Abs(x[32 * j + l]);
                    scales[j] = QuantMath.MakeQkx2Quants(32, nmax, x.Slice(32 * j), weights, L.Slice(32 * j), out mins[j], Laux, rmin, rdelta, nstep, false);
                    if (scales[j] > maxScale) maxScale = scales[j];
                    if (mins[j] > maxMin) maxMin = mins[j];
                }
                float invScale = maxScale > 0 ? 63f / maxScale : 0f;
                float invMin = maxMin > 0 ? 63f / maxMin : 0f;
                for (int j = 0; j < 8; ++j)
                {
                    // C: uint8_t ls = nearest_int(...); ls = MIN(63, ls);  (the int is truncated to 8 bits first)
                    ls[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invScale * scales[j]));
                    lm[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invMin * mins[j]));
                }
                var sc12 = new Span<byte>(b + 4, 12);
                QuantMath.PackScaleMinK4(ls, lm, sc12);
                HalfConvert.WriteFp16(b, maxScale / 63f);
                HalfConvert.WriteFp16(b + 2, maxMin / 63f);
                float dAll = HalfConvert.ReadFp16(b), mAll = HalfConvert.ReadFp16(b + 2);
                for (int j = 0; j < 8; ++j)
                {
                    QuantMath.GetScaleMinK4(j, sc12, out byte sc, out byte m);
                    float d = dAll * sc;
                    if (d == 0) continue;
                    float dm = mAll * m;
                    for (int ii = 0; ii < 32; ++ii)
                    {
                        int l = QuantMath.NearestInt((x[32 * j + ii] + dm) / d);
                        L[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, l));
                    }
                }
                if (!fiveBit)
                {
                    byte* q = b + 16;
                    for (int j = 0; j < QK; j += 64)
                    {
                        for (int l = 0; l < 32; ++l) q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
                        q += 32;
                    }
                }
                else
                {
                    byte* qh = b + 16;
                    byte* ql = b + 48;
                    new Span<byte>(qh, 32).Clear();
                    byte m1 = 1, m2 = 2;
                    for (int n = 0; n < QK; n += 64)
                    {
                        for (int j = 0; j < 32; ++j)
                        {
                            int l1 = L[n + j];
                            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                            int l2 = L[n + j + 32];
                            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                            ql[j] = (byte)(l1 | (l2 << 4));
                        }
                        m1 <<= 2; m2 <<= 2;
                        ql += 32;
                    }
                }
            }
        }
    }
}
