using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.Common;

/// <summary>The feed-forward non-linearity between gate and up: SwiGLU (Llama), GeGLU with tanh-GELU (Gemma), or
/// gpt-oss's clamped SwiGLU, min(g, 7)·σ(1.702·min(g, 7))·(clamp(u, ±7) + 1) (llama.cpp's swiglu_oai).</summary>
public enum Activation { SiLU, GeluTanh, SwiGluOai }

/// <summary>
/// How one layer attends: which rotary table of the run state rotates its queries and keys (-1: none, a NoPE layer such
/// as SmolLM3's every fourth), and how it scores (query scale, sliding window or chunk, soft-cap).
/// </summary>
public readonly record struct LayerAttention(int Rope, AttentionParams Params)
{
    /// <summary>Queries and keys RMS-normalised per head without a weight, after the rotary embedding (Llama 4's
    /// L2 norm on its RoPE layers; epsilon: the model's RMS epsilon).</summary>
    public bool QkNormAfterRope { get; init; }

    /// <summary>Attention temperature tuning (Llama 4's NoPE layers): queries scaled by a factor growing with the
    /// position; null = none.</summary>
    public QueryTemperature? Temperature { get; init; }
}

/// <summary>
/// Llama 4's attention temperature tuning: the query of the token at position pos is multiplied by
/// log(floor((pos + Offset) / FloorScale) + 1) · Scale + 1 (transformers' attn_scale / floor_scale; llama.cpp's
/// f_attn_temp_scale, n_attn_temp_floor_scale, f_attn_temp_offset). 1 for every position below FloorScale - Offset.
/// </summary>
public readonly record struct QueryTemperature(int FloorScale, float Scale, float Offset = 1f)
{
    /// <summary>The factor for position pos, in llama.cpp's arithmetic (the floor in float, the log in double).</summary>
    public float Factor(int pos) => (float)(Math.Log(MathF.Floor((pos + Offset) / FloorScale) + 1.0) * Scale + 1.0);
}

/// <summary>
/// The shared pieces every family's block is built from, over the run state of a batch of n tokens. Each reads and
/// writes the state's buffers: the residual stream X (n, dim) and the scratch Xb (n, dim) that carries a sub-block's
/// input (normed) and output. A family's Block method reads like its reference modeling_*.py by calling these in order.
/// </summary>
public static class Blocks
{
    /// <summary>y[t] = rmsnorm(x[t]) · w for each of n rows of w.Length. y may be x.</summary>
    public static void RmsNorm(float[] x, float[] w, float[] y, int n, float eps)
    {
        int d = w.Length;
        for (int t = 0; t < n; t++) Ops.RmsNorm(x.AsSpan(t * d, d), w, y.AsSpan(t * d, d), eps);
    }

    /// <summary>y[t] = rmsnorm(x[t]) · w + b for each of n rows (ggml's build_norm: rms_norm, mul, add); b null: no bias.
    /// Phi-3.5-MoE's norms carry a bias (its Hugging Face model uses LayerNorm; llama.cpp runs RMS norm plus the bias).</summary>
    public static void RmsNorm(float[] x, float[] w, float[]? b, float[] y, int n, float eps)
    {
        RmsNorm(x, w, y, n, eps);
        if (b is not null) AddRows(y, b, n);
    }

    /// <summary>y[t] += b for each of n rows of b.Length.</summary>
    public static void AddRows(float[] y, float[] b, int n)
    {
        int d = b.Length;
        for (int t = 0; t < n; t++) TensorPrimitives.Add(y.AsSpan(t * d, d), b, y.AsSpan(t * d, d));
    }

    /// <summary>x += y over n rows of dim (the residual connection).</summary>
    public static void AddResidual(float[] x, float[] y, int n, int dim) =>
        TensorPrimitives.Add(x.AsSpan(0, n * dim), y.AsSpan(0, n * dim), x.AsSpan(0, n * dim));

