using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hardware;

namespace OpenWeights.Tests.Catalog;

/// <summary>
/// Mixtures of experts in the catalog and in fit (issue 13): the facts of every MoE model of the issue's table; memory from
/// the total parameters, speed from the active ones; a model larger than the memory budget runs from the file map, slower.
/// </summary>
public class FitMoeTests
{
    private static readonly ModelCatalog Cat = ModelCatalog.Default;
    private static ModelShape Shape(string id) => ModelShape.FromCatalog(Cat.Get(id));
    private static HardwareInfo Ram(double gb, double bw = 50) => HardwareInfo.Synthetic((long)(gb * 1e9), bw);

    private static void Near(double expected, double actual, double relTol, string what)
    {
        double rel = Math.Abs(actual - expected) / expected;
        Assert.True(rel <= relTol, $"{what}: expected {expected:G4}, got {actual:G4} ({rel:P1} off, tolerance {relTol:P0})");
    }

    // ---- catalog facts -----------------------------------------------------------------------

    [Theory]
    // id, total B, active B, experts, per token, shared, licence, GGUF architecture (research notes sections 1, 3, 5, 6;
    // Qwen3-30B-A3B's 30.5 / 3.3 and OLMoE from the catalog's secondary sources X3-X5)
    [InlineData("mixtral-8x7b", 46.7, 12.9, 8, 2, 0, "apache-2.0", "llama")]
    [InlineData("mixtral-8x22b", 140.6, 39.1, 8, 2, 0, "apache-2.0", "llama")]
    [InlineData("qwen3-30b-a3b", 30.5, 3.3, 128, 8, 0, "apache-2.0", "qwen3moe")]
    [InlineData("qwen3-235b-a22b", 235, 22, 128, 8, 0, "apache-2.0", "qwen3moe")]
    [InlineData("gpt-oss-20b", 21, 3.6, 32, 4, 0, "apache-2.0-gpt-oss", "gpt-oss")]
    [InlineData("gpt-oss-120b", 117, 5.1, 128, 4, 0, "apache-2.0-gpt-oss", "gpt-oss")]
    [InlineData("llama-4-scout", 109, 17, 16, 1, 1, "llama4", "llama4")]
    [InlineData("llama-4-maverick", 400, 17, 128, 1, 1, "llama4", "llama4")]
    [InlineData("phi-3.5-moe", 42, 6.6, 16, 2, 0, "mit", "phimoe")]
    [InlineData("olmoe-1b-7b", 6.9, 1.3, 64, 8, 0, "apache-2.0", "olmoe")]
    public void Every_MoE_model_of_the_issue_has_its_facts(string id, double total, double active, int experts, int used, int shared, string license, string arch)
    {
        var m = Cat.Get(id);
        var a = m.Architecture!;
        Assert.Equal("moe", a.Kind);
        Assert.Equal(arch, a.GgufArchitecture);
        Assert.Equal((total, active), (m.ParamsB!.Value, m.ActiveParamsB!.Value));
        Assert.Equal((experts, used, shared), (a.Moe!.Experts, a.Moe.ExpertsPerToken, a.Moe.SharedExperts));
        Assert.Equal(license, m.License);
        // the split the estimator derives is a real one: experts hold most of the weights, and the dense part is positive
        var moe = FitEstimator.MoeOf(Shape(id))!;
        Assert.InRange(moe.DenseParams, 1, moe.TotalParams / 2);
        Assert.InRange(moe.ActiveExpertParams, 1, moe.ActiveParams);
    }

