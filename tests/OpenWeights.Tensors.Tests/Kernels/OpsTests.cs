using System.Runtime.Intrinsics;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>The vectorized, pooled SwiGLU against its scalar reference.</summary>
public class OpsTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 1)]
    [InlineData(513, 1)]
    [InlineData(4096 * 3 + 77, 2)]
    [InlineData(4096 * 5, 2)]
    public void SwiGlu_matches_the_scalar_reference(int n, int threads)
    {
        var rng = new Random(n);
        var g = new float[n]; var u = new float[n];
        for (int i = 0; i < n; i++) { g[i] = (float)(rng.NextDouble() * 24 - 12); u[i] = (float)(rng.NextDouble() * 4 - 2); }
        g[0] = 0; if (n > 2) { g[1] = -90f; g[2] = 90f; } // silu(0) = 0; saturated tails
        var want = (float[])g.Clone(); var got = (float[])g.Clone();
        Ops.SwiGluScalar(want, u);
        Ops.SwiGlu(got, u, threads);
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(want[i] - got[i]) <= 1e-6f * Math.Max(1f, Math.Abs(want[i])), $"n={n} i={i}: scalar {want[i]} vector {got[i]}");
        Assert.Throws<ArgumentException>(() => Ops.SwiGlu(new float[4], new float[3]));
    }
}

/// <summary>The softmax denominator summed in double, 8 lanes at a time, against a sequential double sum.</summary>
public class SoftmaxSumTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    [InlineData(15)]
    [InlineData(1000)]
    public void Sum_as_double_matches_a_sequential_double_sum(int n)
    {
        var rng = new Random(n);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)rng.NextDouble() * (i % 3 == 0 ? 1e-6f : 1f);
        double want = 0;
        foreach (var v in x) want += v;
        Assert.Equal(want, Ops.SumAsDouble(x), 1e-12 * Math.Max(1, want));
    }
}

/// <summary>The AVX2 exponential: bit-identical to its scalar form, within 2 ulp of the exact value, edges as MathF.Exp.</summary>
public class FastExpTests
{
    [Fact]
    public void Vector_and_scalar_agree_bit_for_bit_and_within_two_ulp_of_exact()
    {
        if (!FastExp.IsSupported) Assert.Skip("AVX2/FMA not available on this machine");
        var rng = new Random(3);
        var xs = new List<float> { 0f, -0f, 1f, -1f, 88.7f, -87.3f, -87.4f, 88.8f, -100f, 100f, float.NaN, float.NegativeInfinity, float.PositiveInfinity, 1e-30f, -1e-30f };
        for (int i = 0; i < 200_000; i++) xs.Add((float)(rng.NextDouble() * 180 - 90));
        while (xs.Count % 8 != 0) xs.Add(0.5f);
        for (int i = 0; i < xs.Count; i += 8)
        {
            var v = System.Runtime.Intrinsics.Vector256.Create(xs[i], xs[i + 1], xs[i + 2], xs[i + 3], xs[i + 4], xs[i + 5], xs[i + 6], xs[i + 7]);
            var e = FastExp.Exp(v);
            for (int j = 0; j < 8; j++)
            {
                float x = xs[i + j], got = e.GetElement(j), scalar = FastExp.Scalar(x);
                Assert.True(BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(scalar), $"x={x}: vector {got} scalar {scalar}");
                if (float.IsNaN(x)) { Assert.True(float.IsNaN(got)); continue; }
                if (x < -87.33654f) { Assert.Equal(0f, got); continue; }
                if (x > 88.72283f) { Assert.Equal(float.PositiveInfinity, got); continue; }
                double exact = Math.Exp(x);
                double ulp = Math.Abs(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((float)exact) + 1) - (float)exact);
                Assert.True(Math.Abs(got - exact) <= 2 * ulp, $"x={x}: {got} vs exact {exact} ({Math.Abs(got - exact) / ulp:F2} ulp)");
            }
        }
    }

    [Fact]
    public void Softmax_sums_to_one_and_matches_the_reference()
    {
        if (!FastExp.IsSupported) Assert.Skip("the vector exp needs AVX2/FMA, not available here (Ops.Softmax then takes the reference, tested below)");
        var rng = new Random(4);
        foreach (int n in new[] { 1, 7, 8, 33, 300 })
        {
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 40 - 20);
            var a = (float[])x.Clone(); var b = (float[])x.Clone();
            float max = x.Max();
            double sa = Ops.ExpMinusMaxAndSum(a, max), sb = Ops.ExpMinusMaxAndSumReference(b, max);
            Assert.Equal(b, a); // the same exp per element
            Assert.Equal(sb, sa, 1e-12 * sb);
            Ops.Softmax(x);
            Assert.Equal(1.0, x.Sum(v => (double)v), 1e-5);
        }
    }
}

