using OpenWeights.Formats;
using OpenWeights.Models.Common;

namespace OpenWeights.Models.Qwen3;

/// <summary>
/// The Qwen 3 dense decoder (Qwen3-0.6B ... 32B), reading like transformers' modeling_qwen3.py:
/// for each layer { x += attn(rmsnorm(x)); x += mlp(rmsnorm(x)) }, with queries and keys RMS-normalised per head
/// (q_norm / k_norm of head_dim) before the rotary embedding, and mlp = down(silu(gate(x)) · up(x)).
/// The head dimension is its own hyper-parameter (attention.key_length, 128 in every size), so heads*head_dim may
/// differ from dim (Qwen3-0.6B: dim 1024, 16 heads of 128). Rotary pairs (i, i+d/2) (NEOX), as in the HF checkpoint.
/// Long contexts use YaRN, which belongs to the rotary tables (<see cref="DecoderModel.Ropes"/>), not to this block.
/// </summary>
public sealed class Qwen3Model : Llama.LlamaModel
{
    public Qwen3Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp requires the norm epsilon of a qwen3 file (1e-6 in every checkpoint; Llama's 1e-5 default would be wrong)
        RequireNumber("attention.layer_norm_rms_epsilon");
    }

    // differs from Llama: q = q_norm(q_proj(x)), k = k_norm(k_proj(x)) over each head of head_dim, then rotary. The block
    // is Llama's: Blocks.SelfAttention applies the layer's QNorm / KNorm (per head, since their length is head_dim).
}
