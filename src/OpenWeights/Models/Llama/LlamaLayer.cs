using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Common;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Llama;

/// <summary>The weights of one transformer block.</summary>
public sealed class LlamaLayer
{
    public required float[] AttnNorm { get; init; }   // (dim)
    public required Linear Wq { get; init; }          // (heads*head_dim, dim)
    public required Linear Wk { get; init; }          // (kv_heads*head_dim, dim)
    public required Linear Wv { get; init; }          // (kv_heads*head_dim, dim)
    public required Linear Wo { get; init; }          // (dim, heads*head_dim)
    public required float[] FfnNorm { get; init; }    // (dim)
    public required Linear WGate { get; init; }       // (ffn, dim)
    public required Linear WUp { get; init; }         // (ffn, dim)
    public required Linear WDown { get; init; }       // (dim, ffn)

    public IEnumerable<Linear> Projections => [Wq, Wk, Wv, Wo, WGate, WUp, WDown];

    public static LlamaLayer Load(ITensorSource f, ModelConfig c, int i)
    {
        string B(string part) => Block(i, part);
        bool bias = c.Architecture.QkvBias;
        return new LlamaLayer
        {
            AttnNorm = TensorLoader.Vector(f, B(Architectures.Names.AttnNorm), c.Dim),
            Wq = Linear.Load(f, B(AttnQ), c.Dim, c.QDim, bias ? B(AttnQBias) : null),
            Wk = Linear.Load(f, B(AttnK), c.Dim, c.KvDim, bias ? B(AttnKBias) : null),
            Wv = Linear.Load(f, B(AttnV), c.Dim, c.KvDim, bias ? B(AttnVBias) : null),
            Wo = Linear.Load(f, B(AttnOut), c.QDim, c.Dim),
            FfnNorm = TensorLoader.Vector(f, B(Architectures.Names.FfnNorm), c.Dim),
            WGate = Linear.Load(f, B(FfnGate), c.Dim, c.FfnDim),
            WUp = Linear.Load(f, B(FfnUp), c.Dim, c.FfnDim),
            WDown = Linear.Load(f, B(FfnDown), c.FfnDim, c.Dim),
        };
    }
}
