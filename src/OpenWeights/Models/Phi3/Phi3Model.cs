using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Phi3;

/// <summary>
/// The Phi-3 decoder (Phi-3 / 3.5 mini, Phi-4, Phi-4-mini; GGUF architecture <c>phi3</c>), reading like
/// transformers' modeling_phi3.py: for each layer { x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)) }, ffn = down(silu(gate)·up).
/// It is the Llama block, differing in:
/// - fused projections: qkv_proj (Q | K | V rows) and gate_up_proj (gate rows, then up rows), split into row views at
///   load (<see cref="DecoderLayer"/>); a file may also hold separate attn_q/k/v (llama.cpp loads either);
/// - partial rotary (Phi-4-mini: partial_rotary_factor 0.75, so rope.dimension_count 96 of a 128-wide head), NEOX pairing
///   within the rotated dimensions, the rest of the head passed through;
/// - LongRoPE ("su" / "longrope"): two tables of per-frequency divisors, rope_factors_short.weight and
///   rope_factors_long.weight (n_rot/2 each). llama.cpp (llama_model::get_rope_factors) takes the long table when the
///   context size exceeds <c>phi3.rope.scaling.original_context_length</c> (default: the training context), else the short
///   one, for the whole context; and multiplies cos and sin by <c>phi3.rope.scaling.attn_factor</c> whatever the table
///   (llama_context: yarn_attn_factor *= rope_attn_factor; the converter writes sqrt(1 + ln(s)/ln(original)) with
///   s = max_position_embeddings / original_max_position_embeddings).
/// Sliding window: some configs name one (Phi-3.5-mini, Phi-4-mini: 262144; Phi-3-mini-4k: 2047) and the converter
/// writes it as <c>phi3.attention.sliding_window</c>, but llama.cpp disables SWA for phi3 ("Phi SWA is currently
/// disabled"), so every layer attends to the whole context here too.
/// </summary>
public class Phi3Model : DecoderModel
{
    private readonly Rope[] shortRope, longRope;   // one table each: every layer uses the same rotary embedding
    private readonly int originalContext;

    public Phi3Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // differs from Llama: LongRoPE tables (optional, as in llama.cpp) and the magnitude factor on cos/sin
        int half = c.RopeDims / 2;
        float[]? Factors(string name) => source.TryGetTensor(name, out _) ? TensorLoader.Vector(source, name, half) : null;
        float[]? shortFactors = Factors(RopeFactorsShort), longFactors = Factors(RopeFactorsLong);
        double orig = Number("rope.scaling.original_context_length") ?? c.ContextLength;
        if (!(orig > 0) || orig > int.MaxValue)
            throw new InvalidModelFileException($"{Path.GetFileName(source.Path)}: metadata phi3.rope.scaling.original_context_length {orig} is out of range");
        originalContext = (int)orig;
        // the magnitude factor (rope.scaling.attn_factor) is in the config's rotary settings, as for every family
        shortRope = [c.CreateRope(shortFactors)];
        longRope = [c.CreateRope(longFactors)];
    }

    /// <summary>The context size up to which the short LongRoPE table applies (<c>phi3.rope.scaling.original_context_length</c>).</summary>
    public int OriginalContext => originalContext;

    /// <summary>LongRoPE: the long factors when the context exceeds the original training context, else the short ones.</summary>
    public override IReadOnlyList<Rope> Ropes(int context) => context > originalContext ? longRope : shortRope;

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        var a = AttentionOf(l);
        // h = x + attention(rmsnorm(x)); q, k, v are row views of the fused qkv_proj
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, RopeOf(a, s.Context));
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + ffn(rmsnorm(h)), ffn = down(silu(gate) * up), gate and up row views of the fused gate_up_proj
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
