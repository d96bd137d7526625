using System.Numerics.Tensors;
using OpenWeights.Models.Common;

namespace OpenWeights.Training;

/// <summary>
/// The mixture-of-experts feed-forward of one layer (<see cref="ExpertLayer"/>) run forward and backward for training,
/// with the router and the experts frozen (LoRA adapts the attention; see docs/DEVELOPING.md "LoRA adapters"):
///   logits = router(x) (n, n_expert) -> ids, w = the layer's routing (<see cref="ExpertLayer.Route"/>, the inference
///   code, so the same experts are chosen) -> y[t] = Σ_j w[t,j] · expert_{ids[t,j]}(x[t]) (+ shared(x[t])),
///   expert_e(x) = down_e(act(gate_e(x)) · up_e(x)) (+ per-expert biases); Llama 4 scales the expert's input by w instead.
/// The backward treats the choice of experts as a constant (top-k is piecewise constant) and differentiates everything
/// else: dx gets each routed expert's input gradient (weighted), the shared expert's, and the router's through the
/// weights' dependence on the logits (gating, renormalisation, scale). The instance holds one layer's activations (the
/// forward saves them, the backward reads them: call Forward, then Backward, on the same input).
/// </summary>
public sealed class ExpertFeedForward
{
    private float[] logits = [], probs = [], weights = [], dw = [], dlogits = [];  // (n, n_expert), (n, n_expert), (n, k) x2, (n, n_expert)
    private int[] ids = [], order = [], starts = [], heap = [];                      // (n, k), (n·k), (n_expert + 1), (n_expert)
    private float[] g = [], u = [], y = [], xe = [], he = [], dye = [], dhe = [], dxe = [];
    private float[] sg = [], su = [], sh = [], sdh = [];                             // the shared expert's (n, ffn_shexp); gradient scratch
    private int n;

    /// <summary>Tests only: leave the router's part out of dx (to show the finite-difference check sees it).</summary>
    internal bool SkipRouterGradient { get; set; }

    /// <summary>When true, GELU experts are evaluated by the tanh formula instead of the inference table (finite-difference checks).</summary>
    public bool GeluFormula { get; set; }

    /// <summary>The experts each token was routed to in the last forward: (n, k).</summary>
    public ReadOnlySpan<int> Ids => ids.AsSpan(0, n * kUsed);
    private int kUsed;

    private static float[] Ensure(ref float[] b, int len) { if (b.Length < len) b = new float[len]; return b; }
    private static int[] Ensure(ref int[] b, int len) { if (b.Length < len) b = new int[len]; return b; }

    /// <summary>Whether training can differentiate this activation (SwiGLU, GeGLU, gpt-oss's clamped SwiGLU); others are refused at setup.</summary>
    public static bool Supports(Activation act) => act is Activation.SiLU or Activation.GeluTanh or Activation.SwiGluOai;

