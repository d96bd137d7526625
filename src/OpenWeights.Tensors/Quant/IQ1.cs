using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// IQ1_S (ggml type 19): super-blocks of 256 values, 50 bytes (1.56 bits per weight). Each 8 values are one entry of a
/// 2048-entry grid of 8 values in {−1, 0, 1} (<see cref="IQ1Grid.Values"/>, 11-bit index); each 32-value group has a
/// 3-bit scale and a shift ±<see cref="Delta"/> added to every value.
/// <code>
/// offset 0  : f16 d
/// offset 2  : u8  qs[32]   group g: qs[4g + l] = low 8 bits of the grid index of values 32g + 8l .. 32g + 8l + 7
/// offset 34 : u16 qh[8]    group g: bits 3l..3l+2 = bits 8..10 of index l, bits 12..14 = the scale s_g,
///                          bit 15 = the shift's sign (set: −Delta)
/// value = (d * (2 s_g + 1)) * (grid value ± Delta)
/// </code>
/// </summary>
public static unsafe class BlockIQ1_S
{
    public const int BlockSize = 256, BlockBytes = 50;

    /// <summary>ggml's IQ1S_DELTA (and IQ1M_DELTA): the shift of the grid values.</summary>
    public const float Delta = 0.125f;

    /// <summary>Scalar reference (ggml dequantize_row_iq1_s, same float operations).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        var grid = IQ1Grid.Values;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                float d = HalfConvert.ReadFp16(b);
                for (int g = 0; g < 8; g++)
                {
                    int qh = Unsafe.ReadUnaligned<ushort>(b + 34 + 2 * g);
                    float dl = d * (2 * ((qh >> 12) & 7) + 1);
                    float delta = (qh & 0x8000) != 0 ? -Delta : Delta;
                    for (int l = 0; l < 4; l++)
                    {
                        ulong q = grid[b[2 + 4 * g + l] | ((qh >> 3 * l) & 7) << 8];
                        for (int j = 0; j < 8; j++) y[32 * g + 8 * l + j] = dl * ((sbyte)(q >> 8 * j) + delta);
                    }
                }
            }
    }
}

/// <summary>
/// IQ1_M (ggml type 29): super-blocks of 256 values, 56 bytes (1.75 bits per weight), no separate scale field: the
/// f16 super-block scale is spread over the top nibbles of the 4 scale words. Same grid as IQ1_S; each 16 values have a
/// 3-bit scale, each 8 values their own shift sign.
/// <code>
/// offset 0  : u8  qs[32]     group g: qs[4g + l] = low 8 bits of the grid index of values 32g + 8l .. 32g + 8l + 7
/// offset 32 : u8  qh[16]     group g: qh[2g + h] low nibble for l = 2h, high nibble for l = 2h + 1: bits 0..2 = bits
///                            8..10 of index l, bit 3 = the sign of the shift of those 8 values (set: −Delta)
/// offset 48 : u16 sc[4]      group g: bits 6(g%2)..+2 = scale of values 32g..32g+15, bits 6(g%2)+3..+5 = of 32g+16..32g+31;
///                            d = the f16 (sc[0] >> 12) | (sc[1] >> 8 &amp; 0xF0) | (sc[2] >> 4 &amp; 0xF00) | (sc[3] &amp; 0xF000)
/// value = (d * (2 s + 1)) * (grid value ± Delta)
/// </code>
/// </summary>
public static unsafe class BlockIQ1_M
{
    public const int BlockSize = 256, BlockBytes = 56;

    /// <summary>The f16 bits of the super-block scale of the block at b (from the top nibbles of its 4 scale words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ScaleBits(byte* b)
    {
        ushort* sc = (ushort*)(b + 48);
        return (ushort)((Unsafe.ReadUnaligned<ushort>(sc) >> 12) | ((Unsafe.ReadUnaligned<ushort>(sc + 1) >> 8) & 0x00F0)
            | ((Unsafe.ReadUnaligned<ushort>(sc + 2) >> 4) & 0x0F00) | (Unsafe.ReadUnaligned<ushort>(sc + 3) & 0xF000));
    }

    /// <summary>The odd scale 2 s + 1 of half h (0: values 0..15, 1: values 16..31) of group g of the block at b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HalfScale(byte* b, int g, int h) => 2 * ((Unsafe.ReadUnaligned<ushort>(b + 48 + 2 * (g / 2)) >> (6 * (g % 2) + 3 * h)) & 7) + 1;

    /// <summary>The 11-bit grid index of the 8 values 32g + 8l .. 32g + 8l + 7 of the block at b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GridIndex(byte* b, int g, int l) => b[4 * g + l] | ((b[32 + 2 * g + l / 2] >> 4 * (l % 2)) & 7) << 8;

    /// <summary>Whether the shift of the 8 values 32g + 8l .. is −Delta.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool NegativeShift(byte* b, int g, int l) => (b[32 + 2 * g + l / 2] & (0x08 << 4 * (l % 2))) != 0;

    /// <summary>Scalar reference (ggml dequantize_row_iq1_m, same float operations).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockSize;
        var grid = IQ1Grid.Values;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockBytes;
                float* y = y0 + i * BlockSize;
                float d = HalfConvert.Fp16ToFp32(ScaleBits(b));
                for (int g = 0; g < 8; g++)
                    for (int l = 0; l < 4; l++)
                    {
                        float dl = d * HalfScale(b, g, l / 2);
                        float delta = NegativeShift(b, g, l) ? -BlockIQ1_S.Delta : BlockIQ1_S.Delta;
                        ulong q = grid[GridIndex(b, g, l)];
                        for (int j = 0; j < 8; j++) y[32 * g + 8 * l + j] = dl * ((sbyte)(q >> 8 * j) + delta);
                    }
            }
    }
}
