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
    /// <summary>The head dimension: dim / heads unless the model says otherwise (Gemma: 256 with dim 1152 and 4 heads),
    /// written as <c>{arch}.attention.key_length</c> / <c>value_length</c>.</summary>
    public int HeadDim => KeyLength ?? Dim / Heads;
    public int? KeyLength { get; init; }
    /// <summary>Rotated dimensions per head (partial rotary, Phi-3's 0.75 on some models); default: the whole head.</summary>
    public int? RopeDims { get; init; }
    /// <summary>The family's own metadata, keys without the <c>{arch}.</c> prefix (e.g. "attention.sliding_window" -> 512u).</summary>
    public IReadOnlyDictionary<string, object> Extra { get; init; } = new Dictionary<string, object>();

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
        // Qwen/Qwen3-0.6B: qwen3 architecture (QK-norm per head, NEOX rope), head_dim 128 with dim 1024 and 16 heads, tied.
        new("qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 3072, 40960, 1000000f, 1e-6f, true, "qwen2", AddBos: false) { KeyLength = 128 },
        // HuggingFaceTB/SmolLM3-3B: smollm3 architecture (no rotary on every 4th layer), Llama 3 tokenizer, tied.
        new("smollm3-3b", "smollm3", 128256, 2048, 36, 16, 4, 11008, 65536, 5000000f, 1e-6f, true, "llama-bpe", AddBos: false),
        // allenai/OLMo-2-0425-1B: olmo2 architecture (post-norms, whole-projection QK-norm, NEOX rope), untied head.
        new("olmo-2-0425-1b", "olmo2", 100352, 2048, 16, 16, 16, 8192, 4096, 500000f, 1e-6f, false, "dbrx", AddBos: false),
        // Tiny shapes for tests: every dimension a multiple of 256 so every block type applies.
        new("tiny-llama", "llama", 1024, 256, 2, 4, 2, 512, 2048, 10000f, 1e-5f, false, "llama-bpe", AddBos: true, Llama3RopeScaling: true, ChatTemplate: Llama3),
        new("tiny-qwen2", "qwen2", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, true, "qwen2", AddBos: false),
        // head_dim 128 given on its own (dim / heads would be 64), as Qwen3-0.6B does
        new("tiny-qwen3", "qwen3", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, true, "qwen2", AddBos: false) { KeyLength = 128 },
        // 4 layers so that one (layer 3) is a NoPE layer; untied (llama.cpp reads output.weight when present): with random
        // weights a tied head makes greedy decoding repeat one token, which would make the greedy test say little
        new("tiny-smollm3", "smollm3", 1024, 256, 4, 4, 2, 512, 2048, 5000000f, 1e-6f, false, "llama-bpe", AddBos: false),
        // grouped-query (2 KV heads), as OLMo 2 32B: the key norm spans kv_heads*head_dim, not dim
        new("tiny-olmo2", "olmo2", 1024, 256, 2, 4, 2, 512, 2048, 500000f, 1e-6f, false, "dbrx", AddBos: false),
    ];

    public static SynthPreset Get(string name) =>
        All.FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OpenWeightsException($"unknown preset '{name}' (choose from {string.Join(", ", All.Select(p => p.Name))})");
}
