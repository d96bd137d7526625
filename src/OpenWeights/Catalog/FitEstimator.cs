using System.Text.Json;
using System.Text.Json.Serialization;
using OpenWeights.Hardware;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Catalog;

public enum TuneMode { None, Lora, Qlora }
/// <summary>Whether the model fits the memory budget. <see cref="FromFileMap"/>: a mixture of experts whose weights exceed
/// the budget but whose dense part (attention, embeddings, shared experts) and KV cache fit: it still runs, with the routed
/// experts read through the file map (the OS keeps the hot ones resident) and the rest read from disk while generating.</summary>
public enum FitVerdict { Fits, Tight, DoesNotFit, FromFileMap }
/// <summary>Which memory the model must fit: system RAM (our CPU engine) or the largest GPU's free memory.</summary>
public enum FitTarget { Cpu, Gpu }

public sealed record FitOptions
{
    /// <summary>Inference: context length (default min(4096, model context)). Tuning: training sequence length (default min(1024, model context)).</summary>
    public int? Context { get; init; }
    /// <summary>Weights format; null = the recommended one (<see cref="FitEstimator.Recommend"/>; inference, QLoRA) or F16 (LoRA).</summary>
    public QuantType? Quant { get; init; }
    public TuneMode Tune { get; init; }
    public int LoraRank { get; init; } = 8;
    /// <summary>Training keeps only each layer's input and recomputes the layer in backward (the usual LoRA/QLoRA setting).</summary>
    public bool GradientCheckpointing { get; init; } = true;
    /// <summary>The KV cache's key and value types (default F16, what run, chat, serve and bench allocate; Q8_0 is 34 bytes per
    /// 32 elements, F32 4 per element). A latent-attention cache (MLA) takes the key type.</summary>
    public OpenWeights.Models.Common.KvCacheTypes CacheTypes { get; init; } = OpenWeights.Models.Common.KvCacheTypes.Default;
    /// <summary>Overrides <see cref="CacheTypes"/>: one element size in bytes for keys and values alike.</summary>
    public double? KvBytesPerElement { get; init; }
    /// <summary>Bytes per key and per value element.</summary>
    internal (double K, double V) KvElementBytes => KvBytesPerElement is { } b ? (b, b)
        : (OpenWeights.Models.Common.KvCacheTypes.Bytes(CacheTypes.K, 32) / 32.0, OpenWeights.Models.Common.KvCacheTypes.Bytes(CacheTypes.V, 32) / 32.0);
    /// <summary>Concurrent sequences sharing the weights (each has its own KV cache).</summary>
    public int Sequences { get; init; } = 1;
    public FitTarget Target { get; init; } = FitTarget.Cpu;
    /// <summary>Overrides the hardware's bandwidth for the speed estimate (GB/s).</summary>
    [JsonPropertyName("bandwidth_gbps")]
    public double? BandwidthGBps { get; init; }
    /// <summary>Overrides the hardware's disk read rate (GB/s) for models that run from the file map.</summary>
    [JsonPropertyName("disk_read_gbps")]
    public double? DiskReadGBps { get; init; }
}

/// <summary>A mixture of experts' parameters: all of them resident (memory), few read per token (speed).</summary>
public sealed record MoeFit
{
    public required int Experts { get; init; }
    public required int ExpertsPerToken { get; init; }
    public int SharedExperts { get; init; }
    public required long TotalParams { get; init; }
    public required long ActiveParams { get; init; }
    /// <summary>Parameters of the routed experts, all of them (a token reads <see cref="ExpertsPerToken"/> / <see cref="Experts"/> of them).</summary>
    public required long RoutedExpertParams { get; init; }
    /// <summary>Everything else: embeddings, attention, norms, routers, shared experts (read by every token).</summary>
    public long DenseParams => TotalParams - RoutedExpertParams;
    /// <summary>Routed-expert parameters one token reads.</summary>
    public long ActiveExpertParams => (long)Math.Round((double)RoutedExpertParams * ExpertsPerToken / Experts);
    /// <summary>Where <see cref="RoutedExpertParams"/> came from, in words.</summary>
    public required string Basis { get; init; }
}

/// <summary>
/// How a mixture of experts larger than the memory budget runs from the file map: the dense part and the KV cache stay
/// resident (the engine repacks them), the rest of the budget holds routed experts in the OS page cache, and the share of
/// each token's experts that is not resident is read from disk.
/// </summary>
public sealed record FileMapFit
{
    /// <summary>Weights every token reads (embeddings, attention, norms, routers, shared experts): kept resident.</summary>
    public required long DenseBytes { get; init; }
    /// <summary>All routed experts in the file.</summary>
    public required long ExpertBytes { get; init; }
    /// <summary>Routed-expert bytes the rest of the budget keeps in the page cache.</summary>
    public required long ResidentExpertBytes { get; init; }
    public double ResidentFraction => ExpertBytes > 0 ? (double)ResidentExpertBytes / ExpertBytes : 1;
    /// <summary>Routed-expert bytes one token reads (experts per token / experts of all of them).</summary>
    public required long ActiveExpertBytes { get; init; }
    /// <summary>The non-resident share of <see cref="ActiveExpertBytes"/>: read from disk per generated token.</summary>
    public required long DiskBytesPerToken { get; init; }
    [JsonPropertyName("disk_read_gbps")]
    public required double DiskReadGBps { get; init; }
    /// <summary>"assumed", "measured" or "given".</summary>
    public required string DiskReadSource { get; init; }
    /// <summary>Prefill: a 512-token batch routes to (nearly) every expert, so it reads every non-resident expert once.</summary>
    public required double PrefillDiskSecondsPerBatch { get; init; }
}

