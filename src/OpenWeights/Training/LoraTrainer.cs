using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Lora;

namespace OpenWeights.Training;

/// <summary>Optimisation settings of a LoRA run.</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 1;
    /// <summary>Stop after this many optimiser steps (0: run all epochs).</summary>
    public int MaxSteps { get; init; }
    public float LearningRate { get; init; } = 2e-4f;
    public float WeightDecay { get; init; }
    /// <summary>Warmup steps; when negative, 5% of the total.</summary>
    public int WarmupSteps { get; init; } = -1;
    public float MinLrRatio { get; init; } = 0.1f;
    /// <summary>Packed sequences per micro-batch.</summary>
    public int Batch { get; init; } = 1;
    public int GradAccum { get; init; } = 1;
    public int SeqLen { get; init; } = 512;
    public double MaxGradNorm { get; init; } = 1.0;
    public ulong Seed { get; init; } = 42;
    /// <summary>Evaluate the validation set every N optimiser steps (0: only at the end).</summary>
    public int EvalEvery { get; init; } = 0;
    /// <summary>Write a checkpoint every N optimiser steps (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 0;
}

/// <summary>Progress after one optimiser step.</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double? ValLoss, float LearningRate, double GradNorm, long Tokens, double TokensPerSecond, TimeSpan Elapsed)
{
    public TimeSpan Eta => Step == 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(Elapsed.TotalSeconds / Step * (TotalSteps - Step));
}

/// <summary>
/// The LoRA training loop: packed sequences, gradient accumulation, global-norm clipping, AdamW with warmup + cosine,
/// periodic validation, atomic checkpoints (adapter + optimiser moments + step; every random choice is a function of
/// (seed, step), so a resumed run continues bit-exactly), and metrics.jsonl.
/// </summary>
public sealed class LoraTrainer
{
    public LoraModel Model { get; }
    public TrainOptions Options { get; }
    public IReadOnlyList<PackedSequence> Train { get; }
    public IReadOnlyList<PackedSequence> Val { get; }
    public AdamW Optimizer { get; }
    public int Step { get; private set; }
    public int StepsPerEpoch { get; }
    public int TotalSteps { get; }
    public LrSchedule Schedule { get; }

    public const string CheckpointFile = "checkpoint.safetensors";
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>Called during validation with (sequences done, sequences in all): before the first and after each.</summary>
    public Action<int, int>? EvalProgress { get; set; }

    public LoraTrainer(LoraModel model, TrainOptions options, IReadOnlyList<PackedSequence> train, IReadOnlyList<PackedSequence> val)
    {
        if (train.Count == 0) throw new OpenWeightsException("no training sequences (is every token masked out?)");
        if (options.Batch <= 0 || options.GradAccum <= 0 || options.Epochs <= 0) throw new OpenWeightsException("batch, grad-accum and epochs must be positive");
        Model = model; Options = options; Train = train; Val = val;
        Optimizer = new AdamW([.. model.Trainable.SelectMany(m => new[] { (m.Lora!.A, m.GradA!), (m.Lora.B, m.GradB!) })]) { WeightDecay = options.WeightDecay };
        int perStep = options.Batch * options.GradAccum;
        StepsPerEpoch = (train.Count + perStep - 1) / perStep;
        TotalSteps = StepsPerEpoch * options.Epochs;
        if (options.MaxSteps > 0) TotalSteps = Math.Min(TotalSteps, options.MaxSteps);
        int warm = options.WarmupSteps >= 0 ? options.WarmupSteps : Math.Max(1, TotalSteps / 20);
        Schedule = new LrSchedule(options.LearningRate, warm, TotalSteps, options.MinLrRatio);
    }

    /// <summary>The micro-batches of optimiser step s: epoch order is a seeded shuffle of the sequences.</summary>
    private List<PackedSequence> MicroBatches(int s)
    {
        int epoch = s / StepsPerEpoch, inEpoch = s % StepsPerEpoch, perStep = Options.Batch * Options.GradAccum;
        var order = Enumerable.Range(0, Train.Count).ToArray();
        TrainingData.Shuffle(order, Options.Seed ^ (0xE0C0UL + (ulong)epoch * 0x9E3779B97F4A7C15UL));
        var mine = order.Skip(inEpoch * perStep).Take(perStep).Select(i => Train[i]).ToList();
        return mine.Chunk(Options.Batch).Select(c => PackedSequence.Concat(c)).ToList();
    }

    /// <summary>Mean loss per trained token over the validation set (no dropout), or null without one.</summary>
    public double? Evaluate(CancellationToken ct = default)
    {
        if (Val.Count == 0) return null;
        double total = 0; long count = 0;
        EvalProgress?.Invoke(0, Val.Count);
        for (int i = 0; i < Val.Count; i++)
        {
            var s = Val[i];
            total += Model.Step(s.Tokens, s.Targets, s.Mask, s.Start, 1f, 0, backward: false, ct: ct);
            count += s.MaskedCount;
            EvalProgress?.Invoke(i + 1, Val.Count);
        }
        return count == 0 ? null : total / count;
    }