    [Fact]
    public void OLMoE_1B_7B_is_in_the_catalog_and_its_config_gives_its_parameter_counts()
    {
        var m = Cat.Get("olmoe");
        Assert.Equal("olmoe-1b-7b-0924-instruct", m.Id);
        Assert.Equal(("allenai/OLMoE-1B-7B-0924-Instruct", "allenai/OLMoE-1B-7B-0924"), (m.Hf.Instruct, m.Hf.Base));
        var a = m.Architecture!;
        Assert.Equal((16, 2048, 16, 16, 128, 50304, 4096), (a.Layers!.Value, a.HiddenSize!.Value, a.Heads!.Value, a.KvHeads!.Value, a.HeadDim!.Value, a.Vocab!.Value, a.Context!.Value));
        Assert.Equal(1024, a.Moe!.ExpertFfn);
        Assert.Equal("open-source", m.Openness);
        Assert.Contains("X3", m.Sources);

        // parameters of the published config (X3): untied embeddings, per layer Q/K/V/O (16 heads × 128 = 2048 each),
        // QK-norm over the whole Q and K (2048 each), two RMS norms, the router (64 × 2048) and 64 SwiGLU experts of 1024
        long d = 2048, vocab = 50304, ffn = 1024, experts = 64, used = 8, layers = 16;
        long embeddings = 2 * vocab * d;
        long perLayerDense = 4 * d * d + 2 * d + 2 * d + experts * d;
        long expert = 3 * d * ffn;
        long total = embeddings + layers * (perLayerDense + experts * expert) + d;
        long active = embeddings + layers * (perLayerDense + used * expert) + d;
        Near(6.9e9, total, 0.005, "OLMoE total from its config");   // 6.92B
        Near(1.3e9, active, 0.02, "OLMoE active from its config");  // 1.28B
        // and the catalog's rounded counts split into the same experts (within 5%: the catalog rounds to 0.1B)
        var moe = FitEstimator.MoeOf(Shape("olmoe"))!;
        Near(layers * experts * expert, moe.RoutedExpertParams, 0.01, "OLMoE routed experts");
        Near(total - layers * experts * expert, moe.DenseParams, 0.05, "OLMoE dense part");
    }

    [Theory]
    // the dense part a published shape gives (embeddings + attention; routers and norms are under 1%) against the part the
    // estimator derives from the rounded total and active counts. Tolerance 6%: the counts are rounded to 0.1B.
    [InlineData("mixtral-8x7b", 32, 4096, 32, 8, 128, 32000)]
    [InlineData("qwen3-30b-a3b", 48, 2048, 32, 4, 128, 151936)]
    public void The_derived_dense_part_matches_the_published_shape(string id, int layers, int d, int heads, int kv, int hd, int vocab)
    {
        long attention = (long)layers * ((long)d * heads * hd * 2 + (long)d * kv * hd * 2);
        long dense = attention + 2L * vocab * d;
        Near(dense, FitEstimator.MoeOf(Shape(id))!.DenseParams, 0.06, $"{id} dense parameters");
    }

    // ---- fit: memory from total, speed from active --------------------------------------------

    [Fact]
    public void Qwen3_30B_A3B_needs_memory_for_all_30B_and_decodes_like_a_3_3B_dense_model()
    {
        var opts = new FitOptions { Quant = Quantization.Q4_K_M };
        var e = FitEstimator.Estimate(Shape("qwen3-30b-a3b"), Ram(64), opts);
        Assert.Equal(FitVerdict.Fits, e.Verdict);
        Near(30.5e9 * 4.89 / 8, e.Memory.WeightsBytes, 0.001, "weights = total × bpw");
        // a dense model of 3.3B parameters at the same bits per weight and bandwidth
        var dense = Shape("qwen3-30b-a3b") with { Moe = null, TotalParams = 3_300_000_000, ActiveParams = 3_300_000_000 };
        var d = FitEstimator.Estimate(dense, Ram(64), opts);
        Near(d.DecodeTokensPerSecond!.Value, e.DecodeTokensPerSecond!.Value, 0.001, "decode tokens/s against a dense 3.3B");
        Near(50e9 / (3.3e9 * 4.89 / 8), e.DecodeTokensPerSecond!.Value, 0.01, "bandwidth / active bytes");
        Assert.Null(e.FileMap);
        Assert.Equal((128, 8, 30_500_000_000L, 3_300_000_000L), (e.Moe!.Experts, e.Moe.ExpertsPerToken, e.Moe.TotalParams, e.Moe.ActiveParams));
        Assert.Contains(e.Assumptions, a => a.Contains("memory holds all 30.5B parameters, decode reads the 3.3B active ones"));
    }

