using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Training;

/// <summary>
/// Forward and backward of every operation of the decoder (llama, qwen2 and every dense family's knobs: QK-norm,
/// post-norms, GeGLU, windowed / soft-capped / scaled attention, logit soft-cap), F32, one XBackward beside each
/// XForward (llm.c). Each backward restates the forward line it differentiates. Shapes are row-major,
/// n = tokens in the sequence. Backward functions accumulate (+=) into parameter gradients and write
/// (=) or accumulate into input gradients as documented.
/// </summary>
public static class TrainOps
{
    // ---------------------------------------------------------------- embedding

    /// <summary>x[t] = E[tokens[t]]. E: (vocab, dim) in any stored type; x: (n, dim).</summary>
    public static void EmbeddingForward(WeightMatrix e, ReadOnlySpan<int> tokens, Span<float> x)
    {
        int dim = e.Cols;
        for (int t = 0; t < tokens.Length; t++) e.DecodeRow(tokens[t], x.Slice(t * dim, dim));
    }

    /// <summary>
    /// Backward of x[t] = E[tokens[t]]: dE[tokens[t]] += dx[t]. dE: (vocab, dim) F32. (The base embedding is
    /// frozen in LoRA training, so the trainer never calls this; it exists for a trainable table.)
    /// </summary>
    public static void EmbeddingBackward(ReadOnlySpan<float> dx, ReadOnlySpan<int> tokens, Span<float> dE, int dim)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            var row = dE.Slice(tokens[t] * dim, dim);
            TensorPrimitives.Add(row, dx.Slice(t * dim, dim), row);
        }
    }

    // ---------------------------------------------------------------- RMSNorm

    /// <summary>y = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps), per row. x, y: (n, dim); w: (dim); rstd: (n) saved for backward.</summary>
    public static void RmsNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, Span<float> rstd, int n, int dim, float eps)
    {
        for (int t = 0; t < n; t++)
        {
            var xr = x.Slice(t * dim, dim);
            double sum = 0;
            for (int i = 0; i < dim; i++) sum += (double)(xr[i] * xr[i]);
            float r = 1.0f / MathF.Sqrt((float)(sum / dim) + eps);
            rstd[t] = r;
            var yr = y.Slice(t * dim, dim);
            TensorPrimitives.Multiply(xr, r, yr);
            TensorPrimitives.Multiply(yr, w, yr);
        }
    }

    /// <summary>
    /// Backward of y_i = x_i · rstd · w_i:
    ///   dx_i += rstd · (dy_i w_i − x_i · rstd² · mean_j(dy_j w_j x_j));  dw_i += Σ_t dy_i x_i rstd (when dw is given).
    /// dx is accumulated (the residual stream's gradient flows through it).
    /// </summary>
    public static void RmsNormBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> rstd,
        Span<float> dx, Span<float> dw, int n, int dim)
    {
        for (int t = 0; t < n; t++)
        {
            var xr = x.Slice(t * dim, dim); var dyr = dy.Slice(t * dim, dim); var dxr = dx.Slice(t * dim, dim);
            float r = rstd[t];
            double dot = 0;
            for (int i = 0; i < dim; i++) dot += (double)dyr[i] * w[i] * xr[i];
            float c = (float)(dot / dim) * r * r;
            for (int i = 0; i < dim; i++) dxr[i] += r * (dyr[i] * w[i] - xr[i] * c);
            if (!dw.IsEmpty) for (int i = 0; i < dim; i++) dw[i] += dyr[i] * xr[i] * r;
        }
    }

    // ---------------------------------------------------------------- RoPE

    /// <summary>
    /// Rotates each head of x in place: (a, b) -> (a cos − b sin, a sin + b cos) on Norm pairs (2i, 2i+1) or Neox pairs
    /// (i, i+d/2). x: (n, heads*headDim); cos, sin: (n, ropeDims/2) per token.
    /// </summary>
    public static void RopeForward(Rope rope, Span<float> x, int n, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = rope.Dims / 2, w = heads * headDim;
        for (int t = 0; t < n; t++) rope.Apply(x.Slice(t * w, w), heads, headDim, cos.Slice(t * half, half), sin.Slice(t * half, half));
    }

    /// <summary>
    /// Backward of the rotation y = R(θ)·x: dx = R(θ)ᵀ·dy = R(−θ)·dy, i.e. the same rotation with sin negated. In place on d.
    /// </summary>
    public static void RopeBackward(Rope rope, Span<float> d, int n, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = rope.Dims / 2, w = heads * headDim;
        Span<float> negSin = half <= 512 ? stackalloc float[half] : new float[half];
        for (int t = 0; t < n; t++)
        {
            TensorPrimitives.Negate(sin.Slice(t * half, half), negSin);
            rope.Apply(d.Slice(t * w, w), heads, headDim, cos.Slice(t * half, half), negSin);
        }
    }

    // ---------------------------------------------------------------- causal GQA attention

    /// <summary>
    /// o[t,h] = Σ_{j ∈ [start[t], t]} softmax_j(q[t,h]·k[j,h/g] / sqrt(d)) · v[j,h/g], g = heads/kvHeads.
    /// start[t] is the first token of t's document (packed sequences never attend across documents).
    /// q, o: (n, heads*d); k, v: (n, kvHeads*d); lse: (n, heads) log-sum-exp of the scores, saved for backward.
    /// </summary>
    public static void AttentionForward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> o, Span<float> lse,
        ReadOnlySpan<int> start, int n, int heads, int kvHeads, int d, int threads)
        => AttentionForward(q, k, v, o, lse, start, n, heads, kvHeads, d, threads, AttentionParams.Default(d));

    /// <summary>
    /// As above with the layer's scoring (<see cref="AttentionParams"/>, the inference kernel's):
    ///   s[t,j] = q[t,h]·k[j,h/g] · scale;  s = cap·tanh(s/cap) when soft-capped (Gemma 2);
    ///   keys j ∈ [lo(t), t], lo(t) = max(start[t], t − window + 1) with a sliding window, else start[t].
    /// Positions are document-relative (t − start[t]), so the window is the inference kernel's pos − p &lt; window.
    /// With sinks (gpt-oss), e^(sink_h) joins the softmax denominator (and the saved log-sum-exp); the backward needs
    /// nothing more, since the sink carries no value: dS = P ⊙ (dP − Σ_j P dP) over the keys alone still holds.
    /// </summary>
    public static void AttentionForward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> o, Span<float> lse,
        ReadOnlySpan<int> start, int n, int heads, int kvHeads, int d, int threads, AttentionParams prm)
    {
        unsafe
        {
            fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            fixed (int* ps = start)
            {
                float* q_ = pq, k_ = pk, v_ = pv, o_ = po, l_ = pl; int* s_ = ps;
                int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
                float scale = prm.Scale, cap = prm.Softcap; int window = prm.Window, chunk = prm.Chunk; float[]? sinks = prm.Sinks;
                void Body(int job)
                {
                    int t = job / heads, h = job % heads, kvh = h / group, j0 = FirstKey(s_[t], t, window, chunk), len = t - j0 + 1;
                    var sc = Scratch(len);
                    float* qp = q_ + (long)t * qDim + h * d;
                    for (int j = 0; j < len; j++) sc[j] = HeadDot(qp, k_ + (long)(j0 + j) * kvDim + kvh * d, d) * scale;
                    var scs = sc.AsSpan(0, len);
                    if (cap > 0) SoftcapForward(scs, cap);
                    float max = TensorPrimitives.Max(scs);
                    if (sinks is not null) max = MathF.Max(max, sinks[h]);   // gpt-oss: the head's sink joins the denominator
                    TensorPrimitives.Subtract(scs, max, scs);
                    TensorPrimitives.Exp(scs, scs);
                    double sum = TensorPrimitives.Sum(scs);
                    if (sinks is not null) sum += Math.Exp(sinks[h] - max);
                    float inv = (float)(1.0 / sum);
                    float* op = o_ + (long)t * qDim + h * d;
                    new Span<float>(op, d).Clear();
                    for (int j = 0; j < len; j++) HeadAxpy(v_ + (long)(j0 + j) * kvDim + kvh * d, sc[j] * inv, op, d);
                    l_[t * heads + h] = max + (float)Math.Log(sum);
                }
                For(n * heads, threads, Body);
            }
        }
    }

    /// <summary>
    /// Backward of o = P·V with P = softmax(S), S = q·kᵀ/sqrt(d) (causal, per document), recomputing P from the saved
    /// log-sum-exp (no (n, n) matrix is kept):
    ///   dV[j] += Σ_t P[t,j] do[t];  dP[t,j] = do[t]·v[j];  dS = P ⊙ (dP − Σ_j P dP);  dq[t] = Σ_j dS k[j] / sqrt(d);  dk[j] += Σ_t dS q[t] / sqrt(d).
    /// dq is written; dk, dv are written (cleared first). Work is split by kv head so no two threads touch the same dk/dv row.
    /// </summary>
    public static void AttentionBackward(ReadOnlySpan<float> dout, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> lse, ReadOnlySpan<int> start, Span<float> dq, Span<float> dk, Span<float> dv, int n, int heads, int kvHeads, int d, int threads)
        => AttentionBackward(dout, q, k, v, lse, start, dq, dk, dv, n, heads, kvHeads, d, threads, AttentionParams.Default(d));

    /// <summary>
    /// Backward of the scored attention of <see cref="AttentionForward(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, Span{float}, ReadOnlySpan{int}, int, int, int, int, int, AttentionParams)"/>:
    /// with r = q·k·scale and s = cap·tanh(r/cap) (s = r without a cap), P = softmax(s) over the window's keys,
    ///   dS = P ⊙ (dP − Σ_j P dP);  dR = dS ⊙ (1 − (s/cap)²) (the soft-cap's derivative, 1 without one);
    ///   dq[t] = Σ_j dR k[j] · scale;  dk[j] += Σ_t dR q[t] · scale.  Keys outside the window get no gradient (masked in both passes).
    /// </summary>
    public static void AttentionBackward(ReadOnlySpan<float> dout, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> lse, ReadOnlySpan<int> start, Span<float> dq, Span<float> dk, Span<float> dv, int n, int heads, int kvHeads, int d, int threads,
        AttentionParams prm)
    {
        unsafe
        {
            fixed (float* pdo = dout, pq = q, pk = k, pv = v, pl = lse, pdq = dq, pdk = dk, pdv = dv)
            fixed (int* ps = start)
            {
                float* do_ = pdo, q_ = pq, k_ = pk, v_ = pv, l_ = pl, dq_ = pdq, dk_ = pdk, dv_ = pdv; int* s_ = ps;
                int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
                float scale = prm.Scale, cap = prm.Softcap; int window = prm.Window, chunk = prm.Chunk;
                void Body(int kvh)
                {
                    for (int t = 0; t < n; t++)
                    {
                        new Span<float>(dk_ + (long)t * kvDim + kvh * d, d).Clear();
                        new Span<float>(dv_ + (long)t * kvDim + kvh * d, d).Clear();
                    }
                    for (int h = kvh * group; h < (kvh + 1) * group; h++)
                        for (int t = 0; t < n; t++)
                        {
                            int j0 = FirstKey(s_[t], t, window, chunk), len = t - j0 + 1;
                            float* qv = q_ + (long)t * qDim + h * d, dov = do_ + (long)t * qDim + h * d, dqv = dq_ + (long)t * qDim + h * d;
                            new Span<float>(dqv, d).Clear();
                            var p = Scratch(3 * len);
                            var sc = p.AsSpan(2 * len, len);
                            for (int j = 0; j < len; j++) sc[j] = HeadDot(qv, k_ + (long)(j0 + j) * kvDim + kvh * d, d) * scale; // r
                            if (cap > 0) SoftcapForward(sc, cap);                                                               // s
                            float l = l_[t * heads + h];
                            double pdp = 0;
                            for (int j = 0; j < len; j++)
                            {
                                long kr = (long)(j0 + j) * kvDim + kvh * d;
                                float pj = MathF.Exp(sc[j] - l);
                                float dpj = HeadDot(dov, v_ + kr, d);
                                p[j] = pj; p[len + j] = dpj;
                                pdp += (double)pj * dpj;
                            }
                            float sPdp = (float)pdp;
                            for (int j = 0; j < len; j++)
                            {
                                long kr = (long)(j0 + j) * kvDim + kvh * d;
                                float ds = p[j] * (p[len + j] - sPdp) * scale;
                                if (cap > 0) { float y = sc[j] / cap; ds *= 1f - y * y; }
                                HeadAxpy(dov, p[j], dv_ + kr, d);
                                HeadAxpy(k_ + kr, ds, dqv, d);
                                HeadAxpy(qv, ds, dk_ + kr, d);
                            }
                        }
                }
                For(kvHeads, threads, Body);
            }
        }
    }

    // ---------------------------------------------------------------- SwiGLU

    /// <summary>h = silu(g) ⊙ u = g·σ(g)·u. g, u, h: (n*ffn).</summary>
    public static void SwiGluForward(ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> h)
    {
        h = h[..g.Length]; u = u[..g.Length];
        TensorPrimitives.Sigmoid(g, h);        // h = σ(g)
        TensorPrimitives.Multiply(h, g, h);    // h = g·σ(g)
        TensorPrimitives.Multiply(h, u, h);    // h = g·σ(g)·u
    }

    /// <summary>
    /// Backward of h = g·σ(g)·u: du = dh · g·σ(g);  dg = dh · u · σ(g)·(1 + g·(1 − σ(g))). Written, not accumulated.
    /// </summary>
    public static void SwiGluBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> dg, Span<float> du)
    {
        TensorPrimitives.Sigmoid(g, dg[..g.Length]); // dg = σ(g) (overwritten below)
        for (int i = 0; i < g.Length; i++)
        {
            float x = g[i], s = dg[i];
            du[i] = dh[i] * x * s;
            dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
        }
    }

    // ---------------------------------------------------------------- clamped SwiGLU (gpt-oss's swiglu_oai)

    /// <summary>h = x·σ(α·x)·(y + 1), x = min(g, limit), y = clamp(u, ±limit), with the inference kernel's arithmetic
    /// (<see cref="Ops.SwiGluOai"/>). g, u, h: (n*ffn).</summary>
    public static void SwiGluOaiForward(ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> h)
    {
        h = h[..g.Length];
        g.CopyTo(h);
        Ops.SwiGluOai(h, u);
    }

    /// <summary>
    /// Backward of h = x·σ(αx)·(y + 1), x = min(g, limit), y = clamp(u, ±limit): du = dh·x·σ(αx) where |u| &lt; limit (else 0);
    /// dg = dh·(y + 1)·σ(αx)·(1 + αx·(1 − σ(αx))) where g &lt; limit (else 0). Written, not accumulated.
    /// </summary>
    public static void SwiGluOaiBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> dg, Span<float> du)
    {
        const float alpha = Ops.OaiAlpha, limit = Ops.OaiLimit;
        for (int i = 0; i < g.Length; i++)
        {
            float x = MathF.Min(g[i], limit), y = Math.Clamp(u[i], -limit, limit);
            float sg = 1f / (1f + MathF.Exp(-alpha * x));
            du[i] = u[i] > -limit && u[i] < limit ? dh[i] * x * sg : 0f;
            dg[i] = g[i] < limit ? dh[i] * (y + 1f) * sg * (1f + alpha * x * (1f - sg)) : 0f;
        }
    }

    /// <summary>The first key token t attends to: its document's first token, or the window's or its chunk's (chunks of
    /// document positions, Llama 4) when that is later.</summary>
    private static int FirstKey(int docStart, int t, int window, int chunk) =>
        docStart + OpenWeights.Models.Common.AttentionParams.FirstKey(t - docStart, window, chunk);

    // ---------------------------------------------------------------- GeGLU (Gemma)

    /// <summary>
    /// h = gelu(g) ⊙ u with the tanh approximation gelu(x) = ½x(1 + tanh(c(x + 0.044715x³))), c = √(2/π). g, u, h: (n*ffn).
    /// formula: false (default) evaluates it with the inference kernel's own arithmetic (<see cref="Ops.GeGlu"/>: ggml's
    /// F16 table, within F16 rounding of the formula), so training logits equal inference and llama.cpp; true evaluates
    /// the formula itself in float, the function <see cref="GeGluBackward"/> differentiates (finite-difference checks:
    /// a table's finite differences are steps).
    /// </summary>
    public static void GeGluForward(ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> h, bool formula = false)
    {
        h = h[..g.Length];
        if (formula)
        {
            for (int i = 0; i < g.Length; i++) { float x = g[i]; h[i] = 0.5f * x * (1f + MathF.Tanh(0.7978845608028654f * x * (1f + 0.044715f * x * x))) * u[i]; }
            return;
        }
        g.CopyTo(h);
        Ops.GeGlu(h, u);
    }

    /// <summary>
    /// Backward of h = gelu(g)·u with gelu(x) = ½x(1 + τ), τ = tanh(c(x + 0.044715x³)):
    ///   du = dh · gelu(g);  dg = dh · u · (½(1 + τ) + ½x(1 − τ²)·c(1 + 3·0.044715x²)). Written, not accumulated.
    /// </summary>
    public static void GeGluBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> dg, Span<float> du)
    {
        const float c = 0.7978845608028654f, a = 0.044715f;
        for (int i = 0; i < g.Length; i++)
        {
            float x = g[i], tau = MathF.Tanh(c * x * (1f + a * x * x));
            du[i] = dh[i] * 0.5f * x * (1f + tau);
            dg[i] = dh[i] * u[i] * (0.5f * (1f + tau) + 0.5f * x * (1f - tau * tau) * c * (1f + 3f * a * x * x));
        }
    }

    // ---------------------------------------------------------------- soft-capping (Gemma 2: attention scores, final logits)

    /// <summary>y = cap·tanh(x/cap) in place, as the inference kernels compute it (×1/cap, tanh, ×cap).</summary>
    public static void SoftcapForward(Span<float> x, float cap)
    {
        TensorPrimitives.Multiply(x, 1f / cap, x);
        TensorPrimitives.Tanh(x, x);
        TensorPrimitives.Multiply(x, cap, x);
    }

    /// <summary>
    /// Backward of y = cap·tanh(x/cap) from its output: dx = dy · (1 − tanh²(x/cap)) = dy · (1 − (y/cap)²). Written; dx may be dy.
    /// </summary>
    public static void SoftcapBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> y, float cap, Span<float> dx)
    {
        float inv = 1f / cap;
        for (int i = 0; i < y.Length; i++) { float r = y[i] * inv; dx[i] = dy[i] * (1f - r * r); }
    }

    // ---------------------------------------------------------------- QK-norm (Qwen 3, Gemma 3: per head; OLMo 2: whole projection)

    /// <summary>
    /// y = rmsnorm(x) · w over groups of w.Length values: each head when w has head_dim values, the whole row when it has
    /// the projection's width (as <see cref="OpenWeights.Models.Common.Blocks.QkNorm"/> decides). x, y: (n, width);
    /// rstd: (n·width / w.Length) saved for backward.
    /// </summary>
    public static void QkNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, Span<float> rstd, int n, int width, float eps)
        => RmsNormForward(x, w, y, rstd, QkGroups(n, width, w.Length), w.Length, eps);

    /// <summary>
    /// Backward of y_g = rmsnorm(x_g) · w per group g (a head or the whole row): the RMSNorm derivative per group,
    ///   dx_i += rstd_g · (dy_i w_i − x_i · rstd_g² · mean_{j∈g}(dy_j w_j x_j)). dx is accumulated.
    /// </summary>
    public static void QkNormBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> rstd, Span<float> dx, int n, int width)
        => RmsNormBackward(dy, x, w, rstd, dx, default, QkGroups(n, width, w.Length), w.Length);

    private static int QkGroups(int n, int width, int d) => width % d == 0 ? n * (width / d)
        : throw new ArgumentException($"QK-norm weight of {d} values does not divide the projection width {width}");

    // ---------------------------------------------------------------- post-norm residual (Gemma 2/3, OLMo 2)

    /// <summary>h = x + rmsnorm(o) · w: a sub-block's output o normed before the residual add. x, o, h: (n, dim); rstd: (n).</summary>
    public static void PostNormResidualForward(ReadOnlySpan<float> x, ReadOnlySpan<float> o, ReadOnlySpan<float> w, Span<float> h, Span<float> rstd, int n, int dim, float eps)
    {
        RmsNormForward(o, w, h, rstd, n, dim, eps);
        TensorPrimitives.Add(h[..(n * dim)], x[..(n * dim)], h[..(n * dim)]);
    }

    /// <summary>
    /// Backward of h = x + rmsnorm(o)·w: dx = dh (the residual path: the caller keeps dh as dx) and
    ///   do_i = rstd · (dh_i w_i − o_i · rstd² · mean_j(dh_j w_j o_j)). do is written.
    /// </summary>
    public static void PostNormResidualBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> o, ReadOnlySpan<float> w, ReadOnlySpan<float> rstd, Span<float> dO, int n, int dim)
    {
        dO[..(n * dim)].Clear();
        RmsNormBackward(dh, o, w, rstd, dO, default, n, dim);
    }

    /// <summary>a·b over one head (d values): Vector256 FMA when d is a multiple of 8 (every real head size), else scalar.</summary>
    private static unsafe float HeadDot(float* a, float* b, int d)
    {
        if (!SimdSupported || d % 8 != 0) return DotScalar(a, b, d);
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < d; i += 8) acc = Fma.MultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
        return Vector256.Sum(acc);
    }

    /// <summary>y += a·x over one head (d values).</summary>
    private static unsafe void HeadAxpy(float* x, float a, float* y, int d)
    {
        if (!SimdSupported || d % 8 != 0) { AxpyScalar(x, a, y, d); return; }
        var av = Vector256.Create(a);
        for (int i = 0; i < d; i += 8) Vector256.Store(Fma.MultiplyAdd(Vector256.Load(x + i), av, Vector256.Load(y + i)), y + i);
    }

    // ---------------------------------------------------------------- frozen base linear: Y = X·Wᵀ (+ b)

    /// <summary>
    /// Y = X·Wᵀ + b. X: (n, in), Y: (n, out); W: (out, in) in its stored type. Threads take row ranges; each decodes a
    /// block of rows into an F32 tile (never the whole W) and multiplies it with every token. SIMD path: a 3-row x
    /// 4-token register tile (12 accumulators, 7 loads per 12 FMAs); simd: false is the scalar reference.
    /// </summary>
    public static void LinearForward(WeightMatrix w, float[]? bias, ReadOnlySpan<float> x, Span<float> y, int n, int threads, bool simd = true)
    {
        int rows = w.Rows, cols = w.Cols;
        if (x.Length < n * cols || y.Length < n * rows) throw new ArgumentException("linear buffers too small");
        bool tiled = simd && SimdSupported && cols % 8 == 0;
        // Rows per tile: a multiple of 3, the tile (block, cols) at most ~192 KiB so it stays in L2.
        int block = tiled ? Math.Clamp(49152 / cols / 3 * 3, 3, 48) : 8;
        int blocks = (rows + block - 1) / block;
        int parts = Math.Max(1, Math.Min(threads, blocks));
        unsafe
        {
            fixed (float* px = x, py = y)
            {
                float* x_ = px, y_ = py;
                void Body(int p)
                {
                    int b0 = (int)((long)blocks * p / parts), b1 = (int)((long)blocks * (p + 1) / parts);
                    var tile = TileScratch(block * cols);
                    fixed (float* tp = tile)
                        for (int b = b0; b < b1; b++)
                        {
                            int r0 = b * block, rb = Math.Min(block, rows - r0);
                            for (int r = 0; r < rb; r++) w.DecodeRow(r0 + r, tile.AsSpan(r * cols, cols));
                            if (tiled) ForwardTileSimd(tp, rb, cols, x_, y_ + r0, rows, n);
                            else
                                for (int t = 0; t < n; t++)
                                    for (int r = 0; r < rb; r++) y_[(long)t * rows + r0 + r] = DotScalar(tp + r * cols, x_ + (long)t * cols, cols);
                        }
                }
                For(parts, threads, Body);
            }
        }
        if (bias is not null)
            for (int t = 0; t < n; t++) TensorPrimitives.Add(y.Slice(t * rows, rows), bias, y.Slice(t * rows, rows));
    }

    /// <summary>y[t, r] = tile[r] · x[t] for r &lt; rb, t &lt; n; y rows have stride yStride (cols a multiple of 8).</summary>
    private static unsafe void ForwardTileSimd(float* tile, int rb, int cols, float* x, float* y, int yStride, int n)
    {
        int t = 0;
        for (; t + 4 <= n; t += 4)
        {
            float* xt = x + (long)t * cols, yt = y + (long)t * yStride;
            int r = 0;
            for (; r + 3 <= rb; r += 3) Dot3x4Simd(tile + (long)r * cols, cols, xt, yt + r, yStride);
            for (; r < rb; r++)
                for (int j = 0; j < 4; j++) yt[(long)j * yStride + r] = DotSimd(tile + (long)r * cols, xt + (long)j * cols, cols);
        }
        for (; t < n; t++)
        {
            float* xt = x + (long)t * cols, yt = y + (long)t * yStride;
            int r = 0;
            for (; r + 4 <= rb; r += 4) Dot4Simd(tile + (long)r * cols, cols, xt, yt + r);
            for (; r < rb; r++) yt[r] = DotSimd(tile + (long)r * cols, xt, cols);
        }
    }

    /// <summary>
    /// y[j·yStride + k] = w_k · x_j for the 3 rows w_k = w + k·cols and 4 tokens x_j = x + j·cols (cols a multiple of 8):
    /// 12 accumulators; per 8 columns 3 weight loads + 4 activation loads feed 12 FMAs.
    /// </summary>
    private static unsafe void Dot3x4Simd(float* w, int cols, float* x, float* y, int yStride)
    {
        var a00 = Vector256<float>.Zero; var a01 = a00; var a02 = a00; var a03 = a00;
        var a10 = a00; var a11 = a00; var a12 = a00; var a13 = a00;
        var a20 = a00; var a21 = a00; var a22 = a00; var a23 = a00;
        float* w1 = w + cols, w2 = w1 + cols, x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols;
        for (int i = 0; i < cols; i += 8)
        {
            var v0 = Vector256.Load(w + i); var v1 = Vector256.Load(w1 + i); var v2 = Vector256.Load(w2 + i);
            var xv = Vector256.Load(x + i);
            a00 = Fma.MultiplyAdd(v0, xv, a00); a10 = Fma.MultiplyAdd(v1, xv, a10); a20 = Fma.MultiplyAdd(v2, xv, a20);
            xv = Vector256.Load(x1 + i);
            a01 = Fma.MultiplyAdd(v0, xv, a01); a11 = Fma.MultiplyAdd(v1, xv, a11); a21 = Fma.MultiplyAdd(v2, xv, a21);
            xv = Vector256.Load(x2 + i);
            a02 = Fma.MultiplyAdd(v0, xv, a02); a12 = Fma.MultiplyAdd(v1, xv, a12); a22 = Fma.MultiplyAdd(v2, xv, a22);
            xv = Vector256.Load(x3 + i);
            a03 = Fma.MultiplyAdd(v0, xv, a03); a13 = Fma.MultiplyAdd(v1, xv, a13); a23 = Fma.MultiplyAdd(v2, xv, a23);
        }
        y[0] = Vector256.Sum(a00); y[1] = Vector256.Sum(a10); y[2] = Vector256.Sum(a20);
        y += yStride; y[0] = Vector256.Sum(a01); y[1] = Vector256.Sum(a11); y[2] = Vector256.Sum(a21);
        y += yStride; y[0] = Vector256.Sum(a02); y[1] = Vector256.Sum(a12); y[2] = Vector256.Sum(a22);
        y += yStride; y[0] = Vector256.Sum(a03); y[1] = Vector256.Sum(a13); y[2] = Vector256.Sum(a23);
    }

    private static unsafe float DotSimd(float* a, float* b, int n)
    {
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n; i += 8) acc = Fma.MultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
        return Vector256.Sum(acc);
    }

    /// <summary>Whether the Vector256 + FMA kernels run here; simd: false selects the scalar reference (tests compare the two).</summary>
    public static readonly bool SimdSupported = System.Runtime.Intrinsics.X86.Fma.IsSupported && System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated;

    private static unsafe float DotScalar(float* a, float* b, int n)
    {
        float s = 0;
        for (int i = 0; i < n; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>out[k] = w_k · x for the 4 consecutive rows w_k = w + k·stride (n a multiple of 8).</summary>
    private static unsafe void Dot4Simd(float* w, int stride, float* x, float* outp)
    {
        var a0 = System.Runtime.Intrinsics.Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        float* w1 = w + stride, w2 = w1 + stride, w3 = w2 + stride;
        for (int i = 0; i < stride; i += 8)
        {
            var xv = System.Runtime.Intrinsics.Vector256.Load(x + i);
            a0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w + i), xv, a0);
            a1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w1 + i), xv, a1);
            a2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w2 + i), xv, a2);
            a3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w3 + i), xv, a3);
        }
        outp[0] = System.Runtime.Intrinsics.Vector256.Sum(a0); outp[1] = System.Runtime.Intrinsics.Vector256.Sum(a1);
        outp[2] = System.Runtime.Intrinsics.Vector256.Sum(a2); outp[3] = System.Runtime.Intrinsics.Vector256.Sum(a3);
    }

    /// <summary>d += g0·w0 + g1·w1 + g2·w2 + g3·w3 for 4 consecutive rows w_k = w + k·stride (n a multiple of 8).</summary>
    private static unsafe void Axpy4Simd(float* w, int stride, float* g, float* d)
    {
        var g0 = System.Runtime.Intrinsics.Vector256.Create(g[0]); var g1 = System.Runtime.Intrinsics.Vector256.Create(g[1]);
        var g2 = System.Runtime.Intrinsics.Vector256.Create(g[2]); var g3 = System.Runtime.Intrinsics.Vector256.Create(g[3]);
        float* w1 = w + stride, w2 = w1 + stride, w3 = w2 + stride;
        for (int i = 0; i < stride; i += 8)
        {
            var acc = System.Runtime.Intrinsics.Vector256.Load(d + i);
            acc = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w + i), g0, acc);
            acc = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w1 + i), g1, acc);
            acc = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w2 + i), g2, acc);
            acc = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(System.Runtime.Intrinsics.Vector256.Load(w3 + i), g3, acc);
            System.Runtime.Intrinsics.Vector256.Store(acc, d + i);
        }
    }

    private static unsafe void AxpyScalar(float* w, float g, float* d, int n)
    {
        for (int i = 0; i < n; i++) d[i] += g * w[i];
    }

    /// <summary>
    /// Backward of Y = X·Wᵀ with W frozen: dX += dY·W, i.e. dX[t] += Σ_o dY[t,o]·W[o]. Threads take token ranges;
    /// each walks W in blocks of rows decoded into a private F32 tile (any stored type, never the whole W in F32).
    /// SIMD path: a 4-token x 24-column register tile accumulated over the block's rows (12 accumulators, 3 weight
    /// loads + 4 broadcasts per 12 FMAs), added into dX once per block; simd: false is the scalar reference.
    /// </summary>
    public static void LinearBackwardInput(WeightMatrix w, ReadOnlySpan<float> dy, Span<float> dx, int n, int threads, bool simd = true)
    {
        int rows = w.Rows, cols = w.Cols;
        bool tiled = simd && SimdSupported && cols % 8 == 0;
        // Rows per tile: the tile (block, cols) at most ~192 KiB so it stays in L2 while every token group passes over it.
        int block = tiled ? Math.Clamp(49152 / cols, 8, 64) : 32;
        int parts = Math.Max(1, Math.Min(threads, n));
        unsafe
        {
            fixed (float* pdy = dy, pdx = dx)
            {
                float* dy_ = pdy, dx_ = pdx;
                void Body(int p)
                {
                    int t0 = (int)((long)n * p / parts), t1 = (int)((long)n * (p + 1) / parts);
                    var tile = TileScratch(block * cols);
                    fixed (float* tp = tile)
                        for (int r0 = 0; r0 < rows; r0 += block)
                        {
                            int rb = Math.Min(block, rows - r0);
                            for (int r = 0; r < rb; r++) w.DecodeRow(r0 + r, tile.AsSpan(r * cols, cols));
                            if (tiled) BackwardTileSimd(tp, rb, cols, dy_ + (long)t0 * rows + r0, rows, dx_ + (long)t0 * cols, t1 - t0);
                            else
                                for (int t = t0; t < t1; t++)
                                    for (int r = 0; r < rb; r++) AxpyScalar(tp + r * cols, dy_[(long)t * rows + r0 + r], dx_ + (long)t * cols, cols);
                        }
                }
                For(parts, threads, Body);
            }
        }
    }

    /// <summary>dx[t] += Σ_{r &lt; rb} g[t·gStride + r]·tile[r] for t &lt; n (cols a multiple of 8).</summary>
    private static unsafe void BackwardTileSimd(float* tile, int rb, int cols, float* g, int gStride, float* dx, int n)
    {
        int t = 0;
        for (; t + 4 <= n; t += 4)
        {
            float* gt = g + (long)t * gStride, dxt = dx + (long)t * cols;
            int c = 0;
            for (; c + 24 <= cols; c += 24) Gemm4x24Simd(tile + c, cols, rb, gt, gStride, dxt + c, cols);
            for (; c < cols; c += 8) Gemm4x8Simd(tile + c, cols, rb, gt, gStride, dxt + c, cols);
        }
        for (; t < n; t++)
        {
            float* gt = g + (long)t * gStride, dxt = dx + (long)t * cols;
            int r = 0;
            for (; r + 4 <= rb; r += 4) Axpy4Simd(tile + (long)r * cols, cols, gt + r, dxt);
            for (; r < rb; r++) AxpyScalar(tile + (long)r * cols, gt[r], dxt, cols);
        }
    }

    /// <summary>
    /// d[j·dStride + 0..24] += Σ_{r &lt; rb} g[j·gStride + r]·w[r·wStride + 0..24] for the 4 tokens j: 12 accumulators held in
    /// registers across all rb rows.
    /// </summary>
    private static unsafe void Gemm4x24Simd(float* w, int wStride, int rb, float* g, int gStride, float* d, int dStride)
    {
        var a00 = Vector256<float>.Zero; var a01 = a00; var a02 = a00; var a10 = a00; var a11 = a00; var a12 = a00;
        var a20 = a00; var a21 = a00; var a22 = a00; var a30 = a00; var a31 = a00; var a32 = a00;
        float* g1 = g + gStride, g2 = g1 + gStride, g3 = g2 + gStride;
        for (int r = 0; r < rb; r++, w += wStride)
        {
            var v0 = Vector256.Load(w); var v1 = Vector256.Load(w + 8); var v2 = Vector256.Load(w + 16);
            var b = Vector256.Create(g[r]);
            a00 = Fma.MultiplyAdd(v0, b, a00); a01 = Fma.MultiplyAdd(v1, b, a01); a02 = Fma.MultiplyAdd(v2, b, a02);
            b = Vector256.Create(g1[r]);
            a10 = Fma.MultiplyAdd(v0, b, a10); a11 = Fma.MultiplyAdd(v1, b, a11); a12 = Fma.MultiplyAdd(v2, b, a12);
            b = Vector256.Create(g2[r]);
            a20 = Fma.MultiplyAdd(v0, b, a20); a21 = Fma.MultiplyAdd(v1, b, a21); a22 = Fma.MultiplyAdd(v2, b, a22);
            b = Vector256.Create(g3[r]);
            a30 = Fma.MultiplyAdd(v0, b, a30); a31 = Fma.MultiplyAdd(v1, b, a31); a32 = Fma.MultiplyAdd(v2, b, a32);
        }
        AddTo(d, a00, a01, a02); d += dStride; AddTo(d, a10, a11, a12); d += dStride;
        AddTo(d, a20, a21, a22); d += dStride; AddTo(d, a30, a31, a32);

        static void AddTo(float* d, Vector256<float> x0, Vector256<float> x1, Vector256<float> x2)
        {
            Vector256.Store(Vector256.Load(d) + x0, d); Vector256.Store(Vector256.Load(d + 8) + x1, d + 8); Vector256.Store(Vector256.Load(d + 16) + x2, d + 16);
        }
    }

    /// <summary>As <see cref="Gemm4x24Simd"/> for an 8-column strip (the tail of a row).</summary>
    private static unsafe void Gemm4x8Simd(float* w, int wStride, int rb, float* g, int gStride, float* d, int dStride)
    {
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        float* g1 = g + gStride, g2 = g1 + gStride, g3 = g2 + gStride;
        for (int r = 0; r < rb; r++, w += wStride)
        {
            var v = Vector256.Load(w);
            a0 = Fma.MultiplyAdd(v, Vector256.Create(g[r]), a0); a1 = Fma.MultiplyAdd(v, Vector256.Create(g1[r]), a1);
            a2 = Fma.MultiplyAdd(v, Vector256.Create(g2[r]), a2); a3 = Fma.MultiplyAdd(v, Vector256.Create(g3[r]), a3);
        }
        Vector256.Store(Vector256.Load(d) + a0, d); d += dStride; Vector256.Store(Vector256.Load(d) + a1, d); d += dStride;
        Vector256.Store(Vector256.Load(d) + a2, d); d += dStride; Vector256.Store(Vector256.Load(d) + a3, d);
    }

    // ---------------------------------------------------------------- dense F32 helpers for the LoRA branch

    /// <summary>C (m, p) = A (m, k) · Bᵀ where B: (p, k).</summary>
    public static void MatMulABt(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int p)
    {
        for (int i = 0; i < m; i++)
        {
            var ar = a.Slice(i * k, k);
            for (int j = 0; j < p; j++) c[i * p + j] = TensorPrimitives.Dot(ar, b.Slice(j * k, k));
        }
    }

    /// <summary>C (m, p) += A (m, k) · B where B: (k, p).</summary>
    public static void MatMulAddAB(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int p)
    {
        for (int i = 0; i < m; i++)
        {
            var cr = c.Slice(i * p, p);
            for (int j = 0; j < k; j++) { float s = a[i * k + j]; if (s != 0) TensorPrimitives.MultiplyAdd(b.Slice(j * p, p), s, cr, cr); }
        }
    }

    /// <summary>C (k, p) += alpha · Aᵀ · B where A: (n, k), B: (n, p).</summary>
    public static void MatMulAddAtB(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int n, int k, int p, float alpha)
    {
        for (int t = 0; t < n; t++)
        {
            var br = b.Slice(t * p, p);
            for (int i = 0; i < k; i++)
            {
                float s = a[t * k + i] * alpha;
                if (s != 0) { var cr = c.Slice(i * p, p); TensorPrimitives.MultiplyAdd(br, s, cr, cr); }
            }
        }
    }

    // ---------------------------------------------------------------- cross-entropy

    /// <summary>
    /// loss = Σ_t mask[t] · (logsumexp(logits[t]) − logits[t, target[t]]) · norm, and in the same pass the backward
    /// dlogits[t] = mask[t] · norm · (softmax(logits[t]) − onehot(target[t])), written over logits (in place).
    /// logits: (n, vocab). Returns the loss contribution (double). norm = 1 / (masked tokens of the whole batch).
    /// </summary>
    public static double CrossEntropyForwardBackward(Span<float> logits, ReadOnlySpan<int> targets, ReadOnlySpan<bool> mask, int n, int vocab, float norm)
    {
        double loss = 0;
        for (int t = 0; t < n; t++)
        {
            var row = logits.Slice(t * vocab, vocab);
            if (!mask[t]) { row.Clear(); continue; }
            float max = TensorPrimitives.Max(row), target = row[targets[t]];
            TensorPrimitives.Subtract(row, max, row);                     // row = z - max
            TensorPrimitives.Exp(row, row);                               // row = e^(z - max)
            double sum = TensorPrimitives.Sum(row);
            double lse = max + Math.Log(sum);
            loss += (lse - target) * norm;
            TensorPrimitives.Multiply(row, (float)(norm / sum), row);     // dz = softmax(z)·norm ...
            row[targets[t]] -= norm;                                      // ... − onehot·norm
        }
        return loss;
    }

    // ---------------------------------------------------------------- plumbing

    internal static void For(int jobs, int threads, Action<int> body)
    {
        if (threads <= 1 || jobs <= 1) for (int i = 0; i < jobs; i++) body(i);
        else Parallel.For(0, jobs, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }

    [ThreadStatic] private static float[]? scratch;
    [ThreadStatic] private static float[]? tileScratch;
    /// <summary>The decoded-weight tile of the linear kernels, one per thread (not a new large array per call).</summary>
    private static float[] TileScratch(int n) => tileScratch is { } s && s.Length >= n ? s : tileScratch = new float[n];
    private static float[] Scratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 4096)];
}
