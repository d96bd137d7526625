namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q4_1: blocks of 32 values, 20 bytes.
/// <code>
/// offset 0  : f16 d
/// offset 2  : f16 m         (the block minimum)
/// offset 4  : u8  qs[16]    low nibble -> value j, high nibble -> value j+16; value = nibble * d + m
/// </code>
/// </summary>
public static unsafe class BlockQ4_1
{
    public const int BlockSize = 32, BlockBytes = 20;

    /// <summary>Scalar reference (ggml dequantize_row_q4_1): y = q*d + m (two roundings, no FMA).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                float d = HalfConvert.ReadFp16(b);
                float m = HalfConvert.ReadFp16(b + 2);
                byte* qs = b + 4;
                for (int j = 0; j < 16; ++j)
                {
                    int x0 = qs[j] & 0x0F;
                    int x1 = qs[j] >> 4;
                    y[j] = x0 * d + m;
                    y[j + 16] = x1 * d + m;
                }
            }
        }
    }

    /// <summary>Reference quantizer (ggml quantize_row_q4_1_ref): d = (max-min)/15, q = min(15, (int8)((x-min)/d + 0.5)).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        fixed (float* x0 = src) fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                byte* b = d0 + i * BlockBytes;
                float min = float.MaxValue, max = -float.MaxValue;
                for (int j = 0; j < BlockSize; j++)
                {
                    float v = x[j];
                    if (v < min) min = v;
                    if (v > max) max = v;
                }
                float d = (max - min) / ((1 << 4) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                HalfConvert.WriteFp16(b, d);
                HalfConvert.WriteFp16(b + 2, min);
                byte* qs = b + 4;
                for (int j = 0; j < 16; ++j)
                {
                    float f0 = (x[j] - min) * id;
                    float f1 = (x[16 + j] - min) * id;
                    int xi0 = Math.Min(15, (int)(sbyte)(int)(f0 + 0.5f));
                    int xi1 = Math.Min(15, (int)(sbyte)(int)(f1 + 0.5f));
                    qs[j] = (byte)(xi0 | (xi1 << 4));
                }
            }
        }
    }
}
