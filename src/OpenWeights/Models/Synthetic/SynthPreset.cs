namespace OpenWeights.Models.Synthetic;

/// <summary>
/// Rope scaling keys for a synthetic model, as llama.cpp's converter writes them: `{arch}.rope.scaling.type`, `.factor`,
/// `.original_context_length` (when above 0) and `.attn_factor` (when not 1). Type "yarn" for YaRN; "longrope" with
/// the llama3 rope_freqs tensor and an attention factor for LongRoPE's arithmetic.
/// </summary>
public sealed record SynthRopeScaling(string Type, float Factor = 1f, int OriginalContext = 0, float AttnFactor = 1f);

/// <summary>Multi-head latent attention's shape (DeepSeek), written as the keys llama.cpp's converter writes: q_lora_rank
/// (when above 0), kv_lora_rank, key_length = kv_lora_rank + rope, value_length = kv_lora_rank, key_length_mla = nope + rope,
/// value_length_mla, rope.dimension_count = rope; head_count_kv must be 1.</summary>
public sealed record SynthMla(int QLoraRank, int KvLoraRank, int Nope, int Rope, int Value)
{
    public int KeyLength => Nope + Rope;
}

/// <summary>The exact shape of a real model (or a tiny test model), for random-weight GGUFs.</summary>
public sealed record SynthPreset(
    string Name, string Architecture, int VocabSize, int Dim, int Layers, int Heads, int KvHeads, int FfnDim,
    int ContextLength, float RopeBase, float RmsEps, bool TiedEmbeddings, string TokenizerPre, bool AddBos,
    bool Llama3RopeScaling = false, string ChatTemplate = SynthPreset.ChatMl, SynthRopeScaling? RopeScaling = null)
{
    /// <summary>The head dimension: dim / heads unless the model says otherwise (Gemma: 256 with dim 1152 and 4 heads),
    /// written as <c>{arch}.attention.key_length</c> / <c>value_length</c>.</summary>
    public int HeadDim => Mla is { } m ? m.KvLoraRank + m.Rope : KeyLength ?? Dim / Heads;
    public int? KeyLength { get; init; }
    /// <summary>Rotated dimensions per head (partial rotary, Phi-3's 0.75 on some models); default: the whole head.</summary>
    public int? RopeDims { get; init; }
    /// <summary>The family's own metadata, keys without the <c>{arch}.</c> prefix (e.g. "attention.sliding_window" -> 512u).</summary>
    public IReadOnlyDictionary<string, object> Extra { get; init; } = new Dictionary<string, object>();
    /// <summary>The file's general.name (default "synthetic {Name}").</summary>
    public string? GeneralName { get; init; }
    /// <summary>Global F32 vectors the family reads beside its blocks, written as given (GGUF name -> values), e.g. Phi-3's
    /// LongRoPE tables rope_factors_long.weight / rope_factors_short.weight.</summary>
    public IReadOnlyDictionary<string, float[]> ExtraTensors { get; init; } = new Dictionary<string, float[]>();

    // ---- mixture of experts (written as {arch}.expert_* keys when ExpertCount > 0) ----
    /// <summary>Routed experts per MoE layer (<c>expert_count</c>); 0: dense.</summary>
    public int ExpertCount { get; init; }
    /// <summary>Experts per token (<c>expert_used_count</c>).</summary>
    public int ExpertsUsed { get; init; }
    /// <summary>One expert's feed-forward length, written as <c>expert_feed_forward_length</c> when above 0 (families whose
    /// rule is <see cref="ExpertFfnRule.Ffn"/> use <see cref="FfnDim"/> for their experts and ignore it).</summary>
    public int ExpertFfnDim { get; init; }
    /// <summary>The shared expert's feed-forward length (<c>expert_shared_feed_forward_length</c>), when above 0.</summary>
    public int SharedExpertFfnDim { get; init; }
    /// <summary>Every how many layers one is a MoE layer (<c>interleave_moe_layer_step</c>, written when above 1).</summary>
    public int MoeLayerStep { get; init; } = 1;
    /// <summary>The spread of the router weights: larger than the other weights' so that a token's k-th and (k+1)-th expert
    /// differ clearly (two engines then pick the same experts; near-ties would make them differ for rounding reasons).</summary>
    public float RouterStd { get; init; } = 0.1f;
    /// <summary>The first this many layers are dense (<c>leading_dense_block_count</c>, written when above 0).</summary>
    public int LeadingDenseBlocks { get; init; }
    /// <summary>Whether MoE layers carry DeepSeek V3's selection bias exp_probs_b.</summary>
    public bool SelectionBias { get; init; }
    /// <summary>Multi-head latent attention (deepseek2); null for the other families.</summary>
    public SynthMla? Mla { get; init; }

    /// <summary>The experts' feed-forward length a loader derives for this preset (the family's <see cref="ExpertFfnRule"/>).</summary>
    public int EffectiveExpertFfnDim => Architectures.Get(Architecture).ExpertFfn switch
    {
        ExpertFfnRule.Ffn => FfnDim,
        ExpertFfnRule.KeyOrFfnOverUsed => ExpertFfnDim > 0 ? ExpertFfnDim : FfnDim / Math.Max(1, ExpertsUsed),
        _ => ExpertFfnDim > 0 ? ExpertFfnDim : FfnDim,
    };

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

    /// <summary>gpt-oss metadata beside the common and expert keys: the sliding window (the converter writes no pattern:
    /// llama.cpp's default period 2 makes even layers slide).</summary>
    private static Dictionary<string, object> GptOssKeys(uint window) => new() { ["attention.sliding_window"] = window };

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
        // Qwen/Qwen3-0.6B: qwen3 architecture (QK-norm per head, NEOX rope), head_dim 128 with dim 1024 and 16 heads, tied.
        new("qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 3072, 40960, 1000000f, 1e-6f, true, "qwen2", AddBos: false) { KeyLength = 128 },
        // HuggingFaceTB/SmolLM3-3B: smollm3 architecture (no rotary on every 4th layer), Llama 3 tokenizer, tied.
        new("smollm3-3b", "smollm3", 128256, 2048, 36, 16, 4, 11008, 65536, 5000000f, 1e-6f, true, "llama-bpe", AddBos: false),
        // allenai/OLMo-2-0425-1B: olmo2 architecture (post-norms, whole-projection QK-norm, NEOX rope), untied head.
        new("olmo-2-0425-1b", "olmo2", 100352, 2048, 16, 16, 16, 8192, 4096, 500000f, 1e-6f, false, "dbrx", AddBos: false),
        // Qwen/Qwen3-30B-A3B (config.json): 48 layers, d 2048, 32 heads / 4 KV heads of 128, 128 experts of 768, 8 per
        // token, intermediate_size 6144 (unused: every layer is MoE), rope 1e6, eps 1e-6, untied. ~30.5B total, 3.3B active.
        new("qwen3-30b-a3b", "qwen3moe", 151936, 2048, 48, 32, 4, 6144, 40960, 1000000f, 1e-6f, false, "qwen2", AddBos: false)
            { KeyLength = 128, ExpertCount = 128, ExpertsUsed = 8, ExpertFfnDim = 768 },
        // allenai/OLMoE-1B-7B-0924 (config.json): 16 layers, d 2048, 16 heads of 128 (no GQA), 64 experts of 1024
        // (intermediate_size, the experts' length in llama.cpp's olmoe), 8 per token, not renormalised, rope 10000, eps 1e-5,
        // vocab 50304, untied, context 4096. ~6.9B total, ~1.3B active.
        new("olmoe-1b-7b", "olmoe", 50304, 2048, 16, 16, 16, 1024, 4096, 10000f, 1e-5f, false, "olmo", AddBos: false)
            { ExpertCount = 64, ExpertsUsed = 8 },
        // mistralai/Mixtral-8x7B-v0.1 (config.json): llama with 8 experts of 14336, 2 per token, 32 layers, d 4096, 32/8
        // heads, vocab 32000, rope 1e6, eps 1e-5, untied, context 32768. ~46.7B total, ~12.9B active.
        new("mixtral-8x7b", "llama", 32000, 4096, 32, 32, 8, 14336, 32768, 1000000f, 1e-5f, false, "default", AddBos: true)
            { ExpertCount = 8, ExpertsUsed = 2 },
        // meta-llama/Llama-4-Scout-17B-16E (config.json text_config): 48 layers, d 5120, 40 heads / 8 KV heads of 128,
        // every layer MoE (interleave_moe_layer_step 1, written: llama.cpp requires the key): 16 experts of 8192 (intermediate_size),
        // top-1, a shared expert of 8192; intermediate_size_mlp 16384 is the (unused) dense length; vocab 202048, rope_theta
        // 500000 with llama3 scaling (factor 16, low 1, high 1, original 8192), rms 1e-5, context 10485760, untied.
        // 107.8B parameters in the text part (109B with the vision encoder), 17.2B active.
        new("llama-4-scout", "llama4", 202048, 5120, 48, 40, 8, 16384, 10485760, 500000f, 1e-5f, false, "llama4", AddBos: true, ChatTemplate: Llama3)
        {
            ExpertCount = 16, ExpertsUsed = 1, ExpertFfnDim = 8192,
            Extra = new Dictionary<string, object> { ["interleave_moe_layer_step"] = 1u },
            ExtraTensors = new Dictionary<string, float[]> { [Architectures.Names.RopeFreqs] = OpenWeights.Models.RopeScaling.Llama3FreqFactors(128, 500000, 16, 1, 1, 8192) },
        },
        // Tiny shapes for tests: every dimension a multiple of 256 so every block type applies.
        new("tiny-llama", "llama", 1024, 256, 2, 4, 2, 512, 2048, 10000f, 1e-5f, false, "llama-bpe", AddBos: true, Llama3RopeScaling: true, ChatTemplate: Llama3),
        new("tiny-qwen2", "qwen2", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, true, "qwen2", AddBos: false),
        // head_dim 128 given on its own (dim / heads would be 64), as Qwen3-0.6B does
        new("tiny-qwen3", "qwen3", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, true, "qwen2", AddBos: false) { KeyLength = 128 },
        // 4 layers so that one (layer 3) is a NoPE layer; untied (llama.cpp reads output.weight when present): with random
        // weights a tied head makes greedy decoding repeat one token, which would make the greedy test say little
        new("tiny-smollm3", "smollm3", 1024, 256, 4, 4, 2, 512, 2048, 5000000f, 1e-6f, false, "llama-bpe", AddBos: false),
        // Qwen3-MoE test shape: head_dim 128 of its own, 16 experts of 256, 4 per token (more experts than tokens pick, so
        // that a prefill groups tokens and a decode step skips most experts); untied so greedy runs say something
        new("tiny-qwen3moe", "qwen3moe", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-6f, false, "qwen2", AddBos: false)
            { KeyLength = 128, ExpertCount = 16, ExpertsUsed = 4, ExpertFfnDim = 256 },
        // OLMoE test shape: 64 experts of 256 (feed_forward_length), 8 per token as the real one (more than 16 experts: the
        // top-k tie rule is libstdc++'s introsort there, not a stable sort); no GQA (llama.cpp's olmoe sizes k_norm by dim)
        new("tiny-olmoe", "olmoe", 1024, 256, 2, 4, 4, 256, 2048, 10000f, 1e-5f, false, "olmo", AddBos: false)
            { ExpertCount = 64, ExpertsUsed = 8 },
        // Mixtral test shape: a llama file with 8 experts of 512 (feed_forward_length), 2 per token; 8 experts also switch
        // on llama.cpp's 8-expert quantization rules (attn_v / attn_k Q8_0, attn_output Q5_K in Q4_K_M)
        new("tiny-mixtral", "llama", 1024, 256, 2, 4, 2, 512, 2048, 1000000f, 1e-5f, false, "llama-bpe", AddBos: true, ChatTemplate: Llama3)
            { ExpertCount = 8, ExpertsUsed = 2 },
        // Llama 4 test shape: 4 layers (layer 3 NoPE with temperature, 0-2 chunked with QK-norm), experts in layers 1 and 3
        // (step 2, as Maverick), 16 experts of 256 top-1 (as Scout; 8 would give Q4_K_M its Mixtral rule, attn_output in Q5_K)
        // + a shared expert; Scout's llama3 frequency factors; a context past the 8192-chunk (which llama.cpp fixes) so
        // that tests can cross it
        new("tiny-llama4", "llama4", 1024, 256, 4, 4, 2, 512, 16384, 500000f, 1e-5f, false, "llama4", AddBos: true, ChatTemplate: Llama3)
        {
            ExpertCount = 16, ExpertsUsed = 1, ExpertFfnDim = 256, MoeLayerStep = 2,
            ExtraTensors = new Dictionary<string, float[]> { [Architectures.Names.RopeFreqs] = OpenWeights.Models.RopeScaling.Llama3FreqFactors(64, 500000, 16, 1, 1, 8192) },
        },
        // grouped-query (2 KV heads), as OLMo 2 32B: the key norm spans kv_heads*head_dim, not dim
        new("tiny-olmo2", "olmo2", 1024, 256, 2, 4, 2, 512, 2048, 500000f, 1e-6f, false, "dbrx", AddBos: false),
        // microsoft/Phi-4-mini-instruct (config.json): 32 L, d 3072, 24/8 heads, head_dim 128, ffn 8192, vocab 200064,
        // tied; partial_rotary_factor 0.75 (96 rotated dims), rope_theta 10000, rms_norm_eps 1e-5; LongRoPE with
        // max_position_embeddings 131072 / original 4096 and its long/short factors (48 each), attn_factor as the
        // converter computes it: sqrt(1 + ln(131072/4096) / ln(4096)). Its sliding_window (262144) is not applied by llama.cpp.
        new SynthPreset("phi-4-mini", "phi3", 200064, 3072, 32, 24, 8, 8192, 131072, 10000f, 1e-5f, true, "gpt-4o", AddBos: false, ChatTemplate: Phi3)
        {
            RopeDims = 96,
            Extra = Phi3LongRope(131072, 4096),
            ExtraTensors = new Dictionary<string, float[]>
            {
                [Architectures.Names.RopeFactorsLong] = Phi4MiniLongFactors,
                [Architectures.Names.RopeFactorsShort] = Enumerable.Repeat(1f, 48).ToArray(),
            },
        },
        // Phi-3 test shape: partial rotary (48 of 64 dims, as Phi-4-mini's 0.75), LongRoPE with an original context of
        // 256 (short table up to a 256-token context, long beyond), factor tables that differ from 1 in both. Its
        // general.name must not contain "phi3" / "phi-3": llama.cpp then sets token attributes of "</s>", which a
        // byte-level vocabulary lacks, and refuses the file (_Map_base::at).
        new SynthPreset("tiny-phi3", "phi3", 1024, 256, 2, 4, 2, 512, 4096, 10000f, 1e-5f, false, "gpt-4o", AddBos: false, ChatTemplate: Phi3)
        {
            RopeDims = 48,
            GeneralName = "synthetic tiny Phi-4-mini-like",
            Extra = Phi3LongRope(4096, 256),
            ExtraTensors = new Dictionary<string, float[]>
            {
                [Architectures.Names.RopeFactorsLong] = Enumerable.Range(0, 24).Select(i => 1f + 15f * i * i / (23f * 23f)).ToArray(),
                [Architectures.Names.RopeFactorsShort] = Enumerable.Range(0, 24).Select(i => 1f + 0.25f * i / 23f).ToArray(),
            },
        },
        // microsoft/Phi-3.5-MoE-instruct (config.json): 32 layers, d 4096, 32 / 8 heads of 128, 16 experts of 6400, top-2,
        // vocab 32064, untied with an lm_head bias, rope_theta 10000, rms_norm_eps 1e-5, LongRoPE with max_position_embeddings
        // 131072 / original 4096 and attn_factor as the converter computes it: 41.9B parameters, 6.6B active. Its factor
        // tables here are stand-ins of the right length (64; the published ones are close to 1); general.name avoids
        // "phi-3" (see tiny-phi3).
        new SynthPreset("phi-3.5-moe", "phimoe", 32064, 4096, 32, 32, 8, 6400, 131072, 10000f, 1e-5f, false, "gpt-4o", AddBos: false, ChatTemplate: Phi3)
        {
            GeneralName = "synthetic Phi-MoE 16x3.8B",
            ExpertCount = 16, ExpertsUsed = 2,
            Extra = Phi3LongRope(131072, 4096),
            ExtraTensors = PhiMoeExtras(4096, 32064, Enumerable.Range(0, 64).Select(i => 1f + 0.05f * i / 63f).ToArray(),
                Enumerable.Range(0, 64).Select(i => 1f + 0.8f * i / 63f).ToArray()),
        },
        // Phi-3.5-MoE test shape: 16 experts of 512, top-2 as the real model; full rotary of 64 with LongRoPE (original
        // context 256, factor tables that differ from 1); biases on the norms, Q/K/V/O and the output head.
        new SynthPreset("tiny-phimoe", "phimoe", 1024, 256, 2, 4, 2, 512, 4096, 10000f, 1e-5f, false, "gpt-4o", AddBos: false, ChatTemplate: Phi3)
        {
            ExpertCount = 16, ExpertsUsed = 2,
            Extra = Phi3LongRope(4096, 256),
            ExtraTensors = PhiMoeExtras(256, 1024, Enumerable.Range(0, 32).Select(i => 1f + 0.25f * i / 31f).ToArray(),
                Enumerable.Range(0, 32).Select(i => 1f + 15f * i * i / (31f * 31f)).ToArray()),
        },
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
        // openai/gpt-oss-20b (config.json): 24 layers, hidden 2880, 64 query heads of 64 (4096 wide, not 2880), 8 KV heads,
        // 32 experts of 2880 with 4 per token (intermediate_size 2880, also written as feed_forward_length), vocab 201088
        // (o200k_harmony), sliding_window 128 on even layers, rope_theta 150000 with YaRN factor 32 over
        // original_max_position_embeddings 4096 (context 131072), rms_norm_eps 1e-5, untied. ~20.9B total, ~3.6B active.
        new("gpt-oss-20b", "gpt-oss", 201088, 2880, 24, 64, 8, 2880, 131072, 150000f, 1e-5f, false, "gpt-4o", AddBos: false,
            ChatTemplate: Harmony, RopeScaling: new SynthRopeScaling("yarn", 32f, 4096))
            { KeyLength = 64, ExpertCount = 32, ExpertsUsed = 4, ExpertFfnDim = 2880, Extra = GptOssKeys(128) },
        // openai/gpt-oss-120b: as the 20b with 36 layers and 128 experts (~117B total, ~5.1B active).
        new("gpt-oss-120b", "gpt-oss", 201088, 2880, 36, 64, 8, 2880, 131072, 150000f, 1e-5f, false, "gpt-4o", AddBos: false,
            ChatTemplate: Harmony, RopeScaling: new SynthRopeScaling("yarn", 32f, 4096))
            { KeyLength = 64, ExpertCount = 128, ExpertsUsed = 4, ExpertFfnDim = 2880, Extra = GptOssKeys(128) },
        // gpt-oss test shape: every knob of the 20b (heads × head_dim 512 ≠ dim, sinks, biases, window 128 on layers 0 and
        // 2, YaRN 32 over 4096 with base 150000, top-4 softmax-weighted experts) with 8 experts of 256
        new("tiny-gpt-oss", "gpt-oss", 1024, 256, 4, 8, 2, 256, 131072, 150000f, 1e-5f, false, "gpt-4o", AddBos: false,
            ChatTemplate: Harmony, RopeScaling: new SynthRopeScaling("yarn", 32f, 4096))
            { KeyLength = 64, ExpertCount = 8, ExpertsUsed = 4, ExpertFfnDim = 256, Extra = GptOssKeys(128) },
        // deepseek-ai/DeepSeek-V3 (config.json; also R1): 61 layers (the first 3 dense, ffn 18432), d 7168, 128 heads; MLA with
        // q_lora_rank 1536, kv_lora_rank 512, qk_nope 128, qk_rope 64, v 128; 256 routed experts of 2048, top-8, sigmoid with
        // e_score_correction_bias, 8 groups of which 4, normalised, routed_scaling_factor 2.5, one shared expert; vocab 129280,
        // untied, rope_theta 10000 with YaRN factor 40 over 4096 (mscale = mscale_all_dim = 1), rms 1e-6, context 163840.
        // ~671B parameters (the multi-token-prediction layer not counted), ~37B active.
        new("deepseek-v3", "deepseek2", 129280, 7168, 61, 128, 1, 18432, 163840, 10000f, 1e-6f, false, "llama-bpe", AddBos: true,
            RopeScaling: new SynthRopeScaling("yarn", 40f, 4096))
        {
            Mla = new SynthMla(1536, 512, 128, 64, 128), ExpertCount = 256, ExpertsUsed = 8, ExpertFfnDim = 2048, SharedExpertFfnDim = 2048,
            LeadingDenseBlocks = 3, SelectionBias = true, Extra = DeepSeekKeys(1, 2.5f, true, 2, 8, 4, 1f),
        },
        // deepseek-ai/DeepSeek-V2-Lite (config.json): 27 layers (the first dense, ffn 10944), d 2048, 16 heads; MLA without a
        // query bottleneck (q_lora_rank null), kv_lora_rank 512, qk_nope 128, qk_rope 64, v 128; 64 routed experts of 1408,
        // top-6, softmax, not normalised, scale 1, two shared experts; vocab 102400, untied, YaRN factor 40 over 4096 with
        // mscale = mscale_all_dim = 0.707, rms 1e-6, context 163840. ~15.7B parameters, ~2.4B active.
        new("deepseek-v2-lite", "deepseek2", 102400, 2048, 27, 16, 1, 10944, 163840, 10000f, 1e-6f, false, "llama-bpe", AddBos: true,
            RopeScaling: new SynthRopeScaling("yarn", 40f, 4096))
        {
            Mla = new SynthMla(0, 512, 128, 64, 128), ExpertCount = 64, ExpertsUsed = 6, ExpertFfnDim = 1408, SharedExpertFfnDim = 2816,
            LeadingDenseBlocks = 1, Extra = DeepSeekKeys(2, 1f, false, 1, 1, 1, 0.707f),
        },
        // DeepSeek-V3 test shape: 3 layers (layer 0 dense), 4 heads, MLA with q_lora 256, kv_lora 256, nope 64, rope 32, v 64;
        // 16 experts of 256 in 4 groups (2 used), top-4, sigmoid + selection bias, normalised, scale 2.5, one shared expert;
        // YaRN factor 4 over 1024 with mscale_all_dim 1
        new("tiny-deepseek3", "deepseek2", 1024, 256, 3, 4, 1, 512, 4096, 10000f, 1e-6f, false, "llama-bpe", AddBos: true,
            RopeScaling: new SynthRopeScaling("yarn", 4f, 1024))
        {
            Mla = new SynthMla(256, 256, 64, 32, 64), ExpertCount = 16, ExpertsUsed = 4, ExpertFfnDim = 256, SharedExpertFfnDim = 256,
            LeadingDenseBlocks = 1, SelectionBias = true, Extra = DeepSeekKeys(1, 2.5f, true, 2, 4, 2, 1f),
            // sigmoid scores crowd around 0.5: a wider router keeps the groups' top-2 sums apart (no near-tie for rounding to flip)
            RouterStd = 0.5f,
        },
        // DeepSeek-V2-Lite test shape: q_lora_rank 0 (attn_q), softmax top-4 of 16 without groups, not normalised, two shared
        // experts, YaRN factor 4 over 1024 with mscale_all_dim 0.707
        new("tiny-deepseek2-lite", "deepseek2", 1024, 256, 3, 4, 1, 512, 4096, 10000f, 1e-6f, false, "llama-bpe", AddBos: true,
            RopeScaling: new SynthRopeScaling("yarn", 4f, 1024))
        {
            Mla = new SynthMla(0, 256, 64, 32, 64), ExpertCount = 16, ExpertsUsed = 4, ExpertFfnDim = 256, SharedExpertFfnDim = 512,
            LeadingDenseBlocks = 1, Extra = DeepSeekKeys(2, 1f, false, 1, 1, 1, 0.707f),
        },
    ];

    /// <summary>DeepSeek's router keys (llama.cpp's deepseek2 names): shared expert count, weights scale and norm, gating
    /// function (1 softmax, 2 sigmoid), groups, and YaRN's log multiplier as the converter writes it (0.1 · mscale_all_dim).</summary>
    private static Dictionary<string, object> DeepSeekKeys(uint shared, float scale, bool norm, uint gating, uint groups, uint groupsUsed, float mscaleAllDim) => new()
    {
        ["expert_shared_count"] = shared, ["expert_weights_scale"] = scale, ["expert_weights_norm"] = norm, ["expert_gating_func"] = gating,
        ["expert_group_count"] = groups, ["expert_group_used_count"] = groupsUsed, ["rope.scaling.yarn_log_multiplier"] = 0.1f * mscaleAllDim,
    };

    /// <summary>gpt-oss's harmony turns, reduced to messages without system preamble, reasoning or tools: a message is
    /// &lt;|start|&gt;role&lt;|message|&gt;text&lt;|end|&gt;, the assistant's on the final channel and closed by
    /// &lt;|return|&gt;, the token that ends a final answer (the real template, openai-gpt-oss-120b.jinja, writes &lt;|end|&gt;
    /// for past answers; llama.cpp and our tokenizer do not end generation at &lt;|end|&gt; in a vocabulary with
    /// &lt;|return|&gt; and &lt;|call|&gt;, since analysis messages end with it). The harmony chat format lives in Inference.</summary>
    public const string Harmony =
        "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|start|>assistant<|channel|>final<|message|>' + message['content'] + '<|return|>' }}{% else %}{{ '<|start|>' + message['role'] + '<|message|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|start|>assistant' }}{% endif %}";

    /// <summary>Phi-3's chat template (&lt;|user|&gt; ... &lt;|end|&gt;).</summary>
    public const string Phi3 =
        "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";

    /// <summary>The LongRoPE metadata llama.cpp's converter writes for a Phi-3 model: the original context and the
    /// magnitude factor sqrt(1 + ln(s)/ln(original)), s = context / original.</summary>
    private static Dictionary<string, object> Phi3LongRope(int context, int original) => new()
    {
        ["rope.scaling.original_context_length"] = (uint)original,
        ["rope.scaling.attn_factor"] = (float)Math.Sqrt(1 + Math.Log((double)context / original) / Math.Log(original)),
    };

    /// <summary>Phi-3.5-MoE's tensors beside its blocks: the LongRoPE tables and the biases of the final norm and the output
    /// head (small deterministic values, so that a wrong bias shows in the logits).</summary>
    private static Dictionary<string, float[]> PhiMoeExtras(int dim, int vocab, float[] shortFactors, float[] longFactors) => new()
    {
        [Architectures.Names.RopeFactorsShort] = shortFactors,
        [Architectures.Names.RopeFactorsLong] = longFactors,
        [Architectures.Names.OutputNormBias] = Enumerable.Range(0, dim).Select(i => 0.1f * MathF.Sin(0.7f * i + 1f)).ToArray(),
        [Architectures.Names.OutputBias] = Enumerable.Range(0, vocab).Select(i => 0.1f * MathF.Sin(1.3f * i + 2f)).ToArray(),
    };

    // microsoft/Phi-4-mini-instruct config.json rope_scaling.long_factor
    private static float[] Phi4MiniLongFactors =>
    [
        1f, 1.118320672f, 1.250641126f, 1.398617824f, 1.564103225f, 1.74916897f, 1.956131817f, 2.187582649f,
        2.446418898f, 2.735880826f, 3.059592084f, 3.421605075f, 3.826451687f, 4.279200023f, 4.785517845f, 5.351743533f,
        5.984965424f, 6.693110555f, 7.485043894f, 8.370679318f, 9.36110372f, 10.4687158f, 11.70738129f, 13.09260651f,
        14.64173252f, 16.37415215f, 18.31155283f, 20.47818807f, 22.90118105f, 25.61086418f, 28.64115884f, 32.03f,
        32.1f, 32.13f, 32.23f, 32.6f, 32.61f, 32.64f, 32.66f, 32.7f, 32.71f, 32.93f, 32.97f, 33.28f, 33.49f, 33.5f,
        44.16f, 47.77f,
    ];

    public static SynthPreset Get(string name) =>
        All.FirstOrDefault(p => p.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OpenWeightsException($"unknown preset '{name}' (choose from {string.Join(", ", All.Select(p => p.Name))})");
}
