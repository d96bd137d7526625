using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Training;

/// <summary>
/// Forward and backward of every operation of the llama / qwen2 decoder, F32, one XBackward beside each
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
    {
        unsafe
        {
            fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            fixed (int* ps = start)
            {
                float* q_ = pq, k_ = pk, v_ = pv, o_ = po, l_ = pl; int* s_ = ps;
                int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
                float scale = 1.0f / MathF.Sqrt(d);
                void Body(int job)
                {
                    int t = job / heads, h = job % heads, kvh = h / group, j0 = s_[t], len = t - j0 + 1;
                    var qv = new ReadOnlySpan<float>(q_ + (long)t * qDim + h * d, d);
                    var sc = Scratch(len);
                    for (int j = 0; j < len; j++) sc[j] = TensorPrimitives.Dot(qv, new ReadOnlySpan<float>(k_ + (long)(j0 + j) * kvDim + kvh * d, d)) * scale;
                    float max = TensorPrimitives.Max(sc.AsSpan(0, len));
                    double sum = 0;
                    for (int j = 0; j < len; j++) { float e = MathF.Exp(sc[j] - max); sc[j] = e; sum += e; }
                    float inv = (float)(1.0 / sum);
                    var ov = new Span<float>(o_ + (long)t * qDim + h * d, d);
                    ov.Clear();
                    for (int j = 0; j < len; j++) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(v_ + (long)(j0 + j) * kvDim + kvh * d, d), sc[j] * inv, ov, ov);
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
    {
        unsafe
        {
            fixed (float* pdo = dout, pq = q, pk = k, pv = v, pl = lse, pdq = dq, pdk = dk, pdv = dv)
            fixed (int* ps = start)
            {
                float* do_ = pdo, q_ = pq, k_ = pk, v_ = pv, l_ = pl, dq_ = pdq, dk_ = pdk, dv_ = pdv; int* s_ = ps;
                int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
                float scale = 1.0f / MathF.Sqrt(d);
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
                            int j0 = s_[t], len = t - j0 + 1;
                            var qv = new ReadOnlySpan<float>(q_ + (long)t * qDim + h * d, d);
                            var dov = new ReadOnlySpan<float>(do_ + (long)t * qDim + h * d, d);
                            var dqv = new Span<float>(dq_ + (long)t * qDim + h * d, d);
                            dqv.Clear();
                            var p = Scratch(2 * len);
                            float l = l_[t * heads + h];
                            double pdp = 0;
                            for (int j = 0; j < len; j++)
                            {
                                long kr = (long)(j0 + j) * kvDim + kvh * d;
                                float pj = MathF.Exp(TensorPrimitives.Dot(qv, new ReadOnlySpan<float>(k_ + kr, d)) * scale - l);
                                float dpj = TensorPrimitives.Dot(dov, new ReadOnlySpan<float>(v_ + kr, d));
                                p[j] = pj; p[len + j] = dpj;
                                pdp += (double)pj * dpj;
                            }
                            float sPdp = (float)pdp;
                            for (int j = 0; j < len; j++)
                            {
                                long kr = (long)(j0 + j) * kvDim + kvh * d;
                                float ds = p[j] * (p[len + j] - sPdp) * scale;
                                var dvj = new Span<float>(dv_ + kr, d);
                                TensorPrimitives.MultiplyAdd(dov, p[j], dvj, dvj);
                                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(k_ + kr, d), ds, dqv, dqv);
                                var dkj = new Span<float>(dk_ + kr, d);
                                TensorPrimitives.MultiplyAdd(qv, ds, dkj, dkj);
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
        for (int i = 0; i < g.Length; i++) { float x = g[i]; h[i] = x / (1.0f + MathF.Exp(-x)) * u[i]; }
    }

    /// <summary>
    /// Backward of h = g·σ(g)·u: du = dh · g·σ(g);  dg = dh · u · σ(g)·(1 + g·(1 − σ(g))). Written, not accumulated.
    /// </summary>
    public static void SwiGluBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> dg, Span<float> du)
    {
        for (int i = 0; i < g.Length; i++)
        {
            float x = g[i], s = 1.0f / (1.0f + MathF.Exp(-x));
            du[i] = dh[i] * x * s;
            dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
        }
    }

    // ---------------------------------------------------------------- frozen base linear: Y = X·Wᵀ (+ b)

    /// <summary>
    /// Y = X·Wᵀ + b. X: (n, in), Y: (n, out); W: (out, in) in its stored type. Threads take row ranges; each decodes
    /// 8 rows at a time into a tile and multiplies it with every token (4 dot products per pass over x[t] on the SIMD path).
    /// </summary>
    public static void LinearForward(WeightMatrix w, float[]? bias, ReadOnlySpan<float> x, Span<float> y, int n, int threads, bool simd = true)
    {
        int rows = w.Rows, cols = w.Cols;
        if (x.Length < n * cols || y.Length < n * rows) throw new ArgumentException("linear buffers too small");
        const int Block = 8;
        int blocks = (rows + Block - 1) / Block;
        int parts = Math.Max(1, Math.Min(threads, blocks));
        unsafe
        {
            fixed (float* px = x, py = y)
            {
                float* x_ = px, y_ = py;
                void Body(int p)
                {
                    int b0 = (int)((long)blocks * p / parts), b1 = (int)((long)blocks * (p + 1) / parts);
                    var tile = new float[Block * cols];
                    fixed (float* tp = tile)
                        for (int b = b0; b < b1; b++)
                        {
                            int r0 = b * Block, rb = Math.Min(Block, rows - r0);
                            for (int r = 0; r < rb; r++) w.DecodeRow(r0 + r, tile.AsSpan(r * cols, cols));
                            for (int t = 0; t < n; t++)
                            {
                                float* xt = x_ + (long)t * cols, yt = y_ + (long)t * rows + r0;
                                int r = 0;
                                if (simd && SimdSupported && cols % 8 == 0)
                                    for (; r + 4 <= rb; r += 4) Dot4Simd(tp + r * cols, cols, xt, yt + r);
                                for (; r < rb; r++) yt[r] = DotScalar(tp + r * cols, xt, cols);
                            }
                        }
                }
                For(parts, threads, Body);
            }
        }
        if (bias is not null)
            for (int t = 0; t < n; t++) TensorPrimitives.Add(y.Slice(t * rows, rows), bias, y.Slice(t * rows, rows));
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
    /// Backward of Y = X·Wᵀ with W frozen: dX += dY·W, i.e. dX[t] += Σ_o dY[t,o]·W[o]. Each row W[o] is decoded once
    /// (any stored type, never the whole W in F32); threads take row ranges and sum private (n, in) accumulators.
    /// </summary>
    public static void LinearBackwardInput(WeightMatrix w, ReadOnlySpan<float> dy, Span<float> dx, int n, int threads, bool simd = true)
    {
        int rows = w.Rows, cols = w.Cols;
        // Tokens are split across threads; each thread walks W in blocks of rows decoded into a private tile
        // (block, cols), so the dx row it accumulates stays in L1 and the tile in L2. With n ≥ a few dozen the
        // repeated decoding per thread is small next to the n·rows·cols multiply-adds.
        const int Block = 32;
        int parts = Math.Max(1, Math.Min(threads, n));
        unsafe
        {
            fixed (float* pdy = dy, pdx = dx)
            {
                float* dy_ = pdy, dx_ = pdx;
                void Body(int p)
                {
                    int t0 = (int)((long)n * p / parts), t1 = (int)((long)n * (p + 1) / parts);
                    var tile = new float[Block * cols];
                    fixed (float* tp = tile)
                        for (int r0 = 0; r0 < rows; r0 += Block)
                        {
                            int rb = Math.Min(Block, rows - r0);
                            for (int r = 0; r < rb; r++) w.DecodeRow(r0 + r, tile.AsSpan(r * cols, cols));
                            for (int t = t0; t < t1; t++)
                            {
                                float* dxt = dx_ + (long)t * cols;
                                float* g = dy_ + (long)t * rows + r0;
                                int r = 0;
                                if (simd && SimdSupported && cols % 8 == 0)
                                    for (; r + 4 <= rb; r += 4) Axpy4Simd(tp + r * cols, cols, g + r, dxt);
                                for (; r < rb; r++) AxpyScalar(tp + r * cols, g[r], dxt, cols);
                            }
                        }
                }
                For(parts, threads, Body);
            }
        }
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
            float max = TensorPrimitives.Max(row);
            double sum = 0;
            for (int i = 0; i < vocab; i++) sum += Math.Exp(row[i] - max);
            double lse = max + Math.Log(sum);
            loss += (lse - row[targets[t]]) * norm;
            for (int i = 0; i < vocab; i++) row[i] = (float)(Math.Exp(row[i] - lse) * norm);
            row[targets[t]] -= norm;
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
    private static float[] Scratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 4096)];
}
