namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q3_K: super-blocks of 256 values, 110 bytes; 16 sub-blocks of 16 values.
/// <code>
/// offset 0   : u8  hmask[32]  high (3rd) bit: value v's bit is hmask[v % 32] bit (v / 32); set means +0, clear -4
/// offset 32  : u8  qs[64]     low 2 bits, packed like Q2_K (qs[32h + l] bits s..s+1 = value 128h + 32(s/2) + l)
/// offset 96  : u8  scales[12] 16 signed 6-bit scales (+32): low 4 bits of scale j in byte j (j &lt; 8, low nibble)
///                             or byte j-8 (high nibble); high 2 bits in byte 8 + j%4 at bit 2*(j/4)
/// offset 108 : f16 d
/// value = d * (sc - 32) * ((q2 | hbit &lt;&lt; 2) - 4)
/// </code>
/// </summary>
public static unsafe class BlockQ3_K
{
    public const int BlockSize = 256, BlockBytes = 110;

    /// <summary>Unpacks the 6-bit scale j (0..15) of a Q3_K block, still offset by +32.</summary>
    internal static int Scale(byte* scales12, int j)
    {
        int low = j < 8 ? scales12[j] & 0xF : scales12[j - 8] >> 4;
        int high = (scales12[8 + j % 4] >> (2 * (j / 4))) & 3;
        return low | (high << 4);
    }

    /// <summary>Scalar reference (ggml dequantize_row_q3_K).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        int* sc = stackalloc int[16];
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            float* y = y0;
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                byte* hm = b;
                byte* q = b + 32;
                float dAll = HalfConvert.ReadFp16(b + 108);
                for (int j = 0; j < 16; ++j) sc[j] = Scale(b + 96, j);
                int m = 1, isc = 0;
                for (int n = 0; n < BlockSize; n += 128)
                {
                    int shift = 0;
                    for (int j = 0; j < 4; ++j)
                    {
                        float dl = dAll * (sc[isc++] - 32);
                        for (int l = 0; l < 16; ++l) *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
                        dl = dAll * (sc[isc++] - 32);
                        for (int l = 0; l < 16; ++l) *y++ = dl * (((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) != 0 ? 0 : 4));
                        shift += 2;
                        m <<= 1;
                    }
                    q += 32;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q3_K_ref): per sub-block make_q3_quants(16, 4, rmse), signed
    /// 6-bit scales relative to the scale of largest magnitude, then requantize with the stored scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        Span<sbyte> L = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                ReadOnlySpan<float> x = src.Slice(i * BlockSize, BlockSize);
                byte* b = d0 + i * BlockBytes;
                byte* ysc = b + 96;
                float maxScale = 0, amax = 0;
                for (int j = 0; j < 16; ++j)
                {
                    scales[j] = QuantMath.MakeQ3Quants(16, 4, x.Slice(16 * j), L.Slice(16 * j));
                    float scale = MathF.Abs(scales[j]);
                    if (scale > amax) { amax = scale; maxScale = scales[j]; }
                }
                new Span<byte>(ysc, 12).Clear();
                if (maxScale != 0)
                {
                    float iscale = -32f / maxScale;
                    for (int j = 0; j < 16; ++j)
                    {
                        sbyte l8 = (sbyte)QuantMath.NearestInt(iscale * scales[j]); // C: int8_t l = nearest_int(...)
                        int l = Math.Max(-32, Math.Min(31, (int)l8)) + 32;
                        if (j < 8) ysc[j] = (byte)(l & 0xF);
                        else ysc[j - 8] |= (byte)((l & 0xF) << 4);
                        l >>= 4;
                        ysc[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
                    }
                    HalfConvert.WriteFp16(b + 108, 1 / iscale);
                }
                else
                {
                    HalfConvert.WriteFp16(b + 108, 0f);
                }
                float dAll = HalfConvert.ReadFp16(b + 108);
                for (int j = 0; j < 16; ++j)
                {
                    int sc = Scale(ysc, j) - 32;
                    float d = dAll * sc;
                    if (d == 0) continue;
                    for (int ii = 0; ii < 16; ++ii)
                    {
                        int l = QuantMath.NearestInt(x[16 * j + ii] / d);
                        l = Math.Max(-4, Math.Min(3, l));
                        L[16 * j + ii] = (sbyte)(l + 4);
                    }
                }
                byte* hmask = b;
                new Span<byte>(hmask, 32).Clear();
                int m = 0;
                byte hm = 1;
                for (int j = 0; j < BlockSize; ++j)
                {
                    if (L[j] > 3) { hmask[m] |= hm; L[j] -= 4; }
                    if (++m == 32) { m = 0; hm <<= 1; }
                }
                byte* qs = b + 32;
                for (int j = 0; j < BlockSize; j += 128)
                    for (int l = 0; l < 32; ++l)
                        qs[j / 4 + l] = (byte)((byte)L[j + l] | ((byte)L[j + l + 32] << 2) | ((byte)L[j + l + 64] << 4) | ((byte)L[j + l + 96] << 6));
            }
        }
    }
}
