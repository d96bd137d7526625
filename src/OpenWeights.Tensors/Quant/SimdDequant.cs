namespace OpenWeights.Tensors.Quant;

/// <summary>Vectorized dequantization paths; each has a scalar reference in its Block* class.</summary>
internal static class SimdDequant
{
    public static bool IsSupported => false;
    public static void Q8_0(ReadOnlySpan<byte> src, Span<float> dst) => throw new PlatformNotSupportedException();
    public static void Q4_0(ReadOnlySpan<byte> src, Span<float> dst) => throw new PlatformNotSupportedException();
    public static void Q4_K(ReadOnlySpan<byte> src, Span<float> dst) => throw new PlatformNotSupportedException();
    public static void Q6_K(ReadOnlySpan<byte> src, Span<float> dst) => throw new PlatformNotSupportedException();
    public static void F16(ReadOnlySpan<byte> src, Span<float> dst) => throw new PlatformNotSupportedException();
}
