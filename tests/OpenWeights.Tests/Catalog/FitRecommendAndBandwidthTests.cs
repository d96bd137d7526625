using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hardware;

namespace OpenWeights.Tests.Catalog;

/// <summary>fit's recommendation (memory and speed together, --quant honoured) and the remembered bandwidth.</summary>
public class FitRecommendAndBandwidthTests
{
    private static ModelShape Shape(string id) => ModelShape.FromCatalog(ModelCatalog.Default.Get(id));
    private static HardwareInfo Machine(double ramGb, double bw) => HardwareInfo.Synthetic((long)(ramGb * 1e9), bw);

    private static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Qwen3_8b_on_a_desktop_gets_Q4_K_M_not_F16()
    {
        // the case: 32 GB free, 25 GB/s: F16 fits but decodes at ~1.5 tokens/s
        var e = FitEstimator.Estimate(Shape("qwen3-8b"), Machine(32, 25));
        Assert.Equal(FitVerdict.Fits, e.Ladder.Single(r => r.Quant == "F16").Verdict);
        Assert.Equal("Q4_K_M", e.BestQuant);
        Assert.Equal("Q4_K_M", e.Quant);
        Assert.Contains("usual starting point", e.RecommendedBecause);
        var w = new StringWriter();
        FitCommand.Print(w, e);
        Assert.Contains("recommended    Q4_K_M:", w.ToString());
        Assert.DoesNotContain("recommended    F16", w.ToString());
    }

    [Fact]
    public void Higher_only_when_speed_stays_acceptable_and_memory_leaves_headroom()
    {
        // a 1B model at 25 GB/s: Q8_0 is ~19 tokens/s, above the 10 tokens/s threshold
        var small = FitEstimator.Estimate(Shape("llama-3.2-1b"), Machine(64, 25));
        Assert.Equal("Q8_0", small.BestQuant);
        Assert.True(small.Ladder.Single(r => r.Quant == "Q8_0").DecodeTokensPerSecond >= FitEstimator.AcceptableTokensPerSecond);

        // the same model on slow memory: Q8_0 drops below 10 tokens/s, Q6_K / Q5_K_M too at 10 GB/s? pick what stays fast
        var slow = FitEstimator.Estimate(Shape("llama-3.2-1b"), Machine(64, 10));
        var pick = slow.Ladder.Single(r => r.Quant == slow.BestQuant);
        if (slow.BestQuant != "Q4_K_M") Assert.True(pick.DecodeTokensPerSecond >= FitEstimator.AcceptableTokensPerSecond);
        Assert.True(slow.Ladder.Single(r => r.Quant == "Q8_0").DecodeTokensPerSecond < FitEstimator.AcceptableTokensPerSecond);
        Assert.NotEqual("Q8_0", slow.BestQuant);

        // fast memory but Q8_0 would be tight: not recommended, whatever the speed
        var mem = FitEstimator.Estimate(Shape("llama-3.1-8b"), Machine(10, 400));
        Assert.NotEqual(FitVerdict.Fits, mem.Ladder.Single(r => r.Quant == "Q8_0").Verdict);
        Assert.Contains(mem.BestQuant, new[] { "Q6_K", "Q5_K_M", "Q4_K_M" });
        Assert.Equal(FitVerdict.Fits, mem.Ladder.Single(r => r.Quant == mem.BestQuant).Verdict);

        // never F16 for inference, even on a huge fast machine
        Assert.Equal("Q8_0", FitEstimator.Estimate(Shape("smollm2-135m"), Machine(512, 500)).BestQuant);
    }

    [Fact]
    public void Lower_only_when_Q4_K_M_does_not_fit()
    {
        var e = FitEstimator.Estimate(Shape("llama-3.1-70b"), Machine(40, 50));
        Assert.Equal(FitVerdict.DoesNotFit, e.Ladder.Single(r => r.Quant == "Q4_K_M").Verdict);
        Assert.Contains(e.BestQuant, new[] { "Q4_0", "Q3_K_M", "Q2_K" });
        Assert.Contains("Q4_K_M does not fit", e.RecommendedBecause);

        // Q4_K_M tight: still Q4_K_M (not lower), and nothing higher
        var tight = FitEstimator.Estimate(Shape("llama-3.1-70b"), Machine(48, 500), new FitOptions { Context = 8192, KvBytesPerElement = 2 });
        Assert.Equal(FitVerdict.Tight, tight.Ladder.Single(r => r.Quant == "Q4_K_M").Verdict);
        Assert.Equal("Q4_K_M", tight.BestQuant);
    }

    [Fact]
    public void Quant_option_estimates_exactly_that_quant()
    {
        var e = FitEstimator.Estimate(Shape("qwen3-8b"), Machine(64, 400), new FitOptions { Quant = Quantization.Q5_K_M });
        Assert.Equal("Q5_K_M", e.Quant);
        Assert.Equal(e.Ladder.Single(r => r.Quant == "Q5_K_M").TotalBytes, e.Memory.TotalBytes);

        foreach (var flag in new[] { "--quant", "-q" })
        {
            var (code, stdout, stderr) = Run("fit", "qwen3-8b", flag, "Q4_K_M", "-c", "2048", "--json");
            Assert.True(code == 0, stderr);
            var root = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal("Q4_K_M", root.GetProperty("quant").GetString());
            Assert.Equal(2048, root.GetProperty("context").GetInt32());
            Assert.NotEqual("F16", root.GetProperty("best_quant").GetString());
        }
        // the old --context still works (hidden)
        var old = JsonDocument.Parse(Run("fit", "qwen3-8b", "--context", "1024", "--json").stdout).RootElement;
        Assert.Equal(1024, old.GetProperty("context").GetInt32());
        Assert.DoesNotContain("--context", Run("fit", "--help").stdout);
    }

