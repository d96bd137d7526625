using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q5_0: blocks of 32 values, 22 bytes.
/// <code>
/// offset 0  : f16 d
/// offset 2  : u32 qh        (little-endian) bit j = 5th bit of value j
/// offset 6  : u8  qs[16]    low nibble -> value j, high nibble -> value j+16
///                           value = ((nibble | hbit &lt;&lt; 4) - 16) * d
/// </code>
/// </summary>
public static unsafe class BlockQ5_0
{
    public const int BlockSize = 32, BlockBytes = 22;

    /// <summary>Scalar reference (ggml dequantize_row_q5_0).</summary>
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
                uint qh = Unsafe.ReadUnaligned<uint>(b + 2);
                byte* qs = b + 6;
                for (int j = 0; j < 16; ++j)
                {
                    int xh0 = (int)((qh >> j) << 4) & 0x10;
                    int xh1 = (int)(qh >> (j + 12)) & 0x10;
                    int x0 = ((qs[j] & 0x0F) | xh0) - 16;
                    int x1 = ((qs[j] >> 4) | xh1) - 16;
                    y[j] = x0 * d;
                    y[j + 16] = x1 * d;
                }
            }
        }
    }

    /// <summary>Reference quantizer (ggml quantize_row_q5_0_ref): d = max/-16, q = min(31, (int8)(x/d + 16.5)).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        fixed (float* x0 = src) fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                byte* b = d0 + i * BlockBytes;
                float amax = 0.0f, max = 0.0f;
                for (int j = 0; j < BlockSize; j++)
                {
                    float v = x[j];
                    if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
                }
                float d = max / -16;
                float id = d != 0 ? 1.0f / d : 0.0f;
                HalfConvert.WriteFp16(b, d);
                uint qh = 0;
                byte* qs = b + 6;
                for (int j = 0; j < 16; ++j)
                {
                    float f0 = x[j] * id;
                    float f1 = x[16 + j] * id;
                    int xi0 = Math.Min(31, (int)(sbyte)(int)(f0 + 16.5f));
                    int xi1 = Math.Min(31, (int)(sbyte)(int)(f1 + 16.5f));
                    qs[j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                    qh |= ((uint)(xi0 & 0x10) >> 4) << j;
                    qh |= ((uint)(xi1 & 0x10) >> 4) << (j + 16);
                }
                Unsafe.WriteUnaligned(b + 2, qh);
            }
        }
    }
}
