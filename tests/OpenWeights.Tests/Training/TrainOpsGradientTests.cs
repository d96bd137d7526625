using System.Runtime.InteropServices;
using OpenWeights.Lora;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>Each backward of <see cref="TrainOps"/> against central finite differences of its forward (see <see cref="GradCheck"/> for the tolerance).</summary>
public class TrainOpsGradientTests
{
    private const double Tol = 1e-2;

    [Fact]
    public void RmsNorm()
    {
        int n = 3, dim = 16;
        var x = Random(n * dim, 1); var w = Random(dim, 2); var r = Random(n * dim, 3);
        double Loss() { var y = new float[n * dim]; TrainOps.RmsNormForward(x, w, y, new float[n], n, dim, 1e-5f); return Dot(y, r); }
        var y0 = new float[n * dim]; var rstd = new float[n];
        TrainOps.RmsNormForward(x, w, y0, rstd, n, dim, 1e-5f);
        var dx = new float[n * dim]; var dw = new float[dim];
        TrainOps.RmsNormBackward(r, x, w, rstd, dx, dw, n, dim);
        Assert.InRange(RelError(Loss, x, dx, All(n * dim)), 0, Tol);
        Assert.InRange(RelError(Loss, w, dw, All(dim)), 0, Tol);
    }

    [Theory]
    [InlineData(RopeStyle.Norm, false)]
    [InlineData(RopeStyle.Neox, false)]
    [InlineData(RopeStyle.Norm, true)]
    [InlineData(RopeStyle.Neox, true)]
    public void Rope(RopeStyle style, bool freqFactors)
    {
        int n = 4, heads = 2, hd = 8, half = hd / 2;
        var rope = new Rope(hd, style, 10000f, 1f, freqFactors ? [1f, 2f, 4f, 8f] : null);
        var cos = new float[n * half]; var sin = new float[n * half];
        for (int t = 0; t < n; t++) rope.Angles(t * 3 + 1, cos.AsSpan(t * half, half), sin.AsSpan(t * half, half));
        var x = Random(n * heads * hd, 1); var r = Random(n * heads * hd, 2);
        double Loss() { var y = (float[])x.Clone(); TrainOps.RopeForward(rope, y, n, heads, hd, cos, sin); return Dot(y, r); }
        var dx = (float[])r.Clone();
        TrainOps.RopeBackward(rope, dx, n, heads, hd, cos, sin);
        Assert.InRange(RelError(Loss, x, dx, All(x.Length)), 0, Tol);
    }

    [Theory]
    [InlineData(1, 4)]    // scalar head kernels
    [InlineData(2, 4)]
    [InlineData(2, 16)]   // Vector256 head kernels (d a multiple of 8)
    public void CausalGqaAttentionWithPackedDocuments(int threads, int d)
    {
        int n = 6, heads = 4, kvHeads = 2;
        int[] start = [0, 0, 0, 3, 3, 3]; // two documents packed in one sequence
        var q = Random(n * heads * d, 1); var k = Random(n * kvHeads * d, 2); var v = Random(n * kvHeads * d, 3);
        var r = Random(n * heads * d, 4);
        double Loss() { var o = new float[n * heads * d]; TrainOps.AttentionForward(q, k, v, o, new float[n * heads], start, n, heads, kvHeads, d, threads); return Dot(o, r); }
        var o0 = new float[n * heads * d]; var lse = new float[n * heads];
        TrainOps.AttentionForward(q, k, v, o0, lse, start, n, heads, kvHeads, d, threads);
        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        TrainOps.AttentionBackward(r, q, k, v, lse, start, dq, dk, dv, n, heads, kvHeads, d, threads);
        Assert.InRange(RelError(Loss, q, dq, All(q.Length)), 0, Tol);
        Assert.InRange(RelError(Loss, k, dk, All(k.Length)), 0, Tol);
        Assert.InRange(RelError(Loss, v, dv, All(v.Length)), 0, Tol);
        // The first document never sees the second: its outputs do not depend on k/v rows 3..5.
        Assert.All(Enumerable.Range(3 * kvHeads * d, 3 * kvHeads * d), i => Assert.Equal(0.0, RelError(() => { var o = new float[n * heads * d]; TrainOps.AttentionForward(q, k, v, o, new float[n * heads], start, n, heads, kvHeads, d, 1); return Dot(o.AsSpan(0, 3 * heads * d), r.AsSpan(0, 3 * heads * d)); }, k, new float[k.Length], [i]), 12));
    }

