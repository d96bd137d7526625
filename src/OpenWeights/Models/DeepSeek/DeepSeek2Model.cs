using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.DeepSeek;

/// <summary>
/// DeepSeek V2 / V2-Lite / V3 / R1 and Kimi K2 (GGUF deepseek2), reading like DeepSeek's modeling_deepseek.py:
/// for each layer { x += mla(rmsnorm(x)); x += ffn(rmsnorm(x)) } with
/// <list type="bullet">
/// <item>multi-head latent attention (<see cref="LatentAttention"/>): the cache holds per token only the normed latent
/// (kv_lora_rank) and one rotary key (rope.dimension_count, NORM pairing); decode absorbs the up-projections into the
/// query and the output, a prefill of at least <see cref="ExpandedPrefillMinTokens"/> tokens decompresses keys and values;</item>
/// <item>the attention scale 1/√(key_length_mla) · mscale², mscale = attn_factor · (1 + 0.1 · mscale_all_dim · ln s) under YaRN
/// of factor s (rope.scaling.yarn_log_multiplier = 0.1 · mscale_all_dim), the rotary cos/sin left unscaled (llama.cpp's
/// deepseek2 graph and its context's yarn_attn_factor: the two cancel ggml's built-in YaRN magnitude);</item>
/// <item>the first leading_dense_block_count layers a dense SwiGLU, the others a mixture of experts (the layer's
/// <see cref="ExpertLayer"/>: softmax (V2) or sigmoid (V3) gating, exp_probs_b for the selection only, group-limited
/// selection, weights normalised when expert_weights_norm, × expert_weights_scale) plus shared experts on every token.</item>
/// </list>
/// Keys (llama.cpp's llama_model_deepseek2): attention.layer_norm_rms_epsilon, attention.kv_lora_rank,
/// expert_feed_forward_length and expert_shared_count are required; attention.q_lora_rank (0: attn_q), key_length_mla /
/// value_length_mla (the split attn_k_b / attn_v_b), leading_dense_block_count, expert_gating_func (default softmax),
/// expert_weights_norm, expert_weights_scale, expert_group_count / _used_count and rope.scaling.yarn_log_multiplier are read.
/// </summary>
public sealed class DeepSeek2Model : DecoderModel
{
    private readonly Rope rope;
    private readonly Rope[] ropes;

    /// <summary>The scale on q·k: mscale² / √(key_length_mla).</summary>
    public float AttentionScale { get; }

    /// <summary>A forward pass of at least this many tokens runs the expanded form (keys and values decompressed once per head);
    /// fewer (decode) run the absorbed form. int.MaxValue: always absorbed; 1: always expanded.</summary>
    public int ExpandedPrefillMinTokens { get; set; } = 32;

    public DeepSeek2Model(ITensorSource source, ModelConfig c) : base(Checked(source, c), c)
    {
        var m = c.Mla!;
        // llama.cpp: the context's yarn_attn_factor = attn_factor / (1 + 0.1·ln s) when yarn_log_multiplier is set (else
        // attn_factor), which ggml's YaRN rope multiplies by (1 + 0.1·ln s); the graph recovers attn_factor_org from it.
        float a = (float)(Number("rope.scaling.attn_factor") ?? 1.0);
        bool yarn = c.RopeYarn is { ExtFactor: not 0f };
        float lnS = MathF.Log(1f / c.RopeFreqScale), ggmlYarn = 1f + 0.1f * lnS;
        float contextFactor = yarn ? (m.YarnLogMultiplier != 0 ? a / ggmlYarn : a) : a;
        float ropeMagnitude = yarn ? contextFactor * ggmlYarn : contextFactor;
        float attnFactorOrg = contextFactor * ggmlYarn;
        float mscale = attnFactorOrg * (1f + 0.1f * m.YarnLogMultiplier * lnS);
        AttentionScale = mscale * mscale / MathF.Sqrt(m.KeyLength);
        rope = (c with { RopeMscale = ropeMagnitude }).CreateRope();
        ropes = [rope];
    }

    /// <summary>The keys llama.cpp requires of a deepseek2 file, checked before the layers load.</summary>
    private static ITensorSource Checked(ITensorSource source, ModelConfig c)
    {
        string file = Path.GetFileName(source.Path), a = c.Architecture.Name;
        foreach (var key in (string[])["attention.layer_norm_rms_epsilon", "expert_feed_forward_length", "expert_shared_count"])
            if (source.GetNumber($"{a}.{key}") is null) throw new InvalidModelFileException($"{file}: metadata {a}.{key} is missing (required by {a} models)");
        // Mistral-Large-3's attention temperature (llama.cpp reads it for deepseek2 files) is not run here: refused, not ignored
        if (source.GetNumber($"{a}.attention.temperature_scale") is { } ts && ts != 0)
            throw new InvalidModelFileException($"{file}: metadata {a}.attention.temperature_scale = {ts}: attention temperature tuning in a {a} model is not supported");
        if (c.KvHeads != 1) throw new InvalidModelFileException($"{file}: metadata {a}.attention.head_count_kv = {c.KvHeads}: latent attention is converted as one KV head (expected 1)");
        return source;
    }

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        // h = x + mla(rmsnorm(x)): differs from Llama: latent attention, its cache [c, kpe]
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        L.Mla!.Forward(L.Wo, l, s, c, n, threads, rope, AttentionScale, expanded: n >= ExpandedPrefillMinTokens);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + ffn(rmsnorm(h)): dense SwiGLU in the leading layers, else routed experts + shared experts (ExpertLayer)
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
