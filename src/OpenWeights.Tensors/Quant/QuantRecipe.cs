namespace OpenWeights.Tensors.Quant;

/// <summary>File-level quantization presets (llama.cpp's LLAMA_FTYPE_MOSTLY_*), each with a base tensor type.</summary>
public enum QuantPreset
{
    /// <summary>LLAMA_FTYPE_MOSTLY_F16: 2-D weights F16, nothing else changes.</summary>
    F16,
    /// <summary>LLAMA_FTYPE_MOSTLY_BF16.</summary>
    BF16,
    /// <summary>LLAMA_FTYPE_MOSTLY_Q8_0.</summary>
    Q8_0,
    /// <summary>LLAMA_FTYPE_MOSTLY_Q4_0 (output.weight still goes to Q6_K, as in llama.cpp).</summary>
    Q4_0,
    /// <summary>LLAMA_FTYPE_MOSTLY_Q4_K_M: Q4_K with Q6_K for output and half of attn_v / ffn_down.</summary>
    Q4_K_M,
    /// <summary>LLAMA_FTYPE_MOSTLY_IQ4_NL: IQ4_NL, output Q6_K, attn_v Q5_K with GQA ≥ 4, ffn_down of the first eighth Q5_K.</summary>
    IQ4_NL,
    /// <summary>LLAMA_FTYPE_MOSTLY_IQ4_XS: as IQ4_NL with IQ4_XS (256-value super-blocks) as the base type.</summary>
    IQ4_XS,
    /// <summary>LLAMA_FTYPE_MOSTLY_MXFP4_MOE (gpt-oss): 3-D expert tensors MXFP4, every other quantized tensor Q8_0.</summary>
    MXFP4_MOE,
}

/// <summary>Which role a tensor plays, from its GGUF name (llama.cpp's tensor_get_category).</summary>
public enum TensorCategory { TokenEmbd, Output, AttnQkv, AttnKvB, AttnV, AttnK, AttnQ, AttnOutput, FfnUp, FfnGate, FfnDown, Other }

/// <summary>
/// Per-tensor type choice of llama.cpp's <c>llama_tensor_get_type</c> (src/llama-quant.cpp, the version in
/// LLamaSharp 0.30.0), for the presets in <see cref="QuantPreset"/>, without importance matrix, without
/// user overrides (--tensor-type, --output-tensor-type, --token-embedding-type, --pure) and for
/// non-Falcon architectures.
/// </summary>
/// <remarks>
/// Not reproduced: the Falcon-specific rules and the LLM_TYPE_70B rule (attn_v Q4_K -> Q5_K when the
/// model is classified as 70B). <paramref name="layerIndex"/>/<paramref name="nLayers"/> follow llama.cpp:
/// for attn_v-like tensors it is the running count of attn_v/attn_qkv/attn_kv_b tensors seen so far and
/// their total; for ffn_down it is the running count of tensors whose name contains "ffn_down" and
/// n_layer. For an ordinary dense model (one of each per block, visited in block order) both are simply
/// the block index and the block count.
/// </remarks>
public static class QuantRecipe
{
    /// <summary>The base tensor type of a preset (llama_ftype_get_default_type).</summary>
    public static GgmlType BaseType(QuantPreset preset) => preset switch
    {
        QuantPreset.F16 => GgmlType.F16,
        QuantPreset.BF16 => GgmlType.BF16,
        QuantPreset.Q8_0 => GgmlType.Q8_0,
        QuantPreset.Q4_0 => GgmlType.Q4_0,
        QuantPreset.Q4_K_M => GgmlType.Q4_K,
        QuantPreset.IQ4_NL => GgmlType.IQ4_NL,
        QuantPreset.IQ4_XS => GgmlType.IQ4_XS,
        QuantPreset.MXFP4_MOE => GgmlType.MXFP4,
        _ => throw new ArgumentOutOfRangeException(nameof(preset)),
    };

    /// <summary>Name substrings that are never quantized (tensor_allows_quantization), besides 1-D tensors.</summary>
    private static readonly string[] NeverQuantized =
    [
        "_norm.weight",                 // norms
        "ffn_gate_inp.weight",          // MoE router
        "ffn_gate_tid2eid.weight",      // i32 routing table
        "altup", "laurel",              // tiny Gemma-3n tensors
        "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight",
        "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",            // T5 relative position bias
        ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
        "a.rvq.codebook", "mm.a.code_embd",
    ];

    /// <summary>Exact names that are never quantized (BERT position embeddings and token types).</summary>
    private static readonly string[] NeverQuantizedExact = ["position_embd.weight", "token_types.weight"];