    /// <summary>
    /// Runs one optimiser step; returns (loss per trained token, grad norm before clipping, tokens processed). Cancellation
    /// is checked between layers; a cancelled step leaves the adapter and optimiser exactly as after the previous step
    /// (only gradients, which the next step zeroes, are partial).
    /// </summary>
    public (double Loss, double GradNorm, long Tokens) TrainStep(CancellationToken ct = default)
    {
        var micro = MicroBatches(Step);
        int masked = micro.Sum(b => b.MaskedCount);
        float norm = 1f / Math.Max(1, masked);
        Model.ZeroGrad();
        double loss = 0; long tokens = 0;
        for (int i = 0; i < micro.Count; i++)
        {
            var b = micro[i];
            ulong dropSeed = TrainableLoraLinear.SplitMix(Options.Seed ^ ((ulong)Step << 20) ^ (ulong)i) | 1;
            loss += Model.Step(b.Tokens, b.Targets, b.Mask, b.Start, norm, dropSeed, ct: ct);
            tokens += b.Length;
        }
        ct.ThrowIfCancellationRequested();
        double gn = Optimizer.ClipGradNorm(Options.MaxGradNorm);
        Optimizer.Step(Schedule.At(Step));
        Step++;
        return (loss, gn, tokens);
    }

    /// <summary>
    /// Trains until TotalSteps, reporting each step; checkpoints every CheckpointEvery steps and at the end. Temporary
    /// files an interrupted write left in <paramref name="outDir"/> are removed first (<see cref="RunFolder"/>). On
    /// cancellation (checked between layers, so it answers within one layer's forward or backward) the step in progress
    /// is abandoned, the last completed step is checkpointed (atomically) and the OperationCanceledException propagates.
    /// </summary>
    public void Run(string outDir, Action<TrainProgress>? progress = null, CancellationToken ct = default)
    {
        Directory.CreateDirectory(outDir);
        RunFolder.RemoveStaleTemporaries(outDir);
        var sw = Stopwatch.StartNew();
        long tokens = 0;
        int firstStep = Step;
        TrimMetrics(outDir, Step);
        double? val = null;
        while (Step < TotalSteps)
        {
            float lr = Schedule.At(Step);
            (double loss, double gn, long tk) = (0, 0, 0);
            bool last;
            try
            {
                ct.ThrowIfCancellationRequested();
                (loss, gn, tk) = TrainStep(ct);
                last = Step == TotalSteps;
                val = (Options.EvalEvery > 0 && Step % Options.EvalEvery == 0) || last ? Evaluate(ct) : null;
            }
            catch (OperationCanceledException)
            {
                if (Step > firstStep) SaveCheckpoint(outDir);
                throw;
            }
            tokens += tk;
            var p = new TrainProgress(Step, TotalSteps, loss, val, lr, gn, tokens, tokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds), sw.Elapsed);
            AppendMetrics(outDir, p);
            progress?.Invoke(p);
            if (last || (Options.CheckpointEvery > 0 && Step % Options.CheckpointEvery == 0)) SaveCheckpoint(outDir);
        }
    }

    private static void AppendMetrics(string dir, TrainProgress p)
    {
        var o = new Dictionary<string, object?>
        {
            ["step"] = p.Step, ["loss"] = Math.Round(p.Loss, 6), ["lr"] = p.LearningRate, ["grad_norm"] = Math.Round(p.GradNorm, 6),
            ["tokens"] = p.Tokens, ["tokens_per_s"] = Math.Round(p.TokensPerSecond, 1),
        };
        if (p.ValLoss is { } v) o["val_loss"] = Math.Round(v, 6);
        File.AppendAllText(Path.Combine(dir, MetricsFile), JsonSerializer.Serialize(o) + "\n");
    }

    /// <summary>
    /// Drops metric lines written after the step a resumed run continues from (and a line a kill cut short), rewriting
    /// the file atomically (temporary file + rename), so a kill during the rewrite keeps the old file.
    /// </summary>
    private static void TrimMetrics(string dir, int step)
    {
        var path = Path.Combine(dir, MetricsFile);
        if (!File.Exists(path)) return;
        var lines = File.ReadAllLines(path);
        var keep = lines.Where(l =>
        {
            try { using var d = JsonDocument.Parse(l); return d.RootElement.GetProperty("step").GetInt32() <= step; }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException) { return false; }
        }).ToArray();
        if (keep.Length == lines.Length) return;
        string tmp = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllLines(tmp, keep);
        File.Move(tmp, path, overwrite: true);
    }

    // ---------------------------------------------------------------- checkpoints

    /// <summary>
    /// Writes adapter (A, B per target), AdamW moments and the step into one safetensors file, atomically (temporary
    /// file + rename), so a kill at any moment leaves either the previous or the new checkpoint.
    /// </summary>
    public void SaveCheckpoint(string dir)
    {
        var w = new SafetensorsWriter();
        var o = Model.Options;
        w.SetMetadata("format", "openweights-lora-checkpoint-1")
         .SetMetadata("step", Step.ToString(CultureInfo.InvariantCulture))
         .SetMetadata("total_steps", TotalSteps.ToString(CultureInfo.InvariantCulture))
         .SetMetadata("seed", Options.Seed.ToString(CultureInfo.InvariantCulture))
         .SetMetadata("rank", o.Rank.ToString(CultureInfo.InvariantCulture))
         .SetMetadata("alpha", o.Alpha.ToString("R", CultureInfo.InvariantCulture))
         .SetMetadata("rslora", o.UseRsLora ? "true" : "false")
         .SetMetadata("targets", string.Join(",", o.Targets));
        int k = 0;
        foreach (var m in Model.Trainable)
        {
            var l = m.Lora!;
            w.Add(l.Target + ".lora_a", [l.Rank, l.In], l.A);
            w.Add(l.Target + ".lora_b", [l.Out, l.Rank], l.B);
            w.Add(l.Target + ".lora_a.adam_m", [l.Rank, l.In], Optimizer.M[k]); w.Add(l.Target + ".lora_a.adam_v", [l.Rank, l.In], Optimizer.V[k]); k++;
            w.Add(l.Target + ".lora_b.adam_m", [l.Out, l.Rank], Optimizer.M[k]); w.Add(l.Target + ".lora_b.adam_v", [l.Out, l.Rank], Optimizer.V[k]); k++;
        }
        w.SetMetadata("adam_step", Optimizer.StepCount.ToString(CultureInfo.InvariantCulture));
        w.Write(Path.Combine(dir, CheckpointFile));
    }

    public const string GgufAdapterFile = "adapter.gguf";

    /// <summary>
    /// Writes the trained adapter for other tools: a PEFT folder (adapter_config.json + adapter_model.safetensors, Hugging
    /// Face names and Q/K row order) and a llama.cpp GGUF LoRA (<see cref="GgufAdapterFile"/>), both in <paramref name="dir"/>.
    /// </summary>
    public void ExportAdapter(string dir, string? baseModel = null)
    {
        Directory.CreateDirectory(dir);
        PeftAdapter.Write(Model.Adapter, dir, Model.Config, Model.Options.Dropout, baseModelNameOrPath: baseModel);
        GgufLoraAdapter.Write(Model.Adapter, Path.Combine(dir, GgufAdapterFile), Model.Config);
    }

    /// <summary>The option a checkpoint made with another seed names (<see cref="OpenWeightsOptionException.Option"/>).</summary>
    public const string SeedOption = "TrainOptions.Seed";

    /// <summary>Restores adapter, optimiser moments and step from a checkpoint; returns false when there is none.</summary>
    public bool TryResume(string dir)
    {
        var path = Path.Combine(dir, CheckpointFile);
        if (!File.Exists(path)) return false;
        using var f = SafetensorsFile.Open(path);
        var o = Model.Options;
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v : throw new OpenWeightsException($"{path}: checkpoint lacks '{key}'");
        if (Meta("rank") != o.Rank.ToString(CultureInfo.InvariantCulture) || Meta("targets") != string.Join(",", o.Targets))
            throw new OpenWeightsException($"{path}: checkpoint was made with rank {Meta("rank")} and targets {Meta("targets")}, not rank {o.Rank} and targets {string.Join(",", o.Targets)}");
        if (Meta("seed") != Options.Seed.ToString(CultureInfo.InvariantCulture))
            throw new OpenWeightsOptionException($"{path}: checkpoint was made with seed {Meta("seed")}", SeedOption, $"resume with the same seed ({SeedOption} = {Meta("seed")})");
        void Read(string name, float[] dst)
        {
            var data = f.ReadF32(f.GetTensor(name));
            if (data.Length != dst.Length) throw new OpenWeightsException($"{path}: tensor {name} has {data.Length} values, expected {dst.Length}");
            data.CopyTo(dst, 0);
        }
        int k = 0;
        foreach (var m in Model.Trainable)
        {
            var l = m.Lora!;
            Read(l.Target + ".lora_a", l.A); Read(l.Target + ".lora_b", l.B);
            Read(l.Target + ".lora_a.adam_m", Optimizer.M[k]); Read(l.Target + ".lora_a.adam_v", Optimizer.V[k]); k++;
            Read(l.Target + ".lora_b.adam_m", Optimizer.M[k]); Read(l.Target + ".lora_b.adam_v", Optimizer.V[k]); k++;
        }
        Step = int.Parse(Meta("step"), CultureInfo.InvariantCulture);
        Optimizer.StepCount = int.Parse(Meta("adam_step"), CultureInfo.InvariantCulture);
        return true;
    }
}
