using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

/// <summary>Quantize then dequantize N(0,1) data and bound the RMS error per type.</summary>
public class RoundTripTests
{
    // Bounds: a uniform quantizer with step D has RMS error ~ D/sqrt(12). For N(0,1) data the block
    // extremes are ~2.1 (|max| of 32 samples), ~2.9 (of 256) and the range of 32 samples ~4.2, so:
    //   Q8_0: D = 2.1/127   -> 0.0048     Q8_K: D = 2.9/127 -> 0.0066
    //   Q4_0: D = 2.1/8     -> 0.076      Q5_0: D = 2.1/16  -> 0.038
    //   Q4_1: D = 4.2/15    -> 0.081      Q5_1: D = 4.2/31  -> 0.039
    //   Q4_K: as Q4_1 but least-squares fitted scale/min  (~0.07)   Q5_K: ~0.036
    //   Q6_K: 16-value sub-blocks, D ~ 1.8/32 -> 0.016     Q3_K: D ~ 1.8/4 -> 0.13 (fitted)   Q2_K: D ~ 3.4/3 -> 0.33 (fitted)
    //   F16: relative step 2^-10 -> ~0.0002 RMS;  BF16: 2^-7 -> ~0.0016
    // Measured values sit at or slightly above these (f16 scales, clipping at the extremes); bounds
    // leave ~25% margin over the measured value with seed 42.
    [Theory]
    [InlineData(GgmlType.F16, 0.0004)]
    [InlineData(GgmlType.BF16, 0.003)]
    [InlineData(GgmlType.Q8_0, 0.008)]
    [InlineData(GgmlType.Q8_K, 0.009)]
    [InlineData(GgmlType.Q4_0, 0.11)]
    [InlineData(GgmlType.Q4_1, 0.10)]
    [InlineData(GgmlType.Q5_0, 0.055)]
    [InlineData(GgmlType.Q5_1, 0.05)]
    [InlineData(GgmlType.Q2_K, 0.36)]
    [InlineData(GgmlType.Q3_K, 0.19)]
    [InlineData(GgmlType.Q4_K, 0.09)]
    [InlineData(GgmlType.Q5_K, 0.046)]
    [InlineData(GgmlType.Q6_K, 0.023)]
    public void Gaussian_rmse_is_bounded(GgmlType type, double bound)
    {
        const int n = 256 * 64;
        var x = Gaussian(n, 42);
        var q = new byte[GgmlTypes.RowBytes(type, n)];
        var y = new float[n];
        Quantize.Row(type, x, q);
        Dequantize.Row(type, q, y);
        double se = 0;
        for (int i = 0; i < n; i++) se += (double)(x[i] - y[i]) * (x[i] - y[i]);
        double rmse = Math.Sqrt(se / n);
        Assert.True(rmse < bound, $"{type}: rmse {rmse:F5} >= {bound}");
        // scale invariance (powers of two scale every step exactly, up to f16 range): 1000x smaller data
        var xs = x.Select(v => v * (1f / 1024)).ToArray();
        Quantize.Row(type, xs, q);
        Dequantize.Row(type, q, y);
        se = 0;
        for (int i = 0; i < n; i++) se += (double)(xs[i] - y[i]) * (xs[i] - y[i]);
        Assert.True(Math.Sqrt(se / n) < bound / 1024 * 1.01, $"{type}: scaled rmse {Math.Sqrt(se / n) * 1024:F5}");
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)] [InlineData(GgmlType.Q4_1)] [InlineData(GgmlType.Q5_0)] [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q8_0)] [InlineData(GgmlType.Q2_K)] [InlineData(GgmlType.Q3_K)] [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)] [InlineData(GgmlType.Q6_K)] [InlineData(GgmlType.Q8_K)]
    public void Zeros_round_trip_to_zeros_and_blocks_are_independent(GgmlType type)
    {
        int bs = GgmlTypes.BlockSize(type);
        var x = Gaussian(bs * 4, 7);
        Array.Clear(x, bs, bs); // second block all zero
        var whole = new byte[GgmlTypes.RowBytes(type, x.Length)];
        Quantize.Row(type, x, whole);
        // quantizing block by block gives the same bytes
        int bb = GgmlTypes.BlockBytes(type);
        for (int i = 0; i < 4; i++)
        {
            var one = new byte[bb];
            Quantize.Row(type, x.AsSpan(i * bs, bs), one);
            Assert.Equal(whole.AsSpan(i * bb, bb).ToArray(), one);
        }
        var y = new float[x.Length];
        Dequantize.Row(type, whole, y);
        for (int i = bs; i < 2 * bs; i++) Assert.Equal(0f, y[i]);
    }

    [Fact]
    public void Q8_0_rounds_half_away_from_zero()
    {
        var x = new float[32];
        x[0] = 127f; // amax 127 -> d = 1 exactly, id = 1
        x[1] = 2.5f; x[2] = -2.5f; x[3] = 3.5f; x[4] = 0.5f; x[5] = -0.49f;
        var q = new byte[34];
        Quantize.Row(GgmlType.Q8_0, x, q);
        Assert.Equal((ushort)0x3C00, BitConverter.ToUInt16(q, 0));
        Assert.Equal(new sbyte[] { 127, 3, -3, 4, 1, 0 }, q.AsSpan(2, 6).ToArray().Select(b => (sbyte)b));
    }

    [Fact]
    public void Q8_K_uses_nearest_int_half_to_even()
    {
        var x = new float[256];
        x[0] = -127f; // max (signed, largest magnitude) = -127 -> iscale = 1, d = 1
        x[1] = 2.5f; x[2] = 3.5f; x[3] = -2.5f; x[4] = 0.5f;
        var q = new byte[292];
        Quantize.Row(GgmlType.Q8_K, x, q);
        Assert.Equal(1f, BitConverter.ToSingle(q, 0));
        Assert.Equal(new sbyte[] { -127, 2, 4, -2, 0 }, q.AsSpan(4, 5).ToArray().Select(b => (sbyte)b));
        Assert.Equal((short)(-127 + 2 + 4 - 2), BitConverter.ToInt16(q, 260)); // bsums[0]
    }

    [Fact]
    public void Q4_0_uses_signed_max_and_truncation()
    {
        var x = new float[32];
        x[0] = -8f;   // the largest magnitude is negative: d = -8 / -8 = 1
        x[1] = 7.6f;  // 7.6 + 8.5 = 16.1 -> 16 -> clamped 15
        x[2] = -0.4f; // 8.1 -> 8 (truncation) -> value 0
        x[3] = 0.6f;  // 9.1 -> 9 -> value 1
        var q = new byte[18];
        Quantize.Row(GgmlType.Q4_0, x, q);
        var y = new float[32];
        Dequantize.Row(GgmlType.Q4_0, q, y);
        Assert.Equal(new[] { -8f, 7f, 0f, 1f }, y.AsSpan(0, 4).ToArray());
    }

    [Fact]
    public void NearestInt_is_round_half_even()
    {
        Assert.Equal(2, QuantMath.NearestInt(2.5f));
        Assert.Equal(4, QuantMath.NearestInt(3.5f));
        Assert.Equal(-2, QuantMath.NearestInt(-2.5f));
        Assert.Equal(0, QuantMath.NearestInt(-0.5f));
        Assert.Equal(3, QuantMath.NearestInt(2.500001f));
        Assert.Equal(4194303, QuantMath.NearestInt(4194303f));
    }

    internal static float[] Gaussian(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return x;
    }
}
