namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q8_0: blocks of 32 values, 34 bytes.
/// <code>
/// offset 0  : f16 d         scale
/// offset 2  : i8  qs[32]    value j = qs[j] * d
/// </code>
/// </summary>
public static unsafe class BlockQ8_0
{
    public const int BlockSize = 32, BlockBytes = 34;

    /// <summary>Dequantizes whole blocks; picks a SIMD path when available (same bits as the scalar reference).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (SimdDequant.IsSupported) { SimdDequant.Q8_0(src, dst); return; }
        DequantizeScalar(src, dst);
    }

    /// <summary>Scalar reference (ggml dequantize_row_q8_0): y = qs[j] * d.</summary>
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
                sbyte* qs = (sbyte*)(b + 2);
                for (int j = 0; j < BlockSize; ++j) y[j] = qs[j] * d;
            }
        }
    }

    /// <summary>Reference quantizer (ggml quantize_row_q8_0_ref): d = amax/127, q = roundf(x/d) (half away from zero).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        fixed (float* x0 = src) fixed (byte* d0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                byte* b = d0 + i * BlockBytes;
                float amax = 0.0f;
                for (int j = 0; j < BlockSize; j++) { float a = MathF.Abs(x[j]); amax = amax > a ? amax : a; } // C's MAX macro
                float d = amax / ((1 << 7) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                HalfConvert.WriteFp16(b, d);
                sbyte* qs = (sbyte*)(b + 2);
                for (int j = 0; j < BlockSize; ++j) qs[j] = (sbyte)QuantMath.RoundF(x[j] * id);
            }
        }
    }
}
