using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>
/// The backward of each family knob's op against central finite differences of its forward (QK-norm, GeGLU, soft-caps,
/// post-norms, windowed / soft-capped / scaled attention), and each forward against the inference kernel it must equal.
/// </summary>
public class FamilyOpsGradientTests
{
    private const double Tol = 1e-2;

    [Theory]
    [InlineData(8)]    // per head (Qwen 3, Gemma 3): w of head_dim
    [InlineData(32)]   // whole projection (OLMo 2): w of heads·head_dim
    public void QkNorm(int wLen)
    {
        int n = 3, heads = 4, hd = 8, width = heads * hd;
        var x = Random(n * width, 1, 2f); var w = Random(wLen, 2); var r = Random(n * width, 3);
        int groups = n * width / wLen;
        double Loss() { var y = new float[n * width]; TrainOps.QkNormForward(x, w, y, new float[groups], n, width, 1e-6f); return Dot(y, r); }
        var y0 = new float[n * width]; var rstd = new float[groups];
        TrainOps.QkNormForward(x, w, y0, rstd, n, width, 1e-6f);
        // the inference block's QK-norm gives the same values
        var inf = (float[])x.Clone();
        Blocks.QkNorm(inf, w, n, width, hd, 1e-6f);
        Assert.Equal(inf, y0);
        var dx = new float[n * width];
        TrainOps.QkNormBackward(r, x, w, rstd, dx, n, width);
        Assert.InRange(RelError(Loss, x, dx, All(x.Length)), 0, Tol);
    }

    [Fact]
    public void GeGlu()
    {
        int n = 40;
        var g = Random(n, 1, 4f); var u = Random(n, 2); var r = Random(n, 3);
        // default: the inference kernel's arithmetic (its scalar reference gives the same values) ...
        var h = new float[n];
        TrainOps.GeGluForward(g, u, h);
        var reference = (float[])g.Clone();
        Ops.GeGluScalar(reference, u);
        for (int i = 0; i < n; i++) Assert.Equal(reference[i], h[i], 1e-6f);
        // ... within F16 rounding of the formula the backward differentiates
        var hf = new float[n];
        TrainOps.GeGluForward(g, u, hf, formula: true);
        for (int i = 0; i < n; i++) Assert.Equal(hf[i], h[i], 2e-3f * Math.Max(1f, Math.Abs(hf[i])));
        double Loss() { var y = new float[n]; TrainOps.GeGluForward(g, u, y, formula: true); return Dot(y, r); }
        var dg = new float[n]; var du = new float[n];
        TrainOps.GeGluBackward(r, g, u, dg, du);
        Assert.InRange(RelError(Loss, g, dg, All(n), h: 1e-3f), 0, Tol);
        Assert.InRange(RelError(Loss, u, du, All(n)), 0, Tol);
    }

    [Fact]
    public void FinalLogitSoftcap()
    {
        int n = 30; const float cap = 3f;
        var x = Random(n, 1, 8f); var r = Random(n, 2);
        double Loss() { var y = (float[])x.Clone(); TrainOps.SoftcapForward(y, cap); return Dot(y, r); }
        var y0 = (float[])x.Clone();
        TrainOps.SoftcapForward(y0, cap);
        for (int i = 0; i < n; i++) Assert.Equal(cap * MathF.Tanh(x[i] / cap), y0[i], 1e-5f);
        Assert.All(y0, v => Assert.InRange(v, -cap, cap));
        var dx = new float[n];
        TrainOps.SoftcapBackward(r, y0, cap, dx);
        Assert.InRange(RelError(Loss, x, dx, All(n), h: 1e-3f), 0, Tol);
    }

    [Fact]
    public void PostNormResidual()
    {
        int n = 3, dim = 16;
        var x = Random(n * dim, 1); var o = Random(n * dim, 2, 3f); var w = Random(dim, 3); var r = Random(n * dim, 4);
        double Loss() { var h = new float[n * dim]; TrainOps.PostNormResidualForward(x, o, w, h, new float[n], n, dim, 1e-6f); return Dot(h, r); }
        var h0 = new float[n * dim]; var rstd = new float[n];
        TrainOps.PostNormResidualForward(x, o, w, h0, rstd, n, dim, 1e-6f);
        var dO = new float[n * dim];
        TrainOps.PostNormResidualBackward(r, o, w, rstd, dO, n, dim);
        Assert.InRange(RelError(Loss, o, dO, All(o.Length)), 0, Tol);
        // dx = dh: the residual path passes the gradient through unchanged
        Assert.InRange(RelError(Loss, x, r, All(x.Length)), 0, Tol);
    }

