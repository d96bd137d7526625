namespace OpenWeights.Catalog;

// The shapes of catalog.json (snake_case in the file). Every fact the research did not give is null;
// a field named in a model's Uncertain list was marked '?' in the research or comes from a secondary source.

/// <summary>The whole catalog document: licences and models.</summary>
public sealed record CatalogDocument
{
    public int SchemaVersion { get; init; }
    public string? About { get; init; }
    public IReadOnlyDictionary<string, string> Sources { get; init; } = new Dictionary<string, string>();
    public IReadOnlyList<LicenseTerms> Licenses { get; init; } = [];
    public IReadOnlyList<CatalogModel> Models { get; init; } = [];
}

/// <summary>One model (usually the instruct/chat variant; the base variant is an alias).</summary>
public sealed record CatalogModel
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string Family { get; init; }
    public IReadOnlyList<string> Aliases { get; init; } = [];
    public HfRepos Hf { get; init; } = new();
    public GgufRepo? Gguf { get; init; }
    public ArchitectureFacts? Architecture { get; init; }
    /// <summary>Id of another entry whose architecture this model shares (distills of a base model).</summary>
    public string? ArchitectureFrom { get; init; }
    /// <summary>Total parameters in billions (all experts for MoE).</summary>
    public double? ParamsB { get; init; }
    /// <summary>Parameters used per token in billions (equals ParamsB for dense models).</summary>
    public double? ActiveParamsB { get; init; }
    public required string License { get; init; }
    /// <summary>Further licences that also govern the weights (e.g. the base model's licence for a distill).</summary>
    public IReadOnlyList<string> AdditionalLicenses { get; init; } = [];
    /// <summary>Whether the Hugging Face download needs an accepted licence/contact form; null = unknown.</summary>
    public bool? Gated { get; init; }
    /// <summary>Input modalities ("text", "image"); null = not stated in the research.</summary>
    public IReadOnlyList<string>? Modalities { get; init; }
    /// <summary>ISO 639-1 codes the research names explicitly.</summary>
    public IReadOnlyList<string> Languages { get; init; } = [];
    /// <summary>Number of languages claimed (e.g. "over 140"), when the research gives a count but no list.</summary>
    public int? LanguageCount { get; init; }
    public string? LanguagesNote { get; init; }
    public string? ReleaseDate { get; init; }
    public string? KnowledgeCutoff { get; init; }
    public string? TrainingTokens { get; init; }
    /// <summary>"open-source" (OSI OSAID: weights, data information, code), "open-weights-permissive" (OSI licence on the
    /// weights, data/code incomplete), or "open-weights-restricted" (custom licence with use or user-count restrictions).</summary>
    public required string Openness { get; init; }
    public string? Notes { get; init; }
    public IReadOnlyList<string> Uncertain { get; init; } = [];
    public IReadOnlyList<string> Sources { get; init; } = [];

    public long? TotalParams => ParamsB is { } b ? (long)Math.Round(b * 1e9) : null;
    public long? ActiveParams => (ActiveParamsB ?? ParamsB) is { } b ? (long)Math.Round(b * 1e9) : null;
    public bool IsMultimodal => Modalities?.Any(m => m != "text") == true;
    /// <summary>Whether a field was marked uncertain; "architecture" covers every architecture field.</summary>
    public bool IsUncertain(string field) =>
        Uncertain.Contains(field) || (Uncertain.Contains("architecture") && ArchitectureFields.Contains(field));

    public static readonly IReadOnlySet<string> ArchitectureFields = new HashSet<string>
    {
        "kind", "layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab", "context", "tied_embeddings", "moe", "local_attention", "mla",
    };
}

/// <summary>Hugging Face repository ids of the original (safetensors) weights.</summary>
public sealed record HfRepos
{
    public string? Instruct { get; init; }
    public string? Base { get; init; }
    public IReadOnlyList<string> Other { get; init; } = [];
}

/// <summary>
/// A well-known GGUF repository of a model and its file name per quantization, exactly as the source lists them (case
/// matters on the hub). A sharded quantization names its first shard (<c>...-00001-of-00002.gguf</c>); pulling it fetches
/// every shard. Only where a source (<see cref="Source"/>, a key of the catalog's sources table) confirms the repository
/// and the names; models without one have no GGUF entry and are pulled from their original repository.
/// </summary>
public sealed record GgufRepo
{
    public required string Repo { get; init; }
    /// <summary>Quantization (Q4_K_M, Q8_0, BF16...) to the file's path in the repository.</summary>
    public IReadOnlyDictionary<string, string> Files { get; init; } = new Dictionary<string, string>();
    public string? Source { get; init; }

    /// <summary>The quantization <c>pull ID</c> fetches when none is named.</summary>
    public const string DefaultQuant = "Q4_K_M";

    /// <summary>The file of a quantization (case-insensitive key), or null.</summary>
    public string? FileFor(string quant) =>
        Files.FirstOrDefault(kv => string.Equals(kv.Key, quant, StringComparison.OrdinalIgnoreCase)).Value;
}

/// <summary>Architecture facts as published (config.json / model card).</summary>
public sealed record ArchitectureFacts
{
    /// <summary>The <c>general.architecture</c> name llama.cpp's converter writes for this model (llama, qwen2, qwen3, gemma3,
    /// gpt-oss...); <see cref="EngineSupport"/> looks it up in the engine's architecture registry.</summary>
    public string? GgufArchitecture { get; init; }
    /// <summary>"dense" or "moe".</summary>
    public string? Kind { get; init; }
    public int? Layers { get; init; }
    public int? HiddenSize { get; init; }
    public int? Heads { get; init; }
    public int? KvHeads { get; init; }
    public int? HeadDim { get; init; }
    public int? Vocab { get; init; }
    public int? Context { get; init; }
    public bool? TiedEmbeddings { get; init; }
    public MoeFacts? Moe { get; init; }
    public LocalAttention? LocalAttention { get; init; }
    public MlaFacts? Mla { get; init; }
}

/// <summary>Mixture of experts: routed experts, experts chosen per token, shared experts, which layers are MoE.</summary>
public sealed record MoeFacts
{
    public int Experts { get; init; }
    public int ExpertsPerToken { get; init; }
    public int SharedExperts { get; init; }
    /// <summary>Every n-th layer is MoE (1 = all, 2 = alternate layers).</summary>
    public int MoeLayerStep { get; init; } = 1;
    public int? FirstDenseLayers { get; init; }
    /// <summary>Feed-forward size of one routed expert, where the published config gives it (null = unknown).</summary>
    public int? ExpertFfn { get; init; }
}

/// <summary>
/// Local attention on some layers: "sliding" (window of the last N tokens) or "chunked" (attention within
/// fixed chunks of N tokens, Llama 4). One layer in every <see cref="GlobalEvery"/> attends globally;
/// the others need only <see cref="Window"/> positions of KV cache.
/// </summary>
public sealed record LocalAttention
{
    public required string Kind { get; init; }
    public int Window { get; init; }
    public int GlobalEvery { get; init; }

    /// <summary>Number of global (full-context) layers out of <paramref name="layers"/>: layers i with (i+1) % GlobalEvery == 0.</summary>
    public int GlobalLayers(int layers) => GlobalEvery <= 1 ? layers : layers / GlobalEvery;
}

/// <summary>Multi-head latent attention (DeepSeek-V3): the KV cache holds KvLoraRank + RopeHeadDim values per token per layer.</summary>
public sealed record MlaFacts
{
    public int KvLoraRank { get; init; }
    public int RopeHeadDim { get; init; }
    public int? QLoraRank { get; init; }
    public int? VHeadDim { get; init; }
}
