namespace OpenWeights.Tensors.Quant;

/// <summary>
/// MXFP4 (OCP microscaling FP4, gpt-oss expert weights): blocks of 32 values, 17 bytes.
/// <code>
/// offset 0  : u8  e         E8M0 shared exponent: scale 2^(e - 127)
/// offset 1  : u8  qs[16]    low nibble of qs[j] -> value j, high nibble -> value j+16; each an E2M1 (FP4) number
/// value = fp4[nibble] * 2^(e - 127) = kvalues[nibble] * 2^(e - 128)
///         kvalues = 2·fp4 = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
/// </code>
/// As in ggml the table holds the FP4 values doubled (integers, so dot products stay in int8) and the scale is halved
/// (GGML_E8M0_TO_FP32_HALF: e = 0 and 1 give the subnormals 2^-128 and 2^-127; e = 255 gives 2^127, not NaN).
/// </summary>
public static unsafe class BlockMXFP4
{
    public const int BlockSize = 32, BlockBytes = 17;

    /// <summary>The doubled FP4 values (ggml's kvalues_mxfp4).</summary>
    public static ReadOnlySpan<sbyte> Values => NonLinear4.Mxfp4Values;

    /// <summary>2^(e − 128) as f32, exactly ggml's GGML_E8M0_TO_FP32_HALF.</summary>
    public static float ScaleHalf(byte e) => BitConverter.UInt32BitsToSingle(e < 2 ? 0x00200000u << e : (uint)(e - 1) << 23);

    /// <summary>Dequantizes whole blocks (vpshufb path when AVX2 is there; same bits as <see cref="DequantizeScalar"/>).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!NonLinear4.SimdDecode) { DequantizeScalar(src, dst); return; }
        int nb = dst.Length / BlockSize;
        var table = NonLinear4.Table256(Values);
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                NonLinear4.DecodeGroupAvx2(b + 1, ScaleHalf(b[0]), table, y0 + i * BlockSize);
            }
    }

    /// <summary>Scalar reference (ggml dequantize_row_mxfp4): y = kvalues[q] * 2^(e − 128).</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                NonLinear4.DecodeGroupScalar(b + 1, ScaleHalf(b[0]), Values, y0 + i * BlockSize);
            }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_mxfp4_ref): e = floor(log2(amax)) − 2 + 127 (so amax lands in [4, 8) of
    /// the unit 2^(e−127), i.e. near the top FP4 value 6), then each value takes the nearest of the 16 (first on ties).
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        var values = Values;
        float* candidates = stackalloc float[16];
        fixed (float* x0 = src) fixed (byte* d0 = dst)
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                byte* b = d0 + i * BlockBytes;
                float amax = 0.0f;
                for (int j = 0; j < BlockSize; j++)
                    if (amax < MathF.Abs(x[j])) amax = MathF.Abs(x[j]);
                // C converts the float to uint8_t through a 32-bit integer on x86 (wraps, not saturates)
                byte e = amax > 0.0f ? (byte)(int)(MathF.Floor(MathF.Log2(amax)) - 2 + 127) : (byte)0;
                float d = ScaleHalf(e);
                b[0] = e;
                for (int k = 0; k < 16; k++) candidates[k] = values[k] * d; // ggml computes each product per value: the same floats
                for (int j = 0; j < 16; ++j)
                {
                    int x0i = BestIndex(x[j], candidates), x1i = BestIndex(x[16 + j], candidates);
                    b[1 + j] = (byte)(x0i | (x1i << 4));
                }
            }
    }

    /// <summary>ggml's best_index_mxfp4: the first index with the least |values[i]·d − x| (candidates[i] = values[i]·d).</summary>
    private static int BestIndex(float x, float* candidates)
    {
        int best = 0;
        float bestErr = MathF.Abs(candidates[0] - x);
        for (int i = 1; i < 16; i++)
        {
            float err = MathF.Abs(candidates[i] - x);
            if (err < bestErr) { best = i; bestErr = err; }
        }
        return best;
    }
}
