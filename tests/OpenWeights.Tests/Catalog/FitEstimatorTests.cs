using OpenWeights.Catalog;
using OpenWeights.Hardware;

namespace OpenWeights.Tests.Catalog;

/// <summary>The fit estimator against published numbers (llama.cpp quantize README, the research notes' KV table, LLaMA-Factory, QLoRA).</summary>
public class FitEstimatorTests
{
    private const double GiB = 1024.0 * 1024 * 1024;
    private const double KiB = 1024.0;
    private static ModelShape Shape(string id) => ModelShape.FromCatalog(ModelCatalog.Default.Get(id));
    private static HardwareInfo Ram(double gb, double bw = 50) => HardwareInfo.Synthetic((long)(gb * 1e9), bw);

    private static void Near(double expected, double actual, double relTol, string what)
    {
        double rel = Math.Abs(actual - expected) / expected;
        Assert.True(rel <= relTol, $"{what}: expected {expected:G4}, got {actual:G4} ({rel:P1} off, tolerance {relTol:P0})");
    }

    [Theory]
    // llama.cpp's published Q4_K_M files for Llama 3.1 (research notes, S37): 8B 4.9 GB, 70B 43.1 GB, 405B 249.1 GB.
    [InlineData("llama-3.1-8b-instruct", 4.9)]
    [InlineData("llama-3.1-70b-instruct", 43.1)]
    [InlineData("llama-3.1-405b-instruct", 249.1)]
    // Well-known community (bartowski / lmstudio) Q4_K_M files: 8B 4.92 GB, 70B 42.5 GB, 405B ≈ 243 GB.
    [InlineData("llama-3.1-8b", 4.92)]
    [InlineData("llama-3.1-70b", 42.5)]
    [InlineData("llama-3.1-405b", 243)]
    public void Q4_K_M_weights_match_published_file_sizes(string id, double gb)
    {
        var e = FitEstimator.Estimate(Shape(id), Ram(1000), new FitOptions { Quant = Quantization.Q4_K_M });
        Near(gb * 1e9, e.Memory.WeightsBytes, 0.05, $"{id} Q4_K_M");
    }

    [Theory]
    // llama.cpp tools/quantize/README.md, Llama-3.1-8B: F16 14.96 GiB, Q8_0 7.95, Q6_K 6.14, Q5_K_M 5.33, Q4_K_M 4.58.
    [InlineData("F16", 14.96)]
    [InlineData("Q8_0", 7.95)]
    [InlineData("Q6_K", 6.14)]
    [InlineData("Q5_K_M", 5.33)]
    [InlineData("Q4_K_M", 4.58)]
    public void Llama_3_1_8B_sizes_per_quantization(string quant, double gib)
    {
        var e = FitEstimator.Estimate(Shape("llama-3.1-8b"), Ram(1000), new FitOptions { Quant = Quantization.Parse(quant) });
        Near(gib * GiB, e.Memory.WeightsBytes, 0.05, quant);
    }

    [Theory]
    // Research notes section 7: KV per token at F16.
    [InlineData("llama-3.1-8b", 128)]
    [InlineData("llama-3.1-70b", 320)]
    [InlineData("llama-3.1-405b", 504)]
    [InlineData("qwen2.5-7b", 56)]
    [InlineData("qwen3-32b", 256)]
    [InlineData("mistral-small-3", 160)]
    public void KV_bytes_per_token(string id, double kib) =>
        Assert.Equal((long)(kib * KiB), FitEstimator.KvBytesPerToken(Shape(id)));

    [Theory]
    // Research notes section 7, at 128K context: Llama-3.1-8B 16 GiB; with window/chunk/MLA savings:
    // Gemma 3 27B ≈ 10.4 GiB (62 naive), Llama 4 Scout ≈ 7 GiB (24 naive), DeepSeek-V3 ≈ 8.6 GiB, gpt-oss-120b ≈ 4.5 GiB.
    [InlineData("llama-3.1-8b", 16.0, 0.001)]
    [InlineData("qwen3-32b", 32.0, 0.001)]
    [InlineData("gemma-3-27b", 10.4, 0.03)]
    [InlineData("llama-4-scout", 7.0, 0.05)]
    [InlineData("deepseek-v3", 8.6, 0.02)]
    [InlineData("gpt-oss-120b", 4.5, 0.03)]
    public void KV_cache_at_128K(string id, double gib, double tol) =>
        Near(gib * GiB, FitEstimator.KvCacheBytes(Shape(id), 131072), tol, id);

