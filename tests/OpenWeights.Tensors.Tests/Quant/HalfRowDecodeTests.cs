using System.Runtime.InteropServices;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>The vectorised f16 / bf16 row decoders equal the one-value-at-a-time reference on every 16-bit pattern.</summary>
public class HalfRowDecodeTests
{
    private static ushort[] AllPatterns() => Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();

    [Theory]
    [InlineData(0)]
    [InlineData(3)]   // unaligned start, odd length: the scalar tails run too
    public void F16MatchesScalarOnEveryBitPattern(int offset)
    {
        var bytes = MemoryMarshal.AsBytes<ushort>(AllPatterns()).ToArray()[(offset * 2)..];
        int n = bytes.Length / 2 - 1;
        var fast = new float[n]; var slow = new float[n];
        Dequantize.F16(bytes, fast);
        Dequantize.F16Scalar(bytes, slow);
        for (int i = 0; i < n; i++)
        {
            if (float.IsNaN(slow[i])) { Assert.True(float.IsNaN(fast[i]), $"pattern {i + offset:X4}"); continue; }
            Assert.True(BitConverter.SingleToInt32Bits(slow[i]) == BitConverter.SingleToInt32Bits(fast[i]), $"pattern {i + offset:X4}: {slow[i]} vs {fast[i]}");
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void Bf16IsTheHighHalfOfTheFloat(int offset)
    {
        var patterns = AllPatterns()[offset..];
        var bytes = MemoryMarshal.AsBytes<ushort>(patterns).ToArray();
        var dst = new float[patterns.Length - 1];
        Dequantize.Bf16(bytes, dst);
        for (int i = 0; i < dst.Length; i++) Assert.Equal((uint)patterns[i] << 16, BitConverter.SingleToUInt32Bits(dst[i]));
    }
}
