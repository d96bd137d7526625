using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q5_1: blocks of 32 values, 24 bytes.
/// <code>
/// offset 0  : f16 d
/// offset 2  : f16 m         (the block minimum)
/// offset 4  : u32 qh        (little-endian) bit j = 5th bit of value j
/// offset 8  : u8  qs[16]    low nibble -> value j, high nibble -> value j+16
///                           value = (nibble | hbit &lt;&lt; 4) * d + m
/// </code>
/// </summary>
public static unsafe class BlockQ5_1
{
    public const int BlockSize = 32, BlockBytes = 24;

    /// <summary>Scalar reference (ggml dequantize_row_q5_1).</summary>
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
                uint qh = Unsafe.ReadUnaligned<uint>(b + 4);
                byte* qs = b + 8;
                for (int j = 0; j < 16; ++j)
                {
                    int xh0 = (int)((qh >> j) << 4) & 0x10;
                    int xh1 = (int)(qh >> (j + 12)) & 0x10;
                    int x0 = (qs[j] & 0x0F) | xh0;
                    int x1 = (qs[j] >> 4) | xh1;
                    y[j] = x0 * d + m;
                    y[j + 16] = x1 * d + m;
                }
            }
        }
    }

    /// <summary>Reference quantizer (ggml quantize_row_q5_1_ref): d = (max-min)/31, q = (uint8)((x-min)/d + 0.5).</summary>
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
                float d = (max - min) / ((1 << 5) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                HalfConvert.WriteFp16(b, d);
                HalfConvert.WriteFp16(b + 2, min);
                uint qh = 0;
                byte* qs = b + 8;
                for (int j = 0; j < 16; ++j)
                {
                    float f0 = (x[j] - min) * id;
                    float f1 = (x[16 + j] - min) * id;
                    int xi0 = (byte)(int)(f0 + 0.5f);
                    int xi1 = (byte)(int)(f1 + 0.5f);
                    qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                    qh |= ((uint)(xi0 & 0x10) >> 4) << j;
                    qh |= ((uint)(xi1 & 0x10) >> 4) << (j + 16);
                }
                Unsafe.WriteUnaligned(b + 4, qh);
            }
        }
    }
}
