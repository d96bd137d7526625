using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;

namespace OpenWeights.Models;

/// <summary>Hyper-parameters of a transformer, read from GGUF metadata keys `{arch}.*`.</summary>
public sealed record ModelConfig
{
    public required ArchitectureSpec Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int Dim { get; init; }              // embedding length
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int FfnDim { get; init; }
    public required int ContextLength { get; init; }
    public required float RmsEps { get; init; }
    public required float RopeBase { get; init; }
    public required int RopeDims { get; init; }
    public required float RopeFreqScale { get; init; }  // 1/factor for linear and YaRN scaling
    public string? RopeScalingType { get; init; }
    /// <summary>YaRN's ramp (`rope.scaling.type` = yarn), else null.</summary>
    public OpenWeights.Tensors.Kernels.RopeYarn? RopeYarn { get; init; }
    /// <summary>Magnitude on the rotary cos/sin (q·k scales by its square): YaRN's 0.1·ln(factor) + 1 (or the
    /// `rope.scaling.yarn_attn_factor` that replaces it), times `rope.scaling.attn_factor`; 1 without either.</summary>
    public float RopeMscale { get; init; } = 1f;
    /// <summary>Rotary pairing: the architecture's, unless the source says otherwise (`openweights.rope.style`, set when
    /// reading Hugging Face checkpoints whose Q/K rows were not permuted the way GGUF converters permute them).</summary>
    public required OpenWeights.Tensors.Kernels.RopeStyle RopeStyle { get; init; }

    /// <summary>
    /// The rotary embedding these hyper-parameters describe; <paramref name="freqFactors"/>: (RopeDims/2) per-frequency
    /// divisors (the `rope_freqs` tensor of llama3 scaling), or null. LongRoPE (Phi-3, `rope.scaling.type` = longrope)
    /// passes `rope_factors_long` when the context it is created for exceeds `rope.scaling.original_context_length`, else
    /// `rope_factors_short` (as llama.cpp chooses), and gets its attention factor from `rope.scaling.attn_factor` in <see cref="RopeMscale"/>.
    /// </summary>
    public OpenWeights.Tensors.Kernels.Rope CreateRope(float[]? freqFactors = null) =>
        new(RopeDims, RopeStyle, RopeBase, RopeFreqScale, freqFactors, RopeYarn, RopeMscale);

    // ---- mixture of experts (0 for dense models) ----
    /// <summary>Routed experts per MoE layer (<c>{arch}.expert_count</c>); 0: a dense model.</summary>
    public int ExpertCount { get; init; }
    /// <summary>Experts each token is routed to (<c>{arch}.expert_used_count</c>, the k of top-k).</summary>
    public int ExpertsUsed { get; init; }
    /// <summary>Feed-forward length of one expert (<c>{arch}.expert_feed_forward_length</c>, or the family's fallback,
    /// <see cref="ArchitectureSpec.ExpertFfn"/>).</summary>
    public int ExpertFfnDim { get; init; }
    /// <summary>Feed-forward length of the shared expert (<c>{arch}.expert_shared_feed_forward_length</c>); 0: none
    /// given (a family with a shared expert picks its own fallback).</summary>
    public int SharedExpertFfnDim { get; init; }
    /// <summary><c>{arch}.expert_gating_func</c> when the file gives one (llama.cpp's values 1, 2, 3), else null.</summary>
    public Common.ExpertGating? ExpertGatingFunc { get; init; }
    /// <summary><c>{arch}.expert_weights_norm</c> when the file gives it, else null.</summary>
    public bool? ExpertWeightsNorm { get; init; }
    /// <summary><c>{arch}.expert_weights_scale</c> when the file gives it, else null.</summary>
    public float? ExpertWeightsScale { get; init; }

    /// <summary>Every how many layers one is a MoE layer (<c>{arch}.interleave_moe_layer_step</c>, Llama 4: 1 or 2;
    /// default 1, every layer): layer l is MoE when (l + 1) % step == 0, the others run the dense feed-forward.</summary>
    public int MoeLayerStep { get; init; } = 1;