    // ---- remembered bandwidth ---------------------------------------------------------------

    [Fact]
    public void Measured_bandwidth_is_saved_and_used_by_the_next_probe()
    {
        using var dir = new TempDir();
        string file = dir.File("sub/bandwidth.json");
        var measured = HardwareProbe.Probe(new HardwareProbeOptions { MeasureBandwidth = true, BandwidthBytes = 16L << 20, BandwidthFile = file, QueryGpus = false });
        Assert.Equal("measured", measured.BandwidthSource);
        Assert.True(File.Exists(file));
        using (var doc = JsonDocument.Parse(File.ReadAllText(file)))
        {
            Assert.True(doc.RootElement.GetProperty("gbps").GetDouble() > 0);
            Assert.True(doc.RootElement.TryGetProperty("measured_at", out _));
            Assert.True(doc.RootElement.TryGetProperty("cpu_model", out _));
            Assert.Equal(Environment.ProcessorCount, doc.RootElement.GetProperty("logical_cores").GetInt32());
        }

        var later = HardwareProbe.Probe(new HardwareProbeOptions { BandwidthFile = file, QueryGpus = false });
        Assert.Equal("measured", later.BandwidthSource);
        Assert.Equal(Math.Round(measured.MemoryBandwidthGBps, 2), later.MemoryBandwidthGBps);
        Assert.NotNull(later.BandwidthMeasuredAt);

        // no file given: nothing read (the library default)
        Assert.Equal("assumed", HardwareProbe.Probe(new HardwareProbeOptions { QueryGpus = false }).BandwidthSource);
    }

    [Fact]
    public void Bandwidth_of_another_machine_or_a_broken_file_is_ignored()
    {
        using var dir = new TempDir();
        string file = dir.File("bandwidth.json");
        BandwidthMemory.Save(file, new RememberedBandwidth { GBps = 77, MeasuredAt = DateTimeOffset.UtcNow, CpuModel = "Some Other CPU 9000", LogicalCores = Environment.ProcessorCount });
        Assert.Equal("assumed", HardwareProbe.Probe(new HardwareProbeOptions { BandwidthFile = file, QueryGpus = false }).BandwidthSource);
        File.WriteAllText(file, "{ not json");
        Assert.Null(BandwidthMemory.Load(file));
        Assert.Equal("assumed", HardwareProbe.Probe(new HardwareProbeOptions { BandwidthFile = file, QueryGpus = false }).BandwidthSource);
    }

    [Fact]
    public void Cache_directory_follows_the_environment()
    {
        Assert.Equal("/x/ow", BandwidthMemory.DefaultDirectory(n => n == "OPENWEIGHTS_CACHE_DIR" ? "/x/ow" : null));
        Assert.Equal(Path.Combine("/xdg", "openweights"), BandwidthMemory.DefaultDirectory(n => n == "XDG_CACHE_HOME" ? "/xdg" : null));
        Assert.EndsWith("openweights", BandwidthMemory.DefaultDirectory(_ => null));
        Assert.Equal("Intel(R) Xeon(R) CPU @ 2.20GHz", HardwareProbe.ParseCpuModel("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"));
        Assert.Null(HardwareProbe.ParseCpuModel("processor : 0\n"));
    }

    [Fact]
    public void Fit_says_which_bandwidth_it_used()
    {
        using var dir = new TempDir();
        string file = dir.File("bandwidth.json");
        HardwareCommand.BandwidthFileOverride.Value = file;
        try
        {
            var (code, stdout, stderr) = Run("fit", "llama-3.2-1b", "-q", "Q4_K_M");
            Assert.True(code == 0, stderr);
            Assert.Contains("GB/s (estimated, not measured: run `openweights hardware --measure-bandwidth` once)", stdout);

            BandwidthMemory.Save(file, new RememberedBandwidth
            {
                GBps = 33.3, MeasuredAt = new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero),
                CpuModel = HardwareProbe.CpuModel(), LogicalCores = Environment.ProcessorCount,
            });
            (code, stdout, stderr) = Run("fit", "llama-3.2-1b", "-q", "Q4_K_M");
            Assert.True(code == 0, stderr);
            Assert.Contains("at 33.3 GB/s (measured on 2026-11-30)", stdout);
            var root = JsonDocument.Parse(Run("fit", "llama-3.2-1b", "--json").stdout).RootElement;
            Assert.Equal(33.3, root.GetProperty("bandwidth_gbps").GetDouble());
            Assert.Equal("measured", root.GetProperty("bandwidth_source").GetString());
        }
        finally { HardwareCommand.BandwidthFileOverride.Value = null; }
    }

    [Fact]
    public void Hardware_measure_bandwidth_remembers_it()
    {
        using var dir = new TempDir();
        string file = dir.File("bandwidth.json");
        HardwareCommand.BandwidthFileOverride.Value = file;
        try
        {
            var (code, stdout, stderr) = Run("hardware", "--measure-bandwidth");
            Assert.True(code == 0, stderr);
            Assert.Contains("measured now; remembered in " + file, stdout);
            Assert.NotNull(BandwidthMemory.Load(file));
            (code, stdout, _) = Run("hardware");
            Assert.Contains($"measured on {DateTimeOffset.UtcNow:yyyy-MM-dd}", stdout);
        }
        finally { HardwareCommand.BandwidthFileOverride.Value = null; }
    }
}
