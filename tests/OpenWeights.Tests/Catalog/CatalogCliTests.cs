using System.Text.Json;
using OpenWeights.Catalog;

namespace OpenWeights.Tests.Catalog;

/// <summary>The models / fit / hardware commands, run in-process through Cli.Run.</summary>
public class CatalogCliTests
{
    private static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static JsonElement Json(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.True(code == 0, $"exit {code}: {stderr}");
        return JsonDocument.Parse(stdout).RootElement;
    }

    private static HashSet<string> Ids(JsonElement array) => array.EnumerateArray().Select(x => x.GetProperty("id").GetString()!).ToHashSet();

    [Fact]
    public void Models_prints_a_table()
    {
        var (code, stdout, stderr) = Run("models");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        var lines = stdout.Split('\n');
        Assert.StartsWith("ID", lines[0]);
        foreach (var col in new[] { "PARAMS", "ACTIVE", "EXPERTS", "CONTEXT", "LICENSE", "COMMERCIAL", "LANGUAGES" }) Assert.Contains(col, lines[0]);
        Assert.Contains(lines, l => l.StartsWith("llama-3.1-8b-instruct ") && l.Contains("128K") && l.Contains("<700M MAU"));
        Assert.Contains(lines, l => l.StartsWith("mistral-large-instruct-2407 ") && l.Contains(" no "));
        Assert.Contains(lines, l => l.StartsWith("qwen3-30b-a3b ") && l.Contains("30.5B?") && l.Contains("3.3B?") && l.Contains("8/128"));
    }

    [Fact]
    public void Models_json_lists_the_whole_catalog()
    {
        var root = Json("models", "--json");
        Assert.Equal(ModelCatalog.Default.Models.Count, root.GetArrayLength());
        var first = root[0];
        foreach (var key in new[] { "id", "name", "family", "params_b", "active_params_b", "context", "license", "commercial", "languages", "openness" })
            Assert.True(first.TryGetProperty(key, out _), $"missing {key}");
    }

    [Fact]
    public void Commercial_filter_drops_non_commercial_licences()
    {
        var ids = Ids(Json("models", "--commercial", "--json"));
        Assert.Contains("llama-3.1-8b-instruct", ids);
        Assert.Contains("gemma-3-27b-it", ids);
        Assert.DoesNotContain("mistral-large-instruct-2407", ids);
        Assert.DoesNotContain("codestral-22b-v0.1", ids);
        Assert.DoesNotContain("qwen2.5-3b-instruct", ids);
    }

    [Fact]
    public void Mau_filter_applies_user_limits()
    {
        var ids = Ids(Json("models", "--commercial", "--mau", "800000000", "--json"));
        Assert.DoesNotContain("llama-3.1-8b-instruct", ids);
        Assert.DoesNotContain("qwen2.5-72b-instruct", ids);
        Assert.DoesNotContain("deepseek-r1-distill-llama-8b", ids);
        Assert.Contains("gemma-3-27b-it", ids);
        Assert.Contains("qwen3-8b", ids);

        var mid = Ids(Json("models", "--commercial", "--mau", "200000000", "--json"));
        Assert.Contains("llama-3.1-8b-instruct", mid);
        Assert.DoesNotContain("qwen2.5-72b-instruct", mid);
    }

    [Fact]
    public void Region_filter_applies_the_EU_multimodal_clause()
    {
        var ids = Ids(Json("models", "--commercial", "--region", "EU", "--json"));
        Assert.DoesNotContain("llama-4-scout-17b-16e-instruct", ids);
        Assert.Contains("llama-3.2-1b-instruct", ids);
    }

    [Fact]
    public void Language_filter_distinguishes_listed_from_claimed()
    {
        var root = Json("models", "--language", "de", "--json");
        var byId = root.EnumerateArray().ToDictionary(x => x.GetProperty("id").GetString()!, x => x.GetProperty("language_match").GetString());
        Assert.Equal("listed", byId["llama-3.1-8b-instruct"]);
        Assert.Equal("listed", byId["mistral-nemo-instruct-2407"]);
        Assert.Equal("claimed", byId["qwen3-8b"]);
        Assert.False(byId.ContainsKey("tinyllama-1.1b-chat-v1.0"));
    }