    /// <summary>The first this many layers run the dense feed-forward, the rest are MoE layers
    /// (<c>{arch}.leading_dense_block_count</c>, DeepSeek: 1 in V2-Lite, 3 in V3; default 0).</summary>
    public int LeadingDenseBlocks { get; init; }

    /// <summary>Group-limited routing (<c>{arch}.expert_group_count</c> / <c>expert_group_used_count</c>, DeepSeek V3: 8 / 4):
    /// the experts fall into this many equal groups and a token picks its experts from its best <see cref="ExpertGroupsUsed"/>
    /// groups only; 0 or 1: no groups.</summary>
    public int ExpertGroupCount { get; init; }
    public int ExpertGroupsUsed { get; init; }

    /// <summary>Multi-head latent attention's ranks and head widths (DeepSeek V2/V3, Kimi K2); null for other attention.</summary>
    public LatentAttentionConfig? Mla { get; init; }

    /// <summary>Whether layer <paramref name="layer"/> is a mixture-of-experts layer (the model has experts and
    /// <see cref="MoeLayerStep"/> and <see cref="LeadingDenseBlocks"/> pick the layer).</summary>
    public bool IsMoeLayer(int layer) => IsMoeLayer(ExpertCount, MoeLayerStep, layer, LeadingDenseBlocks);

    /// <summary>The rule of <see cref="IsMoeLayer(int)"/> (llama.cpp's llama4 and deepseek2 loaders), for writers without a config.</summary>
    public static bool IsMoeLayer(int expertCount, int moeLayerStep, int layer, int leadingDense = 0) =>
        expertCount > 0 && layer >= leadingDense && (layer + 1) % Math.Max(1, moeLayerStep) == 0;

    /// <summary>llama.cpp's LLAMA_MAX_EXPERTS.</summary>
    public const int MaxExperts = 512;

    private LatentAttentionConfig MlaOf => Mla ?? throw new InvalidOperationException($"{Architecture.Name} has no latent attention");

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    /// <summary>Element count of a 1-D block tensor of this shape (a norm or a bias).</summary>
    public int Elements(TensorShape s) => s switch
    {
        TensorShape.Dim => Dim, TensorShape.HeadDim => HeadDim, TensorShape.QDim => QDim, TensorShape.KvDim => KvDim, TensorShape.Heads => Heads,
        TensorShape.RouterBias => ExpertCount,
        TensorShape.MlaQANorm => MlaOf.QLoraRank, TensorShape.MlaKvANorm => MlaOf.KvLoraRank,
        TensorShape.ExpertFfnBias => ExpertCount * ExpertFfnDim, TensorShape.ExpertDownBias => ExpertCount * Dim,
        _ => throw new ArgumentException($"{s} is a matrix", nameof(s)),
    };

    /// <summary>(rows, cols) = (output features, input features) of a 2-D block tensor of this shape.</summary>
    public (int Rows, int Cols) Matrix(TensorShape s) => s switch
    {
        TensorShape.Q => (QDim, Dim), TensorShape.Kv => (KvDim, Dim), TensorShape.O => (Dim, QDim),
        TensorShape.Ffn => (FfnDim, Dim), TensorShape.Down => (Dim, FfnDim),
        TensorShape.Qkv => (QDim + 2 * KvDim, Dim), TensorShape.GateUp => (2 * FfnDim, Dim),
        // mixture of experts: the router, one expert of a 3-D expert tensor, the shared expert
        TensorShape.Router => (ExpertCount, Dim),
        TensorShape.ExpertFfn => (ExpertFfnDim, Dim), TensorShape.ExpertDown => (Dim, ExpertFfnDim),
        TensorShape.SharedFfn => (SharedExpertFfnDim, Dim), TensorShape.SharedDown => (Dim, SharedExpertFfnDim),
        // multi-head latent attention (one head's slice of the 3-D attn_k_b / attn_v_b)
        TensorShape.MlaQA => (MlaOf.QLoraRank, Dim), TensorShape.MlaQB => (Heads * MlaOf.KeyLength, MlaOf.QLoraRank),
        TensorShape.MlaQ => (Heads * MlaOf.KeyLength, Dim), TensorShape.MlaKvA => (MlaOf.KvLoraRank + RopeDims, Dim),
        TensorShape.MlaKB => (MlaOf.KvLoraRank, MlaOf.KeyLength - RopeDims), TensorShape.MlaVB => (MlaOf.ValueLength, MlaOf.KvLoraRank),
        TensorShape.MlaO => (Dim, Heads * MlaOf.ValueLength),
        _ => throw new ArgumentException($"{s} is a vector", nameof(s)),
    };