public sealed record MemoryBreakdown
{
    public long WeightsBytes { get; init; }
    public long KvCacheBytes { get; init; }
    public long OverheadBytes { get; init; }
    /// <summary>LoRA adapter weights (fp32).</summary>
    public long AdapterBytes { get; init; }
    /// <summary>Gradients of the adapter (fp32).</summary>
    public long GradientBytes { get; init; }
    /// <summary>AdamW first and second moments of the adapter (2 × fp32).</summary>
    public long OptimizerBytes { get; init; }
    /// <summary>Activations kept for backward, and the logits with their gradient.</summary>
    public long ActivationBytes { get; init; }
    public long TotalBytes => WeightsBytes + KvCacheBytes + OverheadBytes + AdapterBytes + GradientBytes + OptimizerBytes + ActivationBytes;
}

/// <summary>One rung of the quantization ladder: total memory and verdict with that weights format.</summary>
public sealed record QuantFit(string Quant, double BitsPerWeight, long TotalBytes,
    [property: JsonConverter(typeof(SnakeCaseEnumConverter<FitVerdict>))] FitVerdict Verdict, double? DecodeTokensPerSecond);

public sealed record FitEstimate
{
    public required string Model { get; init; }
    public required string Source { get; init; }
    public required string Quant { get; init; }
    public required double BitsPerWeight { get; init; }
    public required int Context { get; init; }
    [JsonConverter(typeof(SnakeCaseEnumConverter<TuneMode>))]
    public required TuneMode Tune { get; init; }
    public int? LoraRank { get; init; }
    public long? LoraParams { get; init; }
    public IReadOnlyList<string>? LoraTargets { get; init; }
    public required MemoryBreakdown Memory { get; init; }
    public required long KvBytesPerToken { get; init; }
    /// <summary>The KV cache's types the estimate assumes ("f16", "q8_0", "K q8_0, V f16"; or "N bytes per element" when overridden).</summary>
    public string KvCacheType { get; init; } = "f16";
    [JsonConverter(typeof(SnakeCaseEnumConverter<FitTarget>))]
    public required FitTarget Target { get; init; }
    public required long BudgetBytes { get; init; }
    public required string BudgetSource { get; init; }
    public required long HeadroomBytes { get; init; }
    public required double HeadroomPercent { get; init; }
    [JsonConverter(typeof(SnakeCaseEnumConverter<FitVerdict>))]
    public required FitVerdict Verdict { get; init; }
    /// <summary>The recommended quantization (<see cref="FitEstimator.Recommend"/>: Q4_K_M when it fits, higher when speed and
    /// headroom allow, lower only when it does not fit); null if none fits. Kept under its old name for --json readers.</summary>
    public string? BestQuant { get; init; }
    /// <summary>Why <see cref="BestQuant"/> was recommended, in one line.</summary>
    public string? RecommendedBecause { get; init; }
    /// <summary>Whether the engine can run the model at all (a catalog entry whose architecture it lacks cannot, however well it fits).</summary>
    public bool Runs { get; init; } = true;
    /// <summary>Why it cannot run ("the engine cannot run architecture gemma3 yet"); null when it runs.</summary>
    public string? CannotRun { get; init; }
    /// <summary>Generation speed at the start of the context: bandwidth / bytes read per token (weights of the active parameters).</summary>
    public double? DecodeTokensPerSecond { get; init; }
    /// <summary>Generation speed at the end of the context, where the whole KV cache is also read per token.</summary>
    public double? DecodeTokensPerSecondAtFullContext { get; init; }
    [JsonPropertyName("bandwidth_gbps")]
    public double? BandwidthGBps { get; init; }
    public string? BandwidthSource { get; init; }
    /// <summary>When the bandwidth was measured (this run, or remembered from `hardware --measure-bandwidth`); null when assumed or given.</summary>
    public DateTimeOffset? BandwidthMeasuredAt { get; init; }
    public IReadOnlyList<QuantFit> Ladder { get; init; } = [];
    /// <summary>Mixture of experts: total (memory) and active (speed) parameters; null for dense models.</summary>
    public MoeFit? Moe { get; init; }
    /// <summary>When <see cref="Verdict"/> is <see cref="FitVerdict.FromFileMap"/>: what stays resident and what is read from disk.</summary>
    public FileMapFit? FileMap { get; init; }
    public IReadOnlyList<string> Assumptions { get; init; } = [];
}

