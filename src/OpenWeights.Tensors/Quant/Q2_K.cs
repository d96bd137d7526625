namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q2_K: super-blocks of 256 values, 84 bytes; 16 sub-blocks of 16 values.
/// <code>
/// offset 0  : u8  scales[16]  low nibble = 4-bit scale, high nibble = 4-bit min of sub-block j
/// offset 16 : u8  qs[64]      2-bit quants. For half h (0,1) and shift s (0,2,4,6): qs[32h + l] bits s..s+1
///                             hold value 128h + 32(s/2) + l  (l = 0..31)
/// offset 80 : f16 d           super-block scale of the scales
/// offset 82 : f16 dmin        super-block scale of the mins
/// value = d*sc * q - dmin*m
/// </code>
/// </summary>
public static unsafe class BlockQ2_K
{
    public const int BlockSize = 256, BlockBytes = 84;

    /// <summary>Scalar reference (ggml dequantize_row_q2_K).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            float* y = y0;
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                byte* scales = b;
                byte* q = b + 16;
                float d = HalfConvert.ReadFp16(b + 80);
                float min = HalfConvert.ReadFp16(b + 82);
                int isc = 0;
                for (int n = 0; n < BlockSize; n += 128)
                {
                    int shift = 0;
                    for (int j = 0; j < 4; ++j)
                    {
                        byte sc = scales[isc++];
                        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l] >> shift) & 3) - ml;
                        sc = scales[isc++];
                        dl = d * (sc & 0xF); ml = min * (sc >> 4);
                        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
                        shift += 2;
                    }
                    q += 32;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q2_K_ref): per sub-block make_qkx2_quants(16, 3, w = |x|, mad),
    /// 4-bit scales and mins relative to their maxima, then requantize with the stored scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        Span<byte> L = stackalloc byte[BlockSize];
        Span<byte> Laux = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        const float q4scale = 15f;
        fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                ReadOnlySpan<float> x = src.Slice(i * BlockSize, BlockSize);
                byte* b = d0 + i * BlockBytes;
                byte* ysc = b;
                float maxScale = 0, maxMin = 0;
                for (int j = 0; j < 16; ++j)
                {
                    for (int l = 0; l < 16; ++l) weights[l] = MathF.Abs(x[16 * j + l]);
                    scales[j] = QuantMath.MakeQkx2Quants(16, 3, x.Slice(16 * j), weights, L.Slice(16 * j), out mins[j], Laux, -0.5f, 0.1f, 15, true);
                    if (scales[j] > maxScale) maxScale = scales[j];
                    if (mins[j] > maxMin) maxMin = mins[j];
                }
                if (maxScale > 0)
                {
                    float iscale = q4scale / maxScale;
                    for (int j = 0; j < 16; ++j) ysc[j] = (byte)QuantMath.NearestInt(iscale * scales[j]);
                    HalfConvert.WriteFp16(b + 80, maxScale / q4scale);
                }
                else
                {
                    for (int j = 0; j < 16; ++j) ysc[j] = 0;
                    HalfConvert.WriteFp16(b + 80, 0f);
                }
                if (maxMin > 0)
                {
                    float iscale = q4scale / maxMin;
                    for (int j = 0; j < 16; ++j) ysc[j] |= (byte)(QuantMath.NearestInt(iscale * mins[j]) << 4);
                    HalfConvert.WriteFp16(b + 82, maxMin / q4scale);
                }
                else
                {
                    HalfConvert.WriteFp16(b + 82, 0f);
                }
                float dAll = HalfConvert.ReadFp16(b + 80), mAll = HalfConvert.ReadFp16(b + 82);
                for (int j = 0; j < 16; ++j)
                {
                    float d = dAll * (ysc[j] & 0xF);
                    if (d == 0) continue;
                    float dm = mAll * (ysc[j] >> 4);
                    for (int ii = 0; ii < 16; ++ii)
                    {
                        int l = QuantMath.NearestInt((x[16 * j + ii] + dm) / d);
                        L[16 * j + ii] = (byte)Math.Max(0, Math.Min(3, l));
                    }
                }
                byte* qs = b + 16;
                for (int j = 0; j < BlockSize; j += 128)
                    for (int l = 0; l < 32; ++l)
                        qs[j / 4 + l] = (byte)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            }
        }
    }
}
