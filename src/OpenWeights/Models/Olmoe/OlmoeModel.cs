using OpenWeights.Formats;

namespace OpenWeights.Models.Olmoe;

/// <summary>
/// The OLMoE decoder (OLMoE-1B-7B), reading like transformers' modeling_olmoe.py: for each layer
/// { x += attn(rmsnorm(x)); x += moe(rmsnorm(x)) }, with queries and keys RMS-normalised over the whole projection
/// (q_norm of heads*head_dim, k_norm of kv_heads*head_dim, as OLMo 2) before the rotary embedding (NEOX pairing), and
/// moe = Σ over the token's top-8 of 64 experts of p_e · down_e(silu(gate_e(x)) · up_e(x)), p = softmax(router(x)) over
/// all 64 and NOT renormalised over the 8 (norm_topk_prob false). The output head is never tied.
/// </summary>
public sealed class OlmoeModel : Llama.LlamaModel
{
    public OlmoeModel(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp requires both of these in an olmoe file: the norm epsilon and the output head (no tied fallback)
        RequireNumber("attention.layer_norm_rms_epsilon");
        if (!source.TryGetTensor(Architectures.Names.Output, out _))
            throw new InvalidModelFileException($"{Path.GetFileName(source.Path)}: tensor {Architectures.Names.Output} is missing (olmoe models have their own output head)");
    }

    // differs from Llama: q = q_norm(q_proj(x)), k = k_norm(k_proj(x)) over the whole projection (Blocks.SelfAttention
    // applies them; their length heads*head_dim selects the whole row), then rotary; the feed-forward is the layer's
    // ExpertLayer (Blocks.FeedForward runs it: softmax top-k without renormalisation, ArchitectureSpec.Routing).
}