/// <summary>
/// Memory and speed estimate for running (or LoRA/QLoRA-tuning) a model on a machine.
///
/// Inference total = weights + KV cache + overhead:
/// - weights = total params × bits-per-weight / 8 (all experts of a MoE must be resident); see <see cref="Quantization"/>.
/// - KV cache = 2 (K and V) × layers × kv_heads × head_dim × context × bytes/element × sequences; layers with a
///   sliding window or chunked attention cache only the window; MLA (DeepSeek-V3) caches kv_lora_rank + rope_dim
///   values per token per layer (one latent shared by K and V).
/// - overhead = 256 MiB runtime (code, tokenizer, thread stacks, scratch) + f32 compute buffers for a 512-token
///   prefill batch: 512 × (4 × hidden + vocab) × 4 bytes (residual, normed input, attention output, MLP input per
///   token, plus a logits row). Real runtimes report 0.5-2 GB (research notes, section 7).
///
/// Tuning total = frozen base weights + adapter + gradients + AdamW state + activations + runtime:
/// - LoRA params = rank × (in + out) for each target projection in each layer (q, k, v, o; plus gate/up/down when the
///   MLP width is known and the model is dense). Adapter, gradient and AdamW m/v kept in fp32: 4 + 4 + 8 bytes/param.
/// - activations, batch 1, sequence s, f32: Korthikanti et al. 2022 give 34·s·h + 5·a·s² bytes per layer at 16-bit,
///   i.e. 17·s·h + 2.5·a·s² values. With gradient checkpointing only each layer's input (s·h values) is kept for
///   all layers plus one layer's full set during recomputation; without it every layer keeps the full set.
///   Plus logits and their gradient: 2 × s × vocab × 4 bytes.
/// - no KV cache (training runs the whole sequence at once).
///
/// Decode speed = memory bandwidth / bytes read per token; bytes per token = active params × bpw / 8
/// (+ the KV cache at full context). It is an upper bound: compute and imperfect bandwidth use make real runs slower.
///
/// Mixture of experts: memory from the total parameters (every expert is resident or file-mapped), speed from the active
/// ones (a token reads its routed experts only). The routed experts' share of the parameters comes from the file's expert
/// tensors, else from the catalog's total and active counts: one expert (over all layers) = (total - active) / (experts -
/// experts per token). When the weights exceed the budget but the dense part, the KV cache and the overhead fit, the model
/// runs from the file map (<see cref="FitVerdict.FromFileMap"/>): the rest of the budget keeps a share r of the routed
/// experts in the page cache, and each token reads (1 - r) of its routed-expert bytes from disk:
/// seconds per token = (active bytes + KV) / memory bandwidth + (1 - r) × active expert bytes / disk read rate.
/// r assumes uniform routing (any expert equally likely); real routing favours some experts, which the OS keeps resident,
/// so the real hit rate is higher. Dense models larger than the budget do not fit (every token would read the missing
/// share of all weights from disk).
/// </summary>
public static class FitEstimator
{
    public const long RuntimeBaseBytes = 256L << 20;
    public const int PrefillBatch = 512;
    public const long TightMarginFloorBytes = 512L << 20;
    public const double TightMarginFraction = 0.10;

    /// <summary>The assumption a GPU estimate states when no bandwidth is known (the CLI words it with its flag).</summary>
    public const string BandwidthUnknown = "GPU memory bandwidth unknown: give it (FitOptions.BandwidthGBps) for a speed estimate";

    public static FitEstimate Estimate(CatalogModel model, HardwareInfo hw, FitOptions? options = null) =>
        Estimate(ModelShape.FromCatalog(model), hw, options);