    /// <summary>
    /// Type upgrades inside a preset, in llama.cpp's order of precedence (first match wins; attn_v-like means
    /// attn_v, attn_qkv and attn_kv_b). Output and token_embd are handled before this table.
    /// </summary>
    private static readonly (TensorCategory[] Categories, QuantPreset[] Presets, Func<Ctx, bool> When, GgmlType Type, string Why)[] Upgrades =
    [
        ([TensorCategory.AttnV, TensorCategory.AttnQkv, TensorCategory.AttnKvB], [QuantPreset.Q4_K_M, QuantPreset.Q8_0, QuantPreset.Q4_0], c => c.NExpert == 8, GgmlType.Q8_0,
            "8-expert MoE: attn_v to Q8_0 whatever the preset (cheap, ~128 MB); overrides the next rule"),
        ([TensorCategory.AttnV], [QuantPreset.IQ4_NL, QuantPreset.IQ4_XS], c => c.NExpert == 8, GgmlType.Q8_0,
            "8-expert MoE: attn_v to Q8_0 (the IQ4 presets' rule names attn_v only)"),
        ([TensorCategory.AttnV, TensorCategory.AttnQkv, TensorCategory.AttnKvB], [QuantPreset.Q4_K_M], c => UseMoreBits(c.Layer, c.NLayers), GgmlType.Q6_K,
            "Q4_K_M: attn_v in the use_more_bits layers"),
        ([TensorCategory.AttnV], [QuantPreset.IQ4_NL, QuantPreset.IQ4_XS], c => c.NGqa >= 4, GgmlType.Q5_K,
            "IQ4_NL / IQ4_XS: attn_v to Q5_K when 4 or more query heads share a KV head"),
        ([TensorCategory.AttnK], [QuantPreset.Q4_K_M, QuantPreset.Q8_0, QuantPreset.Q4_0, QuantPreset.IQ4_NL, QuantPreset.IQ4_XS], c => c.NExpert == 8, GgmlType.Q8_0,
            "8-expert MoE: attn_k to Q8_0"),
        ([TensorCategory.FfnDown], [QuantPreset.Q4_K_M], c => UseMoreBits(c.Layer, c.NLayers), GgmlType.Q6_K,
            "Q4_K_M: ffn_down in the use_more_bits layers"),
        ([TensorCategory.FfnDown], [QuantPreset.IQ4_NL, QuantPreset.IQ4_XS], c => c.Layer < c.NLayers / 8, GgmlType.Q5_K,
            "IQ4_NL / IQ4_XS without importance matrix: ffn_down of the first eighth of the layers to Q5_K"),
        ([TensorCategory.AttnOutput], [QuantPreset.Q4_K_M, QuantPreset.IQ4_NL, QuantPreset.IQ4_XS], c => c.NExpert == 8, GgmlType.Q5_K,
            "8-expert MoE: attn_output to Q5_K"),
    ];

    private readonly record struct Ctx(int Layer, int NLayers, int NExpert, int NGqa);

    /// <summary>
    /// llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer in between.
    /// </summary>
    public static bool UseMoreBits(int layer, int nLayers) =>
        layer < nLayers / 8 || layer >= 7 * nLayers / 8 || (layer - nLayers / 8) % 3 == 2;

    /// <summary>Category of a GGUF tensor name (first match in llama.cpp's order).</summary>
    public static TensorCategory Categorize(string name)
    {
        if (name == "output.weight") return TensorCategory.Output;
        if (name is "token_embd.weight" or "per_layer_token_embd.weight") return TensorCategory.TokenEmbd;
        if (name.Contains("attn_qkv.weight", StringComparison.Ordinal)) return TensorCategory.AttnQkv;
        if (name.Contains("attn_kv_b.weight", StringComparison.Ordinal)) return TensorCategory.AttnKvB;
        if (name.Contains("attn_v.weight", StringComparison.Ordinal)) return TensorCategory.AttnV;
        if (name.Contains("attn_k.weight", StringComparison.Ordinal)) return TensorCategory.AttnK;
        if (name.Contains("attn_q.weight", StringComparison.Ordinal)) return TensorCategory.AttnQ;
        if (name.Contains("attn_output.weight", StringComparison.Ordinal)) return TensorCategory.AttnOutput;
        if (name.Contains("ffn_up", StringComparison.Ordinal)) return TensorCategory.FfnUp;
        if (name.Contains("ffn_gate", StringComparison.Ordinal)) return TensorCategory.FfnGate;
        if (name.Contains("ffn_down", StringComparison.Ordinal)) return TensorCategory.FfnDown;
        return TensorCategory.Other;
    }

    /// <summary>
    /// Whether llama.cpp would quantize this tensor at all: at least 2-D, name ends in "weight", and not a
    /// norm, router, positional embedding or one of the small special tensors.
    /// </summary>
    public static bool AllowsQuantization(string name, int nDims)
    {
        if (nDims < 2) return false;
        if (!name.EndsWith("weight", StringComparison.Ordinal)) return false;
        foreach (var s in NeverQuantized) if (name.Contains(s, StringComparison.Ordinal)) return false;
        foreach (var s in NeverQuantizedExact) if (name == s) return false;
        return true;
    }

