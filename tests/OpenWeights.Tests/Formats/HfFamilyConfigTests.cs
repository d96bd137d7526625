using System.Text.Json;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// Each family's config.json mapping (<see cref="HfFamilies"/>) on the shapes of real checkpoints: the GGUF keys and
/// tensors llama.cpp's convert_hf_to_gguf.py writes for them, and a one-line refusal where a config asks for what
/// llama.cpp hard-codes otherwise.
/// </summary>
public class HfFamilyConfigTests
{
    private static (Dictionary<string, object> Keys, Dictionary<string, float[]> Tensors) Map(HfFamily family, string json)
    {
        using var doc = JsonDocument.Parse(json);
        var sink = new HfFamilyMetadata();
        family.Map(new HfConfigJson(doc.RootElement), sink);
        return (sink.Keys.ToDictionary(k => k.Key, k => k.Value), sink.Tensors.ToDictionary(t => t.Name, t => t.Values));
    }

    private static void AssertRefused(HfFamily family, string json, string contains)
    {
        var e = Record.Exception(() => Map(family, json));
        Assert.True(e is OpenWeightsException, e?.GetType().Name + ": " + e?.Message);
        Assert.DoesNotContain('\n', e!.Message);
        Assert.Contains(contains, e.Message);
    }

    [Fact]
    public void Llama_has_no_keys_of_its_own_and_refuses_biased_attention()
    {
        Assert.Empty(Map(HfFamilies.Llama, """{"attention_bias": false}""").Keys);
        AssertRefused(HfFamilies.Llama, """{"attention_bias": true}""", "attention_bias = true is not supported for llama models");
    }

    // google/gemma-2-2b-it
    private const string Gemma2_2B = """
        {"hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
         "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096, "query_pre_attn_scalar": 256
        """;

    [Fact]
    public void Gemma2_soft_caps_and_window_become_their_gguf_keys()
    {
        var (keys, tensors) = Map(HfFamilies.Gemma2, Gemma2_2B + "}");
        Assert.Equal(50f, keys["attn_logit_softcapping"]);
        Assert.Equal(30f, keys["final_logit_softcapping"]);
        Assert.Equal(4096u, keys["attention.sliding_window"]);
        Assert.Equal(3, keys.Count);
        Assert.Empty(tensors);
        // the 27B shape scales queries by hidden / heads = 144 (google/gemma-2-27b)
        Map(HfFamilies.Gemma2, """{"hidden_size": 4608, "num_hidden_layers": 46, "num_attention_heads": 32, "head_dim": 128, "sliding_window": 4096, "query_pre_attn_scalar": 144, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}""");
        // a null cap (none) cannot be written: llama.cpp caps gemma2 always
        AssertRefused(HfFamilies.Gemma2, Gemma2_2B.Replace("50.0", "null") + "}", "config.json: attn_logit_softcapping is missing");
    }

    [Fact]
    public void Gemma2_configs_llama_cpp_would_run_differently_are_refused()
    {
        AssertRefused(HfFamilies.Gemma2, Gemma2_2B.Replace("\"query_pre_attn_scalar\": 256", "\"query_pre_attn_scalar\": 128") + "}",
            "query_pre_attn_scalar = 128 is not supported (a GGUF of this shape scales queries by 256^-1/2)");
        string types = string.Join(", ", Enumerable.Range(0, 26).Select(i => i % 2 == 1 ? "\"sliding_attention\"" : "\"full_attention\""));
        AssertRefused(HfFamilies.Gemma2, Gemma2_2B + $", \"layer_types\": [{types}]}}", "layer_types[0] = 'full_attention' is not supported (gemma2 slides on the even layers: sliding_attention)");
        AssertRefused(HfFamilies.Gemma2, Gemma2_2B.Replace("\"sliding_window\": 4096,", "") + "}", "config.json: sliding_window is missing");
    }

    // google/gemma-3-1b-it
    private const string Gemma3_1B = """
        {"hidden_size": 1152, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
         "final_logit_softcapping": null, "sliding_window": 512, "sliding_window_pattern": 6, "rope_local_base_freq": 10000.0,
         "query_pre_attn_scalar": 256
        """;

    [Fact]
    public void Gemma3_window_local_rope_base_and_final_cap_become_their_gguf_keys()
    {
        var (keys, _) = Map(HfFamilies.Gemma3, Gemma3_1B + "}");
        Assert.Equal(512u, keys["attention.sliding_window"]);
        Assert.Equal(10000f, keys["rope.freq_base_swa"]);
        Assert.False(keys.ContainsKey("final_logit_softcapping")); // null: no cap
        Assert.Equal(2, keys.Count);
        Assert.Equal(30f, Map(HfFamilies.Gemma3, Gemma3_1B.Replace("\"final_logit_softcapping\": null", "\"final_logit_softcapping\": 30.0") + "}").Keys["final_logit_softcapping"]);
        // the converter's defaults for fields a Gemma 3 config may leave out
        Assert.Equal(256, HfFamilies.Gemma3.Defaults["head_dim"]);
        Assert.Equal(1_000_000, HfFamilies.Gemma3.Defaults["rope_theta"]);
        Assert.Equal(131072, HfFamilies.Gemma3.Defaults["max_position_embeddings"]);
    }