    public static FitEstimate Estimate(ModelShape shape, HardwareInfo hw, FitOptions? options = null)
    {
        var o = options ?? new FitOptions();
        var assumptions = new List<string>(shape.Caveats);
        var dims = Resolve(shape, assumptions);

        int ctx = o.Context ?? Math.Min(o.Tune == TuneMode.None ? 4096 : 1024, shape.ContextLength ?? int.MaxValue);
        if (ctx <= 0) throw new OpenWeightsException($"context must be positive (got {ctx})");
        if (shape.ContextLength is { } maxCtx && ctx > maxCtx)
            assumptions.Add($"context {ctx} exceeds the model's trained context {maxCtx}");

        var (budget, budgetSource) = Budget(hw, o.Target);
        double? bw = o.BandwidthGBps ?? (o.Target == FitTarget.Cpu ? hw.MemoryBandwidthGBps : null);
        string? bwSource = o.BandwidthGBps is not null ? "given" : o.Target == FitTarget.Cpu ? hw.BandwidthSource : null;
        if (bw is null) assumptions.Add(BandwidthUnknown);

        var moe = MoeOf(shape);
        double disk = o.DiskReadGBps ?? hw.DiskReadGBps;
        string diskSource = o.DiskReadGBps is not null ? "given" : hw.DiskReadSource;
        var ladder = o.Tune == TuneMode.Qlora ? Quantization.Ladder.Where(q => q != Quantization.F16).ToList() : Quantization.Ladder.ToList();
        var rungs = new List<QuantFit>();
        foreach (var q in ladder)
        {
            var mem = Memory(shape, dims, q, ctx, o with { Quant = q }, null);
            var v = Verdict(budget, mem.TotalBytes);
            double? speed = DecodeSpeed(shape, q, 0, bw, fileBytes: false);
            if (v == FitVerdict.DoesNotFit && FileMapOf(shape, moe, mem, budget, o, disk, diskSource, fileBytes: false) is { } fm)
                (v, speed) = (FitVerdict.FromFileMap, DecodeSpeed(shape, q, 0, bw, fileBytes: false, fm));
            rungs.Add(new QuantFit(q.Name, q.BitsPerWeight, mem.TotalBytes, v, speed));
        }
        var (best, because) = Recommend(rungs);

        QuantType quant = o.Quant
            ?? (o.Tune == TuneMode.Lora ? Quantization.F16
                : best is not null ? Quantization.Parse(best) : ladder[^1]);
        if (o.Quant is null && shape.WeightBytes is not null) assumptions.Add("weights sized from the file's own quantization");

        var memory = Memory(shape, dims, quant, ctx, o, assumptions);
        long kvPerToken = KvBytesPerToken(dims, shape, o.KvElementBytes);
        long headroom = budget - memory.TotalBytes;
        var lora = o.Tune == TuneMode.None ? null : LoraSize(shape, dims, o.LoraRank);

        var verdict = Verdict(budget, memory.TotalBytes);
        bool fromFile = shape.WeightBytes is not null && o.Quant is null;
        var fileMap = verdict == FitVerdict.DoesNotFit ? FileMapOf(shape, moe, memory, budget, o, disk, diskSource, fromFile) : null;
        if (fileMap is not null) verdict = FitVerdict.FromFileMap;
        double? tps = null, tpsFull = null;
        if (o.Tune == TuneMode.None && bw is { } b)
        {
            tps = DecodeSpeed(shape, quant, 0, b, fromFile, fileMap);
            tpsFull = DecodeSpeed(shape, quant, memory.KvCacheBytes / Math.Max(1, o.Sequences), b, fromFile, fileMap);
        }
        if (moe is not null) MoeAssumptions(moe, fileMap, memory, budget, o, assumptions);

        return new FitEstimate
        {
            Model = shape.Name,
            Source = shape.Source,
            Quant = shape.WeightBytes is not null && o.Quant is null ? shape.WeightsQuant ?? "file" : quant.Name,
            BitsPerWeight = shape.WeightBytes is { } wb && o.Quant is null ? wb * 8.0 / shape.TotalParams : quant.BitsPerWeight,
            Context = ctx,
            Tune = o.Tune,
            LoraRank = lora is null ? null : o.LoraRank,
            LoraParams = lora?.Params,
            LoraTargets = lora?.Targets,
            Memory = memory,
            KvBytesPerToken = o.Tune == TuneMode.None ? kvPerToken : 0,
            KvCacheType = o.KvBytesPerElement is { } kvb ? $"{kvb:0.##} bytes per element"
                : shape.Mla is not null ? $"latent in {OpenWeights.Models.Common.KvCacheTypes.Name(o.CacheTypes.K)}" : o.CacheTypes.ToString(),
            Target = o.Target,
            BudgetBytes = budget,
            BudgetSource = budgetSource,
            HeadroomBytes = headroom,
            HeadroomPercent = budget > 0 ? Math.Round(100.0 * headroom / budget, 1) : -100,
            Verdict = verdict,
            BestQuant = best,
            RecommendedBecause = because,
            Runs = shape.CannotRun is null,
            CannotRun = shape.CannotRun,
            DecodeTokensPerSecond = tps,
            DecodeTokensPerSecondAtFullContext = tpsFull,
            BandwidthGBps = bw,
            BandwidthSource = bwSource,
            BandwidthMeasuredAt = o.BandwidthGBps is null && o.Target == FitTarget.Cpu ? hw.BandwidthMeasuredAt : null,
            Ladder = rungs,
            Moe = moe,
            FileMap = fileMap,
            Assumptions = assumptions.Distinct().ToList(),
        };
    }

    /// <summary>
    /// Estimated decode speed (tokens/s, the upper bound of <see cref="FitEstimate.DecodeTokensPerSecond"/>) a quantization
    /// above Q4_K_M must keep to be recommended: 10 tokens/s, a little faster than people read a streamed reply (about 5-8
    /// tokens/s), so the extra quality does not make the model feel slow.
    /// </summary>
    public const double AcceptableTokensPerSecond = 10;

    /// <summary>The quantization people start with (and <c>pull ID</c> fetches).</summary>
    public const string StartQuant = "Q4_K_M";

    private static readonly string[] Higher = ["Q8_0", "Q6_K", "Q5_K_M"];
    private static readonly string[] Lower = ["Q4_0", "Q3_K_M", "Q2_K"];

    /// <summary>
    /// The quantization to recommend from a ladder, by memory and speed together:
    /// - Q4_K_M, the usual starting point, when it fits (fits or tight);
    /// - a higher one (Q8_0, else Q6_K, else Q5_K_M; never F16) only when it fits with headroom (verdict fits, not tight)
    ///   and its estimated decode speed stays at or above <see cref="AcceptableTokensPerSecond"/> (speed unknown: not higher);
    /// - a lower one (Q4_0, Q3_K_M, Q2_K, the first that fits) only when Q4_K_M does not fit;
    /// - when none fits in memory, a mixture of experts that runs from the file map (<see cref="FitVerdict.FromFileMap"/>):
    ///   Q4_K_M when it does, else the first rung that does;
    /// - null when none fits.
    /// </summary>
    public static (string? Quant, string Because) Recommend(IReadOnlyList<QuantFit> ladder)
    {
        QuantFit? Rung(string name) => ladder.FirstOrDefault(r => r.Quant == name);
        var start = Rung(StartQuant);
        if (start is null ? ladder.Any(r => InMemory(r.Verdict)) : InMemory(start.Verdict))
        {
            foreach (var name in Higher)
                if (Rung(name) is { Verdict: FitVerdict.Fits, DecodeTokensPerSecond: { } tps } r && tps >= AcceptableTokensPerSecond)
                    return (r.Quant, FormattableString.Invariant($"fits with headroom at ~{tps:0.#} tokens/s (at least {AcceptableTokensPerSecond:0}), so better than the usual {StartQuant}"));
            if (start is null)
                return (ladder.First(r => InMemory(r.Verdict)).Quant, "the best quality that fits");
            string why = start.Verdict == FitVerdict.Tight ? "the usual starting point; it fits, but with little headroom"
                : Higher.Select(Rung).Any(r => r is { Verdict: FitVerdict.Fits })
                    ? $"the usual starting point; higher quantizations fit but would decode below {AcceptableTokensPerSecond:0} tokens/s"
                    : "the usual starting point; higher quantizations leave too little memory";
            if (start.DecodeTokensPerSecond is null && start.Verdict != FitVerdict.Tight) why = "the usual starting point (speed unknown, so nothing higher)";
            return (StartQuant, why);
        }
        foreach (var name in Lower)
            if (Rung(name) is { } r && InMemory(r.Verdict))
                return (r.Quant, $"{StartQuant} does not fit; {r.Quant} is the largest that does (lower quality)");
        if ((start is { Verdict: FitVerdict.FromFileMap } ? start : ladder.FirstOrDefault(r => r.Verdict == FitVerdict.FromFileMap)) is { } mapped)
        {
            string speed = mapped.DecodeTokensPerSecond is { } t ? FormattableString.Invariant($" at ~{t:0.##} tokens/s") : "";
            // a lower quantization keeps more experts resident and reads fewer bytes: say so when it is much faster
            string faster = ladder.Where(r => r.Verdict == FitVerdict.FromFileMap && r.DecodeTokensPerSecond is not null)
                .MaxBy(r => r.DecodeTokensPerSecond) is { } fastest && fastest != mapped && fastest.DecodeTokensPerSecond >= 1.5 * (mapped.DecodeTokensPerSecond ?? double.MaxValue)
                ? FormattableString.Invariant($" ({fastest.Quant} would reach ~{fastest.DecodeTokensPerSecond:0.##} tokens/s at lower quality)") : "";
            return (mapped.Quant, $"none fits in memory; {mapped.Quant} runs from the file map{speed}, reading the experts that are not resident from disk{faster}");
        }
        return (null, "no quantization fits");
    }

