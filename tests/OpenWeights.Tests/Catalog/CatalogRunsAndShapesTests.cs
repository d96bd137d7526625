using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hardware;
using OpenWeights.Models;

namespace OpenWeights.Tests.Catalog;

/// <summary>What the engine runs (from its architecture registry), complete catalog shapes, and id suggestions.</summary>
public class CatalogRunsAndShapesTests
{
    private static readonly ModelCatalog Cat = ModelCatalog.Default;

    private static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    // ---- runs -------------------------------------------------------------------------------

    [Theory]
    [InlineData("llama-3.2-1b-instruct", true)]
    [InlineData("mistral-7b-instruct-v0.3", true)]      // GGUF architecture "llama"
    [InlineData("qwen2.5-0.5b-instruct", true)]
    [InlineData("deepseek-r1-distill-qwen-7b", true)]   // borrows qwen2.5-7b's architecture, qwen2
    [InlineData("smollm2-135m-instruct", true)]
    [InlineData("qwen3-8b", true)]
    [InlineData("gemma-3-4b-it", true)]                 // gemma3 (text part of Gemma3ForConditionalGeneration)
    [InlineData("gemma-2-2b-it", true)]
    [InlineData("smollm3-3b", true)]
    [InlineData("mixtral-8x7b-instruct-v0.1", true)]    // "llama" in GGUF with experts: the llama family runs them
    [InlineData("deepseek-v3", true)]                   // deepseek2 (multi-head latent attention, issue 14)
    public void Runs_follows_the_engine_architecture_registry(string id, bool runs)
    {
        var s = EngineSupport.For(Cat.Get(id));
        Assert.Equal(runs, s.Runs);
        Assert.Equal(runs, s.Reason is null);
    }

    /// <summary>Mixture-of-experts families land one by one (issue 13): whether each catalog MoE runs follows the registry
    /// of the moment, never a list written here. Mixtral's GGUF files say "llama": it runs once the llama family runs experts.</summary>
    [Theory]
    [InlineData("mixtral-8x7b-instruct-v0.1", "llama")]
    [InlineData("mixtral-8x22b-instruct-v0.1", "llama")]
    [InlineData("qwen3-30b-a3b", "qwen3moe")]
    [InlineData("qwen3-235b-a22b", "qwen3moe")]
    [InlineData("gpt-oss-20b", "gpt-oss")]
    [InlineData("gpt-oss-120b", "gpt-oss")]
    [InlineData("llama-4-scout", "llama4")]
    [InlineData("llama-4-maverick", "llama4")]
    [InlineData("phi-3.5-moe", "phimoe")]
    [InlineData("olmoe-1b-7b", "olmoe")]
    public void A_mixture_of_experts_runs_exactly_when_its_family_is_registered_with_experts(string id, string arch)
    {
        var m = Cat.Get(id);
        Assert.Equal(arch, m.Architecture!.GgufArchitecture);
        Assert.NotNull(m.Architecture.Moe);
        var spec = Architectures.Supported.FirstOrDefault(a => a.Name == arch);
        var s = EngineSupport.For(m);
        Assert.Equal(spec is { Experts: true }, s.Runs);
        if (spec is null) Assert.Equal($"the engine cannot run architecture {arch} yet (it runs {string.Join(", ", Architectures.Supported.Select(a => a.Name))})", s.Reason);
        else if (!spec.Experts) Assert.Equal($"the engine cannot run mixture-of-experts {arch} models yet (dense models only)", s.Reason);
        // the fit estimate follows: a model that runs never carries a cannot-run reason
        var e = FitEstimator.Estimate(m, HardwareInfo.Synthetic(1L << 40));
        Assert.Equal(s.Runs, e.Runs);
        Assert.Equal(s.Reason, e.CannotRun);
    }

    [Fact]
    public void Every_model_names_its_architecture_and_runs_exactly_when_the_registry_has_it()
    {
        var registered = Architectures.Supported.Select(a => a.Name).ToHashSet();
        foreach (var m in Cat.Models)
        {
            string? arch = m.Architecture?.GgufArchitecture;
            Assert.False(string.IsNullOrEmpty(arch), $"{m.Id} names no gguf_architecture");
            var s = EngineSupport.For(m);
            if (!registered.Contains(arch!))
            {
                Assert.False(s.Runs, m.Id);
                Assert.Equal($"the engine cannot run architecture {arch} yet (it runs {string.Join(", ", registered)})", s.Reason);
            }
            // a MoE model runs when its family runs experts (ArchitectureSpec.Experts)
            else Assert.Equal(m.Architecture!.Moe is null || Architectures.Get(arch).Experts, s.Runs);
        }
        // the column says something: models run, and one of an architecture outside the registry does not (every entry of
        // the shipped catalog runs since deepseek2 does: NotRunnable() stands for the other side)
        Assert.Contains(Cat.Models, m => EngineSupport.For(m).Runs);
        Assert.False(EngineSupport.For(NotRunnable()).Runs);
    }