    [Fact]
    public void AttentionMatchesInferenceKernel()
    {
        int n = 5, heads = 4, kvHeads = 2, d = 8;
        var q = Random(n * heads * d, 1); var k = Random(n * kvHeads * d, 2); var v = Random(n * kvHeads * d, 3);
        var o = new float[q.Length];
        TrainOps.AttentionForward(q, k, v, o, new float[n * heads], new int[n], n, heads, kvHeads, d, 1);
        var cache = new KvCache(1, n, kvHeads * d);
        k.CopyTo(cache.KLayer(0)); v.CopyTo(cache.VLayer(0));
        var att = new float[q.Length];
        Attention.Causal(q, Enumerable.Repeat<KvCache?>(cache, n).ToArray(), Enumerable.Range(0, n).ToArray(), 0, att, n, heads, kvHeads, d, 1);
        for (int i = 0; i < o.Length; i++) Assert.Equal(att[i], o[i], 1e-5f);
    }

    [Fact]
    public void SwiGlu()
    {
        int n = 24;
        var g = Random(n, 1, 3f); var u = Random(n, 2); var r = Random(n, 3);
        double Loss() { var h = new float[n]; TrainOps.SwiGluForward(g, u, h); return Dot(h, r); }
        var dg = new float[n]; var du = new float[n];
        TrainOps.SwiGluBackward(r, g, u, dg, du);
        Assert.InRange(RelError(Loss, g, dg, All(n)), 0, Tol);
        Assert.InRange(RelError(Loss, u, du, All(n)), 0, Tol);
    }

    [Fact]
    public void CrossEntropyWithLossMask()
    {
        int n = 4, vocab = 10;
        var logits = Random(n * vocab, 1, 3f);
        int[] targets = [3, 0, 9, 5]; bool[] mask = [true, false, true, true];
        float norm = 1f / 3;
        double Loss() { var l = (float[])logits.Clone(); return TrainOps.CrossEntropyForwardBackward(l, targets, mask, n, vocab, norm); }
        var d = (float[])logits.Clone();
        double loss = TrainOps.CrossEntropyForwardBackward(d, targets, mask, n, vocab, norm);
        Assert.True(loss > 0);
        Assert.InRange(RelError(Loss, logits, d, All(n * vocab)), 0, Tol);
        Assert.All(d.AsSpan(vocab, vocab).ToArray(), x => Assert.Equal(0f, x)); // the masked row has no gradient
    }

    private static unsafe WeightMatrix Weights(float[] w, int rows, int cols, GgmlType type, out float[] decoded)
    {
        long rb = GgmlTypes.RowBytes(type, cols);
        var p = (byte*)NativeMemory.AlignedAlloc((nuint)(rb * rows), 64); // leaked on purpose: a few bytes per test run
        var bytes = new Span<byte>(p, (int)(rb * rows));
        for (int r = 0; r < rows; r++)
        {
            if (type == GgmlType.F32) MemoryMarshal.AsBytes(w.AsSpan(r * cols, cols)).CopyTo(bytes.Slice((int)(r * rb)));
            else Quantize.Row(type, w.AsSpan(r * cols, cols), bytes.Slice((int)(r * rb), (int)rb));
        }
        var m = new WeightMatrix(p, type, rows, cols);
        decoded = new float[rows * cols];
        for (int r = 0; r < rows; r++) m.DecodeRow(r, decoded.AsSpan(r * cols, cols));
        return m;
    }