    [Theory]
    [InlineData(0, 0f, 0f, 1, false)]      // plain causal
    [InlineData(3, 0f, 0f, 2, false)]      // sliding window of 3 keys
    [InlineData(0, 2f, 0f, 2, false)]      // score soft-cap (Gemma 2's 50, small here so tanh bends)
    [InlineData(0, 0f, 0.5f, 1, false)]    // custom query scale (Gemma's query_pre_attn_scalar)
    [InlineData(2, 1.5f, 0.3f, 2, false)]  // all three together
    [InlineData(0, 0f, 0f, 2, true)]       // attention sinks (gpt-oss)
    [InlineData(3, 0f, 0f, 1, true)]       // sinks with a sliding window, as gpt-oss's even layers
    [InlineData(0, 0f, 0f, 2, false, 3)]   // chunks of 3 document positions (Llama 4's chunked attention)
    public void WindowedSoftcappedScaledAttention(int window, float cap, float scale, int threads, bool sinks, int chunk = 0)
    {
        int n = 8, heads = 4, kvHeads = 2, d = 8;
        var prm = new AttentionParams(scale > 0 ? scale : 1f / MathF.Sqrt(d), window, cap, chunk, sinks ? [-1f, 0.5f, 1.5f, 3f] : null);
        int[] start = [0, 0, 0, 0, 0, 5, 5, 5]; // two packed documents
        var q = Random(n * heads * d, 1, 2f); var k = Random(n * kvHeads * d, 2, 2f); var v = Random(n * kvHeads * d, 3); var r = Random(n * heads * d, 4);
        float[] Run(float[] kk) { var o = new float[n * heads * d]; TrainOps.AttentionForward(q, kk, v, o, new float[n * heads], start, n, heads, kvHeads, d, threads, prm); return o; }
        double Loss() { var o = new float[n * heads * d]; TrainOps.AttentionForward(q, k, v, o, new float[n * heads], start, n, heads, kvHeads, d, threads, prm); return Dot(o, r); }
        var lse = new float[n * heads];
        TrainOps.AttentionForward(q, k, v, new float[n * heads * d], lse, start, n, heads, kvHeads, d, threads, prm);
        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        TrainOps.AttentionBackward(r, q, k, v, lse, start, dq, dk, dv, n, heads, kvHeads, d, threads, prm);
        Assert.InRange(RelError(Loss, q, dq, All(q.Length), h: 1e-3f), 0, Tol);
        Assert.InRange(RelError(Loss, k, dk, All(k.Length), h: 1e-3f), 0, Tol);
        Assert.InRange(RelError(Loss, v, dv, All(v.Length), h: 1e-3f), 0, Tol);

        if (window > 0)
        {
            // masking: token 4 (first document, window [4-window+1, 4]) does not see key 0 in the forward, and key 0 gets
            // no gradient from token 4's output in the backward
            int t = 4;
            var k2 = (float[])k.Clone();
            for (int i = 0; i < kvHeads * d; i++) k2[i] += 5f;
            var o1 = Run(k); var o2 = Run(k2);
            for (int i = t * heads * d; i < (t + 1) * heads * d; i++) Assert.Equal(o1[i], o2[i]);
            var rt = new float[r.Length]; Array.Copy(r, t * heads * d, rt, t * heads * d, heads * d);
            var dk1 = new float[k.Length];
            TrainOps.AttentionBackward(rt, q, k, v, lse, start, new float[q.Length], dk1, new float[v.Length], n, heads, kvHeads, d, threads, prm);
            for (int i = 0; i < kvHeads * d; i++) Assert.Equal(0f, dk1[i]);
            Assert.Contains(dk1.AsSpan(t * kvHeads * d, kvHeads * d).ToArray(), x => x != 0);
        }
    }

    [Theory]
    [InlineData(0, 0f, 0f, false)]
    [InlineData(3, 0f, 0f, false)]
    [InlineData(0, 2f, 0.7f, false)]
    [InlineData(4, 1.5f, 0.2f, false)]
    [InlineData(3, 0f, 0f, true)]
    [InlineData(0, 0f, 0f, false, 4)]      // chunks of 4 (Llama 4)
    public void ScoredAttentionMatchesInferenceKernel(int window, float cap, float scale, bool sinks, int chunk = 0)
    {
        int n = 9, heads = 4, kvHeads = 2, d = 8;
        var prm = new AttentionParams(scale > 0 ? scale : 1f / MathF.Sqrt(d), window, cap, chunk, sinks ? [2f, -1f, 0f, 1f] : null);
        var q = Random(n * heads * d, 1, 2f); var k = Random(n * kvHeads * d, 2, 2f); var v = Random(n * kvHeads * d, 3);
        var o = new float[q.Length];
        TrainOps.AttentionForward(q, k, v, o, new float[n * heads], new int[n], n, heads, kvHeads, d, 1, prm);
        var cache = new KvCache(1, n, kvHeads * d);
        k.CopyTo(cache.KLayer(0)); v.CopyTo(cache.VLayer(0));
        var att = new float[q.Length];
        Attention.Causal(q, Enumerable.Repeat<KvCache?>(cache, n).ToArray(), Enumerable.Range(0, n).ToArray(), 0, att, n, heads, kvHeads, d, 1, prm);
        for (int i = 0; i < o.Length; i++) Assert.Equal(att[i], o[i], 2e-6f);
    }
}