    /// <summary>y = moe(x). x: (n, dim) the normed input; y: (n, dim), written.</summary>
    public void Forward(ExpertLayer m, ReadOnlySpan<float> x, Span<float> yOut, int n, Activation act, int threads)
    {
        if (!Supports(act)) throw new OpenWeightsException($"training: the {act} activation of the experts has no backward here");
        this.n = n;
        int ne = m.Count, k = m.Used, dim = m.Dim, ffn = m.FfnDim, slots = n * k;
        kUsed = k;
        Ensure(ref logits, n * ne); Ensure(ref probs, n * ne); Ensure(ref weights, slots); Ensure(ref ids, slots);
        Ensure(ref order, slots); Ensure(ref starts, ne + 1); Ensure(ref heap, ne);
        Ensure(ref g, slots * ffn); Ensure(ref u, slots * ffn); Ensure(ref y, slots * dim);
        Ensure(ref xe, slots * dim); Ensure(ref he, slots * ffn);

        // logits = router(x) (+ bias); the routing of inference picks the experts and their weights
        TrainOps.LinearForward(m.Router.Weight, m.Router.Bias, x, logits, n, threads);
        logits.AsSpan(0, n * ne).CopyTo(probs);
        for (int t = 0; t < n; t++)
            ExpertLayer.Route(m.Routing, probs.AsSpan(t * ne, ne), ids.AsSpan(t * k, k), weights.AsSpan(t * k, k), heap);
        Group(ne, slots);

        for (int e = 0; e < ne; e++)
        {
            int start = starts[e], cnt = starts[e + 1] - start;
            if (cnt == 0) continue;
            var xs = xe.AsSpan(0, cnt * dim);
            for (int i = 0; i < cnt; i++)
            {
                int slot = order[start + i];
                var row = xs.Slice(i * dim, dim);
                x.Slice(slot / k * dim, dim).CopyTo(row);
                if (m.Routing.WeightBeforeFfn) TensorPrimitives.Multiply(row, weights[slot], row);  // Llama 4: w·x into the expert
            }
            // the expert's rows of this group, kept in group order: (cnt, ffn) at [start·ffn ..)
            var gs = g.AsSpan(start * ffn, cnt * ffn); var us = u.AsSpan(start * ffn, cnt * ffn);
            TrainOps.LinearForward(m.Gate[e].Weight, m.Gate[e].Bias, xs, gs, cnt, threads);   // g = gate_e(x)
            TrainOps.LinearForward(m.Up[e].Weight, m.Up[e].Bias, xs, us, cnt, threads);       // u = up_e(x)
            var hs = he.AsSpan(0, cnt * ffn);
            Activate(act, gs, us, hs);                                                         // h = act(g)·u
            TrainOps.LinearForward(m.Down[e].Weight, m.Down[e].Bias, hs, y.AsSpan(start * dim, cnt * dim), cnt, threads); // y = down_e(h)
        }

        // out[t] = Σ_j w[t,j] · y[t,j] in selection order (as inference adds them)
        for (int t = 0; t < n; t++)
        {
            var o = yOut.Slice(t * dim, dim);
            for (int j = 0; j < k; j++)
            {
                int slot = t * k + j;
                var ys = y.AsSpan(Position(slot) * dim, dim);
                if (j == 0) o.Clear();
                if (m.Routing.WeightBeforeFfn) TensorPrimitives.Add(o, ys, o);
                else
                {
                    // the product rounded, then added, as inference does
                    var tmp = Row(dim);
                    TensorPrimitives.Multiply(ys, weights[slot], tmp);
                    TensorPrimitives.Add(o, tmp, o);
                }
            }
        }

        if (m.Shared is { } sx)
        {
            int f = sx.Gate.Out;
            Ensure(ref sg, n * f); Ensure(ref su, n * f); Ensure(ref sh, n * f);
            TrainOps.LinearForward(sx.Gate.Weight, sx.Gate.Bias, x, sg, n, threads);
            TrainOps.LinearForward(sx.Up.Weight, sx.Up.Bias, x, su, n, threads);
            Activate(act, sg.AsSpan(0, n * f), su.AsSpan(0, n * f), sh.AsSpan(0, n * f));
            var ys = Ensure(ref dye, n * dim).AsSpan(0, n * dim);
            TrainOps.LinearForward(sx.Down.Weight, sx.Down.Bias, sh, ys, n, threads);
            TensorPrimitives.Add(yOut[..(n * dim)], ys, yOut[..(n * dim)]);
        }
    }