    [Fact]
    public void A_MoE_larger_than_RAM_runs_from_the_file_map_at_a_speed_bounded_by_the_disk()
    {
        var opts = new FitOptions { Quant = Quantization.Q4_K_M, Context = 4096 };
        var shape = Shape("qwen3-30b-a3b");
        var inRam = FitEstimator.Estimate(shape, Ram(64), opts);
        var e = FitEstimator.Estimate(shape, Ram(12), opts);
        Assert.Equal(FitVerdict.FromFileMap, e.Verdict);
        var fm = e.FileMap!;

        // the plan, recomputed here: experts = weights × routed / total; the dense part, KV cache and overhead resident;
        // the rest of the 12 GB caches experts; a token reads 8/128 of the experts, the non-resident share from disk
        double weights = 30.5e9 * 4.89 / 8;
        double routed = 128 * (30.5e9 - 3.3e9) / (128 - 8);
        double experts = weights * routed / 30.5e9;
        double resident = 12e9 - (weights - experts) - e.Memory.KvCacheBytes - e.Memory.OverheadBytes;
        Near(experts, fm.ExpertBytes, 0.001, "expert bytes");
        Near(resident, fm.ResidentExpertBytes, 0.001, "resident expert bytes");
        double disk = (1 - resident / experts) * experts * 8 / 128;
        Near(disk, fm.DiskBytesPerToken, 0.001, "disk bytes per token");
        Assert.Equal(HardwareProbe.DefaultDiskReadGBps, fm.DiskReadGBps);
        Assert.Equal("assumed", fm.DiskReadSource);
        double seconds = 3.3e9 * 4.89 / 8 / 50e9 + disk / (HardwareProbe.DefaultDiskReadGBps * 1e9);
        Near(1 / seconds, e.DecodeTokensPerSecond!.Value, 0.01, "file-map tokens/s");
        Assert.True(e.DecodeTokensPerSecond < inRam.DecodeTokensPerSecond / 2, $"{e.DecodeTokensPerSecond} vs {inRam.DecodeTokensPerSecond} in RAM");
        Assert.Contains(e.Assumptions, a => a.Contains("runs from the file map") && a.Contains("uniform routing"));

        // a faster disk, or more RAM, is faster; a given disk rate is said to be given
        var fast = FitEstimator.Estimate(shape, Ram(12), opts with { DiskReadGBps = 4 });
        Assert.True(fast.DecodeTokensPerSecond > e.DecodeTokensPerSecond);
        Assert.Equal("given", fast.FileMap!.DiskReadSource);
        var more = FitEstimator.Estimate(shape, Ram(16), opts);
        Assert.Equal(FitVerdict.FromFileMap, more.Verdict);
        Assert.True(more.DecodeTokensPerSecond > e.DecodeTokensPerSecond && more.DecodeTokensPerSecond < inRam.DecodeTokensPerSecond);
    }

