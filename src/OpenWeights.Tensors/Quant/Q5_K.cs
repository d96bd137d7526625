namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q5_K: super-blocks of 256 values, 176 bytes; 8 sub-blocks of 32 values.
/// <code>
/// offset 0  : f16 d
/// offset 2  : f16 dmin
/// offset 4  : u8  scales[12]  8 scales + 8 mins, 6 bits each (as Q4_K)
/// offset 16 : u8  qh[32]      5th bit: value 64c + l (l &lt; 32) uses qh[l] bit 2c, value 64c + 32 + l bit 2c+1
/// offset 48 : u8  qs[128]     low 4 bits, packed as Q4_K
/// value = (d*sc) * (q | hbit &lt;&lt; 4) - (dmin*m)
/// </code>
/// </summary>
public static unsafe class BlockQ5_K
{
    public const int BlockSize = 256, BlockBytes = 176;

    /// <summary>Scalar reference (ggml dequantize_row_q5_K).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            float* y = y0;
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                var scales = new ReadOnlySpan<byte>(b + 4, 12);
                byte* qh = b + 16;
                byte* ql = b + 48;
                float d = HalfConvert.ReadFp16(b);
                float min = HalfConvert.ReadFp16(b + 2);
                int isc = 0;
                int u1 = 1, u2 = 2;
                for (int j = 0; j < BlockSize; j += 64)
                {
                    QuantMath.GetScaleMinK4(isc + 0, scales, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    QuantMath.GetScaleMinK4(isc + 1, scales, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
                    ql += 32; isc += 2;
                    u1 <<= 2; u2 <<= 2;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q5_K_ref): as Q4_K with nmax 31 and make_qkx2_quants(rmin -0.5,
    /// rdelta 0.1, 15 steps).
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) =>
        KQuantAsym.Quantize(src, dst, BlockBytes, nmax: 31, rmin: -0.5f, rdelta: 0.1f, nstep: 15, fiveBit: true);
}