/// <summary>gpt-oss's clamped SwiGLU and the softmax with an attention sink, against their scalar references and definitions.</summary>
public class GptOssOpsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    [InlineData(2880)]
    public void SwiGluOai_matches_the_scalar_reference(int n)
    {
        var rng = new Random(n);
        var g = new float[n]; var u = new float[n];
        for (int i = 0; i < n; i++) { g[i] = (float)(rng.NextDouble() * 30 - 15); u[i] = (float)(rng.NextDouble() * 30 - 15); }
        var want = (float[])g.Clone(); var got = (float[])g.Clone();
        Ops.SwiGluOaiScalar(want, u);
        Ops.SwiGluOai(got, u);
        // FastExp is within 2 ulp of MathF.Exp: measured worst relative difference ~2e-7
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(want[i] - got[i]) <= 1e-6f * Math.Max(1f, Math.Abs(want[i])), $"n={n} i={i}: scalar {want[i]} vector {got[i]}");
        Assert.Throws<ArgumentException>(() => Ops.SwiGluOai(new float[4], new float[3]));
    }

    [Fact]
    public void SwiGluOai_clamps_gate_above_and_up_on_both_sides()
    {
        // gate 10 -> 7 (min only: a negative gate is not clamped), up 9 -> 7, up -9 -> -7
        float[] g = [10f, 10f, -3f, 0f, 1f, 1f, 1f, 1f, 1f], u = [9f, -9f, 0f, 5f, 0f, 0f, 0f, 0f, 0f];
        var got = (float[])g.Clone();
        Ops.SwiGluOai(got, u);
        double Sig(double x) => 1 / (1 + Math.Exp(-1.702 * x));
        Assert.Equal(7 * Sig(7) * 8, got[0], 5);
        Assert.Equal(7 * Sig(7) * -6, got[1], 5);
        Assert.Equal(-3 * Sig(-3) * 1, got[2], 5);
        Assert.Equal(0f, got[3]);
        Assert.Equal(Sig(1), got[4], 6);
    }

    [Theory]
    [InlineData(1, 0f)]
    [InlineData(5, 3f)]
    [InlineData(64, -2f)]
    [InlineData(200, 40f)]
    public void SoftmaxWithSink_matches_its_definition(int n, float sink)
    {
        var rng = new Random(n);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 16 - 8);
        var want = (float[])x.Clone(); var got = (float[])x.Clone();
        Ops.SoftmaxWithSinkScalar(want, sink);
        Ops.SoftmaxWithSink(got, sink);
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(want[i] - got[i]) <= 1e-6f * Math.Max(1e-3f, want[i]), $"i={i}: {want[i]} vs {got[i]}");
        // the weights sum to 1 - e^sink / (Σ e^x + e^sink): the sink takes its share and gives nothing back
        double denom = Math.Exp(sink) + x.Sum(v => Math.Exp(v));
        Assert.Equal(1 - Math.Exp(sink) / denom, got.Sum(v => (double)v), 5);
    }
}
