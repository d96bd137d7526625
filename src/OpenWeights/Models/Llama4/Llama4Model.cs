using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.Llama4;

/// <summary>
/// Llama 4, text part (Llama-4-Scout-17B-16E, Llama-4-Maverick-17B-128E), reading like transformers' modeling_llama4.py:
/// for each layer { x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)) } with "iRoPE" attention and interleaved experts:
/// <list type="bullet">
/// <item>every 4th layer (3, 7, 11, ...) has no rotary embedding (NoPE) and attends to every past key, its queries scaled by
/// the attention temperature log(floor((pos + 1) / 8192) + 1) · 0.1 + 1;</item>
/// <item>the other layers rotate (NORM pairing, llama3 frequency factors from rope_freqs when present), RMS-normalise
/// queries and keys per head without a weight after the rotation (Scout; not Maverick's 128 experts), and attend within
/// chunks of 8192 positions;</item>
/// <item>the feed-forward is dense (SwiGLU, feed_forward_length) or, every interleave_moe_layer_step-th layer, a mixture
/// of experts: sigmoid top-1 routing on the raw router logits, the routed expert's input multiplied by its weight (not its
/// output), plus a shared expert on the unweighted input.</item>
/// </list>
/// As llama.cpp (llama_model_llama4), the chunk (8192), the temperature's floor scale (8192), scale (0.1) and offset (1)
/// and the NoPE step (4) are fixed, not read from the file; attention.sliding_window_pattern (default 4: 3 chunked, 1
/// global) and rope.freq_base_swa may be given. A file with attention.sliding_window = 0 (llama.cpp: no chunks, rotary
/// on every layer, for MobileLLM) is refused. Keys: attention.layer_norm_rms_epsilon, expert_feed_forward_length and
/// interleave_moe_layer_step are required.
/// </summary>
public class Llama4Model : DecoderModel
{
    /// <summary>llama.cpp's hard-coded attention chunk of the RoPE layers (HF attention_chunk_size).</summary>
    public const int AttentionChunk = 8192;
    /// <summary>Every this many layers, the last one has no rotary embedding (llama.cpp's n_no_rope_layer_step).</summary>
    public const int NoRopeLayerStep = 4;
    /// <summary>The attention temperature of NoPE layers (HF floor_scale 8192, attn_scale 0.1).</summary>
    public static readonly QueryTemperature Temperature = new(FloorScale: 8192, Scale: 0.1f, Offset: 1f);

    private readonly LayerAttention[] attention;  // (layers)
    private readonly Rope[] ropes;                // [non-chunked layers, chunked layers]

    public Llama4Model(ITensorSource source, ModelConfig c) : base(Checked(source, c), c)
    {
        // llama.cpp: use_kq_norm = type != 17B_128E, i.e. every Llama 4 but Maverick's 128 experts
        bool qkNorm = c.ExpertCount != 128;
        // differs from Llama: chunked layers rotate with rope.freq_base_swa when the file gives one (else the same base)
        double? swaBase = Number("rope.freq_base_swa");
        ropes = [Rope, swaBase is { } b && (float)b != c.RopeBase ? SwaRope(source, c, (float)b) : Rope];
        bool[] chunked = Gemma.Gemma2Model.SlidingLayers(source, c, defaultPeriod: 4);
        var scoring = AttentionParams.Default(c.HeadDim);
        attention = new LayerAttention[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            bool rope = UsesRope(l);
            attention[l] = new LayerAttention(rope ? (chunked[l] ? 1 : 0) : -1, scoring with { Chunk = chunked[l] ? AttentionChunk : 0 })
            {
                QkNormAfterRope = rope && qkNorm,
                Temperature = rope ? null : Temperature,
            };
        }
    }

    /// <summary>The keys llama.cpp requires of a llama4 file, checked before the layers load (whose tensors depend on
    /// them: without interleave_moe_layer_step every layer would look for experts).</summary>
    private static ITensorSource Checked(ITensorSource source, ModelConfig c)
    {
        string file = Path.GetFileName(source.Path), a = c.Architecture.Name;
        foreach (var key in (string[])["attention.layer_norm_rms_epsilon", "expert_feed_forward_length", "interleave_moe_layer_step"])
            if (source.GetNumber($"{a}.{key}") is null) throw new InvalidModelFileException($"{file}: metadata {a}.{key} is missing (required by {a} models)");
        if (c.ExpertCount == 0) throw new InvalidModelFileException($"{file}: metadata {a}.expert_count is missing or 0 ({a} models have experts)");
        if (source.GetNumber($"{a}.attention.sliding_window") is 0.0)
            throw new InvalidModelFileException($"{file}: metadata {a}.attention.sliding_window = 0 (Llama 4 without chunked attention, as MobileLLM) is not supported");
        return source;
    }

    private static Rope SwaRope(ITensorSource source, ModelConfig c, float freqBase)
    {
        float[]? factors = source.TryGetTensor(Architectures.Names.RopeFreqs, out _) ? TensorLoader.Vector(source, Architectures.Names.RopeFreqs, c.RopeDims / 2) : null;
        return (c with { RopeBase = freqBase }).CreateRope(factors);
    }

    /// <summary>Whether layer <paramref name="layer"/> rotates queries and keys (HF: no_rope_layers[layer] == 1).</summary>
    public static bool UsesRope(int layer) => (layer + 1) % NoRopeLayerStep != 0;

    /// <summary>Whether layer <paramref name="layer"/>'s feed-forward is the mixture of experts (llama.cpp:
    /// (il + 1) % n_moe_layer_step == 0; Scout: step 1, every layer; Maverick: step 2, layers 1, 3, 5, ...); the loader
    /// reads it from <see cref="ModelConfig.IsMoeLayer(int)"/>, the same rule.</summary>
    public static bool IsMoeLayer(int layer, int step) => ModelConfig.IsMoeLayer(1, step, layer);

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;
    public override LayerAttention AttentionOf(int layer) => attention[layer];

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        // h = x + attention(rmsnorm(x)); differs from Llama: NoPE / chunks / L2 QK-norm / temperature, from AttentionOf
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        var a = AttentionOf(l);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, RopeOf(a, s.Context));
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + ffn(rmsnorm(h)): dense SwiGLU, or (differs from Llama) in MoE layers moe(x) + shared_expert(x) with
        // moe(x) = expert_e(sigmoid(r_e) · x), e = argmax of the router logits r (the layer's ExpertLayer and routing)
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
