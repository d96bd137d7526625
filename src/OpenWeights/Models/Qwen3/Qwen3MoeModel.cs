using OpenWeights.Formats;

namespace OpenWeights.Models.Qwen3;

/// <summary>
/// The Qwen 3 mixture-of-experts decoder (Qwen3-30B-A3B, Qwen3-235B-A22B), reading like transformers'
/// modeling_qwen3_moe.py: for each layer { x += attn(rmsnorm(x)); x += moe(rmsnorm(x)) }, attention as Qwen 3's (per-head
/// QK-norm before the rotary embedding, NEOX pairing, head_dim of its own), and moe = Σ over the token's top-8 of 128 experts
/// of w_e · down_e(silu(gate_e(x)) · up_e(x)), w = softmax(router(x)) restricted to the 8 and renormalised to sum to 1
/// (norm_topk_prob). No shared expert, every layer a MoE layer (llama.cpp's qwen3moe does not read decoder_sparse_step).
/// </summary>
public sealed class Qwen3MoeModel : Llama.LlamaModel
{
    public Qwen3MoeModel(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp requires the norm epsilon of a qwen3moe file, as of qwen3
        RequireNumber("attention.layer_norm_rms_epsilon");
    }

    // differs from Llama: q = q_norm(q_proj(x)), k = k_norm(k_proj(x)) per head (Blocks.SelfAttention applies them);
    // the feed-forward is the layer's ExpertLayer (Blocks.FeedForward runs it: softmax top-k renormalised, the family's
    // ArchitectureSpec.Routing).
}