    public static ModelConfig FromGguf(IModelMetadata f)
    {
        var arch = Architectures.Get(f.GetString("general.architecture"));
        string a = arch.Name;
        string file = Path.GetFileName(f.Path);
        int Req(string key)
        {
            long v = f.GetInteger($"{a}.{key}") ?? throw new InvalidModelFileException($"{Path.GetFileName(f.Path)}: metadata {a}.{key} is missing");
            if (v <= 0 || v > 1 << 24) throw new InvalidModelFileException($"{Path.GetFileName(f.Path)}: metadata {a}.{key} = {v} is out of range");
            return (int)v;
        }
        int dim = Req("embedding_length");
        int heads = Req("attention.head_count");
        int kvHeads = f.Contains($"{a}.attention.head_count_kv") ? Req("attention.head_count_kv") : heads;
        if (heads % kvHeads != 0) throw new InvalidModelFileException($"{file}: metadata {a}.attention.head_count {heads} is not a multiple of head_count_kv {kvHeads}");
        int headDim = f.Contains($"{a}.attention.key_length") ? Req("attention.key_length") : dim / heads;
        if (!f.Contains($"{a}.attention.key_length") && dim % heads != 0) throw new InvalidModelFileException($"{file}: metadata {a}.embedding_length {dim} is not a multiple of attention.head_count {heads}");
        if (headDim == 0) throw new InvalidModelFileException($"{file}: metadata {a}.embedding_length {dim} is smaller than attention.head_count {heads}");
        int vocab = f.Contains($"{a}.vocab_size") ? Req("vocab_size")
            : f.GetArray<string>("tokenizer.ggml.tokens")?.Length
            ?? (f is ITensorSource src && src.TryGetTensor(Architectures.Names.TokenEmbedding, out var te) ? (int)te.Dimensions[^1] : throw new InvalidModelFileException("cannot tell the vocabulary size"));
        string? scaling = f.GetString($"{a}.rope.scaling.type");
        float freqScale = 1f, mscale = 1f;
        OpenWeights.Tensors.Kernels.RopeYarn? yarn = null;
        double Positive(string key, double def)
        {
            double v = f.GetNumber($"{a}.{key}") ?? def;
            if (!(v > 0) || !double.IsFinite(v)) throw new InvalidModelFileException($"{file}: metadata {a}.{key} {v} must be a positive number");
            return v;
        }
        if (scaling is "linear" or "yarn") freqScale = (float)(1.0 / Positive("rope.scaling.factor", 1.0));
        if (scaling == "yarn")
        {
            // As llama.cpp: the ramp spans the original context (default: the context length), ext_factor 1, beta 32 / 1,
            // and the cos/sin magnitude 0.1·ln(factor) + 1 (transformers' attention_factor, when the converter wrote
            // it as yarn_attn_factor, replaces that; llama.cpp reads the four yarn_* keys only for some architectures).
            long orig = f.GetInteger($"{a}.rope.scaling.original_context_length") ?? Req("context_length");
            if (orig <= 0 || orig > 1 << 24) throw new InvalidModelFileException($"{file}: metadata {a}.rope.scaling.original_context_length {orig} is out of range");
            double ext = f.GetNumber($"{a}.rope.scaling.yarn_ext_factor") ?? 1.0;
            if (!(ext >= 0) || !double.IsFinite(ext)) throw new InvalidModelFileException($"{file}: metadata {a}.rope.scaling.yarn_ext_factor {ext} must be a number >= 0");
            yarn = new((int)orig, (float)ext, (float)Positive("rope.scaling.yarn_beta_fast", 32), (float)Positive("rope.scaling.yarn_beta_slow", 1));
            if (ext != 0) mscale = f.Contains($"{a}.rope.scaling.yarn_attn_factor") ? (float)Positive("rope.scaling.yarn_attn_factor", 1) : OpenWeights.Tensors.Kernels.RopeYarn.Mscale(1f / freqScale);
        }
        // llama3-style scaling arrives as the rope_freqs tensor and needs no key
        mscale *= (float)Positive("rope.scaling.attn_factor", 1.0);
        int ffn = Req("feed_forward_length");
        var experts = ReadExperts(f, arch, ffn);
        var config = new ModelConfig
        {
            Architecture = arch,
            VocabSize = vocab,
            Dim = dim,
            Layers = Req("block_count"),
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            FfnDim = ffn,
            ExpertCount = experts.Count, ExpertsUsed = experts.Used, ExpertFfnDim = experts.Ffn, SharedExpertFfnDim = experts.SharedFfn,
            ExpertGatingFunc = experts.Gating, ExpertWeightsNorm = experts.Norm, ExpertWeightsScale = experts.Scale,
            MoeLayerStep = experts.Count > 0 && f.Contains($"{a}.interleave_moe_layer_step") ? Req("interleave_moe_layer_step") : 1,
            LeadingDenseBlocks = experts.LeadingDense, ExpertGroupCount = experts.Groups, ExpertGroupsUsed = experts.GroupsUsed,
            Mla = arch.LatentAttention ? LatentAttentionConfig.FromGguf(f, arch, headDim) : null,
            ContextLength = Req("context_length"),
            RmsEps = (float)(f.GetNumber($"{a}.attention.layer_norm_rms_epsilon") ?? 1e-5),
            RopeBase = (float)(f.GetNumber($"{a}.rope.freq_base") ?? 10000.0),
            RopeDims = f.Contains($"{a}.rope.dimension_count") ? Req("rope.dimension_count") : headDim,
            RopeFreqScale = freqScale,
            RopeScalingType = scaling,
            RopeYarn = yarn,
            RopeMscale = mscale,
            RopeStyle = f.GetString("openweights.rope.style") switch
            {
                null => arch.Rope,
                "neox" => OpenWeights.Tensors.Kernels.RopeStyle.Neox,
                "norm" => OpenWeights.Tensors.Kernels.RopeStyle.Norm,
                var other => throw new InvalidModelFileException($"unknown openweights.rope.style '{other}'"),
            },
        };
        config.Validate(f);
        return config;
    }