    /// <summary>Fits or tight: everything resident.</summary>
    public static bool InMemory(FitVerdict v) => v is FitVerdict.Fits or FitVerdict.Tight;

    public static FitVerdict Verdict(long budget, long total)
    {
        long headroom = budget - total;
        if (headroom < 0) return FitVerdict.DoesNotFit;
        return headroom < Math.Max((long)(TightMarginFraction * budget), TightMarginFloorBytes) ? FitVerdict.Tight : FitVerdict.Fits;
    }

    private static (long bytes, string source) Budget(HardwareInfo hw, FitTarget target)
    {
        if (target == FitTarget.Cpu) return (hw.AvailableRamBytes, "available RAM");
        var gpu = hw.Gpus.OrderByDescending(g => g.FreeBytes).FirstOrDefault()
            ?? throw new OpenWeightsOptionException("no NVIDIA GPU found (nvidia-smi reported none)", "FitOptions.Target", "fit to the CPU's memory instead (FitOptions.Target = FitTarget.Cpu)");
        return (gpu.FreeBytes, $"free memory of {gpu.Name}");
    }

    // ---- shape with fallbacks ---------------------------------------------------------------

    /// <summary>The dimensions the formulas need, with each unknown replaced by a stated assumption.</summary>
    private sealed record Dims(int? Layers, int Hidden, int Heads, int KvHeads, int HeadDim, int Vocab);

    private static Dims Resolve(ModelShape s, List<string> assumptions)
    {
        int headDim = s.HeadDim ?? (s.HiddenSize is { } h && s.Heads is { } nh && nh > 0 ? h / nh : 0);
        if (headDim == 0) { headDim = 128; assumptions.Add("head_dim unknown: assumed 128"); }
        else if (s.HeadDim is null && s.Mla is null) assumptions.Add($"head_dim = hidden_size / heads = {headDim}");
        int heads = s.Heads ?? (s.HiddenSize is { } h2 ? h2 / headDim : 0);
        if (heads == 0) { heads = 32; assumptions.Add("attention heads unknown: assumed 32"); }
        else if (s.Heads is null) assumptions.Add($"heads = hidden_size / head_dim = {heads}");
        int kv = s.KvHeads ?? heads;
        if (s.KvHeads is null && s.Mla is null) assumptions.Add($"KV heads unknown: assumed {kv} (no grouped-query attention; conservative)");
        int hidden = s.HiddenSize ?? heads * headDim;
        if (s.HiddenSize is null) assumptions.Add($"hidden_size unknown: assumed heads × head_dim = {hidden}");
        int vocab = s.Vocab ?? 128_000;
        if (s.Vocab is null) assumptions.Add("vocab size unknown: assumed 128000");
        if (s.Layers is null) assumptions.Add("layer count unknown: KV cache and activations not estimated");
        return new Dims(s.Layers, hidden, heads, kv, headDim, vocab);
    }

    // ---- memory ----------------------------------------------------------------------------

