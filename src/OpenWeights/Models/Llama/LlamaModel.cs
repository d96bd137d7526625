using OpenWeights.Formats;
using OpenWeights.Models.Common;

namespace OpenWeights.Models.Llama;

/// <summary>
/// The Llama decoder (llama, qwen2), reading like Meta's reference model.py:
/// for each layer { x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)) }, attention with rotary embedding over every past
/// token, ffn = down(silu(gate(x)) · up(x)). Qwen 2's Q/K/V biases live in its projections (the naming table loads them).
/// Families whose block is this one with a difference the shared pieces already carry derive from it: Qwen 3 (QK-norm, which
/// <see cref="Blocks.SelfAttention"/> applies when the layer has it) and SmolLM3 (NoPE layers, from <see cref="DecoderModel.AttentionOf"/>).
/// </summary>
public class LlamaModel : DecoderModel
{
    public LlamaModel(ITensorSource source, ModelConfig c) : base(source, c) { }

    protected sealed override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        // h = x + attention(rmsnorm(x))
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        var a = AttentionOf(l);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, RopeOf(a, s.Context));
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + ffn(rmsnorm(h)), ffn = down(silu(gate(x)) * up(x))
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
