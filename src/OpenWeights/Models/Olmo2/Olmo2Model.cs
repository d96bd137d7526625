using OpenWeights.Formats;
using OpenWeights.Models.Common;

namespace OpenWeights.Models.Olmo2;

/// <summary>
/// The OLMo 2 decoder (OLMo-2 1B / 7B / 13B / 32B), reading like transformers' modeling_olmo2.py:
/// for each layer { x += post_attention_norm(attn(x)); x += post_ffw_norm(mlp(x)) }: the sub-blocks read the residual
/// stream itself (no pre-norms) and their outputs are normalised before the residual add. Queries and keys are
/// RMS-normalised over the whole projection (q_norm of heads*head_dim, k_norm of kv_heads*head_dim) before the rotary
/// embedding (NEOX pairing). The output head is never tied to the token embedding.
/// </summary>
public sealed class Olmo2Model : DecoderModel
{
    public Olmo2Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp requires both of these in an olmo2 file: the norm epsilon and the output head (no tied fallback)
        RequireNumber("attention.layer_norm_rms_epsilon");
        if (!source.TryGetTensor(Architectures.Names.Output, out _))
            throw new InvalidModelFileException($"{Path.GetFileName(source.Path)}: tensor {Architectures.Names.Output} is missing (olmo2 models have their own output head)");
        // OLMo 3's sliding-window layers (llama.cpp reads them from an olmo2-style file with this key) are not run here
        if (Number("attention.sliding_window") is > 0)
            throw new OpenWeightsException($"{Path.GetFileName(source.Path)}: metadata olmo2.attention.sliding_window is set (OLMo 3 sliding-window attention is not supported yet)");
    }

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        int rows = n * c.Dim;
        // differs from Llama: no input_layernorm, attention reads the residual stream x itself
        s.X.AsSpan(0, rows).CopyTo(s.Xb);
        // differs from Llama: q = q_norm(q_proj(x)), k = k_norm(k_proj(x)) over the whole projection, then rotary
        // (Blocks.SelfAttention applies QNorm/KNorm; their length heads*head_dim / kv_heads*head_dim selects the whole row)
        Blocks.SelfAttention(L, l, s, c, n, threads, AttentionOf(l), Rope);
        // differs from Llama: x = x + post_attention_layernorm(attention)
        Blocks.RmsNorm(s.Xb, L.AttnPostNorm!, s.Xb, n, c.RmsEps);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // differs from Llama: x = x + post_feedforward_layernorm(mlp(x)), mlp = down(silu(gate(x)) * up(x)) on x itself
        s.X.AsSpan(0, rows).CopyTo(s.Xb);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.RmsNorm(s.Xb, L.FfnPostNorm!, s.Xb, n, c.RmsEps);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