    [Fact]
    public void A_dense_model_larger_than_RAM_does_not_fit_and_neither_does_a_MoE_whose_dense_part_is_too_big()
    {
        var dense = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(16), new FitOptions { Quant = Quantization.Q4_K_M });
        Assert.Equal(FitVerdict.DoesNotFit, dense.Verdict);
        Assert.Null(dense.FileMap);
        // Llama 4 Maverick: one expert = (400 - 17) / 127 = 3.0B, so 14B are dense (8.6 GB at Q4_K_M): more than 8 GB
        var maverick = FitEstimator.Estimate(Shape("llama-4-maverick"), Ram(8), new FitOptions { Quant = Quantization.Q4_K_M });
        Assert.Equal(FitVerdict.DoesNotFit, maverick.Verdict);
        Assert.Contains(maverick.Assumptions, a => a.Contains("cannot run from the file map either"));
        // tuning and GPUs have no file map
        var tune = FitEstimator.Estimate(Shape("qwen3-30b-a3b"), Ram(12), new FitOptions { Tune = TuneMode.Qlora });
        Assert.NotEqual(FitVerdict.FromFileMap, tune.Verdict);
    }

    [Fact]
    public void Recommendation_prefers_a_quantization_in_RAM_and_falls_back_to_the_file_map()
    {
        // 16 GB: Q4_K_M (18.6 GB) only runs from the file map, Q3_K_M (15.3 GB + 0.8 GB KV cache + overhead) does not fit either, Q2_K (12.1 GB) fits
        var mid = FitEstimator.Estimate(Shape("qwen3-30b-a3b"), Ram(16));
        Assert.Equal(FitVerdict.FromFileMap, mid.Ladder.Single(r => r.Quant == "Q4_K_M").Verdict);
        Assert.True(FitEstimator.InMemory(mid.Ladder.Single(r => r.Quant == mid.BestQuant).Verdict), mid.BestQuant);
        Assert.Contains("does not fit", mid.RecommendedBecause);

        // 64 GB and Qwen3-235B: nothing fits (Q2_K is 93 GB), Q4_K_M runs from the file map
        var big = FitEstimator.Estimate(Shape("qwen3-235b-a22b"), Ram(64));
        Assert.DoesNotContain(big.Ladder, r => FitEstimator.InMemory(r.Verdict));
        Assert.Equal("Q4_K_M", big.BestQuant);
        Assert.Equal(FitVerdict.FromFileMap, big.Verdict);
        Assert.Contains("runs from the file map", big.RecommendedBecause);
        Assert.Contains("Q2_K would reach", big.RecommendedBecause); // the faster, smaller one is named
        var rung = big.Ladder.Single(r => r.Quant == "Q4_K_M");
        Assert.Equal(big.DecodeTokensPerSecond, rung.DecodeTokensPerSecond);
        // every file-map rung is slower than the same rung would be in RAM (bandwidth / active bytes)
        foreach (var r in big.Ladder.Where(r => r.Verdict == FitVerdict.FromFileMap))
            Assert.True(r.DecodeTokensPerSecond < 50e9 / (22e9 * r.BitsPerWeight / 8), r.Quant);
    }

    [Fact]
    public void Disk_read_rate_is_measured_past_the_page_cache_or_not_at_all()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ow-disk-" + Guid.NewGuid().ToString("N"));
        try
        {
            double? rate = HardwareProbe.MeasureDiskReadGBps(dir, 32L << 20);
            if (!OperatingSystem.IsLinux()) Assert.Null(rate);
            // a rate served from memory (tmpfs /tmp, pages the kernel kept) is refused rather than reported as a disk's
            if (rate is { } r) Assert.InRange(r, 1e-3, HardwareProbe.DiskFromMemoryGBps);
            Assert.Empty(Directory.GetFiles(dir)); // the probe file is gone
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // ---- fit --measure: a synthetic model of the shape -------------------------------------------

    [Fact]
    public void Measuring_a_MoE_catalog_model_builds_its_shape_with_experts()
    {
        // Qwen3-30B-A3B: the exact preset of its config (moe branch), found by its dimensions and experts
        var q = ShapePreset.For(Shape("qwen3-30b-a3b"));
        var k = OpenWeights.Models.Synthetic.SynthPreset.Get("qwen3-30b-a3b");
        Assert.Equal((k.Architecture, k.Layers, k.Dim, k.ExpertCount, k.ExpertsUsed, k.EffectiveExpertFfnDim), (q.Architecture, q.Layers, q.Dim, q.ExpertCount, q.ExpertsUsed, q.EffectiveExpertFfnDim));
        Assert.Equal(768, q.EffectiveExpertFfnDim);

        // Mixtral 8x7B (llama with experts) has an exact preset too: its experts are feed_forward_length (14336) wide
        var mx = ShapePreset.For(Shape("mixtral-8x7b"));
        Assert.Equal(("llama", 8, 2, 14336), (mx.Architecture, mx.ExpertCount, mx.ExpertsUsed, mx.EffectiveExpertFfnDim));

        // Mixtral 8x22B has none: the expert size is estimated from the routed parameters, and said so; the published
        // intermediate_size is 16384 (the catalog's parameter counts are rounded, so within 6%)
        var notes = new List<string>();
        var mx22 = ShapePreset.For(Shape("mixtral-8x22b"), notes);
        Assert.Equal(("llama", 8, 2), (mx22.Architecture, mx22.ExpertCount, mx22.ExpertsUsed));
        Assert.InRange(mx22.EffectiveExpertFfnDim, 16384 * 0.94, 16384 * 1.06);
        Assert.Contains(notes, n => n.Contains("estimated"));

        // a shared expert's size is not in the catalog: refused with one line, not a wrong model
        var scout = Shape("llama-4-scout") with { Architecture = "llama" };
        Assert.Contains("shared expert", Assert.Throws<OpenWeightsException>(() => ShapePreset.For(scout)).Message);
    }

    [Fact]
    public void Measure_runs_a_tiny_MoE_shape()
    {
        using var dir = new TempDir();
        var shape = new ModelShape
        {
            Name = "tiny-moe-shape", TotalParams = 10_000_000, ActiveParams = 3_000_000, Layers = 2, HiddenSize = 256, Heads = 4, KvHeads = 2,
            HeadDim = 128, Vocab = 1024, ContextLength = 2048, Architecture = "qwen3moe", TiedEmbeddings = false,
            Moe = new MoeFacts { Experts = 8, ExpertsPerToken = 2, ExpertFfn = 256 },
        };
        var m = FitMeasure.MeasureSynthetic(shape, "q8_0", promptTokens: 8, decodeTokens: 2, threads: 2, tempRoot: dir.Path);
        Assert.True(m.FileBytes > 0 && m.DecodeTokensPerSecond > 0 && m.PrefillTokensPerSecond > 0);
    }

    // ---- CLI ----------------------------------------------------------------------------------

    [Fact]
    public void Fit_prints_experts_and_the_file_map_plan()
    {
        var e = FitEstimator.Estimate(Shape("qwen3-30b-a3b"), Ram(12), new FitOptions { Quant = Quantization.Q4_K_M });
        var w = new StringWriter();
        FitCommand.Print(w, e);
        string text = w.ToString();
        Assert.Contains("experts        8 of 128 per token: 30.5B parameters in memory, 3.3B active per token (speed)", text);
        Assert.Contains(e.Runs ? "verdict        larger than the budget, runs from the file map" : "would run from the file map (larger than the budget), but", text);
        Assert.Contains("routed experts", text);
        Assert.Contains("from disk", text);
        Assert.Contains("--disk-bandwidth", text);
        Assert.Contains("file map", text.Split('\n').Single(l => l.TrimStart().StartsWith("quantizations")));

        var json = new StringWriter();
        OpenWeights.Cli.CliJson.Write(json, e);
        var root = JsonDocument.Parse(json.ToString()).RootElement;
        Assert.Equal("from_file_map", root.GetProperty("verdict").GetString());
        Assert.True(root.GetProperty("file_map").GetProperty("disk_bytes_per_token").GetInt64() > 0);
        Assert.Equal(8, root.GetProperty("moe").GetProperty("experts_per_token").GetInt32());
    }

    [Fact]
    public void Models_shows_expert_counts_and_active_parameters()
    {
        var o = new StringWriter();
        var err = new StringWriter();
        Assert.Equal(0, OpenWeights.Cli.Cli.Run(["models", "--family", "olmo"], o, err));
        var line = o.ToString().Split('\n').Single(l => l.StartsWith("olmoe-1b-7b-0924-instruct "));
        Assert.Contains("6.9B", line);
        Assert.Contains("1.3B", line);
        Assert.Contains("8/64", line);
        Assert.Contains(" - ", o.ToString().Split('\n').Single(l => l.StartsWith("olmo-2-1124-7b-instruct "))); // dense: no experts

        // --fits: a MoE that only runs from the file map says so, with its speed (this machine's RAM decides whether it does)
        o = new StringWriter();
        Assert.Equal(0, OpenWeights.Cli.Cli.Run(["models", "--fits", "--family", "qwen"], o, err));
        var big = o.ToString().Split('\n').FirstOrDefault(l => l.StartsWith("qwen3-235b-a22b "));
        // between 16 GB (its ~8 GB dense part, KV cache and overhead fit) and 90 GB (under Q2_K's 95 GB) available
        if (HardwareProbe.AvailableMemoryBytes() is > 16_000_000_000 and < 90_000_000_000)
            Assert.Matches(@"\(file map, ~[0-9.]+ tok/s\)", Assert.IsType<string>(big));

        o = new StringWriter();
        Assert.Equal(0, OpenWeights.Cli.Cli.Run(["models", "show", "llama-4-scout"], o, err));
        Assert.Contains("MoE: 16 experts, 1 per token, 1 shared; memory follows the 109B total, speed the 17B active", o.ToString());

        o = new StringWriter();
        Assert.Equal(0, OpenWeights.Cli.Cli.Run(["models", "--json"], o, err));
        var olmoe = JsonDocument.Parse(o.ToString()).RootElement.EnumerateArray().Single(x => x.GetProperty("id").GetString() == "olmoe-1b-7b-0924-instruct");
        Assert.Equal((64, 8), (olmoe.GetProperty("experts").GetInt32(), olmoe.GetProperty("experts_per_token").GetInt32()));
    }
}
