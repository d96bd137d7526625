namespace OpenWeights.Lora;

/// <summary>
/// The low-rank update of one linear projection: W' = W + Scale · B·A.
/// A: (Rank, In) row-major, B: (Out, Rank) row-major, F32. Target is the GGUF weight name, e.g. "blk.0.attn_q.weight".
/// </summary>
public sealed class LoraWeights
{
    public required string Target { get; init; }
    public required int Rank { get; init; }
    public required int In { get; init; }
    public required int Out { get; init; }
    public required float[] A { get; init; }   // (Rank, In)
    public required float[] B { get; init; }   // (Out, Rank)

    public void Validate()
    {
        if (Rank <= 0 || In <= 0 || Out <= 0) throw new OpenWeightsException($"LoRA {Target}: invalid shape rank {Rank}, in {In}, out {Out}");
        if (A.Length != (long)Rank * In) throw new OpenWeightsException($"LoRA {Target}: A has {A.Length} values, expected {Rank}x{In}");
        if (B.Length != (long)Out * Rank) throw new OpenWeightsException($"LoRA {Target}: B has {B.Length} values, expected {Out}x{Rank}");
    }
}

/// <summary>
/// A LoRA adapter: one <see cref="LoraWeights"/> per adapted projection plus the scaling hyper-parameters.
/// Scale = alpha / rank (or alpha / sqrt(rank) with rsLoRA), as PEFT computes it.
/// </summary>
public sealed class LoraAdapter
{
    public required float Alpha { get; init; }
    public required int Rank { get; init; }
    public bool UseRsLora { get; init; }
    /// <summary>PEFT target module names, e.g. q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.</summary>
    public required IReadOnlyList<string> TargetModules { get; init; }
    public Dictionary<string, LoraWeights> Weights { get; init; } = new(StringComparer.Ordinal);
    public string? BaseModel { get; init; }

    public float Scale => UseRsLora ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;
}

/// <summary>PEFT module names (Hugging Face projection names) and their GGUF tensor suffixes.</summary>
public static class LoraTargets
{
    public static readonly IReadOnlyList<(string Peft, string HfPath, string Gguf)> All =
    [
        ("q_proj", "self_attn.q_proj", "attn_q"),
        ("k_proj", "self_attn.k_proj", "attn_k"),
        ("v_proj", "self_attn.v_proj", "attn_v"),
        ("o_proj", "self_attn.o_proj", "attn_output"),
        ("gate_proj", "mlp.gate_proj", "ffn_gate"),
        ("up_proj", "mlp.up_proj", "ffn_up"),
        ("down_proj", "mlp.down_proj", "ffn_down"),
    ];

    public static readonly IReadOnlyList<string> Default = [.. All.Select(t => t.Peft)];

    /// <summary>"blk.3.attn_q.weight" for ("q_proj", 3).</summary>
    public static string GgufWeight(string peft, int layer) =>
        $"blk.{layer}.{All.FirstOrDefault(t => t.Peft == peft).Gguf ?? throw new OpenWeightsException($"unknown LoRA target '{peft}' (known: {string.Join(", ", Default)})")}.weight";

    /// <summary>"base_model.model.model.layers.3.self_attn.q_proj" for ("q_proj", 3): PEFT's module path.</summary>
    public static string PeftModule(string peft, int layer) =>
        $"base_model.model.model.layers.{layer}.{All.FirstOrDefault(t => t.Peft == peft).HfPath ?? throw new OpenWeightsException($"unknown LoRA target '{peft}'")}";
}
