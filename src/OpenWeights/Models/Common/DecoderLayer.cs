using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Common;

/// <summary>
/// The weights of one transformer block, loaded by the names of the architecture's table
/// (<see cref="ArchitectureSpec.Block"/>). Parts a family does not have are null. Fused tensors (Phi-3's attn_qkv and
/// gate-up ffn_up) are split into row views of the same stored tensor, so every family runs the same Q/K/V and
/// gate/up projections.
/// </summary>
public sealed class DecoderLayer
{
    public float[]? AttnNorm { get; init; }      // (dim) before attention; null in OLMo 2 (post-norm only)
    public float[]? AttnNormBias { get; init; }  // (dim) added after the attention norm (Phi-3.5-MoE)
    public required Linear Wq { get; set; }      // (heads*head_dim, dim); null in a latent-attention layer (Mla)
    public required Linear Wk { get; set; }      // (kv_heads*head_dim, dim); null in a latent-attention layer
    public required Linear Wv { get; set; }      // (kv_heads*head_dim, dim); null in a latent-attention layer
    public required Linear Wo { get; set; }      // (dim, heads*head_dim); latent attention: (dim, heads*v_mla)
    /// <summary>Multi-head latent attention's projections (DeepSeek) instead of Wq / Wk / Wv; null otherwise.</summary>
    public LatentAttention? Mla { get; init; }
    public float[]? AttnSinks { get; init; }     // (heads) gpt-oss's attention sinks: a logit per head in the softmax denominator
    public float[]? QNorm { get; init; }         // (head_dim) per head, or (heads*head_dim) whole projection (OLMo 2)
    public float[]? KNorm { get; init; }         // (head_dim) per head, or (kv_heads*head_dim)
    public float[]? AttnPostNorm { get; init; }  // (dim) on the attention output before the residual add (Gemma 2/3, OLMo 2)
    public float[]? FfnNorm { get; init; }       // (dim) before the feed-forward
    public float[]? FfnNormBias { get; init; }   // (dim) added after the feed-forward norm (Phi-3.5-MoE)
    public Linear? WGate { get; set; }           // (ffn, dim); null in a MoE layer
    public Linear? WUp { get; set; }             // (ffn, dim); null in a MoE layer
    public Linear? WDown { get; set; }           // (dim, ffn); null in a MoE layer
    public float[]? FfnPostNorm { get; init; }   // (dim) on the feed-forward output (Gemma 2/3, OLMo 2)
    /// <summary>The mixture-of-experts feed-forward of a MoE layer (router, experts, shared expert); null in dense layers.</summary>
    public ExpertLayer? Experts { get; init; }

    /// <summary>The attention projections and, in a dense layer, the feed-forward's (LoRA targets; the experts are not).</summary>
    public IEnumerable<Linear> Projections =>
        (Mla is { } m ? [.. m.Matrices, Wo] : new[] { Wq, Wk, Wv, Wo }).Concat(WGate is null ? [] : [WGate, WUp!, WDown!]);

    /// <summary>Every weight matrix of the layer: <see cref="Projections"/> and the MoE layer's router and experts.</summary>
    public IEnumerable<Linear> Matrices => Experts is { } x ? Projections.Concat(x.Matrices) : Projections;

    /// <summary>The projection with this GGUF part name ("attn_q.weight", "ffn_down.weight", ...), for wrapping it (LoRA).</summary>
    public Linear GetProjection(string part) => part switch
    {
        AttnQ => Wq, AttnK => Wk, AttnV => Wv, AttnOut => Wo, FfnGate => WGate, FfnUp => WUp, FfnDown => WDown,
        _ => null,
    } ?? throw new ArgumentException(part is FfnGate or FfnUp or FfnDown ? $"no projection '{part}' in a mixture-of-experts layer" : $"no projection '{part}'", nameof(part));

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

