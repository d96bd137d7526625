using OpenWeights.Lora;
using OpenWeights.Models;

namespace OpenWeights.Tests.Lora;

public static class LoraTestUtil
{
    /// <summary>A random adapter on every projection of the family (or the given targets) of every layer, with non-zero A and B.</summary>
    public static LoraAdapter Random(ModelConfig c, int rank = 4, float alpha = 8, int seed = 1, bool rs = false, float amp = 0.2f, IReadOnlyList<string>? targets = null)
    {
        var rng = new Random(seed);
        targets ??= LoraTargets.DefaultFor(c.Architecture);
        var w = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        for (int l = 0; l < c.Layers; l++)
            foreach (var t in targets)
            {
                // the shape of the family's tensor (Phi-3's fused qkv_proj: (q + 2·kv, dim))
                var (outDim, inDim) = c.Matrix(c.Architecture.Projections.First(p => p.PeftTarget == t).Shape);
                string name = LoraTargets.GgufWeight(t, l, c.Architecture);
                w[name] = new LoraWeights
                {
                    Target = name, Rank = rank, In = inDim, Out = outDim,
                    A = Fill(rng, rank * inDim, amp), B = Fill(rng, outDim * rank, amp),
                };
            }
        return new LoraAdapter { Alpha = alpha, Rank = rank, UseRsLora = rs, TargetModules = targets, Weights = w, BaseModel = "test/base" };
    }

    public static float[] Fill(Random rng, int n, float amp)
    {
        var r = new float[n];
        for (int i = 0; i < n; i++) r[i] = (float)(rng.NextDouble() * 2 - 1) * amp;
        return r;
    }

    public static void AssertSame(LoraAdapter expected, LoraAdapter actual, float tol = 0, bool weightsOnly = false)
    {
        if (!weightsOnly)
        {
            Assert.Equal(expected.Alpha, actual.Alpha);
            Assert.Equal(expected.UseRsLora, actual.UseRsLora);
        }
        Assert.Equal(expected.Rank, actual.Rank);
        Assert.Equal(expected.Weights.Keys.Order(), actual.Weights.Keys.Order());
        foreach (var (k, e) in expected.Weights)
        {
            var a = actual.Weights[k];
            Assert.Equal((e.Rank, e.In, e.Out), (a.Rank, a.In, a.Out));
            AssertClose(e.A, a.A, tol, k + " A");
            AssertClose(e.B, a.B, tol, k + " B");
        }
    }

    public static void AssertClose(float[] e, float[] a, float tol, string what)
    {
        Assert.Equal(e.Length, a.Length);
        for (int i = 0; i < e.Length; i++)
            if (!(Math.Abs(e[i] - a[i]) <= tol)) Assert.Fail($"{what}[{i}]: expected {e[i]}, got {a[i]}");
    }
}