    [Fact]
    public void Gemma3_layer_patterns_other_than_llama_cpps_are_refused()
    {
        AssertRefused(HfFamilies.Gemma3, Gemma3_1B.Replace("\"sliding_window_pattern\": 6", "\"sliding_window_pattern\": 4") + "}",
            "sliding_window_pattern = 4 is not supported (gemma3 has one global layer every 6");
        string types = string.Join(", ", Enumerable.Range(0, 26).Select(i => (i + 1) % 4 == 0 ? "\"full_attention\"" : "\"sliding_attention\""));
        AssertRefused(HfFamilies.Gemma3, Gemma3_1B + $", \"layer_types\": [{types}]}}", "layer_types[3] = 'full_attention' is not supported");
        // pattern 1: every layer global, written without a window (as the converter does)
        var (keys, _) = Map(HfFamilies.Gemma3, Gemma3_1B.Replace("\"sliding_window_pattern\": 6", "\"sliding_window_pattern\": 1") + "}");
        Assert.False(keys.ContainsKey("attention.sliding_window"));
    }

    // microsoft/Phi-3.5-mini-instruct shape with Phi-4-mini's partial rotary (0.75)
    private static string Phi3(int factors, string more = "") => $$"""
        {"hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
         "partial_rotary_factor": 0.75, "sliding_window": 262144, {{more}}
         "rope_scaling": {"type": "longrope", "long_factor": [{{string.Join(", ", Enumerable.Range(0, factors).Select(i => (1 + i * 0.5).ToString(System.Globalization.CultureInfo.InvariantCulture)))}}],
                          "short_factor": [{{string.Join(", ", Enumerable.Range(0, factors).Select(i => (1 + i * 0.25).ToString(System.Globalization.CultureInfo.InvariantCulture)))}}]} }
        """;

    [Fact]
    public void Phi3_partial_rotary_context_window_and_longrope_become_keys_and_factor_tensors()
    {
        var (keys, tensors) = Map(HfFamilies.Phi3, Phi3(36));
        Assert.Equal(72u, keys["rope.dimension_count"]); // int(0.75 * 3072) // 32
        Assert.Equal(4096u, keys["rope.scaling.original_context_length"]);
        Assert.Equal(262144u, keys["attention.sliding_window"]);
        Assert.Equal((float)Math.Sqrt(1 + Math.Log(32) / Math.Log(4096)), keys["rope.scaling.attn_factor"]);
        Assert.Equal(36, tensors[RopeFactorsLong].Length);
        Assert.Equal(1f + 35 * 0.5f, tensors[RopeFactorsLong][35]);
        Assert.Equal(1f + 35 * 0.25f, tensors[RopeFactorsShort][35]);
        // Phi-3-mini-4k: no window field, no rope_scaling -> window 0, no factors
        var (k4, t4) = Map(HfFamilies.Phi3, """{"hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096}""");
        Assert.Equal(0u, k4["attention.sliding_window"]);
        Assert.Equal(96u, k4["rope.dimension_count"]);
        Assert.False(k4.ContainsKey("rope.scaling.attn_factor"));
        Assert.Empty(t4);
    }

    [Fact]
    public void Phi3_configs_without_what_the_converter_needs_are_refused()
    {
        AssertRefused(HfFamilies.Phi3, Phi3(48), "long_factor and short_factor must hold 36 values (rotary dimensions / 2); they hold 48 and 48");
        AssertRefused(HfFamilies.Phi3, """{"hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 4096}""", "config.json: original_max_position_embeddings is missing");
        AssertRefused(HfFamilies.Phi3, Phi3(36).Replace("0.75", "1.5"), "partial_rotary_factor = 1.5 is out of range");
    }

    [Fact]
    public void SmolLM3_nope_layers_must_be_every_fourth_as_llama_cpp_hard_codes()
    {
        string Rope(Func<int, int> f) => $"[{string.Join(", ", Enumerable.Range(0, 8).Select(f))}]";
        var (keys, _) = Map(HfFamilies.SmolLM3, $$"""{"num_hidden_layers": 8, "no_rope_layer_interval": 4, "no_rope_layers": {{Rope(i => (i + 1) % 4 != 0 ? 1 : 0)}}}""");
        Assert.Empty(keys); // GGUF files carry no key for it
        AssertRefused(HfFamilies.SmolLM3, $$"""{"num_hidden_layers": 8, "no_rope_layers": {{Rope(i => i == 2 ? 0 : 1)}}}""", "no_rope_layers[2] = 0 is not supported");
        AssertRefused(HfFamilies.SmolLM3, """{"num_hidden_layers": 8, "no_rope_layer_interval": 3}""", "no_rope_layer_interval = 3 is not supported");
        AssertRefused(HfFamilies.SmolLM3, """{"num_hidden_layers": 8, "no_rope_layers": [1, 1]}""", "no_rope_layers holds 2 values for 8 layers");
    }
}
