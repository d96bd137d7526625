using OpenWeights.Formats;
using OpenWeights.Models.Common;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.PhiMoe;

/// <summary>
/// The Phi-3.5-MoE decoder (GGUF architecture <c>phimoe</c>, microsoft/Phi-3.5-MoE-instruct: 16 experts, top-2), as
/// llama.cpp runs it (its phimoe model runs Phi-3's graph with the MoE branch): for each layer
/// { x += o(attn(norm(x))); x += moe(norm(x)) }, logits = output(norm(x)) + b. It is the Phi-3 block (LongRoPE tables
/// chosen by context size, attn_factor on cos/sin, NEOX pairing; see <see cref="Phi3.Phi3Model"/>), differing in:
/// - biases on Q, K, V and the attention output (attention_bias), on every norm and on the output head (lm_head_bias);
/// - separate Q, K, V (as the converter writes them; not fused);
/// - the feed-forward is a mixture of experts: router logits -> softmax over the 16 -> top-2 -> the two weights
///   renormalised to sum to 1 -> Σ w_e · down_e(silu(gate_e(x)) · up_e(x)) (llama.cpp's build_moe_ffn with
///   LLM_FFN_SILU, norm_w = true, softmax gating).
/// Where llama.cpp differs from transformers' modeling_phimoe.py, we run llama.cpp's arithmetic (the GGUF is what we run,
/// and llama.cpp is our oracle):
/// - norms: the Hugging Face model uses LayerNorm (x − mean, then / std, · w + b); llama.cpp runs RMS norm (no mean
///   subtraction) · w + b on the same weights (build_norm with LLM_NORM_RMS and the bias);
/// - routing: the Hugging Face model's sparsemixer (inference) takes the top expert and its weight as the softmax over
///   the logits within a relative 2·router_jitter_noise of the top one, then the second expert the same way with the
///   first masked out; llama.cpp takes plain softmax top-2 renormalised (the same two experts, other weights);
/// - the rotary magnitude: Hugging Face multiplies cos/sin by the config's short_mscale / long_mscale (1.2432);
///   llama.cpp by <c>phimoe.rope.scaling.attn_factor</c>, which the converter writes as sqrt(1 + ln(32)/ln(4096)) = 1.1902.
/// Sliding window: the converter writes one (131072); llama.cpp's phimoe does not read it, and neither do we.
/// </summary>
public sealed class PhiMoeModel : Phi3.Phi3Model
{
    public PhiMoeModel(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp's phimoe loader requires the epsilon key and the biases of the final norm and the output head
        RequireNumber("attention.layer_norm_rms_epsilon");
        foreach (var name in (string[])[Architectures.Names.OutputNormBias, OutputBias])
            if (!source.TryGetTensor(name, out _))
                throw new InvalidModelFileException($"{Path.GetFileName(source.Path)}: tensor {name} is missing (required by phimoe models)");
    }

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        var a = AttentionOf(l);
        // differs from Phi-3: the norms carry a bias (RMS norm · w + b, as llama.cpp; the HF model's are LayerNorms)
        Blocks.RmsNorm(s.X, L.AttnNorm!, L.AttnNormBias, s.Xb, n, c.RmsEps);
        // differs from Phi-3: q, k, v and o carry biases (attention_bias), Q/K/V stored apart
        Blocks.SelfAttention(L, l, s, c, n, threads, a, RopeOf(a, s.Context));
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        Blocks.RmsNorm(s.X, L.FfnNorm!, L.FfnNormBias, s.Xb, n, c.RmsEps);
        // differs from Phi-3: a mixture of experts (softmax top-2 of 16, renormalised) instead of the MLP
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