    /// <summary>
    /// Self-attention of layer <paramref name="layer"/> on the normed input in s.Xb; its output (after Wo) is left in s.Xb.
    /// q, k, v = Wq·x, Wk·x, Wv·x (+ biases) -> QK-norm when the layer has one -> rotary -> unweighted QK-norm and query
    /// temperature when <paramref name="a"/> asks for them (Llama 4) -> append k, v to each token's cache -> attention over
    /// the cache (a.Params: scale, window or chunk, soft-cap) -> Wo.
    /// </summary>
    public static void SelfAttention(DecoderLayer L, int layer, RunState s, ModelConfig c, int n, int threads, LayerAttention a, Rope? rope)
    {
        // q: (n, heads*head_dim), k, v: (n, kv_heads*head_dim), one dispatch
        Linear.ForwardMany(s.Xb, n, threads, [(L.Wq, s.Q), (L.Wk, s.K), (L.Wv, s.V)]);
        if (L.QNorm is { } qn) QkNorm(s.Q, qn, n, c.QDim, c.HeadDim, c.RmsEps);
        if (L.KNorm is { } kn) QkNorm(s.K, kn, n, c.KvDim, c.HeadDim, c.RmsEps);
        int half = c.RopeDims / 2;
        for (int t = 0; t < n; t++)
        {
            if (a.Rope >= 0)
            {
                var cos = s.Cos[a.Rope].AsSpan(t * half, half); var sin = s.Sin[a.Rope].AsSpan(t * half, half);
                rope!.Apply(s.Q.AsSpan(t * c.QDim, c.QDim), c.Heads, c.HeadDim, cos, sin);
                rope.Apply(s.K.AsSpan(t * c.KvDim, c.KvDim), c.KvHeads, c.HeadDim, cos, sin);
            }
            if (a.QkNormAfterRope)
            {
                UnitRmsNorm(s.Q.AsSpan(t * c.QDim, c.QDim), c.HeadDim, c.RmsEps);
                UnitRmsNorm(s.K.AsSpan(t * c.KvDim, c.KvDim), c.HeadDim, c.RmsEps);
            }
            if (a.Temperature is { } temp)
            {
                float f = temp.Factor(s.TokenPos[t]);
                if (f != 1f) TensorPrimitives.Multiply(s.Q.AsSpan(t * c.QDim, c.QDim), f, s.Q.AsSpan(t * c.QDim, c.QDim));
            }
            s.TokenCache[t]!.StoreK(layer, s.TokenPos[t], s.K.AsSpan(t * c.KvDim, c.KvDim)); // converted to the cache's types
            s.TokenCache[t]!.StoreV(layer, s.TokenPos[t], s.V.AsSpan(t * c.KvDim, c.KvDim));
        }
        Attention.Causal(s.Q, s.TokenCache, s.TokenPos, layer, s.Att, n, c.Heads, c.KvHeads, c.HeadDim, threads, a.Params);
        L.Wo.Forward(s.Att, s.Xb, n, threads);  // (n, dim)
    }

    /// <summary>
    /// RMS-normalises queries or keys in place. w of head_dim: each head on its own (Qwen3, Gemma 3); w of the whole
    /// projection's width: the whole row at once (OLMo 2). x: (n, width).
    /// </summary>
    public static void QkNorm(float[] x, float[] w, int n, int width, int headDim, float eps)
    {
        int d = w.Length;
        if (d != headDim && d != width) throw new InvalidModelFileException($"QK-norm weight of {d} elements fits neither the head ({headDim}) nor the projection ({width})");
        for (int i = 0; i < n * width; i += d) Ops.RmsNorm(x.AsSpan(i, d), w, x.AsSpan(i, d), eps);
    }

    /// <summary>x / sqrt(mean(x²) + eps) over each head of headDim in place, no weight (Llama 4's L2 norm: llama.cpp's
    /// ggml_rms_norm, transformers' Llama4TextL2Norm). x: (heads*headDim).</summary>
    public static void UnitRmsNorm(Span<float> x, int headDim, float eps)
    {
        for (int i = 0; i < x.Length; i += headDim)
        {
            // ggml_rms_norm's arithmetic, as Ops.RmsNorm: float squares summed in double, the scale in float
            var h = x.Slice(i, headDim);
            double sum = 0;
            for (int j = 0; j < h.Length; j++) sum += (double)(h[j] * h[j]);
            float mean = (float)(sum / headDim);
            TensorPrimitives.Multiply(h, 1.0f / MathF.Sqrt(mean + eps), h);
        }
    }

    /// <summary>
    /// The gated feed-forward on the normed input in s.Xb; its output is left in s.Xb:
    /// down(act(gate(x)) · up(x)), act = SiLU (SwiGLU) or tanh-GELU (GeGLU). In a mixture-of-experts layer
    /// (<see cref="DecoderLayer.Experts"/>) the router's k experts run instead, each such a feed-forward (<see cref="ExpertLayer.Forward"/>).
    /// </summary>
    public static void FeedForward(DecoderLayer L, RunState s, ModelConfig c, int n, int threads, Activation act)
    {
        if (L.Experts is { } moe) { moe.Forward(s, n, threads, act); return; }
        Linear.ForwardMany(s.Xb, n, threads, [(L.WGate!, s.Hb), (L.WUp!, s.Hb2)]);  // gate, up: (n, ffn), one dispatch
        var g = s.Hb.AsSpan(0, n * c.FfnDim); var u = s.Hb2.AsSpan(0, n * c.FfnDim);
        Activate(act, g, u, threads);
        L.WDown!.Forward(s.Hb, s.Xb, n, threads);  // (n, dim)
    }

    /// <summary>gate = act(gate, up) in place: SwiGLU, GeGLU or the clamped SwiGLU. gate, up: (n·ffn).</summary>
    public static void Activate(Activation act, Span<float> gate, ReadOnlySpan<float> up, int threads)
    {
        switch (act)
        {
            case Activation.SiLU: Ops.SwiGlu(gate, up, threads); break;
            case Activation.GeluTanh: Ops.GeGlu(gate, up); break;
            default: Ops.SwiGluOai(gate, up); break;
        }
    }
}
