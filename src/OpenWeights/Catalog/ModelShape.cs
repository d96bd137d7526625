namespace OpenWeights.Catalog;

/// <summary>
/// The shape of a model as the fit estimator needs it, whatever it came from: a catalog entry
/// (<see cref="FromCatalog"/>) or a local weights file (GGUF metadata + tensor sizes; built by the file
/// readers). Nullable fields are unknown; the estimator states the assumption it makes for each.
/// </summary>
public sealed record ModelShape
{
    public required string Name { get; init; }
    /// <summary>"catalog" or "file".</summary>
    public string Source { get; init; } = "catalog";
    /// <summary>All parameters (every expert of a MoE).</summary>
    public required long TotalParams { get; init; }
    /// <summary>Parameters read per generated token (routed + shared experts, attention, head).</summary>
    public required long ActiveParams { get; init; }
    public int? Layers { get; init; }
    public int? HiddenSize { get; init; }
    public int? Heads { get; init; }
    public int? KvHeads { get; init; }
    public int? HeadDim { get; init; }
    public int? Vocab { get; init; }
    public int? ContextLength { get; init; }
    /// <summary>MLP intermediate size (known from files; the catalog research does not give it).</summary>
    public int? FfnHidden { get; init; }
    public MoeFacts? Moe { get; init; }
    public LocalAttention? LocalAttention { get; init; }
    public MlaFacts? Mla { get; init; }
    /// <summary>When the weights are already quantized (a file), their size in bytes; overrides params × bpw.</summary>
    public long? WeightBytes { get; init; }
    /// <summary>MoE files: parameters of the routed experts (all of them), counted from the expert tensors; null = derive
    /// from <see cref="TotalParams"/> and <see cref="ActiveParams"/> (catalog).</summary>
    public long? RoutedExpertParams { get; init; }
    /// <summary>MoE files: bytes of the routed expert tensors.</summary>
    public long? RoutedExpertBytes { get; init; }
    /// <summary>Quantization of <see cref="WeightBytes"/> (file type), for display.</summary>
    public string? WeightsQuant { get; init; }
    /// <summary>Caveats about where the shape came from (uncertain or borrowed facts); the estimate repeats them.</summary>
    public IReadOnlyList<string> Caveats { get; init; } = [];

    public static ModelShape FromCatalog(CatalogModel m)
    {
        var a = m.Architecture;
        long total = m.TotalParams ?? throw new OpenWeightsException($"the catalog has no parameter count for '{m.Id}'");
        return new ModelShape
        {
            Name = m.Id,
            Source = "catalog",
            TotalParams = total,
            ActiveParams = m.ActiveParams ?? total,
            Layers = a?.Layers,
            HiddenSize = a?.HiddenSize,
            Heads = a?.Heads,
            KvHeads = a?.KvHeads,
            HeadDim = a?.HeadDim,
            Vocab = a?.Vocab,
            ContextLength = a?.Context,
            Moe = a?.Moe,
            LocalAttention = a?.LocalAttention,
            Mla = a?.Mla,
            Caveats = CaveatsOf(m),
            Architecture = EngineArchitecture(m),
            TiedEmbeddings = a?.TiedEmbeddings,
            CannotRun = EngineSupport.For(m).Reason,
        };
    }

    /// <summary>
    /// The engine architecture a catalog model runs as (its GGUF architecture when <see cref="EngineSupport"/> says the engine
    /// runs it), or null when the engine does not run it.
    /// </summary>
    public static string? EngineArchitecture(CatalogModel m) => EngineSupport.For(m) is { Runs: true } s ? s.Architecture : null;

    /// <summary>The shape of a local model (GGUF file or Hugging Face checkpoint): its hyper-parameters and actual tensor bytes.</summary>
    public static ModelShape FromSource(OpenWeights.Formats.ITensorSource f)
    {
        var c = OpenWeights.Models.ModelConfig.FromGguf(f);
        var weights = f.Tensors.Where(t => t.Name != OpenWeights.Models.Architectures.Names.RopeFreqs).ToList();
        long parameters = weights.Sum(t => t.ElementCount);
        var dominant = weights.Where(t => t.Dimensions.Length >= 2).GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).FirstOrDefault()?.Key;
        string name = f.GetString("general.name") is { Length: > 0 } n ? n : System.IO.Path.GetFileName(f.Path.TrimEnd('/', '\\'));
        // a mixture of experts: the routed experts' tensors (by the architecture's table), of which a token reads used / count
        var routedParts = c.ExpertCount > 0
            ? c.Architecture.Block.Where(b => b.Shape is OpenWeights.Models.TensorShape.ExpertFfn or OpenWeights.Models.TensorShape.ExpertDown
                or OpenWeights.Models.TensorShape.ExpertFfnBias or OpenWeights.Models.TensorShape.ExpertDownBias).Select(b => "." + b.Gguf).ToArray()
            : [];
        var routed = weights.Where(t => routedParts.Any(p => t.Name.EndsWith(p, StringComparison.Ordinal))).ToList();
        long routedParams = routed.Sum(t => t.ElementCount);
        bool moe = c.ExpertCount > 0 && routedParams > 0;
        return new ModelShape
        {
            Name = name,
            Source = "file",
            TotalParams = parameters,
            ActiveParams = moe ? parameters - routedParams + (long)Math.Round((double)routedParams * c.ExpertsUsed / c.ExpertCount) : parameters,
            Moe = moe ? new MoeFacts
            {
                Experts = c.ExpertCount, ExpertsPerToken = c.ExpertsUsed, SharedExperts = c.SharedExpertFfnDim > 0 ? 1 : 0,
                MoeLayerStep = c.MoeLayerStep, ExpertFfn = c.ExpertFfnDim,
            } : null,
            RoutedExpertParams = moe ? routedParams : null,
            RoutedExpertBytes = moe ? routed.Sum(t => t.ByteSize) : null,
            Layers = c.Layers,
            HiddenSize = c.Dim,
            Heads = c.Heads,
            KvHeads = c.KvHeads,
            HeadDim = c.HeadDim,
            Vocab = c.VocabSize,
            ContextLength = c.ContextLength,
            FfnHidden = c.FfnDim,
            // latent attention (DeepSeek): the cache holds kv_lora_rank + rope floats per token and layer
            Mla = c.Mla is { } mla ? new MlaFacts { KvLoraRank = mla.KvLoraRank, RopeHeadDim = c.RopeDims, QLoraRank = mla.QLoraRank, VHeadDim = mla.ValueLength } : null,
            WeightBytes = weights.Sum(t => t.ByteSize),
            WeightsQuant = dominant?.ToString(),
            Architecture = c.Architecture.Name,
            TiedEmbeddings = !f.TryGetTensor(OpenWeights.Models.Architectures.Names.Output, out _),
        };
    }

    /// <summary>Our architecture name when known (files; catalog entries that map to llama / qwen2).</summary>
    public string? Architecture { get; init; }
    public bool? TiedEmbeddings { get; init; }
    /// <summary>Why the engine cannot run this model (catalog entries whose architecture it lacks); null when it can.</summary>
    public string? CannotRun { get; init; }

    private static List<string> CaveatsOf(CatalogModel m)
    {
        var c = new List<string>();
        if (m.ArchitectureFrom is not null) c.Add($"architecture taken from {m.ArchitectureFrom} (same base; unverified for this model)");
        var uncertain = m.Uncertain.Where(f => CatalogModel.ArchitectureFields.Contains(f) || f is "params_b" or "active_params_b").ToList();
        if (uncertain.Count > 0) c.Add($"uncertain catalog facts: {string.Join(", ", uncertain)}");
        return c;
    }
}