    /// <summary>
    /// The type llama.cpp's quantizer gives a tensor.
    /// </summary>
    /// <param name="preset">file preset</param>
    /// <param name="tensorName">GGUF name, e.g. "blk.3.attn_v.weight"</param>
    /// <param name="layerIndex">see the class remarks (block index for dense models)</param>
    /// <param name="nLayers">see the class remarks (block count for dense models)</param>
    /// <param name="rowLength">ne[0], the length of a row (the dimension blocks run along)</param>
    /// <param name="nDims">number of dimensions (1 for norms and biases)</param>
    /// <param name="tiedEmbeddings">true when the model has no output.weight (token_embd doubles as the output
    /// projection): token_embd is then treated like output.weight</param>
    /// <param name="sourceType">the tensor's type in the source file, kept for tensors that are not quantized</param>
    /// <param name="nExpert">hparams n_expert (0 or 1 for dense models)</param>
    /// <param name="nGqa">query heads per KV head (the IQ4 presets give attn_v Q5_K from 4 on)</param>
    /// <param name="expertCount">ne[2] of the tensor: more than 1 for a 3-D tensor of stacked experts (MXFP4_MOE)</param>
    public static GgmlType TypeFor(QuantPreset preset, string tensorName, int layerIndex, int nLayers, long rowLength, int nDims,
        bool tiedEmbeddings = false, GgmlType sourceType = GgmlType.F32, int nExpert = 0, int nGqa = 1, long expertCount = 1)
    {
        // 1-D tensors, norms, routers...: left as they are in the source (normally F32)
        if (!AllowsQuantization(tensorName, nDims)) return sourceType;

        GgmlType type = BaseType(preset);
        // F16/BF16 presets: every quantizable tensor simply takes the base type, no mixture, no fallback
        if (type is GgmlType.F16 or GgmlType.BF16) return type;

        var category = Categorize(tensorName);
        if (category == TensorCategory.Output || (tiedEmbeddings && category == TensorCategory.TokenEmbd))
        {
            // output projection: Q8_0 if rows don't fit the base block, else Q6_K unless the base is Q8_0
            if (preset == QuantPreset.MXFP4_MOE || rowLength % GgmlTypes.BlockSize(type) != 0) type = GgmlType.Q8_0;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (preset == QuantPreset.MXFP4_MOE)
        {
            // expert tensors (ne[2] > 1) MXFP4, everything else (token_embd included) Q8_0
            type = expertCount > 1 ? GgmlType.MXFP4 : GgmlType.Q8_0;
        }
        else if (category == TensorCategory.TokenEmbd)
        {
            // untied token_embd keeps the base type for these presets (Q4_K for Q4_K_M); llama.cpp only
            // changes it for the IQ*/TQ*/Q2_0 presets
        }
        else
        {
            var ctx = new Ctx(layerIndex, nLayers, nExpert, nGqa);
            foreach (var (cats, presets, when, t, _) in Upgrades)
            {
                if (Array.IndexOf(cats, category) >= 0 && Array.IndexOf(presets, preset) >= 0 && when(ctx)) { type = t; break; }
            }
        }
        return Fallback(type, rowLength, tensorName);
    }

    /// <summary>
    /// llama.cpp's tensor_type_fallback: when the row length is not a multiple of the chosen type's block
    /// size, a 256-block K-quant falls back to a 32-block type; if that still does not fit, F16.
    /// </summary>
    public static GgmlType Fallback(GgmlType type, long rowLength, string tensorName = "")
    {
        if (rowLength % GgmlTypes.BlockSize(type) == 0) return type;
        GgmlType fb = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.TQ1_0 or GgmlType.TQ2_0 => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S
                or GgmlType.IQ3_XXS or GgmlType.IQ3_S or GgmlType.IQ4_XS => GgmlType.IQ4_NL,
            _ => throw new ArgumentException(
                $"tensor '{tensorName}': row length {rowLength} is not a multiple of the {type} block size and {type} has no fallback type"),
        };
        return rowLength % GgmlTypes.BlockSize(fb) == 0 ? fb : GgmlType.F16;
    }
}

/// <summary>The Q4_K_M mixture (<see cref="QuantRecipe"/> with <see cref="QuantPreset.Q4_K_M"/>).</summary>
/// <remarks>
/// output.weight -> Q6_K; token_embd.weight -> Q4_K (Q6_K when tied, i.e. there is no output.weight);
/// attn_v / attn_qkv / attn_kv_b and ffn_down -> Q6_K in the use_more_bits layers
/// (i &lt; n/8 || i &gt;= 7n/8 || (i - n/8) % 3 == 2), else Q4_K; other 2-D weights -> Q4_K;
/// 1-D tensors and norms keep their source type (F32); rows not a multiple of 256: Q4_K -> Q5_0, Q6_K -> Q8_0
/// (-> F16 if not a multiple of 32 either; output.weight goes straight to Q8_0).
/// </remarks>
public static class Q4KMRecipe
{
    public static GgmlType TypeFor(string tensorName, int layerIndex, int nLayers, long rowLength, int nDims,
        bool tiedEmbeddings = false, GgmlType sourceType = GgmlType.F32, int nExpert = 0) =>
        QuantRecipe.TypeFor(QuantPreset.Q4_K_M, tensorName, layerIndex, nLayers, rowLength, nDims, tiedEmbeddings, sourceType, nExpert);
}
