using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Q8_K: super-blocks of 256 values, 292 bytes (ggml uses it for activations in K-quant dot products).
/// <code>
/// offset 0   : f32 d
/// offset 4   : i8  qs[256]     value j = d * qs[j]
/// offset 260 : i16 bsums[16]   sum of qs over each group of 16
/// </code>
/// </summary>
public static unsafe class BlockQ8_K
{
    public const int BlockSize = 256, BlockBytes = 292;

    /// <summary>Scalar reference (ggml dequantize_row_q8_K).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                float d = Unsafe.ReadUnaligned<float>(b);
                sbyte* qs = (sbyte*)(b + 4);
                for (int j = 0; j < BlockSize; ++j) y[j] = d * qs[j];
            }
        }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_q8_K_ref): iscale = -127/max (max = signed value of largest
    /// magnitude), q = min(127, nearest_int(iscale*x)), d = 1/iscale. An all-zero block gets d = 0 and zero
    /// quants; ggml leaves its bsums untouched, we write zeros there.
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
                sbyte* qs = (sbyte*)(b + 4);
                short* bsums = (short*)(b + 260); // unaligned access is fine on x64/arm64
                float max = 0, amax = 0;
                for (int j = 0; j < BlockSize; ++j)
                {
                    float ax = MathF.Abs(x[j]);
                    if (ax > amax) { amax = ax; max = x[j]; }
                }
                if (amax == 0)
                {
                    new Span<byte>(b, BlockBytes).Clear();
                    continue;
                }
                float iscale = -127f / max;
                for (int j = 0; j < BlockSize; ++j)
                {
                    int v = QuantMath.NearestInt(iscale * x[j]);
                    qs[j] = (sbyte)Math.Min(127, v);
                }
                for (int j = 0; j < 16; ++j)
                {
                    int sum = 0;
                    for (int ii = 0; ii < 16; ++ii) sum += qs[j * 16 + ii];
                    Unsafe.WriteUnaligned(bsums + j, (short)sum);
                }
                Unsafe.WriteUnaligned(b, 1 / iscale);
            }
        }
    }
}
