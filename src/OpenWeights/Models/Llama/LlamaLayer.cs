using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Common;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Llama;

/// <summary>The weights of one transformer block.</summary>
public sealed class LlamaLayer
{
    public required float[] AttnNorm { get; init; }   // (dim)
    public required Linear Wq { get; set; }          // (heads*head_dim, dim)
    public required Linear Wk { get; set; }          // (kv_heads*head_dim, dim)
    public required Linear Wv { get; set; }          // (kv_heads*head_dim, dim)
    public required Linear Wo { get; set; }          // (dim, heads*head_dim)
    public required float[] FfnNorm { get; init; }    // (dim)
    public required Linear WGate { get; set; }       // (ffn, dim)
    public required Linear WUp { get; set; }         // (ffn, dim)
    public required Linear WDown { get; set; }       // (dim, ffn)

    public IEnumerable<Linear> Projections => [Wq, Wk, Wv, Wo, WGate, WUp, WDown];

    /// <summary>The projection with this GGUF part name ("attn_q.weight", "ffn_down.weight", ...), for wrapping it (LoRA).</summary>
    public Linear GetProjection(string part) => part switch
    {
        AttnQ => Wq, AttnK => Wk, AttnV => Wv, AttnOut => Wo, FfnGate => WGate, FfnUp => WUp, FfnDown => WDown,
        _ => throw new ArgumentException($"no projection '{part}'", nameof(part)),
    };

    /// <summary>Replaces the projection with this GGUF part name (same shape), e.g. by a LoRA-wrapped one.</summary>
    public void SetProjection(string part, Linear value)
    {
        var old = GetProjection(part);
        if (value.In != old.In || value.Out != old.Out) throw new ArgumentException($"{part}: replacement is {value.Out}x{value.In}, expected {old.Out}x{old.In}");
        switch (part)
        {
            case AttnQ: Wq = value; break;
            case AttnK: Wk = value; break;
            case AttnV: Wv = value; break;
            case AttnOut: Wo = value; break;
            case FfnGate: WGate = value; break;
            case FfnUp: WUp = value; break;
            default: WDown = value; break;
        }
    }

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