    /// <summary>
    /// dx += d moe(x) / dx · dy, the experts' and router's weights frozen and the choice of experts fixed (the last forward's).
    /// dy: (n, dim); x: (n, dim) the forward's input; dx: (n, dim), accumulated.
    /// </summary>
    public void Backward(ExpertLayer m, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, int n, Activation act, int threads)
    {
        if (n != this.n) throw new InvalidOperationException("ExpertFeedForward.Backward must follow Forward on the same tokens");
        int ne = m.Count, k = m.Used, dim = m.Dim, ffn = m.FfnDim, slots = n * k;
        bool before = m.Routing.WeightBeforeFfn;
        Ensure(ref dw, slots); Ensure(ref dlogits, n * ne);
        Ensure(ref dye, slots * dim); Ensure(ref dhe, slots * ffn); Ensure(ref dxe, slots * dim); Ensure(ref he, slots * ffn);
        var dg = Ensure(ref sdh, 2 * slots * ffn);

        // out[t] = Σ_j w·y: dw[t,j] = dy[t]·y[t,j]; the expert's output gradient is w·dy[t] (Llama 4: dy[t])
        for (int slot = 0; slot < slots; slot++)
        {
            int t = slot / k, p = Position(slot);
            var dyt = dy.Slice(t * dim, dim);
            var d = dye.AsSpan(p * dim, dim);
            if (before) dyt.CopyTo(d);
            else
            {
                dw[slot] = TensorPrimitives.Dot(dyt, y.AsSpan(p * dim, dim));
                TensorPrimitives.Multiply(dyt, weights[slot], d);
            }
        }

        // through each expert, its tokens grouped as in the forward
        dxe.AsSpan(0, slots * dim).Clear();
        for (int e = 0; e < ne; e++)
        {
            int start = starts[e], cnt = starts[e + 1] - start;
            if (cnt == 0) continue;
            var dh = dhe.AsSpan(start * ffn, cnt * ffn); dh.Clear();
            TrainOps.LinearBackwardInput(m.Down[e].Weight, dye.AsSpan(start * dim, cnt * dim), dh, cnt, threads);   // dh = dy_e·W_down
            var gs = g.AsSpan(start * ffn, cnt * ffn); var us = u.AsSpan(start * ffn, cnt * ffn);
            var dgs = dg.AsSpan(0, cnt * ffn); var dus = dg.AsSpan(slots * ffn, cnt * ffn);
            ActivateBackward(act, dh, gs, us, dgs, dus);
            var dxs = dxe.AsSpan(start * dim, cnt * dim);
            TrainOps.LinearBackwardInput(m.Gate[e].Weight, dgs, dxs, cnt, threads);                                 // dx_e = dg·W_gate
            TrainOps.LinearBackwardInput(m.Up[e].Weight, dus, dxs, cnt, threads);                                   //      + du·W_up
        }
        for (int slot = 0; slot < slots; slot++)
        {
            int t = slot / k, p = Position(slot);
            var dxs = dxe.AsSpan(p * dim, dim);
            var dxt = dx.Slice(t * dim, dim);
            if (before)
            {
                // the expert's input was w·x: dw = dx_e·x, dx += w·dx_e
                dw[slot] = TensorPrimitives.Dot(dxs, x.Slice(t * dim, dim));
                TensorPrimitives.MultiplyAdd(dxs, weights[slot], dxt, dxt);
            }
            else TensorPrimitives.Add(dxt, dxs, dxt);
        }

        // the router: dlogits from dw through the routing's arithmetic, then dx += dlogits·W_router
        if (!SkipRouterGradient)
        {
            for (int t = 0; t < n; t++)
                RouteBackward(m.Routing, logits.AsSpan(t * ne, ne), ids.AsSpan(t * k, k), dw.AsSpan(t * k, k), dlogits.AsSpan(t * ne, ne));
            TrainOps.LinearBackwardInput(m.Router.Weight, dlogits, dx, n, threads);
        }

        if (m.Shared is { } sx)
        {
            int f = sx.Gate.Out;
            var dh = Ensure(ref dhe, n * f).AsSpan(0, n * f); dh.Clear();
            TrainOps.LinearBackwardInput(sx.Down.Weight, dy, dh, n, threads);
            var d2 = Ensure(ref sdh, 2 * n * f);
            var dgs = d2.AsSpan(0, n * f); var dus = d2.AsSpan(n * f, n * f);
            ActivateBackward(act, dh, sg.AsSpan(0, n * f), su.AsSpan(0, n * f), dgs, dus);
            TrainOps.LinearBackwardInput(sx.Gate.Weight, dgs, dx, n, threads);
            TrainOps.LinearBackwardInput(sx.Up.Weight, dus, dx, n, threads);
        }
    }

