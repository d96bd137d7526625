namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q4_0: blocks of 32 values, 18 bytes.
/// <code>
/// offset 0  : f16 d
/// offset 2  : u8  qs[16]    low nibble of qs[j] -> value j, high nibble -> value j+16
///                           value = (nibble - 8) * d
/// </code>
/// </summary>
public static unsafe class BlockQ4_0
{
    public const int BlockSize = 32, BlockBytes = 18;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (SimdDequant.IsSupported) { SimdDequant.Q4_0(src, dst); return; }
        DequantizeScalar(src, dst);
    }

    /// <summary>Scalar reference (ggml dequantize_row_q4_0).</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                float d = HalfConvert.ReadFp16(b);
                byte* qs = b + 2;
                for (int j = 0; j < 16; ++j)
                {
                    int x0 = (qs[j] & 0x0F) - 8;
                    int x1 = (qs[j] >> 4) - 8;
                    y[j] = x0 * d;
                    y[j + 16] = x1 * d;
                }
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q4_0_ref): d = max/-8 where max is the signed value of largest
    /// magnitude, q = min(15, (int8)(x/d + 8.5)) (truncation, as in C).
    /// </summary>
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
                float d = max / -8;
                float id = d != 0 ? 1.0f / d : 0.0f;
                HalfConvert.WriteFp16(b, d);
                byte* qs = b + 2;
                for (int j = 0; j < 16; ++j)
                {
                    float f0 = x[j] * id;
                    float f1 = x[16 + j] * id;
                    int xi0 = Math.Min(15, (int)(sbyte)(int)(f0 + 8.5f));
                    int xi1 = Math.Min(15, (int)(sbyte)(int)(f1 + 8.5f));
                    qs[j] = (byte)(xi0 | (xi1 << 4));
                }
            }
        }
    }
}
