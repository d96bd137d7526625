using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.Gemma;

/// <summary>
/// Gemma 2 (gemma-2-2b/9b/27b), reading like Hugging Face's modeling_gemma2.py:
/// x = embed(tokens)·√dim; for each layer { x += post_attn_norm(attn(attn_norm(x))); x += post_ffw_norm(ffn(ffn_norm(x))) };
/// logits = 30·tanh(output(norm(x)) / 30). Attention alternates a sliding window (even layers, 4096 keys) with global
/// attention (odd layers); its scores are soft-capped, 50·tanh(s/50). ffn = down(gelu_tanh(gate(x)) · up(x)).
/// The GGUF norms hold 1 + w (the converter folds Gemma's (1 + w) scaling into the stored weight), so they are plain RMS
/// norms here. Keys (llama.cpp's llama_model_gemma2): attention.sliding_window (default 4096),
/// attention.sliding_window_pattern (period, default 2), attn_logit_softcapping (default 50), final_logit_softcapping
/// (default 30), rope.freq_base_swa (default: rope.freq_base); attention.layer_norm_rms_epsilon is required.
/// </summary>
public sealed class Gemma2Model : DecoderModel
{
    private readonly LayerAttention[] attention;  // (layers) rope table, query scale, window, soft-cap of each layer
    private readonly Rope[] ropes;                // [global layers, sliding-window layers]
    private readonly float finalSoftcap;

    public Gemma2Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        RequireNumber("attention.layer_norm_rms_epsilon");
        int window = (int)(Number("attention.sliding_window") ?? 4096);
        float attnSoftcap = (float)(Number("attn_logit_softcapping") ?? 50.0);
        finalSoftcap = (float)(Number("final_logit_softcapping") ?? 30.0);
        // differs from Llama: sliding-window layers may rotate with their own base (same scale as the global layers)
        var local = Number("rope.freq_base_swa") is { } swaBase ? new Rope(c.RopeDims, c.RopeStyle, (float)swaBase, c.RopeFreqScale) : Rope;
        ropes = [Rope, local];
        bool[] sliding = SlidingLayers(source, c, defaultPeriod: 2);
        float scale = QueryScale(c, layers27B: 46);
        attention = new LayerAttention[c.Layers];
        for (int l = 0; l < c.Layers; l++)
            attention[l] = new LayerAttention(sliding[l] ? 1 : 0, new AttentionParams(scale, sliding[l] ? window : 0, attnSoftcap));
    }

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;
    public override LayerAttention AttentionOf(int layer) => attention[layer];
    // differs from Llama: GeGLU (tanh-approximated GELU) instead of SwiGLU
    public override Activation FeedForwardActivation => Activation.GeluTanh;
    // differs from Llama: the embeddings are scaled by √dim (llama.cpp: sqrtf(n_embd) in float)
    public override float EmbeddingScale => MathF.Sqrt(Config.Dim);
    // differs from Llama: final logits soft-capped, cap·tanh(logits/cap)
    public override float FinalLogitSoftcap => finalSoftcap;

    protected override void Block(int l, RunState s, int n, int threads) => SandwichBlock(this, l, s, n, threads, ropes);

    /// <summary>
    /// The Gemma block (Gemma 2 and 3): norms before and after both sub-blocks. Gemma 3's QK-norm is applied inside
    /// <see cref="Blocks.SelfAttention"/> (its layers have QNorm / KNorm); the layer's window, scale and soft-cap are its
    /// <see cref="DecoderModel.AttentionOf"/>.
    /// </summary>
    internal static void SandwichBlock(DecoderModel m, int l, RunState s, int n, int threads, Rope[] ropes)
    {
        var c = m.Config; var L = m.Layers[l]; var a = m.AttentionOf(l);
        // h = x + post_attention_norm(attention(attn_norm(x)))
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, ropes[a.Rope]);
        Blocks.RmsNorm(s.Xb, L.AttnPostNorm!, s.Xb, n, c.RmsEps);   // differs from Llama: norm after attention too
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + post_ffw_norm(ffn(ffn_norm(h))), ffn = down(gelu_tanh(gate(x)) * up(x))
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, m.FeedForwardActivation);
        Blocks.RmsNorm(s.Xb, L.FfnPostNorm!, s.Xb, n, c.RmsEps);   // differs from Llama: norm after the feed-forward too
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }

    /// <summary>
    /// Which layers attend through the sliding window: <c>attention.sliding_window_pattern</c> as one bool per layer, or
    /// as a period p (layer l slides unless l % p == p - 1; 0: every layer slides), default <paramref name="defaultPeriod"/>
    /// (Gemma 2: 2, so even layers slide and odd layers are global; Gemma 3: 6, five sliding then one global).
    /// </summary>
    internal static bool[] SlidingLayers(ITensorSource source, ModelConfig c, int defaultPeriod)
    {
        string key = $"{c.Architecture.Name}.attention.sliding_window_pattern";
        var file = Path.GetFileName(source.Path);
        if (source.Metadata.TryGetValue(key, out var v) && v is Array arr)
        {
            var flags = source.GetArray<bool>(key)!;
            if (flags.Length < c.Layers) throw new InvalidModelFileException($"{file}: metadata {key} holds {arr.Length} entries for {c.Layers} layers");
            return flags[..c.Layers];
        }
        long period = source.GetInteger(key) ?? defaultPeriod;
        if (period < 0) throw new InvalidModelFileException($"{file}: metadata {key} = {period} must be >= 0");
        return Enumerable.Range(0, c.Layers).Select(l => period == 0 || l % period < period - 1).ToArray();
    }

    /// <summary>
    /// The query scale, as llama.cpp sets it (after gemma_pytorch's config): 1/√(dim/heads) for the 27B models (told by
    /// their layer count, <paramref name="layers27B"/>), 1/√head_dim otherwise. This is Hugging Face's
    /// query_pre_attn_scalar^-½ for every released size (27B: 4608/32 = 144 and 5376/32 = 168; the others 256).
    /// </summary>
    internal static float QueryScale(ModelConfig c, int layers27B) =>
        c.Layers == layers27B ? 1f / MathF.Sqrt(c.Dim / c.Heads) : 1f / MathF.Sqrt(c.HeadDim);
}