    [Fact]
    public void Max_params_and_family_filters()
    {
        var root = Json("models", "--max-params", "2", "--family", "qwen", "--json");
        Assert.True(root.GetArrayLength() >= 4);
        foreach (var m in root.EnumerateArray())
        {
            Assert.True(m.GetProperty("params_b").GetDouble() <= 2);
            Assert.Equal("qwen", m.GetProperty("family").GetString());
        }
    }

    [Fact]
    public void Fits_filter_reports_the_best_quantization()
    {
        var root = Json("models", "--fits", "--max-params", "1", "--json");
        foreach (var m in root.EnumerateArray()) Assert.False(string.IsNullOrEmpty(m.GetProperty("best_quant").GetString()));
        var (code, stdout, _) = Run("models", "--fits", "--max-params", "0.5");
        Assert.Equal(0, code);
        Assert.Contains("BEST FIT", stdout);
    }

    [Fact]
    public void Show_prints_the_sheet_with_plain_language_licence_and_obligations()
    {
        var (code, stdout, _) = Run("models", "show", "llama-3.1-8b");
        Assert.Equal(0, code);
        Assert.Contains("Llama 3.1 8B Instruct", stdout);
        Assert.Contains("meta-llama/Llama-3.1-8B-Instruct", stdout);
        Assert.Contains("Licence: Llama 3.1 Community License", stdout);
        Assert.Contains("700M", stdout);
        Assert.Contains("obligations:", stdout);
        Assert.Contains("Built with Llama", stdout);
        Assert.Contains("layers 32, hidden 4096, heads 32/8 KV", stdout);
    }

    [Fact]
    public void Show_marks_uncertain_facts_and_regional_restrictions()
    {
        var (_, mixtral, _) = Run("models", "show", "mixtral-8x7b");
        Assert.Contains("layers 32 ?", mixtral);
        Assert.Contains("Uncertain facts", mixtral);
        var (_, scout, _) = Run("models", "show", "llama-4-scout");
        Assert.Contains("regional restriction (EU)", scout);
        var (_, distill, _) = Run("models", "show", "deepseek-r1-distill-qwen-7b");
        Assert.Contains("also applies", distill);
    }

    [Fact]
    public void Show_json_has_model_and_licences()
    {
        var root = Json("models", "show", "llama-4-scout", "--json");
        Assert.Equal("llama-4-scout-17b-16e-instruct", root.GetProperty("model").GetProperty("id").GetString());
        Assert.Equal(109, root.GetProperty("model").GetProperty("params_b").GetDouble());
        var lic = root.GetProperty("licenses")[0];
        Assert.Equal("llama4", lic.GetProperty("id").GetString());
        Assert.Equal(700_000_000, lic.GetProperty("mau_limit").GetInt64());
        Assert.Equal("EU", lic.GetProperty("regional_restrictions")[0].GetProperty("region").GetString());
    }

    [Theory]
    [InlineData("models", "show", "nope")]
    [InlineData("fit", "nope")]
    public void Unknown_model_is_a_one_line_error(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal("openweights: error: unknown model 'nope' (try 'openweights models')", stderr.TrimEnd('\r', '\n'));
    }

    [Fact]
    public void Fit_prints_estimate_and_verdict()
    {
        var (code, stdout, stderr) = Run("fit", "llama-3.2-1b", "--quant", "Q4_K_M", "--context", "2048");
        Assert.True(code == 0, stderr);
        Assert.Contains("llama-3.2-1b-instruct: Q4_K_M (4.89 bpw), inference, context 2048", stdout);
        foreach (var s in new[] { "weights", "KV cache", "overhead", "total", "budget", "verdict", "recommended", "decode", "quantizations" })
            Assert.Contains(s, stdout);
        Assert.Contains("per token before window savings, f16)", stdout);
        (code, stdout, stderr) = Run("fit", "llama-3.2-1b", "--quant", "Q4_K_M", "--context", "2048", "--cache-type-k", "q8_0", "--cache-type-v", "f32");
        Assert.True(code == 0, stderr);
        Assert.Contains("per token before window savings, K q8_0, V f32)", stdout);
    }

