using OpenWeights.Models;

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

/// <summary>
/// PEFT module names (Hugging Face projection names) and their GGUF tensor suffixes, read from each architecture's naming
/// table (<see cref="ArchitectureSpec.Projections"/>: <see cref="BlockTensor.PeftTarget"/>, <see cref="BlockTensor.HfModule"/>).
/// The overloads without an architecture are llama's (the names every dense family but Phi-3 shares).
/// </summary>
public static class LoraTargets
{
    /// <summary>The projections of <paramref name="spec"/> LoRA may target, in block order: (PEFT name, HF module path, GGUF part
    /// without ".weight").</summary>
    public static IReadOnlyList<(string Peft, string HfPath, string Gguf)> Of(ArchitectureSpec spec) =>
        [.. spec.Projections.Select(t => (t.PeftTarget!, t.HfModule, t.Gguf[..^".weight".Length]))];

    /// <summary>llama's projections: q, k, v, o, gate, up, down.</summary>
    public static readonly IReadOnlyList<(string Peft, string HfPath, string Gguf)> All = Of(Architectures.Get("llama"));

    public static readonly IReadOnlyList<string> Default = [.. All.Select(t => t.Peft)];

    /// <summary>Every projection of every supported architecture, the first naming of a GGUF part winning (for names read
    /// without their architecture).</summary>
    internal static IReadOnlyList<(string Peft, string HfPath, string Gguf)> Known =>
        known ??= [.. Architectures.Supported.SelectMany(Of).DistinctBy(t => (t.Peft, t.Gguf))];
    private static IReadOnlyList<(string Peft, string HfPath, string Gguf)>? known;

    /// <summary>Fused projections (Phi-3's qkv_proj, gate_up_proj): one LoRA over several of the engine's projections.</summary>
    public static bool IsFused(ArchitectureSpec spec, string peft) =>
        spec.Projections.Any(t => t.PeftTarget == peft && t.Shape is TensorShape.Qkv or TensorShape.GateUp);

    /// <summary>The targets fine-tuning adapts by default on <paramref name="spec"/>: every projection of its table (Phi-3's
    /// fused qkv_proj and gate_up_proj as one LoRA each, as PEFT and llama.cpp adapt them).</summary>
    public static IReadOnlyList<string> DefaultFor(ArchitectureSpec spec) => [.. Of(spec).Select(t => t.Peft)];

    /// <summary>
    /// The targets fine-tuning adapts by default on a model of this configuration: <see cref="DefaultFor(ArchitectureSpec)"/>,
    /// less the dense feed-forward's when every layer is a mixture of experts (a llama table names both, for Mixtral's
    /// files and the dense ones): LoRA adapts the attention of MoE layers; their experts and router stay frozen.
    /// </summary>
    public static IReadOnlyList<string> DefaultFor(ModelConfig c) =>
        Enumerable.Range(0, c.Layers).Any(l => !c.IsMoeLayer(l)) ? DefaultFor(c.Architecture)
            : [.. c.Architecture.Projections.Where(t => !t.IsDenseFfn).Select(t => t.PeftTarget!)];

    /// <summary>Whether a PEFT name adapts a feed-forward or its experts in some family (gate_proj, up_proj, down_proj,
    /// gate_up_proj, or a module of a MoE table: the router, the experts): refused on MoE families that have no dense one.</summary>
    private static bool IsFeedForwardTarget(string peft) =>
        Architectures.Supported.SelectMany(a => a.Block).Any(t => t.IsDenseFfn && t.PeftTarget == peft
            || t.IsExpert && t.HfModule.Split('.').Contains(peft));

    private static (string Peft, string HfPath, string Gguf) Find(string peft, ArchitectureSpec? spec)
    {
        var list = spec is null ? Known : Of(spec);
        var t = list.FirstOrDefault(x => x.Peft == peft);
        return t.Peft is not null ? t
            : throw new OpenWeightsException($"unknown LoRA target '{peft}'{(spec is null ? "" : $" for {spec.Name} models")} (known: {string.Join(", ", list.Select(x => x.Peft).Distinct())})");
    }

    /// <summary>"blk.3.attn_q.weight" for ("q_proj", 3) (in <paramref name="spec"/>'s names; when null, the first family
    /// naming it, llama's first).</summary>
    public static string GgufWeight(string peft, int layer, ArchitectureSpec? spec = null) => $"blk.{layer}.{Find(peft, spec).Gguf}.weight";

    /// <summary>"base_model.model.model.layers.3.self_attn.q_proj" for ("q_proj", 3): PEFT's module path (in
    /// <paramref name="spec"/>'s Hugging Face names; when null, the first family naming it, llama's first).</summary>
    public static string PeftModule(string peft, int layer, ArchitectureSpec? spec = null) =>
        $"base_model.model.model.layers.{layer}.{Find(peft, spec).HfPath}";

    /// <summary>
    /// The GGUF parts ("attn_q.weight", ...) that fine-tuning wraps for these PEFT targets on <paramref name="spec"/>
    /// ("attn_qkv.weight" for Phi-3's fused qkv_proj); an unknown target is refused in one line naming the known ones.
    /// </summary>
    public static IReadOnlySet<string> Resolve(ArchitectureSpec spec, IEnumerable<string> targets)
    {
        var parts = new HashSet<string>(StringComparer.Ordinal);
        foreach (var peft in targets)
        {
            if (!Of(spec).Any(t => t.Peft == peft) && spec.Experts && IsFeedForwardTarget(peft))
                throw new OpenWeightsException($"LoRA target '{peft}' is not supported for {spec.Name} models: their feed-forward is a mixture of experts, and LoRA adapts the attention only (targets: {string.Join(", ", DefaultFor(spec))})");
            if (!Of(spec).Any(t => t.Peft == peft) && Of(spec).Any(t => IsFused(spec, t.Peft)))
                throw new OpenWeightsException($"unknown LoRA target '{peft}' for {spec.Name} models, which fuse projections into {string.Join(" and ", Of(spec).Where(t => IsFused(spec, t.Peft)).Select(t => t.Peft))} (their targets: {string.Join(", ", DefaultFor(spec))})");
            parts.Add(Find(peft, spec).Gguf + ".weight");
        }
        return parts;
    }
}