    /// <summary>Loads block <paramref name="i"/>: every tensor of the architecture's table is required, with its shape.</summary>
    public static DecoderLayer Load(ITensorSource f, ModelConfig c, int i)
    {
        var spec = c.Architecture;
        string B(string part) => Block(i, part);
        // a MoE layer reads the expert tensors and not the dense feed-forward's; a dense layer the other way round
        bool moe = c.IsMoeLayer(i);
        BlockTensor? Part(string gguf) => spec.Block.FirstOrDefault(t => t.Gguf == gguf && (moe ? !t.IsDenseFfn : !t.IsExpert));
        float[]? Vec(string gguf) => Part(gguf) is { } t ? TensorLoader.Vector(f, B(gguf), c.Elements(t.Shape)) : null;
        Linear? Lin(string gguf, string? bias = null)
        {
            if (Part(gguf) is not { } t) return null;
            var (rows, cols) = c.Matrix(t.Shape);
            return Linear.Load(f, B(gguf), cols, rows, bias is not null && Part(bias) is not null ? B(bias) : null);
        }

        Linear wq, wk, wv;
        Linear? wgate, wup;
        // a table with a fused QKV may accept separate Q/K/V instead (BlockTensor.InsteadOf): taken when the file lacks
        // the fused tensor and holds attn_q; otherwise the fused tensor is required (and named when missing)
        bool split = Part(AttnQkv) is not null && Part(AttnQ) is { InsteadOf: AttnQkv }
            && !f.TryGetTensor(B(AttnQkv), out _) && f.TryGetTensor(B(AttnQ), out _);
        LatentAttention? mla = null;
        if (spec.LatentAttention)
        {
            // differs from Llama (DeepSeek): latent attention's own projections; no Q/K/V
            mla = LatentAttention.Load(f, c, i);
            wq = wk = wv = null!;
        }
        else if (Part(AttnQkv) is not null && !split)
        {
            // differs from Llama (Phi-3): one fused QKV tensor, split into row views Q | K | V
            var qkv = Lin(AttnQkv)!;
            wq = qkv.Rows(0, c.QDim); wk = qkv.Rows(c.QDim, c.KvDim); wv = qkv.Rows(c.QDim + c.KvDim, c.KvDim);
        }
        else { wq = Lin(AttnQ, AttnQBias)!; wk = Lin(AttnK, AttnKBias)!; wv = Lin(AttnV, AttnVBias)!; }
        if (Part(FfnGate) is null && Part(FfnUp) is { Shape: TensorShape.GateUp })
        {
            // differs from Llama (Phi-3): ffn_up holds gate and up stacked, (2*ffn, dim); gate first
            var gateUp = Lin(FfnUp)!;
            wgate = gateUp.Rows(0, c.FfnDim); wup = gateUp.Rows(c.FfnDim, c.FfnDim);
        }
        else { wgate = Lin(FfnGate); wup = Lin(FfnUp); }
        ExpertLayer? experts = null;
        if (moe)
        {
            var routing = spec.Routing?.Invoke(c) ?? throw new InvalidOperationException($"{spec.Name} declares experts without a router (ArchitectureSpec.Routing)");
            experts = ExpertLayer.Load(f, c, i, routing);
        }
        else if (wgate is null || wup is null || Part(FfnDown) is null)
            throw new InvalidModelFileException($"{Path.GetFileName(f.Path)}: block {i} has no feed-forward (the {spec.Name} table names none for a dense layer)");
        return new DecoderLayer
        {
            AttnNorm = Vec(Architectures.Names.AttnNorm),
            AttnNormBias = Vec(Architectures.Names.AttnNormBias),
            Wq = wq, Wk = wk, Wv = wv, Mla = mla,
            Wo = Lin(AttnOut, AttnOutBias)!, AttnSinks = Vec(Architectures.Names.AttnSinks),
            QNorm = Vec(AttnQNorm), KNorm = Vec(AttnKNorm),
            AttnPostNorm = Vec(Architectures.Names.AttnPostNorm),
            FfnNorm = Vec(Architectures.Names.FfnNorm),
            FfnNormBias = Vec(Architectures.Names.FfnNormBias),
            WGate = wgate, WUp = wup,
            WDown = Lin(FfnDown),
            Experts = experts,
            FfnPostNorm = Vec(Architectures.Names.FfnPostNorm),
        };
    }
}
