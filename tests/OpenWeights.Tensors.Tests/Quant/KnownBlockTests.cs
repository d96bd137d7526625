using System.Buffers.Binary;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>
/// Hand-built blocks: expected values are computed element by element from the documented byte layout
/// (not by re-running the dequantizer's loop structure). Scales are powers of two and quants small
/// integers, so every product is exact whatever the evaluation order.
/// </summary>
public class KnownBlockTests
{
    private static void PutF16(byte[] b, int off, float v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(off), BitConverter.HalfToUInt16Bits((Half)v));

    private static float[] Deq(GgmlType t, byte[] block, int n)
    {
        var y = new float[n];
        Dequantize.Row(t, block, y);
        return y;
    }

    [Fact]
    public void Q4_0_d_half_nibbles_0_to_15()
    {
        var b = new byte[18];
        PutF16(b, 0, 0.5f);
        for (int j = 0; j < 16; j++) b[2 + j] = (byte)(j | ((15 - j) << 4));
        var y = Deq(GgmlType.Q4_0, b, 32);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal((j - 8) * 0.5f, y[j]);
            Assert.Equal((15 - j - 8) * 0.5f, y[j + 16]);
        }
        Assert.Equal(-4f, y[0]);
        Assert.Equal(3.5f, y[15]);
    }

    [Fact]
    public void Q4_1_scale_and_min()
    {
        var b = new byte[20];
        PutF16(b, 0, 0.25f); PutF16(b, 2, -1f);
        for (int j = 0; j < 16; j++) b[4 + j] = (byte)(j | (j << 4));
        var y = Deq(GgmlType.Q4_1, b, 32);
        for (int j = 0; j < 16; j++) { Assert.Equal(j * 0.25f - 1f, y[j]); Assert.Equal(j * 0.25f - 1f, y[j + 16]); }
    }

    [Fact]
    public void Q5_0_high_bits_from_qh()
    {
        var b = new byte[22];
        PutF16(b, 0, 1f);
        uint qh = 0xA5A5F00Fu;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), qh);
        for (int j = 0; j < 16; j++) b[6 + j] = (byte)(j | ((j * 7 % 16) << 4));
        var y = Deq(GgmlType.Q5_0, b, 32);
        for (int v = 0; v < 32; v++)
        {
            int nib = v < 16 ? b[6 + v] & 0xF : b[6 + v - 16] >> 4;
            int q = nib | (int)((qh >> v) & 1) << 4;
            Assert.Equal((float)(q - 16), y[v]);
        }
    }

    [Fact]
    public void Q5_1_high_bits_scale_and_min()
    {
        var b = new byte[24];
        PutF16(b, 0, 0.5f); PutF16(b, 2, 2f);
        uint qh = 0x0F0F3C3Cu;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), qh);
        for (int j = 0; j < 16; j++) b[8 + j] = (byte)((15 - j) | (j << 4));
        var y = Deq(GgmlType.Q5_1, b, 32);
        for (int v = 0; v < 32; v++)
        {
            int nib = v < 16 ? b[8 + v] & 0xF : b[8 + v - 16] >> 4;
            int q = nib | (int)((qh >> v) & 1) << 4;
            Assert.Equal(q * 0.5f + 2f, y[v]);
        }
    }

    [Fact]
    public void Q8_0_signed_bytes()
    {
        var b = new byte[34];
        PutF16(b, 0, 0.125f);
        for (int j = 0; j < 32; j++) b[2 + j] = (byte)(sbyte)(j * 8 - 128);
        var y = Deq(GgmlType.Q8_0, b, 32);
        for (int j = 0; j < 32; j++) Assert.Equal((j * 8 - 128) * 0.125f, y[j]);
        Assert.Equal(-16f, y[0]);
    }

    [Fact]
    public void Q8_K_f32_scale()
    {
        var b = new byte[292];
        BinaryPrimitives.WriteSingleLittleEndian(b, 0.5f);
        for (int j = 0; j < 256; j++) b[4 + j] = (byte)(sbyte)(j - 128);
        var y = Deq(GgmlType.Q8_K, b, 256);
        for (int j = 0; j < 256; j++) Assert.Equal((j - 128) * 0.5f, y[j]);
    }

    [Fact]
    public void Q2_K_layout()
    {
        var rng = new Random(2);
        var b = new byte[84];
        rng.NextBytes(b);
        PutF16(b, 80, 0.5f); PutF16(b, 82, 0.25f);
        var y = Deq(GgmlType.Q2_K, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int h = v / 128, s = v % 128 / 32, l = v % 32;
            int q = (b[16 + 32 * h + l] >> (2 * s)) & 3;
            int sc = b[v / 16];
            Assert.Equal(0.5f * (sc & 0xF) * q - 0.25f * (sc >> 4), y[v]);
        }
    }

    [Fact]
    public void Q3_K_layout()
    {
        var rng = new Random(3);
        var b = new byte[110];
        rng.NextBytes(b);
        PutF16(b, 108, 0.25f);
        var y = Deq(GgmlType.Q3_K, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int h = v / 128, s = v % 128 / 32, l = v % 32;
            int q2 = (b[32 + 32 * h + l] >> (2 * s)) & 3;
            int hbit = (b[v % 32] >> (v / 32)) & 1;
            int j = v / 16;
            int low = j < 8 ? b[96 + j] & 0xF : b[96 + j - 8] >> 4;
            int high = (b[96 + 8 + j % 4] >> (2 * (j / 4))) & 3;
            int sc = (low | high << 4) - 32;
            Assert.Equal(0.25f * sc * ((q2 | hbit << 2) - 4), y[v]);
        }
    }

    /// <summary>6-bit scale/min j of the K4/K5 12-byte scale field, decoded from the layout description.</summary>
    private static (int Sc, int M) ScaleMin(byte[] b, int off, int j) => j < 4
        ? (b[off + j] & 63, b[off + j + 4] & 63)
        : ((b[off + j + 4] & 0xF) | (b[off + j - 4] >> 6) << 4, (b[off + j + 4] >> 4) | (b[off + j] >> 6) << 4);

    [Fact]
    public void Q4_K_layout()
    {
        var rng = new Random(4);
        var b = new byte[144];
        rng.NextBytes(b);
        PutF16(b, 0, 0.5f); PutF16(b, 2, 0.125f);
        var y = Deq(GgmlType.Q4_K, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int c = v / 64, w = v % 64;
            int q = w < 32 ? b[16 + 32 * c + w] & 0xF : b[16 + 32 * c + w - 32] >> 4;
            var (sc, m) = ScaleMin(b, 4, v / 32);
            Assert.Equal(0.5f * sc * q - 0.125f * m, y[v]);
        }
    }

    [Fact]
    public void Q4_K_simple_scales()
    {
        // d = 1, dmin = 1, every sub-block scale 2, min 1 (6-bit fields set explicitly), nibbles = 7
        var b = new byte[144];
        PutF16(b, 0, 1f); PutF16(b, 2, 1f);
        for (int j = 0; j < 4; j++) { b[4 + j] = 2; b[8 + j] = 1; }       // scales/mins 0-3, top bits 0
        for (int j = 8; j < 12; j++) b[4 + j] = 2 | (1 << 4);               // scales/mins 4-7 low nibbles
        for (int j = 0; j < 128; j++) b[16 + j] = 0x77;
        var y = Deq(GgmlType.Q4_K, b, 256);
        Assert.All(y, v => Assert.Equal(2f * 7 - 1f, v));
    }

    [Fact]
    public void Q5_K_layout()
    {
        var rng = new Random(5);
        var b = new byte[176];
        rng.NextBytes(b);
        PutF16(b, 0, 0.25f); PutF16(b, 2, 0.5f);
        var y = Deq(GgmlType.Q5_K, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int c = v / 64, w = v % 64;
            int low = w < 32 ? b[48 + 32 * c + w] & 0xF : b[48 + 32 * c + w - 32] >> 4;
            int hbit = (b[16 + w % 32] >> (2 * c + (w < 32 ? 0 : 1))) & 1;
            var (sc, m) = ScaleMin(b, 4, v / 32);
            Assert.Equal(0.25f * sc * (low | hbit << 4) - 0.5f * m, y[v]);
        }
    }

    [Fact]
    public void Q6_K_layout()
    {
        var rng = new Random(6);
        var b = new byte[210];
        rng.NextBytes(b);
        PutF16(b, 208, 0.0625f);
        var y = Deq(GgmlType.Q6_K, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int h = v / 128, g = v % 128 / 32, l = v % 32;
            int lowByte = b[64 * h + (g % 2 == 0 ? 0 : 32) + l];
            int low = g < 2 ? lowByte & 0xF : lowByte >> 4;
            int high = (b[128 + 32 * h + l] >> (2 * g)) & 3;
            int sc = (sbyte)b[192 + v / 16];
            Assert.Equal(0.0625f * sc * ((low | high << 4) - 32), y[v]);
        }
    }

    private static readonly int[] Iq4Grid = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    [Fact]
    public void IQ4_NL_d_half_every_grid_index()
    {
        var b = new byte[18];
        PutF16(b, 0, 0.5f);
        for (int j = 0; j < 16; j++) b[2 + j] = (byte)(j | ((15 - j) << 4));
        var y = Deq(GgmlType.IQ4_NL, b, 32);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(0.5f * Iq4Grid[j], y[j]);
            Assert.Equal(0.5f * Iq4Grid[15 - j], y[j + 16]);
        }
        Assert.Equal(-63.5f, y[0]);
        Assert.Equal(56.5f, y[15]);
    }

    [Fact]
    public void IQ4_XS_six_bit_group_scales()
    {
        var b = new byte[136];
        PutF16(b, 0, 0.25f);
        var ls = new[] { 0, 1, 31, 32, 33, 47, 62, 63 }; // stored with +32: signed scales -32, -31, -1, 0, 1, 15, 30, 31
        ushort sh = 0;
        for (int g = 0; g < 8; g++)
        {
            b[4 + g / 2] |= (byte)((ls[g] & 0xF) << 4 * (g % 2));
            sh |= (ushort)((ls[g] >> 4) << 2 * g);
        }
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), sh);
        for (int k = 0; k < 128; k++) b[8 + k] = (byte)((k * 7) & 0xFF);
        var y = Deq(GgmlType.IQ4_XS, b, 256);
        for (int v = 0; v < 256; v++)
        {
            int g = v / 32, e = v % 32;
            int q = b[8 + 16 * g + e % 16];
            int nib = e < 16 ? q & 0xF : q >> 4;
            Assert.Equal(0.25f * (ls[g] - 32) * Iq4Grid[nib], y[v]);
        }
        Assert.Equal(0f, y[3 * 32 + 5]); // group 3 has scale 0
    }

    [Fact]
    public void MXFP4_E2M1_values_and_E8M0_exponents()
    {
        // e = 127 is the unit scale: the 16 codes are the FP4 (E2M1) numbers themselves (code 8 is -0)
        float[] fp4 = [0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0f, -0.5f, -1, -1.5f, -2, -3, -4, -6];
        var b = new byte[17];
        b[0] = 127;
        for (int j = 0; j < 16; j++) b[1 + j] = (byte)(j | ((15 - j) << 4));
        var y = Deq(GgmlType.MXFP4, b, 32);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(fp4[j], y[j]);
            Assert.Equal(fp4[15 - j], y[j + 16]);
        }
        // other exponents scale by 2^(e - 127), e = 0 and 1 included (ggml builds their halved scales as subnormals 2^-128, 2^-127)
        foreach (var (e, scale) in new[] { (128, 2f), (130, 8f), (100, MathF.Pow(2, -27)), (1, MathF.Pow(2, -126)), (0, MathF.Pow(2, -127)), (254, MathF.Pow(2, 127)) })
        {
            b[0] = (byte)e;
            y = Deq(GgmlType.MXFP4, b, 32);
            Assert.Equal(scale * 1.5f, y[3]);   // code 3 = 1.5
            Assert.Equal(scale * -6f, y[16]);   // high nibble of byte 0 = code 15 = -6
        }
    }

    [Fact]
    public void F16_BF16_F32_rows()
    {
        var f16 = new byte[] { 0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x7C };
        Assert.Equal(new[] { 1f, -2f, MathF.Pow(2, -24), float.PositiveInfinity }, Deq(GgmlType.F16, f16, 4));
        var bf16 = new byte[] { 0x80, 0x3F, 0x00, 0xC0 };
        Assert.Equal(new[] { 1f, -2f }, Deq(GgmlType.BF16, bf16, 2));
        var f32 = new byte[8];
        BinaryPrimitives.WriteSingleLittleEndian(f32, 1.5f); BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(4), -3f);
        Assert.Equal(new[] { 1.5f, -3f }, Deq(GgmlType.F32, f32, 2));
    }

    [Fact]
    public void Row_checks_sizes_and_types()
    {
        Assert.Throws<ArgumentException>(() => Dequantize.Row(GgmlType.Q4_0, new byte[17], new float[32]));
        Assert.Throws<ArgumentException>(() => Dequantize.Row(GgmlType.Q4_0, new byte[18], new float[31]));
        Assert.Throws<NotSupportedException>(() => Dequantize.Row(GgmlType.TQ2_0, new byte[100], new float[256]));
        Assert.Throws<ArgumentException>(() => Quantize.Row(GgmlType.Q4_K, new float[256], new byte[143]));
        Assert.Throws<NotSupportedException>(() => Quantize.Row(GgmlType.IQ2_XXS, new float[256], new byte[100]));
        Assert.False(Quantize.CanQuantize(GgmlType.IQ2_XXS));
        Assert.True(Quantize.CanQuantize(GgmlType.Q4_K));
    }
}
