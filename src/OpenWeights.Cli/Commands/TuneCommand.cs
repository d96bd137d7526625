using System.CommandLine;
using OpenWeights.Lora;
using OpenWeights.Models.Llama;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights tune MODEL --data train.jsonl --out DIR`: LoRA fine-tuning on a frozen base model.</summary>
public static class TuneCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Training data: JSONL chat / prompt-completion, or plain text", Required = true };
        var outDir = new Option<string>("--out", "-o") { Description = "Output directory (checkpoint, metrics.jsonl)", Required = true };
        var rank = new Option<int>("--rank", "-r") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<float>("--alpha") { Description = "LoRA alpha (scale = alpha/rank)", DefaultValueFactory = _ => 16 };
        var targets = new Option<string>("--targets") { Description = "Comma-separated projections", DefaultValueFactory = _ => string.Join(",", LoraTargets.Default) };
        var dropout = new Option<float>("--dropout") { Description = "LoRA dropout", DefaultValueFactory = _ => 0f };
        var rslora = new Option<bool>("--rslora") { Description = "rsLoRA scaling: alpha/sqrt(rank)" };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training data", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Stop after N optimiser steps (0 = all epochs)" };
        var lr = new Option<float>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 2e-4f };
        var wd = new Option<float>("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 0f };
        var warmup = new Option<int>("--warmup") { Description = "Warmup steps (default 5% of the run)", DefaultValueFactory = _ => -1 };
        var batch = new Option<int>("--batch") { Description = "Packed sequences per micro-batch", DefaultValueFactory = _ => 1 };
        var accum = new Option<int>("--grad-accum") { Description = "Micro-batches per optimiser step", DefaultValueFactory = _ => 1 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per packed sequence", DefaultValueFactory = _ => 512 };
        var valSplit = new Option<double>("--val-split") { Description = "Fraction of examples held out for validation", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<ulong>("--seed") { Description = "Random seed (init, shuffling, dropout)", DefaultValueFactory = _ => 42 };
        var clip = new Option<double>("--clip") { Description = "Gradient clipping: max global norm (0 = off)", DefaultValueFactory = _ => 1.0 };
        var ckptEvery = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N steps (0 = at the end)", DefaultValueFactory = _ => 50 };
        var evalEvery = new Option<int>("--eval-every") { Description = "Validation every N steps (0 = at the end)", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in --out" };
        var trainOnPrompt = new Option<bool>("--train-on-prompt") { Description = "Also train on prompt / user tokens" };
        var noPack = new Option<bool>("--no-pack") { Description = "One document per sequence (no packing)" };
        var threads = CommonOptions.Threads();
        var cmd = new Command("tune", "Fine-tune a LoRA adapter on your own data")
        {
            model, data, outDir, rank, alpha, targets, dropout, rslora, epochs, maxSteps, lr, wd, warmup, batch, accum, seqLen, valSplit, seed,
            clip, ckptEvery, evalEvery, resume, trainOnPrompt, noPack, threads,
        };
        cmd.SetAction((pr, ct) =>
        {
            var err = pr.InvocationConfiguration.Error;
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            string dir = pr.GetValue(outDir)!;
            if (pr.GetValue(seqLen) < 2) throw new OpenWeightsException("--seq-len must be at least 2");
            if (pr.GetValue(valSplit) is < 0 or >= 1) throw new OpenWeightsException("--val-split must be in [0, 1)");
            using var m = LlamaModel.Load(path, repack: false); // training decodes weight tiles itself: no interleaved copies
            var tok = Tokenizer.FromGguf(m.Source);
            var examples = TrainingData.Load(pr.GetValue(data)!, tok, trainOnPrompt: pr.GetValue(trainOnPrompt));
            var (trainEx, valEx) = TrainingData.Split(examples, pr.GetValue(valSplit), pr.GetValue(seed));
            var train = TrainingData.Pack(trainEx, pr.GetValue(seqLen), !pr.GetValue(noPack));
            var val = TrainingData.Pack(valEx, pr.GetValue(seqLen), !pr.GetValue(noPack));
            var loraOptions = new LoraOptions
            {
                Rank = pr.GetValue(rank), Alpha = pr.GetValue(alpha), Dropout = pr.GetValue(dropout), UseRsLora = pr.GetValue(rslora),
                Targets = [.. pr.GetValue(targets)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)],
            };
            var lm = new LoraModel(m, loraOptions, pr.GetValue(seed)) { Threads = pr.GetValue(threads) };
            var trainer = new LoraTrainer(lm, new TrainOptions
            {
                Epochs = pr.GetValue(epochs), MaxSteps = pr.GetValue(maxSteps), LearningRate = pr.GetValue(lr), WeightDecay = pr.GetValue(wd),
                WarmupSteps = pr.GetValue(warmup), Batch = pr.GetValue(batch), GradAccum = pr.GetValue(accum), SeqLen = pr.GetValue(seqLen),
                MaxGradNorm = pr.GetValue(clip), Seed = pr.GetValue(seed), CheckpointEvery = pr.GetValue(ckptEvery), EvalEvery = pr.GetValue(evalEvery),
            }, train, val);
            if (pr.GetValue(resume))
            {
                if (trainer.TryResume(dir)) err.WriteLine($"resuming at step {trainer.Step}/{trainer.TotalSteps}");
                else err.WriteLine("no checkpoint to resume from; starting fresh");
            }
            err.WriteLine($"{examples.Count} examples -> {train.Count} training / {val.Count} validation sequences; {lm.ParameterCount:N0} LoRA parameters; {trainer.TotalSteps} steps");
            using var stop = new StopSignal(ct, err, "stopping: checkpointing the last completed step (Ctrl-C again quits at once; --resume continues)");
            double? lastVal = null;
            bool tty = !Console.IsErrorRedirected && ReferenceEquals(err, Console.Error);
            trainer.Run(dir, p =>
            {
                lastVal = p.ValLoss ?? lastVal;
                string line = $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  val {(lastVal is { } v ? v.ToString("F4") : "-")}  lr {p.LearningRate:E2}  {p.TokensPerSecond:F0} tok/s  ETA {p.Eta:hh\\:mm\\:ss}";
                if (tty) err.Write("\r" + line.PadRight(100)); else err.WriteLine(line);
            }, stop.Token);
            if (tty) err.WriteLine();
            trainer.ExportAdapter(dir, Path.GetFileName(path));
            err.WriteLine($"wrote {Path.Combine(dir, PeftAdapter.ConfigFile)}, {PeftAdapter.WeightsFile} (PEFT) and {LoraTrainer.GgufAdapterFile} (llama.cpp); checkpoint {LoraTrainer.CheckpointFile}");
            return Task.FromResult(0);
        });
        return cmd;
    }
}
