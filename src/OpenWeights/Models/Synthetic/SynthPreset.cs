namespace OpenWeights.Models.Synthetic;

/// <summary>The exact shape of a real model (or a tiny test model), for random-weight GGUFs.</summary>
public sealed record SynthPreset(
    string Name, string Architecture, int VocabSize, int Dim, int Layers, int Heads, int KvHeads, int FfnDim,
    int ContextLength, float RopeBase, float RmsEps, bool TiedEmbeddings, string TokenizerPre, bool AddBos,
    bool Llama3RopeScaling = false, string ChatTemplate = SynthPreset.ChatMl)
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

    /// <summary>Gemma's turns (the real template also folds a system message into the first user turn and checks that
    /// roles alternate); "assistant" is spoken as "model".</summary>
    public const string Gemma =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

    /// <summary>Gemma 2 metadata: sliding window, attention and final logit soft-caps (as the converter writes them).</summary>
    private static Dictionary<string, object> Gemma2Keys(uint window) => new()
    {
        ["attention.sliding_window"] = window, ["attn_logit_softcapping"] = 50f, ["final_logit_softcapping"] = 30f,
    };

    /// <summary>Gemma 3 metadata: sliding window and the rotary base of sliding-window layers.</summary>
    private static Dictionary<string, object> Gemma3Keys(uint window) => new()
    {
        ["attention.sliding_window"] = window, ["rope.freq_base_swa"] = 10000f,
    };

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
        // google/gemma-2-2b: 26 layers, 8 heads of 256, 4 KV heads, window 4096 on even layers, tied.
        new("gemma-2-2b", "gemma2", 256000, 2304, 26, 8, 4, 9216, 8192, 10000f, 1e-6f, true, "default", AddBos: true, ChatTemplate: Gemma)
            { KeyLength = 256, Extra = Gemma2Keys(4096) },
        // google/gemma-3-270m: 18 layers, 4 heads of 256, 1 KV head, window 512, rotary 1e6 global / 1e4 local, tied.
        new("gemma-3-270m", "gemma3", 262144, 640, 18, 4, 1, 2048, 32768, 1000000f, 1e-6f, true, "default", AddBos: true, ChatTemplate: Gemma)
            { KeyLength = 256, Extra = Gemma3Keys(512) },
        // google/gemma-3-1b-it: 26 layers, 4 heads of 256, 1 KV head, window 512, tied.
        new("gemma-3-1b", "gemma3", 262144, 1152, 26, 4, 1, 6912, 32768, 1000000f, 1e-6f, true, "default", AddBos: true, ChatTemplate: Gemma)
            { KeyLength = 256, Extra = Gemma3Keys(512) },
        // Tiny Gemmas with a 64-key window so that short tests cross it: gemma2 layers 0, 2 slide; gemma3 layers 0-4
        // slide and layer 5 is global; their heads (128) are wider than dim/heads (64), as Gemma's are.
        new("tiny-gemma2", "gemma2", 1024, 256, 4, 4, 2, 512, 4096, 10000f, 1e-6f, true, "default", AddBos: true, ChatTemplate: Gemma)
            { KeyLength = 128, Extra = Gemma2Keys(64) },
        new("tiny-gemma3", "gemma3", 1024, 256, 6, 4, 1, 512, 4096, 1000000f, 1e-6f, true, "default", AddBos: true, ChatTemplate: Gemma)
            { KeyLength = 128, Extra = Gemma3Keys(64) },
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