    [Theory]
    [InlineData(GgmlType.F32, 0f, 1)]
    [InlineData(GgmlType.Q8_0, 0f, 2)]
    [InlineData(GgmlType.Q4_K, 0f, 2)]
    [InlineData(GgmlType.F16, 0.25f, 2)]
    public void LoraLinearOverFrozenBase(GgmlType type, float dropout, int threads)
    {
        int n = 3, inF = 256, outF = 48, rank = 4;
        var wm = Weights(Random(outF * inF, 1, 0.1f), outF, inF, type, out var wDense);
        var bias = Random(outF, 9);
        var lora = new LoraWeights { Target = "t", Rank = rank, In = inF, Out = outF, A = Random(rank * inF, 2, 0.1f), B = Random(outF * rank, 3, 0.5f) };
        var mod = new TrainableLoraLinear(new Linear("t", wm, bias), lora, 2f, dropout, 7);
        var x = Random(n * inF, 4); var r = Random(n * outF, 5);
        const ulong seed = 12345;
        double Loss() { var y = new float[n * outF]; mod.Forward(x, y, n, threads, seed); return Dot(y, r); }

        // The base part is exactly the dequantized W: y = x·Wᵀ + b + scale·(x·Aᵀ)·Bᵀ (dense reference without dropout).
        if (dropout == 0)
        {
            var y = new float[n * outF]; mod.Forward(x, y, n, threads, seed);
            for (int t = 0; t < n; t++)
                for (int o = 0; o < outF; o++)
                {
                    double s = bias[o];
                    for (int i = 0; i < inF; i++) s += (double)x[t * inF + i] * wDense[o * inF + i];
                    for (int k = 0; k < rank; k++)
                    {
                        double xa = 0; for (int i = 0; i < inF; i++) xa += (double)x[t * inF + i] * lora.A[k * inF + i];
                        s += 2.0 * xa * lora.B[o * rank + k];
                    }
                    Assert.Equal(s, y[t * outF + o], 1e-3);
                }
        }

        var y0 = new float[n * outF]; mod.Forward(x, y0, n, threads, seed);
        var dx = new float[n * inF];
        mod.Backward(r, x, dx, n, threads, seed);
        Assert.InRange(RelError(Loss, lora.A, mod.GradA, Sample(lora.A.Length, 60, 1)), 0, Tol);
        Assert.InRange(RelError(Loss, lora.B, mod.GradB, Sample(lora.B.Length, 60, 2)), 0, Tol);
        Assert.InRange(RelError(Loss, x, dx, Sample(x.Length, 60, 3)), 0, Tol);
    }

    [Theory]
    [InlineData(GgmlType.F32, 64, 40)]
    [InlineData(GgmlType.Q8_0, 96, 37)]
    [InlineData(GgmlType.F16, 40, 13)]
    [InlineData(GgmlType.Q4_0, 576, 50, 11)]   // 24-column strips + the 4x3 / 4x24 tiles with row and token tails
    [InlineData(GgmlType.F32, 2056, 7, 9)]     // tile of 23 rows: forward row tail inside a block; 8-column strip tail
    public void SimdLinearKernelsMatchScalarReference(GgmlType type, int inF, int outF, int n = 5)
    {
        if (!TrainOps.SimdSupported) Assert.Skip("no Vector256/FMA on this CPU: only the scalar path runs");
        var wm = Weights(Random(outF * inF, 1), outF, inF, type, out _);
        var x = Random(n * inF, 2); var dy = Random(n * outF, 3);
        var y1 = new float[n * outF]; var y2 = new float[n * outF];
        TrainOps.LinearForward(wm, null, x, y1, n, 2, simd: true);
        TrainOps.LinearForward(wm, null, x, y2, n, 1, simd: false);
        for (int i = 0; i < y1.Length; i++) Assert.Equal(y2[i], y1[i], 1e-4f * Math.Max(1, Math.Abs(y2[i])));
        var d1 = new float[n * inF]; var d2 = new float[n * inF];
        TrainOps.LinearBackwardInput(wm, dy, d1, n, 2, simd: true);
        TrainOps.LinearBackwardInput(wm, dy, d2, n, 1, simd: false);
        for (int i = 0; i < d1.Length; i++) Assert.Equal(d2[i], d1[i], 1e-4f * Math.Max(1, Math.Abs(d2[i])));
    }

    [Fact]
    public void DropoutIsDeterministicPerSeedAndOffInEvaluation()
    {
        int n = 2, inF = 32, outF = 8;
        var wm = Weights(Random(outF * inF, 1), outF, inF, GgmlType.F32, out _);
        var lora = new LoraWeights { Target = "t", Rank = 2, In = inF, Out = outF, A = Random(2 * inF, 2), B = Random(outF * 2, 3) };
        var mod = new TrainableLoraLinear(new Linear("t", wm), lora, 1f, 0.5f, 1);
        var x = Random(n * inF, 4);
        float[] Run(ulong s) { var y = new float[n * outF]; mod.Forward(x, y, n, 1, s); return y; }
        Assert.Equal(Run(5), Run(5));
        Assert.NotEqual(Run(5), Run(6));
        Assert.NotEqual(Run(0), Run(5));
    }
}
