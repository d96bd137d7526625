using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>The Vector256 Q4_K / Q6_K row decoders equal their scalar references bit for bit on random blocks.</summary>
public class KQuantSimdDecodeTests
{
    private static byte[] RandomBlocks(int blocks, int blockBytes, int seed, int[] f16Offsets)
    {
        var r = new Random(seed);
        var b = new byte[blocks * blockBytes];
        r.NextBytes(b);
        // finite scales (random bytes would also give NaN / Inf, which compare equal as NaN but say nothing)
        for (int i = 0; i < blocks; i++)
            foreach (int o in f16Offsets)
                BitConverter.TryWriteBytes(b.AsSpan(i * blockBytes + o, 2), BitConverter.HalfToUInt16Bits((Half)(r.NextSingle() * 0.02f - 0.01f)));
        return b;
    }

    private static void Same(float[] a, float[] b, string what)
    {
        for (int i = 0; i < a.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]), $"{what} value {i}: {a[i]} vs {b[i]}");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 2)]
    [InlineData(16, 3)]
    public void Q4_K(int blocks, int seed)
    {
        var src = RandomBlocks(blocks, BlockQ4_K.BlockBytes, seed, [0, 2]);
        var a = new float[blocks * 256]; var b = new float[blocks * 256];
        BlockQ4_K.DequantizeScalar(src, a);
        BlockQ4_K.DequantizeSimd(src, b);
        Same(a, b, "q4_K");
        Assert.Contains(a, v => v != 0);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 2)]
    [InlineData(16, 3)]
    public void Q6_K(int blocks, int seed)
    {
        var src = RandomBlocks(blocks, BlockQ6_K.BlockBytes, seed, [208]);
        var a = new float[blocks * 256]; var b = new float[blocks * 256];
        BlockQ6_K.DequantizeScalar(src, a);
        BlockQ6_K.DequantizeSimd(src, b);
        Same(a, b, "q6_K");
        Assert.Contains(a, v => v != 0);
    }
}