    /// <summary>
    /// Weight bytes under a quantization. For the presets our quantizer implements (F16, BF16, Q8_0, Q4_0, Q4_K_M) and a
    /// dense shape whose dimensions are known, the bytes of every weight matrix at the type llama.cpp's quantizer gives
    /// it (<see cref="RecipeWeightBytes"/>: the same <see cref="QuantRecipe.TypeFor"/> our quantizer calls, with the
    /// Q6_K output projection, the use_more_bits layers and the fallback for rows that are not a multiple of the block).
    /// Otherwise llama.cpp's low-bit recipes (Q5_K_M, Q3_K_M, Q2_K...) are approximated: the output projection (and a
    /// tied embedding with it) as Q6_K, whatever the body's bits (on small models with large vocabularies that is a
    /// quarter of the weights), and the body at the preset's measured average.
    /// </summary>
    public static long QuantizedWeightBytes(ModelShape s, QuantType q)
    {
        if (RecipeWeightBytes(s, q) is { } exact) return exact;
        const double Q6K = 6.5625;
        bool lowBit = q.BitsPerWeight < 6.0;
        if (!lowBit || s.Vocab is not { } vocab || s.HiddenSize is not { } hidden || s.TiedEmbeddings is not { } tied)
            return q.WeightBytes(s.TotalParams);
        long emb = (long)vocab * hidden;
        long body = s.TotalParams - (tied ? emb : 2 * emb);
        if (body <= 0) return q.WeightBytes(s.TotalParams);
        double bits = body * q.BitsPerWeight + emb * Q6K + (tied ? 0 : emb * q.BitsPerWeight);
        return (long)Math.Ceiling(bits / 8);
    }

    /// <summary>The quantizer preset a fit quantization names, when our quantizer implements it.</summary>
    public static QuantPreset? PresetOf(QuantType q) => q.Name switch
    {
        "F16" => QuantPreset.F16,
        "BF16" => QuantPreset.BF16,
        "Q8_0" => QuantPreset.Q8_0,
        "Q4_0" => QuantPreset.Q4_0,
        "Q4_K_M" => QuantPreset.Q4_K_M,
        _ => null,
    };

    /// <summary>
    /// Weight bytes tensor by tensor, for a dense decoder of this shape under one of our quantizer's presets; null when the
    /// preset is not one of them, the model is MoE or MLA, or a dimension is unknown. The layout is the llama one (token
    /// embedding; output projection unless tied; per layer Q, K, V, O, gate, up, down; norms and qwen2's QKV biases in
    /// F32); each matrix takes <see cref="QuantRecipe.TypeFor"/>'s type for its name, layer and row length. The
    /// feed-forward size comes from the shape, else from the parameter count (rounded to a multiple of 256, as real models
    /// have). Unknown tying counts as untied (tied when the untied layout does not fit the parameter count): for a tied
    /// model that adds an output matrix the parameter count does not have, which the correction below takes away again at
    /// the base type (token_embd at Q4_K + output at Q6_K - one matrix at Q4_K = the tied Q6_K matrix). Parameters the layout does not account for (the catalog's rounding of the parameter count, vision towers,
    /// fused or extra tensors of other layouts) are added, or taken away, at the preset's base type; when they are more than a
    /// quarter of the layout, the layout does not describe the model and the result is null.
    /// </summary>
    public static long? RecipeWeightBytes(ModelShape s, QuantType q)
    {
        if (PresetOf(q) is not { } preset || s.Moe is not null || s.Mla is not null) return null;
        if (s.TiedEmbeddings is { } known) return RecipeWeightBytes(s, preset, known);
        return RecipeWeightBytes(s, preset, tied: false) ?? RecipeWeightBytes(s, preset, tied: true);
    }

    private static long? RecipeWeightBytes(ModelShape s, QuantPreset preset, bool tied)
    {
        if (s.Layers is not { } layers || s.HiddenSize is not { } hidden || s.Vocab is not { } vocab) return null;
        int heads = s.Heads ?? 0;
        if (layers <= 0 || hidden <= 0 || vocab <= 0 || heads <= 0) return null;
        int headDim = s.HeadDim ?? hidden / heads;
        int kvHeads = s.KvHeads ?? heads;
        long qDim = (long)heads * headDim, kvDim = (long)kvHeads * headDim;
        long oneD = layers * (2L * hidden + (s.Architecture == "qwen2" ? qDim + 2 * kvDim : 0)) + hidden;
        long attention = layers * (2 * hidden * qDim + 2 * hidden * kvDim);
        long embeddings = (long)vocab * hidden * (tied ? 1 : 2);
        long ffn = s.FfnHidden ?? (long)Math.Round((s.TotalParams - oneD - attention - embeddings) / (3.0 * hidden * layers) / 256) * 256;
        if (ffn <= 0) return null;

        long bytes = oneD * 4, counted = oneD;
        void Add(string name, int layer, long rowLength, long rows)
        {
            GgmlType type;
            try { type = QuantRecipe.TypeFor(preset, name, layer, layers, rowLength, nDims: 2, tiedEmbeddings: tied); }
            catch (ArgumentException) { type = GgmlType.F16; } // rows the type cannot hold (tiny models: 172 is no multiple of 32): counted as F16, what they would stay
            bytes += GgmlTypes.RowBytes(type, rowLength) * rows;
            counted += rowLength * rows;
        }
        Add("token_embd.weight", -1, hidden, vocab);
        if (!tied) Add("output.weight", -1, hidden, vocab);
        for (int i = 0; i < layers; i++)
        {
            Add($"blk.{i}.attn_q.weight", i, hidden, qDim);
            Add($"blk.{i}.attn_k.weight", i, hidden, kvDim);
            Add($"blk.{i}.attn_v.weight", i, hidden, kvDim);
            Add($"blk.{i}.attn_output.weight", i, qDim, hidden);
            Add($"blk.{i}.ffn_gate.weight", i, hidden, ffn);
            Add($"blk.{i}.ffn_up.weight", i, hidden, ffn);
            Add($"blk.{i}.ffn_down.weight", i, ffn, hidden);
        }
        long rest = s.TotalParams - counted;
        // a layout far from the parameter count does not describe this model: leave it to the average formula
        if (Math.Abs(rest) > counted / 4) return null;
        return bytes + (long)Math.Round(rest * GgmlTypes.BitsPerWeight(QuantRecipe.BaseType(preset)) / 8);
    }