    /// <summary>DeepSeek-V3's cache is the latent (512) plus the rotary key (64) per layer and position in the key type:
    /// 61 × 576 × 4 bytes in F32, × 2 in F16 (the default).</summary>
    [Fact]
    public void Fit_reports_the_latent_cache_of_deepseek_v3()
    {
        var (code, stdout, stderr) = Run("fit", "deepseek-v3", "--context", "131072", "--cache-type-k", "f32");
        Assert.True(code == 0, stderr);
        Assert.Contains("(140.5 KB per token before window savings, latent in f32)", stdout);
        Assert.Contains("KV cache       18.42 GB", stdout); // 140,544 B × 131,072
        (code, stdout, stderr) = Run("fit", "deepseek-v3", "--context", "131072");
        Assert.True(code == 0, stderr);
        Assert.Contains("KV cache       9.21 GB", stdout); // F16: 70,272 B × 131,072
    }

    [Fact]
    public void Fit_json_matches_published_size()
    {
        var root = Json("fit", "llama-3.1-8b-instruct", "--quant", "Q4_K_M", "--bandwidth", "40", "--json");
        Assert.Equal("Q4_K_M", root.GetProperty("quant").GetString());
        Assert.Equal("none", root.GetProperty("tune").GetString());
        Assert.Equal(4096, root.GetProperty("context").GetInt32());
        double w = root.GetProperty("memory").GetProperty("weights_bytes").GetDouble();
        Assert.InRange(w, 4.9e9 * 0.95, 4.9e9 * 1.05);
        Assert.Contains(root.GetProperty("verdict").GetString(), new[] { "fits", "tight", "does_not_fit" });
        Assert.Equal(40, root.GetProperty("bandwidth_gbps").GetDouble());
        Assert.InRange(root.GetProperty("decode_tokens_per_second").GetDouble(), 7, 9);
        Assert.Equal(8, root.GetProperty("ladder").GetArrayLength());
    }

    [Fact]
    public void Fit_tune_qlora_json()
    {
        var root = Json("fit", "qwen2.5-0.5b", "--tune", "qlora", "--context", "512", "--json");
        Assert.Equal("qlora", root.GetProperty("tune").GetString());
        Assert.True(root.GetProperty("lora_params").GetInt64() > 0);
        Assert.True(root.GetProperty("memory").GetProperty("optimizer_bytes").GetInt64() > 0);
        var (code, stdout, _) = Run("fit", "qwen2.5-0.5b", "--tune", "lora");
        Assert.Equal(0, code);
        Assert.Contains("LoRA fine-tuning (rank 8), sequence 1024", stdout); // the default rank is tune's
        (code, stdout, _) = Run("fit", "qwen2.5-0.5b", "--tune", "lora", "-r", "16");
        Assert.Equal(0, code);
        Assert.Contains("LoRA fine-tuning (rank 16), sequence 1024", stdout);
        Assert.Contains("AdamW state", stdout);
    }

    [Theory]
    [InlineData("--quant", "Q9_X", "unknown quantization 'Q9_X'")]
    [InlineData("--tune", "full", "unknown tuning mode 'full'")]
    [InlineData("--target", "tpu", "unknown target 'tpu'")]
    public void Fit_rejects_bad_options_in_one_line(string opt, string value, string message)
    {
        var (code, _, stderr) = Run("fit", "llama-3.2-1b", opt, value);
        Assert.Equal(1, code);
        Assert.StartsWith("openweights: error: " + message, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Hardware_prints_and_json_parses()
    {
        var (code, stdout, _) = Run("hardware");
        Assert.Equal(0, code);
        foreach (var s in new[] { "cores", "simd", "ram", "bandwidth", "disk", "gpu" }) Assert.Contains(s, stdout);
        var root = Json("hardware", "--json");
        Assert.Equal(Environment.ProcessorCount, root.GetProperty("logical_cores").GetInt32());
        Assert.True(root.GetProperty("total_ram_bytes").GetInt64() > 0);
        Assert.Contains(root.GetProperty("simd").GetString(), new[] { "scalar", "sse", "neon", "avx2", "avx512" });
        Assert.Equal(JsonValueKind.Array, root.GetProperty("gpus").ValueKind);
    }
}
