namespace OpenWeights.Tensors.Quant;

/// <summary>
/// IQ4_NL: blocks of 32 values, 18 bytes; 4-bit indices into a fixed non-uniform grid (<c>kvalues_iq4nl</c>).
/// <code>
/// offset 0  : f16 d
/// offset 2  : u8  qs[16]    low nibble of qs[j] -> value j, high nibble -> value j+16
///                           value = d * grid[nibble], grid = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
/// </code>
/// </summary>
public static unsafe class BlockIQ4_NL
{
    public const int BlockSize = 32, BlockBytes = 18;

    /// <summary>The grid (ggml's kvalues_iq4nl).</summary>
    public static ReadOnlySpan<sbyte> Values => NonLinear4.Iq4Values;

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
                NonLinear4.DecodeGroupAvx2(b + 2, HalfConvert.ReadFp16(b), table, y0 + i * BlockSize);
            }
    }

    /// <summary>Scalar reference (ggml dequantize_row_iq4_nl): y = d * grid[q].</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                NonLinear4.DecodeGroupScalar(b + 2, HalfConvert.ReadFp16(b), Values, y0 + i * BlockSize);
            }
    }

    /// <summary>
    /// The quantizer llama_model_quantize runs for IQ4_NL without an importance matrix (ggml quantize_iq4_nl: weights
    /// x², best of 15 scales per block; see <see cref="NonLinear4.QuantizeIq4"/>).
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        fixed (byte* d0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = d0 + i * BlockBytes;
                NonLinear4.QuantizeIq4(BlockSize, src.Slice(i * BlockSize, BlockSize), b, b + 2, null, null, ntry: 7);
            }
    }
}
