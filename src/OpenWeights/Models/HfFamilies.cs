using OpenWeights.Formats;
using OpenWeights.Formats.HuggingFace;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models;

/// <summary>
/// Each family's own config.json fields and the GGUF keys they become, as llama.cpp's convert_hf_to_gguf.py writes them
/// (its Gemma2Model, Gemma3Model, Phi3MiniModel, SmolLM3Model set_gguf_parameters / generate_extra_tensors). The keys
/// every family shares (sizes, heads, head_dim -> attention.key_length, rope_theta, rms_norm_eps, linear/llama3
/// rope_scaling) are read by <see cref="HfCheckpoint"/>; an architecture names its entry here in <see cref="Architectures.Supported"/>.
/// Where llama.cpp hard-codes what a config field says (Gemma's layer pattern, SmolLM3's NoPE step), a config that says
/// otherwise is refused in one line rather than converted into a model that would run differently.
/// </summary>
public static class HfFamilies
{
    /// <summary>Llama / Mistral: the common keys only; biased attention projections are not part of the llama block.</summary>
    public static readonly HfFamily Llama = new((c, _) =>
    {
        if (c.Get("attention_bias") is { ValueKind: System.Text.Json.JsonValueKind.True })
            throw new OpenWeightsException("config.json: attention_bias = true is not supported for llama models");
    });

    /// <summary>Gemma 2: soft-caps and the sliding window; every other layer (the even ones) slides.</summary>
    public static readonly HfFamily Gemma2 = new((c, g) =>
    {
        int layers = c.RequireInt("num_hidden_layers");
        // convert_hf_to_gguf Gemma2Model requires both soft-caps: llama.cpp always caps gemma2 logits (a missing key means
        // 50 / 30 there), so a config without a cap (null) cannot become a GGUF that runs as it does
        g.Set("attn_logit_softcapping", (float)c.RequireNumber("attn_logit_softcapping"));
        g.Set("final_logit_softcapping", (float)c.RequireNumber("final_logit_softcapping"));
        g.Set("attention.sliding_window", (uint)c.RequireInt("sliding_window"));
        CheckLayerTypes(c, layers, i => i % 2 == 0, "gemma2 slides on the even layers");
        CheckQueryScale(c, layers, bigLayers: 46);
    });

    /// <summary>Gemma 3: the converter's defaults for fields the config leaves out, the final soft-cap when set, the
    /// sliding window (unless every layer is global: sliding_window_pattern 1), the local layers' rope base; five sliding
    /// layers, then a global one.</summary>
    public static readonly HfFamily Gemma3 = new((c, g) =>
    {
        int layers = c.RequireInt("num_hidden_layers");
        // llama.cpp hard-codes one global layer every 6; pattern 1 (every layer global) is written without a window
        int? pattern = c.Int("sliding_window_pattern");
        if (pattern is not (null or 1 or 6))
            throw new OpenWeightsException($"config.json: sliding_window_pattern = {pattern} is not supported (gemma3 has one global layer every 6, as llama.cpp)");
        CheckLayerTypes(c, layers, i => pattern != 1 && (i + 1) % 6 != 0, pattern == 1 ? "every layer global" : "gemma3 has one global layer every 6");
        if (c.Number("final_logit_softcapping") is { } finalCap and not 0) g.Set("final_logit_softcapping", (float)finalCap);
        if (pattern != 1) g.Set("attention.sliding_window", (uint)c.RequireInt("sliding_window"));
        if (c.Number("rope_local_base_freq") is { } local) g.Set("rope.freq_base_swa", (float)local);
        CheckQueryScale(c, layers, bigLayers: 62);
    })
    {
        Defaults = new Dictionary<string, double>
        {
            ["max_position_embeddings"] = 131072, ["num_attention_heads"] = 8, ["num_key_value_heads"] = 4, ["head_dim"] = 256,
            ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1_000_000,
        },
    };

