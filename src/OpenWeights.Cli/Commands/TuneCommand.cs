using System.CommandLine;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights tune MODEL --data train.jsonl -o DIR`: LoRA fine-tuning on a frozen base model (docs/FINE-TUNING.md).</summary>
public static class TuneCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Training data: JSONL chat / prompt-completion / Alpaca instruction-output, or plain text (docs/FINE-TUNING.md)", Required = true };
        var output = new Option<string?>("--output", "-o") { Description = "Output directory (adapter, checkpoint, metrics.jsonl)" };
        var outOld = new Option<string?>("--out") { Hidden = true };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<float>("--alpha") { Description = "LoRA alpha (scale = alpha/rank)", DefaultValueFactory = _ => 16 };
        var targets = new Option<string>("--targets") { Description = $"Comma-separated projections (default: every projection of the model's family, {string.Join(",", LoraTargets.Default)} for Llama-style models)" };
        var dropout = new Option<float>("--dropout") { Description = "LoRA dropout", DefaultValueFactory = _ => 0f };
        var rslora = new Option<bool>("--rslora") { Description = "rsLoRA scaling: alpha/sqrt(rank)" };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training data", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Stop after N optimiser steps (0 = all epochs)" };
        var lr = new Option<float>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 2e-4f };
        var wd = new Option<float>("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 0f };
        var warmup = new Option<int>("--warmup") { Description = "Warmup steps (default 5% of the run)", DefaultValueFactory = _ => -1 };
        var batch = new Option<int>("--batch") { Description = "Packed sequences per micro-batch", DefaultValueFactory = _ => 1 };
        var accum = new Option<int>("--grad-accum") { Description = "Micro-batches per optimiser step", DefaultValueFactory = _ => 1 };
        var ctx = new Option<int>("--ctx", "-c") { Description = "Tokens per training sequence (examples are packed up to this length)", DefaultValueFactory = _ => 512 };
        var seqLenOld = new Option<int?>("--seq-len") { Hidden = true };
        var valSplit = new Option<double>("--val-split") { Description = "Fraction of examples held out for validation", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed (init, shuffling, dropout)", DefaultValueFactory = _ => 42 };
        var clip = new Option<double>("--clip") { Description = "Gradient clipping: max global norm (0 = off)", DefaultValueFactory = _ => 1.0 };
        var ckptEvery = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N steps (0 = at the end)", DefaultValueFactory = _ => 50 };
        var evalEvery = new Option<int>("--eval-every") { Description = "Validation every N steps (0 = at the end)", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in the output directory" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the run already in the output directory" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Jinja chat template file for chat / Alpaca data (default: the model's own)" };
        var trainOnPrompt = new Option<bool>("--train-on-prompt") { Description = "Also train on prompt / user tokens" };
        var noPack = new Option<bool>("--no-pack") { Description = "One document per sequence (no packing)" };
        var threads = CommonOptions.Threads();
        var evalData = new Option<string?>("--eval-data") { Description = "After training, `openweights eval` this file on the base model and the trained adapter side by side (perplexity text, or prompt/expected JSONL)" };
        var cmd = new Command("tune", "Fine-tune a LoRA adapter on your own data (guide: docs/FINE-TUNING.md)")
        {
            model, data, output, outOld, rank, alpha, targets, dropout, rslora, epochs, maxSteps, lr, wd, warmup, batch, accum, ctx, seqLenOld,
            valSplit, seed, clip, ckptEvery, evalEvery, resume, overwrite, chatTemplate, trainOnPrompt, noPack, threads, evalData,
        };
        cmd.SetAction((pr, ct) =>
        {
            var err = pr.InvocationConfiguration.Error;
            var stdout = pr.InvocationConfiguration.Output;
            string dir = pr.GetValue(output) ?? pr.GetValue(outOld) ?? throw new OpenWeightsException("tune needs -o/--output DIR: the folder the adapter and checkpoint go to");
            int seqLen = pr.GetValue(seqLenOld) ?? pr.GetValue(ctx);
            bool isResume = pr.GetValue(resume), isOverwrite = pr.GetValue(overwrite);
            if (seqLen < 2) throw new OpenWeightsException("--ctx must be at least 2");
            if (pr.GetValue(valSplit) is < 0 or >= 1) throw new OpenWeightsException("--val-split must be in [0, 1)");
            if (pr.GetValue(lr) <= 0) throw new OpenWeightsException("--lr must be positive");
            CheckOutput(dir, isResume, isOverwrite);
            string? templateSource = ReadTemplate(pr.GetValue(chatTemplate));
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            using var m = DecoderModel.Load(path, repack: false); // training decodes weight tiles itself: no interleaved copies
            var tok = Tokenizer.FromGguf(m.Source);
            var examples = LoadData(pr.GetValue(data)!, tok, templateSource, pr.GetValue(trainOnPrompt), err);
            var (trainEx, valEx) = TrainingData.Split(examples, pr.GetValue(valSplit), pr.GetValue(seed));
            var train = TrainingData.Pack(trainEx, seqLen, !pr.GetValue(noPack));
            var val = TrainingData.Pack(valEx, seqLen, !pr.GetValue(noPack));
            var loraOptions = new LoraOptions
            {
                Rank = pr.GetValue(rank), Alpha = pr.GetValue(alpha), Dropout = pr.GetValue(dropout), UseRsLora = pr.GetValue(rslora),
                Targets = pr.GetValue(targets) is { } t ? [.. t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)]
                    : LoraTargets.DefaultFor(m.Config), // Phi-3: qkv_proj, o_proj, gate_up_proj, down_proj
            };
            var lm = new LoraModel(m, loraOptions, pr.GetValue(seed)) { Threads = pr.GetValue(threads) };
            var trainer = new LoraTrainer(lm, new TrainOptions
            {
                Epochs = pr.GetValue(epochs), MaxSteps = pr.GetValue(maxSteps), LearningRate = pr.GetValue(lr), WeightDecay = pr.GetValue(wd),
                WarmupSteps = pr.GetValue(warmup), Batch = pr.GetValue(batch), GradAccum = pr.GetValue(accum), SeqLen = seqLen,
                MaxGradNorm = pr.GetValue(clip), Seed = pr.GetValue(seed), CheckpointEvery = pr.GetValue(ckptEvery), EvalEvery = pr.GetValue(evalEvery),
            }, train, val);
            if (isOverwrite && RunFolder.ExistingRun(dir) is not null) { RunFolder.Clear(dir); err.WriteLine($"--overwrite: removed the previous run in {dir}"); }
            var stale = RunFolder.RemoveStaleTemporaries(dir);
            if (stale.Count > 0) err.WriteLine($"removed {stale.Count} temporary file(s) an interrupted run left in {dir}");
            if (isResume)
            {
                bool resumed;
                try { resumed = trainer.TryResume(dir); }
                catch (OpenWeightsOptionException e) when (e.Option == LoraTrainer.SeedOption) { throw new OpenWeightsException($"{e.Problem}; resume with the same --seed", e); }
                if (resumed) err.WriteLine($"resuming at step {trainer.Step}/{trainer.TotalSteps}");
                else err.WriteLine("no checkpoint to resume from; starting fresh");
            }
            err.WriteLine($"{examples.Count} examples -> {train.Count} training / {val.Count} validation sequences; {lm.ParameterCount:N0} LoRA parameters; {trainer.TotalSteps} step{(trainer.TotalSteps == 1 ? "" : "s")}");
            int maxStepsValue = pr.GetValue(maxSteps);
            if (TuneAdvice.ShortRun(trainer.TotalSteps, trainer.StepsPerEpoch, pr.GetValue(lr), maxStepsValue > 0 && maxStepsValue < trainer.StepsPerEpoch * pr.GetValue(epochs)) is { } warning)
                err.WriteLine(warning);
            using var stop = new StopSignal(ct, err, "stopping: checkpointing the last completed step (Ctrl-C again quits at once; --resume continues)");
            double? lastVal = null;
            bool tty = !Console.IsErrorRedirected && ReferenceEquals(err, Console.Error);
            trainer.EvalProgress = (done, total) =>
            {
                if (tty) err.Write($"\rstep {trainer.Step}/{trainer.TotalSteps}  validating {done}/{total}".PadRight(100));
                else if (done == 0) err.WriteLine($"step {trainer.Step}/{trainer.TotalSteps}  validating on {total} sequence{(total == 1 ? "" : "s")}");
            };
            trainer.Run(dir, p =>
            {
                lastVal = p.ValLoss ?? lastVal;
                string line = $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  val {(lastVal is { } v ? v.ToString("F4") : "-")}  lr {p.LearningRate:E2}  {p.TokensPerSecond:F0} tok/s  ETA {p.Eta:hh\\:mm\\:ss}";
                if (tty) err.Write("\r" + line.PadRight(100)); else err.WriteLine(line);
            }, stop.Token);
            if (tty) err.WriteLine();
            trainer.ExportAdapter(dir, Path.GetFileName(path));
            stdout.WriteLine($"wrote {dir}: checkpoint {LoraTrainer.CheckpointFile}, {LoraTrainer.MetricsFile}");
            foreach (var line in TuneAdvice.UsageLines(pr.GetValue(model)!, dir)) stdout.WriteLine(line);
            if (pr.GetValue(evalData) is { } evalFile)
            {
                // the base and the adapter as `run --lora` would apply it: a fresh load (training's copy holds the trainable wrappers)
                using var fresh = DecoderModel.LoadOwned(CommonOptions.OpenSource(path));
                string adapter = Path.Combine(dir, LoraTrainer.GgufAdapterFile);
                var report = OpenWeights.Evaluation.EvalRun.RunAsync(fresh, Tokenizer.FromGguf(fresh.Source), [adapter], evalFile,
                    new OpenWeights.Evaluation.EvalSettings { Threads = pr.GetValue(threads) }, stop.Token).GetAwaiter().GetResult();
                stdout.WriteLine($"eval on {evalFile}:");
                EvalCommand.Print(report, stdout);
            }
            return Task.FromResult(0);
        });
        return cmd;
    }

    /// <summary>Reads the training data; when lines are malformed, lists them one per line (file and line number) before the error.</summary>
    private static List<TrainExample> LoadData(string file, Tokenizer tok, string? template, bool trainOnPrompt, TextWriter err)
    {
        try { return TrainingData.Load(file, tok, template, trainOnPrompt); }
        catch (OpenWeightsOptionException e) when (e.Option == TrainingData.ChatTemplateOption)
        {
            throw new OpenWeightsException($"{e.Problem}: supply one (--chat-template FILE), or use prompt/completion or instruction/output records", e);
        }
        catch (TrainingDataException e)
        {
            foreach (var line in e.ListedProblems()) err.WriteLine($"  {(line.StartsWith("line ", StringComparison.Ordinal) ? e.DataFile + " " : "")}{line}");
            throw new OpenWeightsException(e.Summary + " (listed above)");
        }
    }

    /// <summary>A folder holding a run is only reused on purpose: --resume continues it, --overwrite replaces it.</summary>
    public static void CheckOutput(string dir, bool resume, bool overwrite)
    {
        if (resume && overwrite) throw new OpenWeightsException("--resume and --overwrite contradict each other; pass one");
        if (File.Exists(dir)) throw new OpenWeightsException($"output {dir} is a file; -o/--output names a directory");
        if (!resume && !overwrite && RunFolder.ExistingRun(dir) is { } file)
            throw new OpenWeightsException($"{dir} already holds a training run ({file}); pass --resume to continue it or --overwrite to replace it");
    }

    private static string? ReadTemplate(string? file)
    {
        if (file is null) return null;
        if (!File.Exists(file)) throw new OpenWeightsException($"chat template file not found: {file}");
        return File.ReadAllText(file);
    }
}
