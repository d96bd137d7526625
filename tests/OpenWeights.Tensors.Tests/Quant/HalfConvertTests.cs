using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

public class HalfConvertTests
{
    private static uint Bits(float f) => BitConverter.SingleToUInt32Bits(f);

    [Theory]
    [InlineData(0x0000, 0.0f)]
    [InlineData(0x3C00, 1.0f)]
    [InlineData(0xC000, -2.0f)]
    [InlineData(0x7BFF, 65504.0f)]            // largest finite
    [InlineData(0x0400, 6.103515625e-05f)]    // smallest normal 2^-14
    [InlineData(0x0001, 5.9604644775390625e-08f)] // smallest subnormal 2^-24
    [InlineData(0x03FF, 6.0975551605224609e-05f)] // largest subnormal
    public void Fp16_known_values_both_ways(ushort h, float f)
    {
        Assert.Equal(Bits(f), Bits(HalfConvert.Fp16ToFp32(h)));
        Assert.Equal(h, HalfConvert.Fp32ToFp16(f));
    }

    [Fact]
    public void Fp16_signed_zero_and_infinities()
    {
        Assert.Equal(0x80000000u, Bits(HalfConvert.Fp16ToFp32(0x8000)));
        Assert.Equal((ushort)0x8000, HalfConvert.Fp32ToFp16(-0.0f));
        Assert.Equal(float.PositiveInfinity, HalfConvert.Fp16ToFp32(0x7C00));
        Assert.Equal(float.NegativeInfinity, HalfConvert.Fp16ToFp32(0xFC00));
        Assert.Equal((ushort)0x7C00, HalfConvert.Fp32ToFp16(float.PositiveInfinity));
        Assert.Equal((ushort)0xFC00, HalfConvert.Fp32ToFp16(float.NegativeInfinity));
        Assert.Equal((ushort)0x7C00, HalfConvert.Fp32ToFp16(65520f));   // rounds up past max -> inf
        Assert.Equal((ushort)0x7BFF, HalfConvert.Fp32ToFp16(65519.99f)); // still rounds down to max
        Assert.Equal((ushort)0x7C00, HalfConvert.Fp32ToFp16(1e10f));
    }

    [Fact]
    public void Fp16_nan_is_canonical_quiet_with_sign()
    {
        Assert.Equal((ushort)0x7E00, HalfConvert.Fp32ToFp16(BitConverter.UInt32BitsToSingle(0x7FC00000)));
        Assert.Equal((ushort)0xFE00, HalfConvert.Fp32ToFp16(BitConverter.UInt32BitsToSingle(0xFFC00000)));
        Assert.Equal((ushort)0x7E00, HalfConvert.Fp32ToFp16(BitConverter.UInt32BitsToSingle(0x7F800001))); // signalling, tiny payload
        // f16 NaN -> f32 NaN keeps payload and sign, quiet bit forced
        Assert.Equal(0x7FC02000u, Bits(HalfConvert.Fp16ToFp32(0x7C01)));
        Assert.Equal(0xFFFFE000u, Bits(HalfConvert.Fp16ToFp32(0xFFFF)));
    }

    [Fact]
    public void Fp16_rounding_ties_go_to_even()
    {
        // 1 + 2^-11 is halfway between 1 (even mantissa) and 1 + 2^-10: goes down
        Assert.Equal((ushort)0x3C00, HalfConvert.Fp32ToFp16(1f + MathF.Pow(2, -11)));
        // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even): goes up
        Assert.Equal((ushort)0x3C02, HalfConvert.Fp32ToFp16(1f + 3 * MathF.Pow(2, -11)));
        // just above the tie rounds up
        Assert.Equal((ushort)0x3C01, HalfConvert.Fp32ToFp16(BitConverter.UInt32BitsToSingle(Bits(1f + MathF.Pow(2, -11)) + 1)));
        // subnormal tie: 2^-25 is halfway between 0 and the smallest subnormal -> 0 (even)
        Assert.Equal((ushort)0x0000, HalfConvert.Fp32ToFp16(MathF.Pow(2, -25)));
        // 3*2^-25 is halfway between 1 and 2 subnormal units -> 2
        Assert.Equal((ushort)0x0002, HalfConvert.Fp32ToFp16(3 * MathF.Pow(2, -25)));
        // slightly above 2^-25 rounds to the smallest subnormal
        Assert.Equal((ushort)0x0001, HalfConvert.Fp32ToFp16(BitConverter.UInt32BitsToSingle(Bits(MathF.Pow(2, -25)) + 1)));
    }

    [Fact]
    public void Fp16_every_half_round_trips()
    {
        for (int h = 0; h < 65536; h++)
        {
            float f = HalfConvert.Fp16ToFp32((ushort)h);
            ushort back = HalfConvert.Fp32ToFp16(f);
            if (float.IsNaN(f)) Assert.Equal((ushort)((h & 0x8000) | 0x7E00), back);
            else Assert.Equal((ushort)h, back);
        }
    }

    [Fact]
    public void Bf16_conversions()
    {
        Assert.Equal(1.0f, HalfConvert.Bf16ToFp32(0x3F80));
        Assert.Equal((ushort)0x3F80, HalfConvert.Fp32ToBf16(1.0f));
        // tie: 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7 -> 1
        Assert.Equal((ushort)0x3F80, HalfConvert.Fp32ToBf16(1f + MathF.Pow(2, -8)));
        // tie: 1 + 3*2^-8 between 1+2^-7 (odd) and 1+2^-6 (even) -> up
        Assert.Equal((ushort)0x3F82, HalfConvert.Fp32ToBf16(1f + 3 * MathF.Pow(2, -8)));
        Assert.Equal((ushort)0x7F80, HalfConvert.Fp32ToBf16(float.PositiveInfinity));
        Assert.Equal((ushort)0x7F80, HalfConvert.Fp32ToBf16(float.MaxValue)); // rounds to inf
        Assert.Equal((ushort)0x8000, HalfConvert.Fp32ToBf16(-0.0f));
        // subnormal f32 keeps working (bf16 has the f32 exponent range)
        Assert.Equal((ushort)0x0001, HalfConvert.Fp32ToBf16(BitConverter.UInt32BitsToSingle(0x00010000)));
        // NaN: truncated and forced quiet, never becomes inf (0x7F800001 would round to 0x7F80 = inf)
        Assert.Equal((ushort)0x7FC0, HalfConvert.Fp32ToBf16(BitConverter.UInt32BitsToSingle(0x7FC00000)));
        Assert.Equal((ushort)0x7FC0, HalfConvert.Fp32ToBf16(BitConverter.UInt32BitsToSingle(0x7F800001)));
        Assert.Equal((ushort)0xFFC1, HalfConvert.Fp32ToBf16(BitConverter.UInt32BitsToSingle(0xFF810000)));
        Assert.Equal(0x12340000u, Bits(HalfConvert.Bf16ToFp32(0x1234)));
    }
}