    /// <summary>Phi-3: partial rotary, the original context, the sliding window (0 when none), and for longrope the short
    /// and long frequency factors as tensors with their attention factor.</summary>
    public static readonly HfFamily Phi3 = new((c, g) =>
    {
        int hidden = c.RequireInt("hidden_size"), heads = c.RequireInt("num_attention_heads");
        int maxPos = c.RequireInt("max_position_embeddings"), orig = c.RequireInt("original_max_position_embeddings");
        double rot = c.Number("partial_rotary_factor") ?? 1.0;
        if (rot is <= 0 or > 1) throw new InvalidModelFileException($"config.json: partial_rotary_factor = {rot} is out of range (0, 1]");
        int ropeDims = (int)(rot * hidden) / heads; // int(rot_pct * n_embd) // n_head
        g.Set("rope.dimension_count", (uint)ropeDims);
        g.Set("rope.scaling.original_context_length", (uint)orig);
        g.Set("attention.sliding_window", (uint)(c.Int("sliding_window") ?? 0));
        if (c.Get("rope_scaling") is not { } rs) return;
        // only longrope / su arrive here (HfFamily.RopeScalingTypes); the common reader refuses the rest
        double scale = (double)maxPos / orig;
        g.Set("rope.scaling.attn_factor", (float)(scale > 1 ? Math.Sqrt(1 + Math.Log(scale) / Math.Log(orig)) : 1.0));
        var longF = c.Numbers("long_factor", rs) ?? throw new InvalidModelFileException("config.json: rope_scaling long_factor is missing");
        var shortF = c.Numbers("short_factor", rs) ?? throw new InvalidModelFileException("config.json: rope_scaling short_factor is missing");
        if (longF.Length != ropeDims / 2 || shortF.Length != ropeDims / 2)
            throw new InvalidModelFileException($"config.json: rope_scaling long_factor and short_factor must hold {ropeDims / 2} values (rotary dimensions / 2); they hold {longF.Length} and {shortF.Length}");
        g.AddTensor(RopeFactorsLong, longF.Select(x => (float)x).ToArray());
        g.AddTensor(RopeFactorsShort, shortF.Select(x => (float)x).ToArray());
    })
    {
        RopeScalingTypes = ["longrope", "su"],
    };

    /// <summary>SmolLM3: no rotary embedding on every 4th layer, which llama.cpp hard-codes (n_no_rope_layer_step = 4), so the
    /// config's no_rope_layers must say the same.</summary>
    public static readonly HfFamily SmolLM3 = new((c, _) =>
    {
        int layers = c.RequireInt("num_hidden_layers");
        if (c.Int("no_rope_layer_interval") is { } step and not 4)
            throw new OpenWeightsException($"config.json: no_rope_layer_interval = {step} is not supported (smollm3 has no rotary embedding on every 4th layer, as llama.cpp)");
        if (c.Numbers("no_rope_layers") is { } rope)
        {
            if (rope.Length != layers) throw new InvalidModelFileException($"config.json: no_rope_layers holds {rope.Length} values for {layers} layers (num_hidden_layers)");
            for (int i = 0; i < layers; i++)
                if (rope[i] != ((i + 1) % 4 != 0 ? 1 : 0))
                    throw new OpenWeightsException($"config.json: no_rope_layers[{i}] = {rope[i]} is not supported (smollm3 has no rotary embedding on every 4th layer only, as llama.cpp)");
        }
    });

    /// <summary>Refuses a layer_types list that differs from the pattern llama.cpp hard-codes for the family.</summary>
    private static void CheckLayerTypes(HfConfigJson c, int layers, Func<int, bool> sliding, string pattern)
    {
        if (c.Get("layer_types") is not { } lt) return;
        if (lt.ValueKind != System.Text.Json.JsonValueKind.Array || lt.GetArrayLength() != layers)
            throw new InvalidModelFileException($"config.json: layer_types must list {layers} layer types (num_hidden_layers)");
        int i = 0;
        foreach (var e in lt.EnumerateArray())
        {
            string? t = e.ValueKind == System.Text.Json.JsonValueKind.String ? e.GetString() : null;
            string want = sliding(i) ? "sliding_attention" : "full_attention";
            if (t != want) throw new OpenWeightsException($"config.json: layer_types[{i}] = {UntrustedText.Quote(t)} is not supported ({pattern}: {want})");
            i++;
        }
    }

    /// <summary>
    /// Gemma scales queries by query_pre_attn_scalar^-1/2, which GGUF files do not carry: llama.cpp takes head_dim, or
    /// hidden_size / num_attention_heads for the 27B shape (<paramref name="bigLayers"/> layers). A config asking for
    /// another scale is refused.
    /// </summary>
    private static void CheckQueryScale(HfConfigJson c, int layers, int bigLayers)
    {
        if (c.Number("query_pre_attn_scalar") is not { } scalar) return;
        int hidden = c.RequireInt("hidden_size"), heads = c.RequireInt("num_attention_heads");
        int headDim = c.Int("head_dim") ?? hidden / heads;
        double implied = layers == bigLayers ? hidden / heads : headDim;
        if (scalar != implied)
            throw new OpenWeightsException($"config.json: query_pre_attn_scalar = {scalar} is not supported (a GGUF of this shape scales queries by {implied}^-1/2)");
    }
}
