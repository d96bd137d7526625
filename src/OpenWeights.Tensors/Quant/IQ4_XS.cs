namespace OpenWeights.Tensors.Quant;

/// <summary>
/// IQ4_XS: super-blocks of 256 values, 136 bytes; 8 groups of 32, each with a 6-bit signed scale, indices into the
/// IQ4_NL grid.
/// <code>
/// offset 0  : f16 d
/// offset 2  : u16 scales_h    bits 2g, 2g+1: the top 2 bits of group g's scale
/// offset 4  : u8  scales_l[4] low nibble of byte g/2 (g even) or high nibble (g odd): the low 4 bits of group g's scale
/// offset 8  : u8  qs[128]     group g: qs[16g + j] low nibble -> value 32g + j, high nibble -> value 32g + 16 + j
/// value = (d * (ls_g - 32)) * grid[nibble], ls_g = the 6-bit scale (0..63)
/// </code>
/// </summary>
public static unsafe class BlockIQ4_XS
{
    public const int BlockSize = 256, BlockBytes = 136;

    /// <summary>The 6-bit scale (0..63, stored with +32) of group g of the super-block at b.</summary>
    public static int GroupScale(byte* b, int g) =>
        ((b[4 + g / 2] >> 4 * (g % 2)) & 0xF) | (((*(ushort*)(b + 2) >> 2 * g) & 3) << 4);

    /// <summary>Dequantizes whole super-blocks (vpshufb path when AVX2 is there; same bits as <see cref="DequantizeScalar"/>).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!NonLinear4.SimdDecode) { DequantizeScalar(src, dst); return; }
        int nb = dst.Length / BlockSize;
        var table = NonLinear4.Table256(NonLinear4.Iq4Values);
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float d = HalfConvert.ReadFp16(b);
                for (int g = 0; g < 8; g++)
                    NonLinear4.DecodeGroupAvx2(b + 8 + 16 * g, d * (GroupScale(b, g) - 32), table, y0 + i * BlockSize + 32 * g);
            }
    }

    /// <summary>Scalar reference (ggml dequantize_row_iq4_xs): dl = d * (ls - 32), y = dl * grid[q].</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float d = HalfConvert.ReadFp16(b);
                for (int g = 0; g < 8; g++)
                {
                    float dl = d * (GroupScale(b, g) - 32);
                    NonLinear4.DecodeGroupScalar(b + 8 + 16 * g, dl, NonLinear4.Iq4Values, y0 + i * BlockSize + 32 * g);
                }
            }
    }

    /// <summary>
    /// Reference quantizer (ggml quantize_row_iq4_xs_ref = quantize_iq4_xs without importance matrix): per group the
    /// best of 15 scales, then 6-bit group scales relative to the largest (<see cref="NonLinear4.QuantizeIq4"/>).
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = src.Length / BlockSize;
        fixed (byte* d0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = d0 + i * BlockBytes;
                NonLinear4.QuantizeIq4(BlockSize, src.Slice(i * BlockSize, BlockSize), b, b + 8, (ushort*)(b + 2), b + 4, ntry: 7);
            }
    }
}
