using System.CommandLine;
using OpenWeights.Catalog;
using OpenWeights.Hardware;
using F = OpenWeights.Cli.Commands.CatalogFormat;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights fit ID`: will the model fit this machine, at which quantization, and how fast will it generate.</summary>
public static class FitCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "Model id or alias from the catalog, a GGUF file, a Hugging Face checkpoint folder, or org/name in the local store" };
        var context = new Option<int?>("--ctx", "-c") { Description = "Context length (inference) or training sequence length (--tune); default 4096 / 1024, capped at the model's context" };
        var contextOld = new Option<int?>("--context") { Hidden = true, Description = "Old name of --ctx" };
        var quant = new Option<string?>("--quant", "-q") { Description = $"Weights format to estimate: F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, NF4 (default: the recommended one: {FitEstimator.StartQuant} when it fits, higher when it stays at {FitEstimator.AcceptableTokensPerSecond:0}+ tokens/s with headroom, lower when it does not fit)" };
        var tune = new Option<string?>("--tune") { Description = "Estimate LoRA or QLoRA fine-tuning instead of inference: lora | qlora" };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank (as in tune)", DefaultValueFactory = _ => 8 };
        var target = new Option<string>("--target") { Description = "Memory to fit: cpu (available RAM) or gpu (largest NVIDIA GPU's free memory)", DefaultValueFactory = _ => "cpu" };
        var bandwidth = new Option<double?>("--bandwidth") { Description = "Memory bandwidth in GB/s for the speed estimate (default: the one `hardware --measure-bandwidth` remembered, else an assumed 25 GB/s)" };
        var disk = new Option<double?>("--disk-bandwidth") { Description = $"Disk read rate in GB/s for a mixture of experts larger than RAM, which runs from the file map (default: an assumed {HardwareProbe.DefaultDiskReadGBps:0.#} GB/s)" };
        var measureDisk = new Option<bool>("--measure-disk") { Description = "Measure the read rate of the disk that holds the model store first (writes, drops from the page cache and reads back a 256 MB temporary file; Linux), for the estimate of a mixture of experts larger than RAM" };
        var measureBw = new Option<bool>("--measure-bandwidth") { Description = "Measure this machine's memory read bandwidth first (about a second) and remember it" };
        var measure = new Option<bool>("--measure") { Description = "Measure real prefill/decode speed and peak memory with our engine (catalog ids: on a random-weight model of the exact shape, written to a temporary file and deleted)" };
        var measurePrompt = new Option<int>("--measure-prompt") { Description = "Prompt tokens for --measure", DefaultValueFactory = _ => 128 };
        var measureTokens = new Option<int>("--measure-tokens") { Description = "Decode tokens for --measure", DefaultValueFactory = _ => 32 };
        var threads = CommonOptions.Threads();
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("fit", "Estimate memory, verdict, recommended quantization and decode speed for a model on this machine")
        {
            model, context, contextOld, quant, tune, rank, target, bandwidth, disk, measureDisk, measureBw, measure, measurePrompt, measureTokens, threads, cacheK, cacheV, json,
        };
        cmd.SetAction(pr =>
        {
            var shape = ResolveShape(pr.GetValue(model)!, out string? localPath);
            var tgt = pr.GetValue(target)?.ToLowerInvariant() switch
            {
                "cpu" or null => FitTarget.Cpu,
                "gpu" => FitTarget.Gpu,
                var t => throw new OpenWeightsException($"unknown target '{t}' (expected cpu or gpu)"),
            };
            var hw = HardwareProbe.Probe(new HardwareProbeOptions
            {
                MeasureBandwidth = pr.GetValue(measureBw), QueryGpus = tgt == FitTarget.Gpu, BandwidthFile = HardwareCommand.BandwidthFile(),
            });
            var options = new FitOptions
            {
                Context = pr.GetValue(context) ?? pr.GetValue(contextOld),
                Quant = pr.GetValue(quant) is { } q ? Quantization.Parse(q) : null,
                Tune = ParseTune(pr.GetValue(tune)),
                LoraRank = pr.GetValue(rank),
                Target = tgt,
                BandwidthGBps = pr.GetValue(bandwidth),
                DiskReadGBps = pr.GetValue(disk),
                CacheTypes = CommonOptions.CacheTypes(pr, cacheK, cacheV),
            };
            if (options.DiskReadGBps is <= 0) throw new OpenWeightsException("--disk-bandwidth must be positive (GB/s)");
            if (pr.GetValue(measureDisk) && options.DiskReadGBps is null)
            {
                string folder = HubCli.Settings().CacheDir;
                hw = HardwareProbe.MeasureDiskReadGBps(folder) is { } rate
                    ? hw with { DiskReadGBps = Math.Round(rate, 2), DiskReadSource = $"measured now in {folder} by sequential reads; page faults read slower" }
                    : throw new OpenWeightsException($"cannot measure the disk read rate in {folder}: the page cache could not be bypassed (Linux only) or the folder is in memory (tmpfs); give it with --disk-bandwidth");
            }
            if (tgt == FitTarget.Gpu && hw.Gpus.Count == 0) throw new OpenWeightsException("no NVIDIA GPU found (nvidia-smi reported none); use --target cpu");
            if (pr.GetValue(measure) && (pr.GetValue(measurePrompt) < 1 || pr.GetValue(measureTokens) < 1))
                throw new OpenWeightsException("--measure-prompt and --measure-tokens must be at least 1");
            var est = FitEstimator.Estimate(shape, hw, options);
            var w = pr.InvocationConfiguration.Output;
            FitMeasurement? measured = null;
            if (pr.GetValue(measure))
            {
                if (localPath is not null)
                {
                    var src = CommonOptions.OpenSource(localPath);
                    measured = FitMeasure.Measure(src, shape.Name, "file", shape.WeightsQuant ?? "file", shape.WeightBytes ?? 0, pr.GetValue(measurePrompt), pr.GetValue(measureTokens), pr.GetValue(threads));
                }
                else
                {
                    string type = FitMeasure.SynthTypeFor(pr.GetValue(quant) ?? est.BestQuant switch { "F16" or "Q8_0" or "Q4_0" or "Q4_K_M" => est.BestQuant, _ => null });
                    if (est.Verdict == FitVerdict.DoesNotFit && pr.GetValue(quant) is null && est.BestQuant is null)
                        throw new OpenWeightsException($"{shape.Name} does not fit this machine at any quantization; measuring it would only swap");
                    measured = FitMeasure.MeasureSynthetic(shape, type, pr.GetValue(measurePrompt), pr.GetValue(measureTokens), pr.GetValue(threads));
                }
            }
            if (pr.GetValue(json))
            {
                if (measured is null) CliJson.Write(w, est);
                else CliJson.Write(w, new { estimate = est, measurement = measured });
                return 0;
            }
            Print(w, est);
            if (measured is { } m)
            {
                w.WriteLine($"measured ({m.Source}, {m.Type}, {F.Bytes(m.FileBytes)}, {m.Threads} threads)");
                w.WriteLine($"  prefill        {F.Number(m.PrefillTokensPerSecond)} tokens/s ({m.PromptTokens}-token prompt)");
                w.WriteLine($"  decode         {F.Number(m.DecodeTokensPerSecond)} tokens/s ({m.DecodeTokens} tokens)");
                w.WriteLine($"  peak RSS       {F.Bytes(m.PeakRssBytes)}");
                foreach (var a in m.Assumptions) w.WriteLine($"  - {a}");
            }
            return 0;
        });
        return cmd;
    }

    public static ModelShape ResolveShape(string arg) => ResolveShape(arg, out _);

    /// <summary>
    /// A model's shape from its argument: a catalog id or alias; a GGUF file or Hugging Face checkpoint folder
    /// (hyper-parameters and actual tensor bytes; <paramref name="localPath"/> set); or org/name in the local store.
    /// </summary>
    public static ModelShape ResolveShape(string arg, out string? localPath)
    {
        localPath = null;
        var cat = ModelCatalog.Default;
        if (!File.Exists(arg) && !Directory.Exists(arg))
        {
            if (cat.TryGet(arg, out var m)) return ModelShape.FromCatalog(m);
            if (!arg.Contains('/')) return ModelShape.FromCatalog(cat.Get(arg)); // throws the one-line unknown-model error
        }
        localPath = CommonOptions.ResolveModel(arg);
        using var src = CommonOptions.OpenSource(localPath);
        return ModelShape.FromSource(src);
    }

    public static TuneMode ParseTune(string? s) => s?.ToLowerInvariant() switch
    {
        null or "" or "none" => TuneMode.None,
        "lora" => TuneMode.Lora,
        "qlora" => TuneMode.Qlora,
        _ => throw new OpenWeightsException($"unknown tuning mode '{s}' (expected lora or qlora)"),
    };

    private static string Verdict(FitVerdict v) => v switch
    {
        FitVerdict.Fits => "fits",
        FitVerdict.Tight => "tight",
        FitVerdict.FromFileMap => "file map",
        _ => "does not fit",
    };

    /// <summary>The verdict line's words: a model the engine cannot run never just "fits".</summary>
    internal static string VerdictText(FitEstimate e) => e.Runs ? e.Verdict == FitVerdict.FromFileMap ? "larger than the budget, runs from the file map" : Verdict(e.Verdict) : e.Verdict switch
    {
        FitVerdict.Fits => $"fits in memory, but {e.CannotRun}",
        FitVerdict.Tight => $"tight in memory, and {e.CannotRun}",
        FitVerdict.FromFileMap => $"would run from the file map (larger than the budget), but {e.CannotRun}",
        _ => $"does not fit, and {e.CannotRun}",
    };

    /// <summary>"measured on 2026-12-02 (this machine)", "given", or "estimated: ..." for the assumed default.</summary>
    internal static string BandwidthText(FitEstimate e) => e.BandwidthSource switch
    {
        "measured" when e.BandwidthMeasuredAt is { } at => $"measured on {at.UtcDateTime:yyyy-MM-dd}",
        "measured" => "measured",
        "given" => "given with --bandwidth",
        "assumed" => "estimated, not measured: run `openweights hardware --measure-bandwidth` once",
        var s => s ?? "unknown",
    };

    public static void Print(TextWriter w, FitEstimate e)
    {
        string what = e.Tune switch
        {
            TuneMode.None => $"inference, context {e.Context}",
            TuneMode.Lora => $"LoRA fine-tuning (rank {e.LoraRank}), sequence {e.Context}",
            _ => $"QLoRA fine-tuning (rank {e.LoraRank}), sequence {e.Context}",
        };
        w.WriteLine($"{e.Model}: {e.Quant} ({F.Number(e.BitsPerWeight, "0.##")} bpw), {what}");
        var mem = e.Memory;
        w.WriteLine($"  weights        {F.Bytes(mem.WeightsBytes)}");
        if (e.Moe is { } moe)
            w.WriteLine($"  experts        {moe.ExpertsPerToken} of {moe.Experts} per token{(moe.SharedExperts > 0 ? $" + {moe.SharedExperts} shared" : "")}: {F.Params(moe.TotalParams / 1e9)} parameters in memory, {F.Params(moe.ActiveParams / 1e9)} active per token (speed)");
        if (e.Tune == TuneMode.None)
            w.WriteLine($"  KV cache       {F.Bytes(mem.KvCacheBytes)}  ({F.Bytes(e.KvBytesPerToken)} per token before window savings, {e.KvCacheType})");
        else
        {
            w.WriteLine($"  LoRA adapter   {F.Bytes(mem.AdapterBytes)}  ({e.LoraParams:N0} params on {string.Join(", ", e.LoraTargets ?? [])})");
            w.WriteLine($"  gradients      {F.Bytes(mem.GradientBytes)}");
            w.WriteLine($"  AdamW state    {F.Bytes(mem.OptimizerBytes)}");
            w.WriteLine($"  activations    {F.Bytes(mem.ActivationBytes)}");
        }
        w.WriteLine($"  overhead       {F.Bytes(mem.OverheadBytes)}");
        w.WriteLine($"  total          {F.Bytes(mem.TotalBytes)}");
        w.WriteLine($"  budget         {F.Bytes(e.BudgetBytes)}  ({e.BudgetSource})");
        w.WriteLine($"  verdict        {VerdictText(e)}{(e.Runs ? ":" : ";")} headroom {F.Bytes(e.HeadroomBytes)} ({F.Number(e.HeadroomPercent)}%)");
        if (e.FileMap is { } fm)
        {
            w.WriteLine($"  resident       dense part {F.Bytes(fm.DenseBytes)} + KV cache + overhead; {F.Bytes(fm.ResidentExpertBytes)} of {F.Bytes(fm.ExpertBytes)} routed experts ({F.Number(100 * fm.ResidentFraction, "0")}%) in the page cache");
            w.WriteLine($"  from disk      {F.Bytes(fm.DiskBytesPerToken)} per token of {F.Bytes(fm.ActiveExpertBytes)} routed-expert reads, at {F.Number(fm.DiskReadGBps, "0.##")} GB/s ({DiskText(fm.DiskReadSource)}); prefill ~{F.Number(fm.PrefillDiskSecondsPerBatch, "0.#")} s of disk reads per 512-token batch");
        }
        w.WriteLine($"  recommended    {(e.BestQuant is null ? "none fits" : $"{e.BestQuant}: {e.RecommendedBecause}")}");
        if (e.DecodeTokensPerSecond is { } tps)
            w.WriteLine($"  decode         ~{F.Number(tps)} tokens/s at {F.Number(e.BandwidthGBps ?? 0)} GB/s ({BandwidthText(e)}); ~{F.Number(e.DecodeTokensPerSecondAtFullContext ?? tps)} tokens/s at full context (upper bounds)");
        w.WriteLine("  quantizations  " + string.Join("  ", e.Ladder.Select(r => $"{r.Quant} {F.Bytes(r.TotalBytes)} {Verdict(r.Verdict)}")));
        if (e.Assumptions.Count > 0)
        {
            w.WriteLine("assumptions:");
            foreach (var a in e.Assumptions) w.WriteLine($"  - {Assumption(a)}");
        }
    }

    private static string DiskText(string source) => source switch
    {
        "assumed" => "assumed, not measured: give yours with --disk-bandwidth",
        "given" => "given with --disk-bandwidth",
        var s => s,
    };

    /// <summary>An assumption of the estimate, advised in flags where the library names an option.</summary>
    internal static string Assumption(string a) =>
        a == FitEstimator.BandwidthUnknown ? "GPU memory bandwidth unknown: pass --bandwidth for a speed estimate" : a;
}
