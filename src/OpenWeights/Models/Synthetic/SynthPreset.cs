namespace OpenWeights.Models.Synthetic;

/// <summary>
/// Rope scaling keys for a synthetic model, as llama.cpp's converter writes them: `{arch}.rope.scaling.type`, `.factor`,
/// `.original_context_length` (when above 0) and `.attn_factor` (when not 1). Type "yarn" for YaRN; "longrope" with
/// the llama3 rope_freqs tensor and an attention factor for LongRoPE's arithmetic.
/// </summary>
public sealed record SynthRopeScaling(string Type, float Factor = 1f, int OriginalContext = 0, float AttnFactor = 1f);

/// <summary>The exact shape of a real model (or a tiny test model), for random-weight GGUFs.</summary>
public sealed record SynthPreset(
    string Name, string Architecture, int VocabSize, int Dim, int Layers, int Heads, int KvHeads, int FfnDim,
    int ContextLength, float RopeBase, float RmsEps, bool TiedEmbeddings, string TokenizerPre, bool AddBos,
    bool Llama3RopeScaling = false, string ChatTemplate = SynthPreset.ChatMl, SynthRopeScaling? RopeScaling = null)
{
    public int HeadDim => Dim / Heads;

    public const string ChatMl =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    public const string Llama3 =
        "{{- bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    public static readonly IReadOnlyList<SynthPreset> All =
    [
        // HuggingFaceTB/SmolLM2-135M: llama architecture, tied embeddings.
        new("smollm2-135m", "llama", 49152, 576, 30, 9, 3, 1536, 8192, 100000f, 1e-5f, true, "smollm", AddBos: false),
        // Qwen/Qwen2.5-0.5B: qwen2 architecture (QKV bias, NEOX rope), tied embeddings.
        new("qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, 32768, 1000000f, 1e-6f, true, "qwen2", AddBos: false),
        // meta-llama/Llama-3.2-1B: llama3 rope scaling (factor 32, low 1, high 4, original context 8192), tied.
        new("llama-3.2-1b", "llama", 128256, 2048, 16, 32, 8, 8192, 131072, 500000f, 1e-5f, true, "llama-bpe", AddBos: true, Llama3RopeScaling: true, ChatTemplate: Llama3),
        // Tiny shapes for tests: every dimension a multiple of 256 so every block type applies.
        new("tiny-llama", "llama", 1024, 256, 2, 4, 2, 512, 2048, 10000f, 1e-5f, false, "llama-bpe", AddBos: true, Llama3RopeScaling: true, ChatTemplate: Llama3),
        new("tiny-qwen2", "qwen2", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, true, "qwen2", AddBos: false),
    ];

    /// <summary>
    /// A preset with a model's exact shape, for measuring its speed without its weights (llama / qwen2 dense only).
    /// The feed-forward size comes from the shape, else from a known preset of the same dimensions, else from the
    /// parameter count (rounded to a multiple of 256; the estimate is added to <paramref name="assumptions"/>).
    /// </summary>
    public static SynthPreset FromShape(OpenWeights.Catalog.ModelShape s, List<string>? assumptions = null)
    {
        string arch = s.Architecture ?? throw new OpenWeightsException($"{s.Name}: the engine cannot run this architecture, so its speed cannot be measured (llama and qwen2 dense models only)");
        if (arch is not ("llama" or "qwen2")) throw new OpenWeightsException($"{s.Name}: architecture {arch} cannot be measured (llama and qwen2 dense models only)");
        int Need(int? v, string what) => v is > 0 ? v.Value : throw new OpenWeightsException($"{s.Name}: the {what} is unknown, so a model of its shape cannot be built");
        int layers = Need(s.Layers, "layer count"), dim = Need(s.HiddenSize, "hidden size"), heads = Need(s.Heads, "head count");
        int kv = s.KvHeads ?? heads, vocab = Need(s.Vocab, "vocabulary size");
        if (dim % heads != 0 || (s.HeadDim is { } hd && hd != dim / heads)) throw new OpenWeightsException($"{s.Name}: head dim {s.HeadDim} != hidden/heads; not supported by the synthetic model");
        bool tied = s.TiedEmbeddings ?? false;
        var known = All.FirstOrDefault(p => p.Architecture == arch && p.Layers == layers && p.Dim == dim && p.Heads == heads && p.KvHeads == kv && p.VocabSize == vocab);
        int ffn;
        if (s.FfnHidden is > 0) ffn = s.FfnHidden.Value;
        else if (known is not null) ffn = known.FfnDim;
        else
        {
            long q = dim, kvd = (long)kv * (dim / heads);
            long fixedParams = (long)vocab * dim * (tied ? 1 : 2) + dim + layers * (dim * (q + 2 * kvd) + q * dim + 2L * dim + (arch == "qwen2" ? q + 2 * kvd : 0));
            double f = (s.TotalParams - fixedParams) / (3.0 * dim * layers);
            ffn = (int)Math.Max(256, Math.Round(f / 256) * 256);
            assumptions?.Add($"feed-forward size {ffn} estimated from the parameter count (the catalog does not give it)");
        }
        int ctx = s.ContextLength ?? 4096;
        return known is not null && known.FfnDim == ffn
            ? known with { Name = s.Name }
            : new SynthPreset(s.Name, arch, vocab, dim, layers, heads, kv, ffn, ctx, arch == "qwen2" ? 1000000f : 500000f, arch == "qwen2" ? 1e-6f : 1e-5f,
                tied, arch == "qwen2" ? "qwen2" : "llama-bpe", AddBos: arch != "qwen2", ChatTemplate: arch == "qwen2" ? ChatMl : Llama3);
    }

    public static SynthPreset Get(string name) =>
        All.FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OpenWeightsException($"unknown preset '{name}' (choose from {string.Join(", ", All.Select(p => p.Name))})");
}
