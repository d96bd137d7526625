using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>SIMD dequantization paths against their scalar references, over many lengths and random bytes.</summary>
public class SimdDequantTests
{
    private delegate void Deq(ReadOnlySpan<byte> src, Span<float> dst);

    private static void Compare(int blockSize, int blockBytes, Deq simd, Deq scalar)
    {
        if (!SimdDequant.IsSupported) Assert.Skip("Vector256 is not hardware accelerated on this machine");
        var rng = new Random(blockBytes);
        for (int nb = 1; nb <= 40; nb++)
        {
            var src = new byte[nb * blockBytes];
            rng.NextBytes(src);
            var a = new float[nb * blockSize];
            var b = new float[nb * blockSize];
            simd(src, a);
            scalar(src, b);
            for (int i = 0; i < a.Length; i++)
                if (BitConverter.SingleToUInt32Bits(a[i]) != BitConverter.SingleToUInt32Bits(b[i]) && !(float.IsNaN(a[i]) && float.IsNaN(b[i])))
                    Assert.Fail($"{nb} blocks, element {i}: simd {a[i]} scalar {b[i]}");
        }
    }

    [Fact]
    public void Q8_0_simd_matches_scalar() => Compare(32, 34, SimdDequant.Q8_0, BlockQ8_0.DequantizeScalar);

    [Fact]
    public void Q4_0_simd_matches_scalar() => Compare(32, 18, SimdDequant.Q4_0, BlockQ4_0.DequantizeScalar);
}