    /// <summary>
    /// Backward of one token's routing weights with the selection fixed: the forward is
    ///   q = gating(l) (softmax over all experts / sigmoid / the logits themselves for SoftmaxWeight); s_j = q[ids_j]
    ///   (SoftmaxWeight: s = softmax over the k selected); normalised: w_j = s_j / max(Σ s, 6.1e-5); × scale.
    /// dl: (n_expert), written. l: the raw logits.
    /// </summary>
    public static void RouteBackward(ExpertRouting r, ReadOnlySpan<float> l, ReadOnlySpan<int> ids, ReadOnlySpan<float> dw, Span<float> dl)
    {
        int k = ids.Length, ne = l.Length;
        Span<float> q = ne <= 1024 ? stackalloc float[ne] : new float[ne];
        Span<float> s = k <= 256 ? stackalloc float[k] : new float[k];
        Span<float> ds = k <= 256 ? stackalloc float[k] : new float[k];
        l.CopyTo(q);
        switch (r.Gating)
        {
            case ExpertGating.Softmax: ExpertLayer.Softmax(q); break;
            case ExpertGating.Sigmoid: TensorPrimitives.Sigmoid(q, q); break;
            case ExpertGating.SoftmaxWeight: break;
        }
        for (int j = 0; j < k; j++) s[j] = q[ids[j]];
        if (r.Gating == ExpertGating.SoftmaxWeight) ExpertLayer.Softmax(s);
        // d(scale·w0) -> dw0
        for (int j = 0; j < k; j++) ds[j] = dw[j] * r.WeightScale;
        if (r.NormalizeWeights)
        {
            float sum = 0;
            for (int j = 0; j < k; j++) sum += s[j];
            const float minSum = 6.103515625e-5f;
            if (sum > minSum)
            {
                // w0_j = s_j / Σs: ds_i = (dw0_i − Σ_j dw0_j·w0_j) / Σs
                double dot = 0;
                for (int j = 0; j < k; j++) dot += ds[j] * (s[j] / sum);
                for (int j = 0; j < k; j++) ds[j] = (float)((ds[j] - dot) / sum);
            }
            else for (int j = 0; j < k; j++) ds[j] /= minSum;   // the clamped sum is a constant
        }
        if (r.Gating == ExpertGating.SoftmaxWeight)
        {
            // s = softmax(raw): draw_i = s_i (ds_i − Σ_j ds_j s_j)
            double dot = 0;
            for (int j = 0; j < k; j++) dot += ds[j] * s[j];
            for (int j = 0; j < k; j++) ds[j] = (float)(s[j] * (ds[j] - dot));
        }
        // dq: the selected entries
        Span<float> dq = ne <= 1024 ? stackalloc float[ne] : new float[ne];
        dq.Clear();
        for (int j = 0; j < k; j++) dq[ids[j]] += ds[j];
        switch (r.Gating)
        {
            case ExpertGating.Softmax:
            {
                double dot = 0;
                for (int i = 0; i < ne; i++) dot += dq[i] * q[i];
                for (int i = 0; i < ne; i++) dl[i] = (float)(q[i] * (dq[i] - dot));
                break;
            }
            case ExpertGating.Sigmoid:
                for (int i = 0; i < ne; i++) dl[i] = dq[i] * q[i] * (1f - q[i]);
                break;
            default:
                dq.CopyTo(dl);
                break;
        }
    }

    /// <summary>Orders the (token, slot) pairs by expert, tokens in batch order within an expert (as inference groups them):
    /// starts[e] .. starts[e+1] index <see cref="order"/>; <see cref="Position"/> maps a slot back to its place.</summary>
    private void Group(int ne, int slots)
    {
        Span<int> counts = ne <= 1024 ? stackalloc int[ne] : new int[ne];
        counts.Clear();
        for (int i = 0; i < slots; i++) counts[ids[i]]++;
        starts[0] = 0;
        for (int e = 0; e < ne; e++) starts[e + 1] = starts[e] + counts[e];
        for (int e = 0; e < ne; e++) counts[e] = starts[e];
        Ensure(ref position, slots);
        for (int i = 0; i < slots; i++) { int p = counts[ids[i]]++; order[p] = i; position[i] = p; }
    }

    private int[] position = [];   // (n·k) slot -> its place in the grouped order
    private int Position(int slot) => position[slot];

    private float[] rowScratch = [];
    private Span<float> Row(int dim) => Ensure(ref rowScratch, dim).AsSpan(0, dim);

    private void Activate(Activation act, ReadOnlySpan<float> gs, ReadOnlySpan<float> us, Span<float> h)
    {
        switch (act)
        {
            case Activation.SiLU: TrainOps.SwiGluForward(gs, us, h); break;
            case Activation.GeluTanh: TrainOps.GeGluForward(gs, us, h, GeluFormula); break;
            default: TrainOps.SwiGluOaiForward(gs, us, h); break;
        }
    }

    /// <summary>dg, du (written) of h = act(g, u) for dh.</summary>
    internal static void ActivateBackward(Activation act, ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> dg, Span<float> du)
    {
        switch (act)
        {
            case Activation.SiLU: TrainOps.SwiGluBackward(dh, g, u, dg, du); break;
            case Activation.GeluTanh: TrainOps.GeGluBackward(dh, g, u, dg, du); break;
            default: TrainOps.SwiGluOaiBackward(dh, g, u, dg, du); break;
        }
    }
}