    private static MemoryBreakdown Memory(ModelShape s, Dims d, QuantType q, int ctx, FitOptions o, List<string>? assumptions)
    {
        long weights = s.WeightBytes is { } wb && o.Quant is null ? wb : QuantizedWeightBytes(s, q);
        if (o.Tune == TuneMode.None)
        {
            long kv = KvCacheBytes(d, s, ctx, o.KvElementBytes) * Math.Max(1, o.Sequences);
            long overhead = RuntimeBaseBytes + (long)PrefillBatch * (4L * d.Hidden + d.Vocab) * 4;
            return new MemoryBreakdown { WeightsBytes = weights, KvCacheBytes = kv, OverheadBytes = overhead };
        }

        var lora = LoraSize(s, d, o.LoraRank);
        long p = lora.Params;
        long layers = d.Layers ?? 0;
        long sh = (long)ctx * d.Hidden;
        // Values per layer for backward (Korthikanti et al.): 17·s·h + 2.5·a·s².
        long perLayer = 17 * sh + (long)(2.5 * d.Heads * (double)ctx * ctx);
        long activationValues = o.GradientCheckpointing ? layers * sh + perLayer : layers * perLayer;
        long logits = 2L * ctx * d.Vocab * 4;
        if (assumptions is not null)
        {
            assumptions.Add($"training: batch 1, sequence {ctx}, f32 activations, {(o.GradientCheckpointing ? "gradient checkpointing" : "no gradient checkpointing")}");
            if (o.Tune == TuneMode.Lora && q.BitsPerWeight < 16) assumptions.Add($"LoRA on a {q.Name} base is QLoRA-style training");
        }
        return new MemoryBreakdown
        {
            WeightsBytes = weights,
            OverheadBytes = RuntimeBaseBytes,
            AdapterBytes = p * 4,
            GradientBytes = p * 4,
            OptimizerBytes = p * 8,
            ActivationBytes = activationValues * 4 + logits,
        };
    }

    /// <summary>KV cache bytes for one sequence of <paramref name="ctx"/> tokens.</summary>
    private static long KvCacheBytes(Dims d, ModelShape s, int ctx, (double K, double V) bytes)
    {
        if (d.Layers is not { } layers) return 0;
        if (s.Mla is { } mla)
            return (long)(layers * (double)(mla.KvLoraRank + mla.RopeHeadDim) * ctx * bytes.K);
        double perLayerToken = (double)d.KvHeads * d.HeadDim * (bytes.K + bytes.V);
        int global = s.LocalAttention?.GlobalLayers(layers) ?? layers;
        int local = layers - global;
        int window = s.LocalAttention is { } la ? Math.Min(la.Window, ctx) : ctx;
        return (long)(perLayerToken * ((double)global * ctx + (double)local * window));
    }

    /// <summary>KV bytes added per token while the context is longer than every window (global layers only for local-attention models).</summary>
    private static long KvBytesPerToken(Dims d, ModelShape s, (double K, double V) bytes)
    {
        if (d.Layers is not { } layers) return 0;
        if (s.Mla is { } mla) return (long)(layers * (double)(mla.KvLoraRank + mla.RopeHeadDim) * bytes.K);
        return (long)((double)layers * d.KvHeads * d.HeadDim * (bytes.K + bytes.V));
    }

    /// <summary>Bytes per token of the full (uncapped) KV cache: 2 × layers × kv_heads × head_dim × bytes (or the MLA latent).</summary>
    public static long KvBytesPerToken(ModelShape s, double bytesPerElement = 2)
    {
        var d = Resolve(s, []);
        return KvBytesPerToken(d, s, (bytesPerElement, bytesPerElement));
    }

    /// <summary>KV cache bytes for one sequence, with window and MLA savings.</summary>
    public static long KvCacheBytes(ModelShape s, int context, double bytesPerElement = 2) =>
        KvCacheBytes(Resolve(s, []), s, context, (bytesPerElement, bytesPerElement));

    private sealed record Lora(long Params, IReadOnlyList<string> Targets);

    private static Lora LoraSize(ModelShape s, Dims d, int rank)
    {
        long layers = d.Layers ?? 0;
        long q = d.Heads * (long)d.HeadDim, kv = d.KvHeads * (long)d.HeadDim, h = d.Hidden;
        long perLayer = rank * ((h + q) + 2 * (h + kv) + (q + h));
        var targets = new List<string> { "q_proj", "k_proj", "v_proj", "o_proj" };
        if (s.FfnHidden is { } f && s.Moe is null)
        {
            perLayer += rank * (2 * (h + f) + (f + h));
            targets.AddRange(["gate_proj", "up_proj", "down_proj"]);
        }
        return new Lora(perLayer * layers, targets);
    }

    private static double? DecodeSpeed(ModelShape s, QuantType q, long kvBytes, double? bandwidthGBps, bool fileBytes, FileMapFit? fileMap = null)
    {
        if (bandwidthGBps is not { } bw || bw <= 0) return null;
        double weightBytes = fileBytes && s.WeightBytes is { } wb ? wb * ((double)s.ActiveParams / s.TotalParams) : s.ActiveParams * q.BitsPerWeight / 8.0;
        double seconds = (weightBytes + kvBytes) / (bw * 1e9);
        if (fileMap is { DiskReadGBps: > 0 } fm) seconds += fm.DiskBytesPerToken / (fm.DiskReadGBps * 1e9);
        return Math.Round(1 / seconds, 2);
    }