    /// <summary>
    /// The expert keys, validated as llama.cpp validates them at load: expert_count at most <see cref="MaxExperts"/>,
    /// expert_used_count in 1..expert_count when there are experts (and 0 without), a known gating function. The
    /// experts' feed-forward length follows the family's rule (<see cref="ArchitectureSpec.ExpertFfn"/>).
    /// </summary>
    private static (int Count, int Used, int Ffn, int SharedFfn, Common.ExpertGating? Gating, bool? Norm, float? Scale, int LeadingDense, int Groups, int GroupsUsed) ReadExperts(
        IModelMetadata f, ArchitectureSpec arch, int ffn)
    {
        string a = arch.Name, file = Path.GetFileName(f.Path);
        InvalidModelFileException Bad(string what) => new($"{file}: metadata {a}.{what}");
        int Opt(string key, int max)
        {
            if (!f.Contains($"{a}.{key}")) return 0;
            long v = f.GetInteger($"{a}.{key}") ?? throw Bad($"{key} is not an integer");
            if (v < 0 || v > max) throw Bad($"{key} = {v} is out of range (0..{max})");
            return (int)v;
        }
        int count = Opt("expert_count", MaxExperts), used = Opt("expert_used_count", MaxExperts);
        // a family whose table has no dense feed-forward cannot run without experts (llama.cpp: "n_expert must be > 0")
        if (count == 0 && arch.Experts && !arch.Block.Any(t => t.IsDenseFfn)) throw Bad("expert_count is missing or 0 (" + a + " models have experts)");
        if (count == 0 && used != 0) throw Bad($"expert_used_count = {used} without experts (expert_count is 0 or missing)");
        if (count == 0) return (0, 0, 0, 0, null, null, null, 0, 0, 0);
        if (!arch.Experts) throw new OpenWeightsException($"{file}: metadata {a}.expert_count = {count}: the {a} architecture has no mixture-of-experts layers here");
        if (used == 0) throw Bad($"expert_used_count is missing or 0 (expert_count is {count})");
        if (used > count) throw Bad($"expert_used_count = {used} is larger than expert_count = {count}");
        int key = Opt("expert_feed_forward_length", 1 << 24);
        int expertFfn = arch.ExpertFfn switch
        {
            ExpertFfnRule.Ffn => ffn,                          // llama.cpp does not read the key for these families
            ExpertFfnRule.KeyOrFfnOverUsed => key > 0 ? key : ffn / used,
            _ => key > 0 ? key : ffn,
        };
        if (expertFfn <= 0) throw Bad($"expert_feed_forward_length: the experts' feed-forward length is {expertFfn}");
        Common.ExpertGating? gating = null;
        if (f.Contains($"{a}.expert_gating_func"))
        {
            long g = f.GetInteger($"{a}.expert_gating_func") ?? throw Bad("expert_gating_func is not an integer");
            gating = g switch
            {
                0 => null, // LLAMA_EXPERT_GATING_FUNC_TYPE_NONE: the family's own
                1 => Common.ExpertGating.Softmax,
                2 => Common.ExpertGating.Sigmoid,
                3 => Common.ExpertGating.SoftmaxWeight,
                _ => throw Bad($"expert_gating_func = {g} is not a gating function we support (1 softmax, 2 sigmoid, 3 softmax over the selected)"),
            };
        }
        double? scale = f.GetNumber($"{a}.expert_weights_scale");
        if (scale is { } sc && !double.IsFinite(sc)) throw Bad($"expert_weights_scale = {sc} is not a finite number");
        // DeepSeek: the shared experts are expert_shared_count routed experts side by side (llama.cpp: n_ff_exp × n_expert_shared)
        int sharedFfn = arch.SharedExpertFfnIsExpertFfn ? expertFfn
            : arch.SharedExpertFfnFromCount ? expertFfn * Opt("expert_shared_count", 64)
            : Opt("expert_shared_feed_forward_length", 1 << 24);
        int leading = Opt("leading_dense_block_count", 1 << 16);
        int groups = Opt("expert_group_count", MaxExperts), groupsUsed = Opt("expert_group_used_count", MaxExperts);
        if (groups > 1)
        {
            if (count % groups != 0) throw Bad($"expert_group_count = {groups} does not divide expert_count = {count}");
            if (groupsUsed < 1 || groupsUsed > groups) throw Bad($"expert_group_used_count = {groupsUsed} is out of range (1..{groups})");
            if (used > groupsUsed * (count / groups)) throw Bad($"expert_used_count = {used} is more than the {groupsUsed} used groups of {count / groups} experts hold");
            if (count / groups < 2) throw Bad($"expert_group_count = {groups}: a group needs at least 2 experts (groups are scored by their top 2)");
        }
        return (count, used, expertFfn, sharedFfn, gating,
            f.GetBool($"{a}.expert_weights_norm"), scale is { } s ? (float)s : null, leading, groups > 1 ? groups : 0, groups > 1 ? groupsUsed : 0);
    }