    [Fact]
    public void Naive_KV_would_be_much_larger_for_local_attention()
    {
        var g = Shape("gemma-3-27b");
        long naive = FitEstimator.KvBytesPerToken(g) * 131072L;
        Near(62 * GiB, naive, 0.001, "Gemma 3 27B naive");
        Assert.True(FitEstimator.KvCacheBytes(g, 131072) < naive / 5);
        // Below the window, local layers cache everything: no saving.
        Assert.Equal(FitEstimator.KvBytesPerToken(g) * 512L, FitEstimator.KvCacheBytes(g, 512));
    }

    [Fact]
    public void DeepSeek_MLA_caches_576_values_per_layer()
    {
        Assert.Equal(61L * 576 * 2, FitEstimator.KvBytesPerToken(Shape("deepseek-v3")));
        Near(68.6 * KiB, FitEstimator.KvBytesPerToken(Shape("deepseek-r1")), 0.01, "MLA per token");
    }

    [Fact]
    public void Worked_example_70B_Q4_K_M_8K_is_about_47_GB()
    {
        // Research notes (llama.cpp, F16 KV cache): 43 GB + 2.5 GiB + ~1.5 GB ≈ 47 GB.
        var e = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(1000), new FitOptions { Quant = Quantization.Q4_K_M, Context = 8192, KvBytesPerElement = 2 });
        Near(2.5 * GiB, e.Memory.KvCacheBytes, 0.01, "KV");
        // the default types (F16, as llama.cpp's) give the same cache; F32 doubles it, Q8_0 takes 34/64 of it
        var ours = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(1000), new FitOptions { Quant = Quantization.Q4_K_M, Context = 8192 });
        Assert.Equal(e.Memory.KvCacheBytes, ours.Memory.KvCacheBytes);
        var f32 = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(1000), new FitOptions { Quant = Quantization.Q4_K_M, Context = 8192, CacheTypes = OpenWeights.Models.Common.KvCacheTypes.F32 });
        Near(5 * GiB, f32.Memory.KvCacheBytes, 0.01, "F32 KV");
        var q8 = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(1000), new FitOptions { Quant = Quantization.Q4_K_M, Context = 8192, CacheTypes = OpenWeights.Models.Common.KvCacheTypes.Q8_0 });
        Near(2.5 * GiB * 34 / 64, q8.Memory.KvCacheBytes, 0.01, "Q8_0 KV");
        Near(47e9, e.Memory.TotalBytes, 0.05, "total");
        Assert.InRange(e.Memory.OverheadBytes, 300e6, 2e9);
    }

    [Fact]
    public void Verdicts_and_headroom()
    {
        var opts = new FitOptions { Quant = Quantization.Q4_K_M, Context = 8192, KvBytesPerElement = 2 };
        var big = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(64), opts);
        Assert.Equal(FitVerdict.Fits, big.Verdict);
        Assert.Equal(big.BudgetBytes - big.Memory.TotalBytes, big.HeadroomBytes);
        Assert.InRange(big.HeadroomPercent, 20, 40);

        var tight = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(48), opts);
        Assert.Equal(FitVerdict.Tight, tight.Verdict);
        Assert.True(tight.HeadroomBytes > 0);

        var no = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(32), opts);
        Assert.Equal(FitVerdict.DoesNotFit, no.Verdict);
        Assert.True(no.HeadroomBytes < 0 && no.HeadroomPercent < 0);
    }

    [Fact]
    public void Ladder_shrinks_with_the_bits_and_nothing_fits_a_405b_in_16_GB()
    {
        var e = FitEstimator.Estimate(Shape("llama-3.1-8b"), Ram(16));
        Assert.Equal("Q4_K_M", e.BestQuant); // Q8_0 fits, but ~5.9 tokens/s at 50 GB/s is below 10: not recommended
        Assert.Equal("Q4_K_M", e.Quant);     // no --quant: the estimate is for the recommendation
        Assert.Equal(Quantization.Ladder.Count, e.Ladder.Count);
        Assert.Equal(FitVerdict.DoesNotFit, e.Ladder[0].Verdict);
        // Ladder totals shrink with the bits.
        for (int i = 1; i < e.Ladder.Count; i++) Assert.True(e.Ladder[i].TotalBytes < e.Ladder[i - 1].TotalBytes);

        var none = FitEstimator.Estimate(Shape("llama-3.1-405b"), Ram(16));
        Assert.Null(none.BestQuant);
        Assert.Equal(FitVerdict.DoesNotFit, none.Verdict);
        Assert.Equal("Q2_K", none.Quant);
    }

    [Fact]
    public void Decode_speed_is_bandwidth_over_bytes_per_token()
    {
        var e = FitEstimator.Estimate(Shape("llama-3.1-8b"), Ram(64, bw: 50), new FitOptions { Quant = Quantization.Q4_K_M, Context = 4096 });
        Near(50e9 / (8e9 * 4.89 / 8), e.DecodeTokensPerSecond!.Value, 0.01, "tokens/s");
        Assert.True(e.DecodeTokensPerSecondAtFullContext < e.DecodeTokensPerSecond);
        Assert.Equal("assumed", e.BandwidthSource);

        // MoE: speed from the active parameters, memory from all of them.
        var moe = FitEstimator.Estimate(Shape("qwen3-30b-a3b"), Ram(64, bw: 50), new FitOptions { Quant = Quantization.Q4_K_M });
        Near(50e9 / (3.3e9 * 4.89 / 8), moe.DecodeTokensPerSecond!.Value, 0.01, "MoE tokens/s");
        Near(30.5e9 * 4.89 / 8, moe.Memory.WeightsBytes, 0.001, "MoE weights");
    }

    [Fact]
    public void LoRA_parameter_count_matches_PEFT()
    {
        // PEFT reports 41,943,040 trainable params for Llama-3-8B with r=16 on all linear layers (MLP width 14336),
        // and 13,631,488 on q/k/v/o only.
        var shape = Shape("llama-3.1-8b");
        var attn = FitEstimator.Estimate(shape, Ram(1000), new FitOptions { Tune = TuneMode.Lora, LoraRank = 16 });
        Assert.Equal(13_631_488, attn.LoraParams);
        Assert.Equal(["q_proj", "k_proj", "v_proj", "o_proj"], attn.LoraTargets);
        var all = FitEstimator.Estimate(shape with { FfnHidden = 14336 }, Ram(1000), new FitOptions { Tune = TuneMode.Lora, LoraRank = 16 });
        Assert.Equal(41_943_040, all.LoraParams);
        // fp32 adapter + gradient + AdamW m and v = 16 bytes per trainable parameter.
        Assert.Equal(all.LoraParams * 4, all.Memory.AdapterBytes);
        Assert.Equal(all.LoraParams * 4, all.Memory.GradientBytes);
        Assert.Equal(all.LoraParams * 8, all.Memory.OptimizerBytes);
        Assert.Equal(0, all.Memory.KvCacheBytes);
    }

    [Fact]
    public void LoRA_7B_is_near_LLaMA_Factory_16_GB()
    {
        // LLaMA-Factory README: LoRA (16-bit) 7B ≈ 16 GB.
        var e = FitEstimator.Estimate(Shape("mistral-7b"), Ram(1000), new FitOptions { Tune = TuneMode.Lora, Context = 1024 });
        Assert.Equal("F16", e.Quant);
        Near(16e9, e.Memory.TotalBytes, 0.25, "LoRA 7B");
    }

    [Fact]
    public void QLoRA_70B_is_near_LLaMA_Factory_48_GB_and_65B_fits_one_48_GB_GPU()
    {
        // LLaMA-Factory: QLoRA 4-bit 70B ≈ 48 GB. QLoRA paper: a 65B model fine-tunes on one 48 GB GPU.
        var e = FitEstimator.Estimate(Shape("llama-3.1-70b"), Ram(1000), new FitOptions { Tune = TuneMode.Qlora, Quant = Quantization.NF4, Context = 1024 });
        Near(48e9, e.Memory.TotalBytes, 0.25, "QLoRA 70B");

        var gpu = HardwareInfo.Synthetic(16L << 30, gpus: [new GpuInfo("48 GB GPU", 48_000_000_000, 48_000_000_000)]);
        var s65 = Shape("llama-3.1-70b") with { Name = "65b", TotalParams = 65_000_000_000, ActiveParams = 65_000_000_000 };
        var f = FitEstimator.Estimate(s65, gpu, new FitOptions { Tune = TuneMode.Qlora, Quant = Quantization.NF4, Context = 512, Target = FitTarget.Gpu });
        Assert.NotEqual(FitVerdict.DoesNotFit, f.Verdict);
        Assert.Contains("48 GB GPU", f.BudgetSource);
        Assert.Null(f.DecodeTokensPerSecond); // no speed estimate for training
    }

    [Fact]
    public void QLoRA_picks_a_quantized_base_and_gradient_checkpointing_saves_memory()
    {
        var hw = Ram(24);
        var q = FitEstimator.Estimate(Shape("llama-3.1-8b"), hw, new FitOptions { Tune = TuneMode.Qlora });
        Assert.NotEqual("F16", q.Quant);
        Assert.DoesNotContain(q.Ladder, r => r.Quant == "F16");
        var noCkpt = FitEstimator.Estimate(Shape("llama-3.1-8b"), hw, new FitOptions { Tune = TuneMode.Qlora, Quant = Quantization.Q4_K_M, GradientCheckpointing = false });
        var ckpt = FitEstimator.Estimate(Shape("llama-3.1-8b"), hw, new FitOptions { Tune = TuneMode.Qlora, Quant = Quantization.Q4_K_M });
        Assert.True(noCkpt.Memory.ActivationBytes > 5 * ckpt.Memory.ActivationBytes);
    }

    [Fact]
    public void GPU_target_without_a_GPU_is_a_user_error()
    {
        var e = Assert.ThrowsAny<OpenWeightsException>(() =>
            FitEstimator.Estimate(Shape("llama-3.2-1b"), Ram(16), new FitOptions { Target = FitTarget.Gpu }));
        Assert.Contains("no NVIDIA GPU", e.Message);
    }

    [Fact]
    public void Unknown_dimensions_become_stated_assumptions()
    {
        // every catalog shape is complete now (CatalogShapeTests), so take dimensions away
        var olmo = FitEstimator.Estimate(Shape("olmo-2-7b") with { KvHeads = null }, Ram(64));
        Assert.Contains(olmo.Assumptions, a => a.Contains("KV heads unknown"));
        var oss = FitEstimator.Estimate(Shape("gpt-oss-20b") with { HiddenSize = null, Heads = null, HeadDim = null }, Ram(64));
        Assert.Contains(oss.Assumptions, a => a.Contains("head_dim unknown"));
        Assert.Contains(oss.Assumptions, a => a.Contains("MoE"));
        var longCtx = FitEstimator.Estimate(Shape("tinyllama"), Ram(64), new FitOptions { Context = 8192 });
        Assert.Contains(longCtx.Assumptions, a => a.Contains("exceeds"));
        var distill = FitEstimator.Estimate(Shape("deepseek-r1-distill-qwen-7b"), Ram(64));
        Assert.Contains(distill.Assumptions, a => a.Contains("architecture taken from qwen2.5-7b-instruct"));
        Assert.Contains(FitEstimator.Estimate(Shape("mixtral-8x7b"), Ram(64)).Assumptions, a => a.StartsWith("uncertain catalog facts: layers"));
        Assert.DoesNotContain(FitEstimator.Estimate(Shape("llama-3.1-8b"), Ram(64)).Assumptions, a => a.Contains("uncertain"));
        // Default context is capped at the model's.
        Assert.Equal(2048, FitEstimator.Estimate(Shape("tinyllama"), Ram(64)).Context);
    }

    [Fact]
    public void File_shapes_use_their_own_weight_bytes()
    {
        var s = Shape("llama-3.2-1b") with { Source = "file", WeightBytes = 800_000_000, WeightsQuant = "Q4_K_M" };
        var e = FitEstimator.Estimate(s, Ram(16));
        Assert.Equal(800_000_000, e.Memory.WeightsBytes);
        Assert.Equal("Q4_K_M", e.Quant);
        Assert.Equal("file", e.Source);
        var forced = FitEstimator.Estimate(s, Ram(16), new FitOptions { Quant = Quantization.Q8_0 });
        // forced to another type, the weights are sized from the shape (Q8_0 everywhere but the F32 norms), not the file
        Assert.NotEqual(800_000_000, forced.Memory.WeightsBytes);
        Near(Quantization.Q8_0.WeightBytes(s.TotalParams), forced.Memory.WeightsBytes, 0.01, "forced Q8_0");
    }

    public static TheoryData<string> ModelIds() => new(ModelCatalog.Default.Models.Select(m => m.Id));

    [Theory]
    [MemberData(nameof(ModelIds))]
    public void Every_catalog_model_can_be_estimated(string id)
    {
        foreach (var tune in new[] { TuneMode.None, TuneMode.Lora, TuneMode.Qlora })
        {
            var e = FitEstimator.Estimate(ModelCatalog.Default.Get(id), Ram(64), new FitOptions { Tune = tune });
            Assert.True(e.Memory.WeightsBytes > 0);
            Assert.True(e.Memory.TotalBytes > e.Memory.WeightsBytes);
            var memoryVerdict = FitEstimator.Verdict(e.BudgetBytes, e.Memory.TotalBytes);
            // a mixture of experts larger than the budget may still run from the file map (inference only); nothing else changes
            if (e.FileMap is not null) Assert.Equal((FitVerdict.DoesNotFit, FitVerdict.FromFileMap, TuneMode.None), (memoryVerdict, e.Verdict, tune));
            else Assert.Equal(memoryVerdict, e.Verdict);
            Assert.Equal(e.FileMap is not null, e.Verdict == FitVerdict.FromFileMap);
        }
    }
}