    // ---- mixture of experts ------------------------------------------------------------------

    /// <summary>
    /// The routed experts' share of a MoE's parameters: counted from a file's expert tensors, else derived from the total and
    /// active counts (one expert over all layers = (total - active) / (experts - experts per token)); null for dense models
    /// and when the counts do not give a positive split.
    /// </summary>
    public static MoeFit? MoeOf(ModelShape s)
    {
        if (s.Moe is not { } moe || moe.Experts <= 0 || moe.ExpertsPerToken <= 0 || moe.ExpertsPerToken >= moe.Experts) return null;
        long routed;
        string basis;
        if (s.RoutedExpertParams is { } counted)
        {
            routed = counted;
            basis = "routed experts counted from the file's expert tensors";
        }
        else
        {
            double one = (double)(s.TotalParams - s.ActiveParams) / (moe.Experts - moe.ExpertsPerToken);
            routed = (long)Math.Round(one * moe.Experts);
            if (one <= 0 || routed >= s.TotalParams) return null;
            basis = FormattableString.Invariant($"routed experts derived from the total and active parameters: one expert (all layers) = (total - active) / ({moe.Experts} - {moe.ExpertsPerToken}) = {one / 1e9:0.###}B, so {routed / 1e9:0.##}B in experts and {(s.TotalParams - routed) / 1e9:0.##}B dense (attention, embeddings{(moe.SharedExperts > 0 ? ", shared experts" : "")})");
        }
        return new MoeFit
        {
            Experts = moe.Experts, ExpertsPerToken = moe.ExpertsPerToken, SharedExperts = moe.SharedExperts,
            TotalParams = s.TotalParams, ActiveParams = s.ActiveParams, RoutedExpertParams = routed, Basis = basis,
        };
    }

    /// <summary>
    /// The file-map plan of a MoE whose weights exceed the budget (CPU inference only): null when the model is dense, the
    /// estimate is for tuning or a GPU, or even the dense part, KV cache and overhead exceed the budget.
    /// </summary>
    private static FileMapFit? FileMapOf(ModelShape s, MoeFit? moe, MemoryBreakdown mem, long budget, FitOptions o, double diskGBps, string diskSource, bool fileBytes)
    {
        if (moe is null || o.Tune != TuneMode.None || o.Target != FitTarget.Cpu) return null;
        long weights = mem.WeightsBytes;
        long experts = fileBytes && s.RoutedExpertBytes is { } eb ? eb : (long)Math.Round((double)weights * moe.RoutedExpertParams / moe.TotalParams);
        long dense = weights - experts;
        long fixedBytes = dense + mem.KvCacheBytes + mem.OverheadBytes;
        if (fixedBytes > budget || experts <= 0) return null;
        long resident = Math.Min(experts, budget - fixedBytes);
        long active = (long)Math.Round((double)experts * moe.ExpertsPerToken / moe.Experts);
        double missing = 1 - (double)resident / experts;
        return new FileMapFit
        {
            DenseBytes = dense, ExpertBytes = experts, ResidentExpertBytes = resident, ActiveExpertBytes = active,
            DiskBytesPerToken = (long)Math.Round(missing * active), DiskReadGBps = diskGBps, DiskReadSource = diskSource,
            PrefillDiskSecondsPerBatch = diskGBps > 0 ? Math.Round(missing * experts / (diskGBps * 1e9), 2) : double.PositiveInfinity,
        };
    }

    private static void MoeAssumptions(MoeFit moe, FileMapFit? fm, MemoryBreakdown mem, long budget, FitOptions o, List<string> assumptions)
    {
        assumptions.Add(FormattableString.Invariant(
            $"MoE ({moe.ExpertsPerToken} of {moe.Experts} experts per token{(moe.SharedExperts > 0 ? $", plus {moe.SharedExperts} shared" : "")}): memory holds all {moe.TotalParams / 1e9:0.##}B parameters, decode reads the {moe.ActiveParams / 1e9:0.##}B active ones per token"));
        assumptions.Add(moe.Basis);
        static string Gb(double bytes) => FormattableString.Invariant($"{bytes / 1e9:0.#} GB");
        if (fm is not null)
            assumptions.Add(FormattableString.Invariant(
                $"larger than the budget: runs from the file map. The dense part ({Gb(fm.DenseBytes)}), KV cache and overhead stay resident; the rest of the budget keeps {fm.ResidentFraction * 100:0}% of the {Gb(fm.ExpertBytes)} of routed experts in the page cache, assuming uniform routing (real routing favours hot experts, which stay resident, so more hits); each token reads the other {(1 - fm.ResidentFraction) * 100:0}% of its {Gb(fm.ActiveExpertBytes)} of experts from disk ({Gb(fm.DiskBytesPerToken)} at {fm.DiskReadGBps:0.##} GB/s, {DiskText(fm.DiskReadSource)}); a 512-token prefill batch reads every missing expert once (~{fm.PrefillDiskSecondsPerBatch:0.#} s per batch)"));
        else if (o.Tune == TuneMode.None && o.Target == FitTarget.Cpu && budget < mem.TotalBytes)
            assumptions.Add("larger than the budget, and even the dense part (attention, embeddings), KV cache and overhead do not fit: it cannot run from the file map either");
    }

    private static string DiskText(string source) => source switch
    {
        "assumed" => "assumed, not measured: a conservative NVMe rate",
        "given" => "given",
        _ => source,
    };
}