    /// <summary>
    /// Refuses metadata that contradicts itself, as llama.cpp refuses it at load (where the model would otherwise fail
    /// with an index out of range at its first token): rope dimensions beyond the head, an odd rope dimension count,
    /// query/key widths past the supported range, a value width other than the key width, a tokenizer with more tokens
    /// than the model's vocabulary, and epsilon or rope base that are not finite positive numbers.
    /// </summary>
    private void Validate(IModelMetadata f)
    {
        string file = Path.GetFileName(f.Path), a = Architecture.Name;
        InvalidModelFileException Bad(string what) => new($"{file}: metadata {what}");
        if (RopeDims > HeadDim) throw Bad($"{a}.rope.dimension_count {RopeDims} is larger than the head dimension {HeadDim}");
        if (RopeDims % 2 != 0) throw Bad($"{a}.rope.dimension_count {RopeDims} must be even (rotary embedding rotates pairs)");
        if ((long)Heads * HeadDim > 1 << 24) throw Bad($"{a}.attention.head_count {Heads} x head dimension {HeadDim} is out of range");
        if (KvHeads > Heads) throw Bad($"{a}.attention.head_count_kv {KvHeads} is larger than head_count {Heads}");
        if (Mla is null && f.GetInteger($"{a}.attention.value_length") is { } vl && vl != HeadDim)
            throw Bad($"{a}.attention.value_length {vl} differs from the key length {HeadDim} (not supported)");
        if (f.GetArray<string>("tokenizer.ggml.tokens") is { } tokens && tokens.Length > VocabSize)
            throw Bad($"tokenizer.ggml.tokens holds {tokens.Length} tokens but the model's vocabulary is {VocabSize}");
        if (!float.IsFinite(RmsEps) || RmsEps < 0) throw Bad($"{a}.attention.layer_norm_rms_epsilon {RmsEps} must be a finite number >= 0");
        if (!float.IsFinite(RopeBase) || RopeBase <= 0) throw Bad($"{a}.rope.freq_base {RopeBase} must be a positive number");
    }
}