    [Fact]
    public void Models_table_has_a_runs_column_and_runnable_filter()
    {
        var (code, stdout, stderr) = Run("models");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n');
        Assert.Contains("RUNS", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("llama-3.2-1b-instruct ") && l.Contains(" yes "));
        Assert.Contains(lines, l => l.StartsWith("deepseek-v3 ") && l.Contains(" yes "));

        (code, stdout, stderr) = Run("models", "--runnable", "--json");
        Assert.True(code == 0, stderr);
        var root = JsonDocument.Parse(stdout).RootElement;
        var ids = root.EnumerateArray().Select(x => x.GetProperty("id").GetString()).ToHashSet();
        Assert.All(root.EnumerateArray(), x => Assert.True(x.GetProperty("runs").GetBoolean()));
        Assert.Contains("llama-3.2-1b-instruct", ids);
        Assert.Contains("deepseek-v3", ids);
        Assert.Equal(Cat.Models.Count(m => EngineSupport.For(m).Runs), ids.Count);

        var all = JsonDocument.Parse(Run("models", "--json").stdout).RootElement;
        Assert.Contains(all.EnumerateArray(), x => x.GetProperty("id").GetString() == "deepseek-v3" && x.GetProperty("runs").GetBoolean());
    }

    /// <summary>A catalog entry of an architecture the engine does not run (every entry of the shipped catalog runs since
    /// deepseek2 does): DeepSeek-V3's facts under another GGUF architecture name.</summary>
    private static CatalogModel NotRunnable() =>
        Cat.Get("deepseek-v3") with { Architecture = Cat.Get("deepseek-v3").Architecture! with { GgufArchitecture = "mamba" } };

    [Fact]
    public void Models_show_says_when_the_engine_cannot_run_it()
    {
        var s = EngineSupport.For(NotRunnable());
        Assert.False(s.Runs);
        Assert.Contains("mamba", s.Reason);
        var (code, stdout, stderr) = Run("models", "show", "deepseek-v3");
        Assert.True(code == 0, stderr);
        Assert.Contains("runs           yes (engine architecture deepseek2)", stdout);
        (code, stdout, _) = Run("models", "show", "llama-3.2-1b");
        Assert.Contains("runs           yes (engine architecture llama)", stdout);
        var json = JsonDocument.Parse(Run("models", "show", "deepseek-v3", "--json").stdout).RootElement;
        Assert.True(json.GetProperty("runs").GetBoolean());
    }

    [Fact]
    public void Fit_never_just_says_fits_for_a_model_the_engine_cannot_run()
    {
        // DeepSeek-V3's 671B parameters under an architecture the engine does not run fit a 1 TiB machine at Q4_K_M
        var e = FitEstimator.Estimate(NotRunnable(), HardwareInfo.Synthetic(1L << 40), new FitOptions { Quant = Quantization.Q4_K_M });
        Assert.Equal(FitVerdict.Fits, e.Verdict);
        Assert.False(e.Runs);
        var w = new StringWriter();
        FitCommand.Print(w, e);
        Assert.Contains("verdict        fits in memory, but the engine cannot run architecture mamba yet", w.ToString());

        var ok = FitEstimator.Estimate(Cat.Get("llama-3.2-1b"), HardwareInfo.Synthetic(64_000_000_000));
        w = new StringWriter();
        FitCommand.Print(w, ok);
        Assert.Contains("verdict        fits: headroom", w.ToString());

        var (code, stdout, stderr) = Run("fit", "deepseek-v3", "--json");
        Assert.True(code == 0, stderr);
        Assert.True(JsonDocument.Parse(stdout).RootElement.GetProperty("runs").GetBoolean());
    }

