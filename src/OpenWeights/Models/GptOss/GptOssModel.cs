using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Models.Gemma;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.GptOss;

/// <summary>
/// gpt-oss (gpt-oss-20b, gpt-oss-120b), reading like transformers' modeling_gpt_oss.py:
/// for each layer { x += attn(rmsnorm(x)); x += moe(rmsnorm(x)) } with
/// <list type="bullet">
/// <item>attention with biases on Q, K, V and O, a learned sink logit per query head in the softmax denominator
/// (attn_sinks), a 128-token sliding window on even layers and full attention on odd layers, scale 1/√head_dim, rotary
/// pairs (i, i+d/2) with YaRN (factor 32 over 4096 in both published models: the rotary tables, not this block);</item>
/// <item>a mixture of experts: router logits = W·x + b, the top 4 of 32 (120b: 128) logits chosen, their weights the
/// softmax over those 4 (llama.cpp's SOFTMAX_WEIGHT gating), each expert down(swiglu_oai(gate(x) + b_g, up(x) + b_u)) + b_d
/// with swiglu_oai(g, u) = min(g, 7)·σ(1.702·min(g, 7))·(clamp(u, ±7) + 1).</item>
/// </list>
/// Keys (llama.cpp's llama_model_openai_moe): attention.layer_norm_rms_epsilon, expert_feed_forward_length and
/// attention.sliding_window are required; attention.sliding_window_pattern (period, default 2) and rope.freq_base_swa
/// (default: rope.freq_base) are optional. The feed-forward norm is stored as post_attention_norm (llama.cpp's name for
/// Hugging Face's post_attention_layernorm, which is gpt-oss's pre-norm of the experts).
/// </summary>
public sealed class GptOssModel : DecoderModel
{
    private readonly LayerAttention[] attention;  // (layers) rope table, scale, window and sinks of each layer
    private readonly Rope[] ropes;                // [full-attention layers, sliding-window layers]

    public GptOssModel(ITensorSource source, ModelConfig c) : base(source, c)
    {
        RequireNumber("attention.layer_norm_rms_epsilon");
        RequireNumber("expert_feed_forward_length");
        int window = (int)RequireNumber("attention.sliding_window");
        if (window <= 0) throw new InvalidModelFileException($"{Path.GetFileName(source.Path)}: metadata {c.Architecture.Name}.attention.sliding_window = {window} must be > 0");
        // sliding-window layers may rotate with their own base (none of the published files sets one)
        var local = Number("rope.freq_base_swa") is { } swaBase ? (c with { RopeBase = (float)swaBase }).CreateRope() : Rope;
        ropes = [Rope, local];
        bool[] sliding = Gemma2Model.SlidingLayers(source, c, defaultPeriod: 2);
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        attention = new LayerAttention[c.Layers];
        for (int l = 0; l < c.Layers; l++)
            attention[l] = new LayerAttention(sliding[l] ? 1 : 0, new AttentionParams(scale, sliding[l] ? window : 0, Sinks: Layers[l].AttnSinks));
    }

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;
    public override LayerAttention AttentionOf(int layer) => attention[layer];
    // differs from Llama: the clamped SwiGLU of the experts, (up + 1) · gate·σ(1.702·gate)
    public override Activation FeedForwardActivation => Activation.SwiGluOai;

    /// <summary>post_attention_norm is the feed-forward's pre-norm (see Block).</summary>
    public override bool PostAttentionNormIsFfnNorm => true;

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l]; var a = attention[l];
        // h = x + attention(rmsnorm(x)); q, k, v, o with biases; the layer's sinks and window in a.Params
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, ropes[a.Rope]);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + moe(rmsnorm(h)): differs from Llama: experts instead of one feed-forward (the norm's GGUF name is post_attention_norm)
        Blocks.RmsNorm(s.X, L.AttnPostNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SwiGluOai);   // the layer's ExpertLayer (Architectures: Routing)
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