/// <summary>
/// Multi-head latent attention's shape (DeepSeek V2/V3): queries through a rank-<see cref="QLoraRank"/> bottleneck (0: one
/// full projection, V2-Lite), keys and values from a rank-<see cref="KvLoraRank"/> latent plus a decoupled rotary key of
/// rope.dimension_count shared by all heads. <see cref="KeyLength"/> = nope + rope and <see cref="ValueLength"/> are one head's
/// key and value widths after decompression (<c>attention.key_length_mla</c> / <c>value_length_mla</c>; the file's
/// key_length / value_length, kv_lora_rank + rope and kv_lora_rank, are the widths of the cached latent as llama.cpp's MQA view).
/// <see cref="YarnLogMultiplier"/>: <c>rope.scaling.yarn_log_multiplier</c> / 0.1 (DeepSeek's mscale_all_dim; the converter
/// stores 0.1·mscale_all_dim), 0 when absent.
/// </summary>
public sealed record LatentAttentionConfig(int QLoraRank, int KvLoraRank, int KeyLength, int ValueLength, float YarnLogMultiplier)
{
    public static LatentAttentionConfig FromGguf(IModelMetadata f, ArchitectureSpec arch, int keyLength)
    {
        string a = arch.Name, file = Path.GetFileName(f.Path);
        InvalidModelFileException Bad(string what) => new($"{file}: metadata {a}.{what}");
        int Int(string key, bool required)
        {
            if (!f.Contains($"{a}.{key}")) return required ? throw Bad($"{key} is missing (required by {a} models)") : 0;
            long v = f.GetInteger($"{a}.{key}") ?? throw Bad($"{key} is not an integer");
            if (v < 0 || v > 1 << 20) throw Bad($"{key} = {v} is out of range");
            return (int)v;
        }
        int q = Int("attention.q_lora_rank", false), kv = Int("attention.kv_lora_rank", true);
        int kMla = Int("attention.key_length_mla", false), vMla = Int("attention.value_length_mla", false);
        if (kv == 0) throw Bad("attention.kv_lora_rank = 0");
        if (kMla == 0 || vMla == 0)
            throw new InvalidModelFileException($"{file}: metadata {a}.attention.key_length_mla / value_length_mla are missing: a DeepSeek GGUF with the unsplit attn_kv_b (converted before llama.cpp split it into attn_k_b / attn_v_b) is not supported; convert the model again");
        int rope = (int)(f.GetInteger($"{a}.rope.dimension_count") ?? 0);
        if (rope <= 0 || rope >= kMla) throw Bad($"rope.dimension_count = {rope} must be in 1..key_length_mla - 1 ({kMla - 1})");
        if (keyLength != kv + rope) throw Bad($"attention.key_length = {keyLength} must be kv_lora_rank + rope.dimension_count = {kv + rope}");
        double logMul = f.GetNumber($"{a}.rope.scaling.yarn_log_multiplier") ?? 0;
        if (!double.IsFinite(logMul) || logMul < 0) throw Bad($"rope.scaling.yarn_log_multiplier = {logMul} must be a finite number >= 0");
        return new(q, kv, kMla, vMla, (float)logMul / 0.1f); // as llama.cpp: the float key divided by 0.1f
    }
}