    [Fact]
    public void Models_fits_marks_the_ones_the_engine_cannot_run()
    {
        // the smallest catalog model the engine cannot run (its architecture is not in the registry) fits any machine
        // that runs the tests; the list up to its size marks it
        var small = Cat.Models.Where(m => !EngineSupport.For(m).Runs && m.ParamsB is > 0).MinBy(m => m.ParamsB);
        if (small is null) Assert.Skip("every model of the shipped catalog runs (deepseek2 was the last architecture it lacked)");
        var (code, stdout, stderr) = Run("models", "--fits", "--max-params", small.ParamsB!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, stderr);
        var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith(small.Id + " "));
        if (line is null) Assert.Skip($"{small.Id} does not fit this machine's available RAM right now");
        Assert.Contains("(cannot run yet)", line);
        Assert.Contains("fit in memory but the engine cannot run them yet", stdout);
        Assert.DoesNotContain("(cannot run yet)", stdout.Split('\n').First(l => l.StartsWith("smollm2-135m-instruct ")));
    }

    // ---- shapes -----------------------------------------------------------------------------

    [Fact]
    public void Every_catalog_model_has_a_complete_shape()
    {
        foreach (var m in Cat.Models)
        {
            var a = m.Architecture;
            Assert.True(a is not null, $"{m.Id}: no architecture");
            Assert.True(a!.Layers > 0 && a.HiddenSize > 0 && a.Heads > 0 && a.Vocab > 0 && a.Context > 0, $"{m.Id}: layers, hidden, heads, vocab and context must be known");
            if (a.Mla is null)
                Assert.True(a.KvHeads > 0 && a.HeadDim > 0 && a.Heads % a.KvHeads == 0, $"{m.Id}: KV heads and head dim must be known");
            else // stated reason: multi-head latent attention caches one latent per layer, not per-head K and V
                Assert.True(a.Mla.KvLoraRank > 0 && a.Mla.RopeHeadDim > 0, $"{m.Id}: MLA without its ranks");
            Assert.Equal(a.Kind == "moe", a.Moe is not null);
            if (a.Moe is { } moe) Assert.True(moe.Experts > 1 && moe.ExpertsPerToken is > 0 && moe.ExpertsPerToken <= moe.Experts, m.Id);
            var est = FitEstimator.Estimate(m, HardwareInfo.Synthetic(1L << 40));
            Assert.DoesNotContain(est.Assumptions, x => x.Contains("unknown"));
        }
    }

    [Fact]
    public void Gpt_oss_kv_cache_uses_its_8_kv_heads()
    {
        foreach (var (id, layers) in new[] { ("gpt-oss-20b", 24), ("gpt-oss-120b", 36) })
        {
            var s = ModelShape.FromCatalog(Cat.Get(id));
            Assert.Equal((64, 8, 64), (s.Heads, s.KvHeads, s.HeadDim));
            // F16: 2 (K, V) x layers x 8 KV heads x 64 x 2 bytes per token, not 32 or 64 heads
            Assert.Equal(2L * layers * 8 * 64 * 2, FitEstimator.KvBytesPerToken(s, 2));
            // half the layers keep only the 128-token window
            long expected = 2L * 8 * 64 * 2 * (layers / 2 * 131072L + layers / 2 * 128L);
            Assert.Equal(expected, FitEstimator.KvCacheBytes(s, 131072, 2));
        }
        // research notes, section 7: gpt-oss-120b at 128K needs about 4.5 GiB of KV cache
        double gib = FitEstimator.KvCacheBytes(ModelShape.FromCatalog(Cat.Get("gpt-oss-120b")), 131072, 2) / (1024.0 * 1024 * 1024);
        Assert.InRange(gib, 4.0, 5.0);
    }

    [Fact]
    public void Qwen3_8b_shape_is_filled()
    {
        var a = Cat.Get("qwen3-8b").Architecture!;
        Assert.Equal((36, 4096, 32, 8, 128, 151936), (a.Layers!.Value, a.HiddenSize!.Value, a.Heads!.Value, a.KvHeads!.Value, a.HeadDim!.Value, a.Vocab!.Value));
        var (code, stdout, _) = Run("models", "show", "qwen3-8b");
        Assert.Equal(0, code);
        Assert.DoesNotContain("hidden ?", stdout);
        Assert.DoesNotContain("vocab ?", stdout);
    }

    // ---- suggestions ------------------------------------------------------------------------

    [Theory]
    [InlineData("llama3.2", "llama-3.2-1b-instruct")]
    [InlineData("Llama-3.2", "llama-3.2-1b-instruct")]
    [InlineData("llama-3.1-8b", "llama-3.1-8b-instruct")]  // an alias: exact after normalizing
    [InlineData("qwen3-8bb", "qwen3-8b")]                  // one typo
    [InlineData("gemma3-27b", "gemma-3-27b-it")]
    [InlineData("mistral", "mistral-7b-instruct-v0.3")]
    [InlineData("tinylama", "tinyllama-1.1b-chat-v1.0")]
    public void Suggest_finds_the_closest_id(string typed, string expected) => Assert.Equal(expected, Cat.Suggest(typed));

    [Theory]
    [InlineData("nope")]
    [InlineData("xyzzy-9000")]
    [InlineData("ab")]
    [InlineData("")]
    public void Suggest_returns_null_when_nothing_is_close(string typed) => Assert.Null(Cat.Suggest(typed));

    [Theory]
    [InlineData("models", "show", "llama3.2")]
    [InlineData("fit", "llama3.2", "--json")]
    [InlineData("pull", "llama3.2", "--json")]
    public void Unknown_ids_suggest_the_closest(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal("openweights: error: unknown model 'llama3.2'; did you mean llama-3.2-1b-instruct?", stderr.TrimEnd('\r', '\n'));
    }
}
