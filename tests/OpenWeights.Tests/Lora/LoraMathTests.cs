using System.Runtime.InteropServices;
using OpenWeights.Lora;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Lora;

public class LoraMathTests
{
    [Fact]
    public void PermutationMatchesLlamaCppAndRoundTrips()
    {
        // convert_hf_to_gguf permute: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2) — row h*hd + 2i + j <- h*hd + j*hd/2 + i.
        int heads = 3, hd = 8, cols = 5, rows = heads * hd;
        var hf = LoraTestUtil.Fill(new Random(7), rows * cols, 1);
        var g = LoraRotary.HfToGguf(hf, rows, cols, heads);
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd / 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int c = 0; c < cols; c++)
                        Assert.Equal(hf[(h * hd + j * hd / 2 + i) * cols + c], g[(h * hd + 2 * i + j) * cols + c]);
        Assert.Equal(hf, LoraRotary.GgufToHf(g, rows, cols, heads));
        Assert.Equal(hf, LoraRotary.HfToGguf(LoraRotary.GgufToHf(hf, rows, cols, heads), rows, cols, heads));
    }

    [Fact]
    public void PermutedRowsWithNormRopeEqualHfRowsWithNeoxRope()
    {
        // What the permutation is for: NORM rope on GGUF-ordered q equals the permuted NEOX rope on HF-ordered q.
        int heads = 2, hd = 16, dim = 12, rows = heads * hd;
        var rng = new Random(11);
        var w = LoraTestUtil.Fill(rng, rows * dim, 1);
        var x = LoraTestUtil.Fill(rng, dim, 1);
        var wg = LoraRotary.HfToGguf(w, rows, dim, heads);
        float[] qHf = MatVec(w, x, rows, dim), qG = MatVec(wg, x, rows, dim);
        var cos = new float[hd / 2]; var sin = new float[hd / 2];
        new Rope(hd, RopeStyle.Neox, 10000).Angles(7, cos, sin);
        new Rope(hd, RopeStyle.Neox, 10000).Apply(qHf, heads, hd, cos, sin);
        new Rope(hd, RopeStyle.Norm, 10000).Apply(qG, heads, hd, cos, sin);
        LoraTestUtil.AssertClose(LoraRotary.HfToGguf(qHf, rows, 1, heads), qG, 1e-5f, "q");
    }

    private static float[] MatVec(float[] w, float[] x, int rows, int cols)
    {
        var y = new float[rows];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) y[r] += w[r * cols + c] * x[c];
        return y;
    }

    [Fact]
    public unsafe void LoraLinearEqualsDenseReference()
    {
        int inDim = 48, outDim = 40, n = 5;
        var rng = new Random(5);
        var w = LoraTestUtil.Fill(rng, outDim * inDim, 0.5f);
        var bias = LoraTestUtil.Fill(rng, outDim, 0.5f);
        var x = LoraTestUtil.Fill(rng, n * inDim, 1);
        var l1 = new LoraWeights { Target = "blk.0.attn_q.weight", Rank = 3, In = inDim, Out = outDim, A = LoraTestUtil.Fill(rng, 3 * inDim, 0.3f), B = LoraTestUtil.Fill(rng, outDim * 3, 0.3f) };
        var l2 = new LoraWeights { Target = "blk.0.attn_q.weight", Rank = 2, In = inDim, Out = outDim, A = LoraTestUtil.Fill(rng, 2 * inDim, 0.3f), B = LoraTestUtil.Fill(rng, outDim * 2, 0.3f) };
        fixed (float* wp = w)
        {
            var baseLin = new Linear("blk.0.attn_q.weight", new WeightMatrix((byte*)wp, GgmlType.F32, outDim, inDim), bias);
            // stacked in two steps: the second wrapper absorbs the first
            var lin = new LoraLinear(new LoraLinear(baseLin, [new AppliedLora(l1, 1.5f)]), [new AppliedLora(l2, -0.7f)]);
            Assert.Same(baseLin, lin.Base);
            Assert.Equal(2, lin.Adapters.Count);
            foreach (int threads in new[] { 1, 2 })
            {
                var y = new float[n * outDim];
                lin.Forward(x, y, n, threads);
                var dense = (float[])w.Clone();
                for (int o = 0; o < outDim; o++) LoraMerge.AddDelta(lin.Adapters, o, dense.AsSpan(o * inDim, inDim));
                for (int t = 0; t < n; t++)
                {
                    var yr = MatVec(dense, x[(t * inDim)..((t + 1) * inDim)], outDim, inDim);
                    for (int o = 0; o < outDim; o++) yr[o] += bias[o];
                    // independent reference for the delta too: W + 1.5·B1·A1 − 0.7·B2·A2
                    for (int o = 0; o < outDim; o++)
                    {
                        double refv = bias[o];
                        for (int i = 0; i < inDim; i++)
                        {
                            double wi = w[o * inDim + i];
                            for (int k = 0; k < 3; k++) wi += 1.5 * l1.B[o * 3 + k] * l1.A[k * inDim + i];
                            for (int k = 0; k < 2; k++) wi -= 0.7 * l2.B[o * 2 + k] * l2.A[k * inDim + i];
                            refv += wi * x[t * inDim + i];
                        }
                        Assert.True(Math.Abs(refv - y[t * outDim + o]) < 1e-4, $"t {t} o {o}: {y[t * outDim + o]} vs {refv}");
                        Assert.True(Math.Abs(yr[o] - y[t * outDim + o]) < 1e-4);
                    }
                }
            }
        }
    }

    [Fact]
    public void LoraSpecParsesScales()
    {
        Assert.Equal(new LoraSpec("a.gguf", 1f), LoraSpec.Parse("a.gguf"));
        Assert.Equal(new LoraSpec("a.gguf", 0.5f), LoraSpec.Parse("a.gguf:0.5"));
        Assert.Equal(new LoraSpec("dir/peft", -2f), LoraSpec.Parse("dir/peft:-2"));
        Assert.Equal(new LoraSpec("C:\\x\\a.gguf", 1f), LoraSpec.Parse("C:\\x\\a.gguf"));
        Assert.Equal(new LoraSpec("C:\\x\\a.gguf", 0.25f), LoraSpec.Parse("C:\\x\\a.gguf:0.25"));
    }
}
