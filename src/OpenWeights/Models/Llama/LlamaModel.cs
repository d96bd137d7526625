using OpenWeights.Formats;
using OpenWeights.Models.Common;

namespace OpenWeights.Models.Llama;

/// <summary>
/// The Llama decoder (llama, qwen2), reading like Meta's reference model.py:
/// for each layer { x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)) }, attention with rotary embedding over every past
/// token, ffn = down(silu(gate(x)) · up(x)). Qwen 2's Q/K/V biases live in its projections (the naming table loads them).
/// </summary>
public sealed class LlamaModel : DecoderModel
{
    public LlamaModel(ITensorSource source, ModelConfig c) : base(source, c) { }

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l];
        // h = x + attention(rmsnorm(x))
        Blocks.RmsNorm(s.X, L.AttnNorm!, s.Xb, n, c.RmsEps);
        Blocks.SelfAttention(L, l, s, c, n, threads, AttentionOf(l), Rope);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        // x = h + ffn(rmsnorm(h)), ffn = down(silu(gate(x)) * up(x))
        Blocks.RmsNorm(s.X, L.FfnNorm!, s.Xb, n, c.RmsEps);
        Blocks.FeedForward(L, s, c, n, threads, Activation.SiLU);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
