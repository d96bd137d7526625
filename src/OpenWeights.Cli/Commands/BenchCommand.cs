using System.CommandLine;
using System.Diagnostics;
using OpenWeights.Inference;
using OpenWeights.Models;

namespace OpenWeights.Cli.Commands;

/// <summary>
/// `openweights bench MODEL`: our engine's prefill and decode speed, peak memory and load time on the user's
/// machine. Fixed token ids (the same every run), one warm-up, then the best of --reps passes.
/// </summary>
public static class BenchCommand
{
    public sealed record BenchReport(
        string Model, long FileBytes, int Threads, int PromptTokens, int GeneratedTokens, int Reps,
        double LoadSeconds, double PrefillTokensPerSecond, double DecodeTokensPerSecond, long PeakMemoryBytes, string Kernels);

    public static Command Create()
    {
        var model = CommonOptions.Model();
        var threads = CommonOptions.Threads();
        var prompt = new Option<int>("--prompt", "-p")
        {
            Description = "Prompt length in tokens (prefill)", DefaultValueFactory = _ => 512,
            Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--prompt must be at least 1"); } },
        };
        var gen = new Option<int>("--gen", "-n")
        {
            Description = "Tokens to generate (decode)", DefaultValueFactory = _ => 128,
            Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--gen must be at least 1"); } },
        };
        // `-r` is LoRA rank elsewhere; the old `-r` still parses here, hidden
        var reps = new Option<int>("--reps")
        {
            Description = "Timed passes; the best is reported", DefaultValueFactory = _ => 1,
            Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--reps must be at least 1"); } },
        }.HiddenAlias("-r");
        var json = CommonOptions.Json();
        var cmd = new Command("bench", "Measure prefill and decode speed and peak memory of a model on this machine")
        {
            model, threads, prompt, gen, reps, json,
        };
        cmd.SetAction((pr, ct) =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            int nThreads = pr.GetValue(threads), nPrompt = pr.GetValue(prompt), nGen = pr.GetValue(gen), nReps = pr.GetValue(reps);

            var sw = Stopwatch.StartNew();
            using var m = DecoderModel.Load(path);
            int context = nPrompt + nGen;
            if (context > m.Config.ContextLength)
                throw new OpenWeightsException($"--prompt {nPrompt} + --gen {nGen} tokens exceed the model's context length {m.Config.ContextLength}");
            var session = new InferenceSession(m, context, nThreads, Math.Min(nPrompt, 512));
            double load = sw.Elapsed.TotalSeconds;

            var ids = SpeedTest.PromptTokens(nPrompt, m.Config.VocabSize);
            SpeedTest.WarmUp(session, ids);
            double prefill = 0, decode = 0;
            for (int r = 0; r < nReps; r++)
            {
                var s = SpeedTest.Run(session, ids, nGen, ct);
                prefill = Math.Max(prefill, s.PrefillTokensPerSecond);
                decode = Math.Max(decode, s.DecodeTokensPerSecond);
            }
            var report = new BenchReport(path, new FileInfo(path).Length, nThreads, nPrompt, nGen, nReps, load, prefill, decode, SpeedTest.PeakMemoryBytes(),
                OpenWeights.Tensors.Kernels.QuantDot.KernelPath);

            var o = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json)) { CliJson.Write(o, report); return Task.FromResult(0); }
            o.WriteLine($"model    {Path.GetFileName(path)} ({report.FileBytes / 1e6:F1} MB), {nThreads} threads, {report.Kernels} kernels");
            o.WriteLine($"load     {load:F2} s");
            o.WriteLine($"prefill  {prefill:F1} tok/s ({nPrompt}-token prompt)");
            o.WriteLine($"decode   {decode:F1} tok/s ({nGen} tokens, greedy)");
            o.WriteLine($"peak mem {report.PeakMemoryBytes / 1e6:F0} MB");
            return Task.FromResult(0);
        });
        return cmd;
    }
}
