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
        double LoadSeconds, double PrefillTokensPerSecond, double DecodeTokensPerSecond, long PeakMemoryBytes,
        int ContextSize, string CacheTypeK, string CacheTypeV,
        string Kernels); // the kernel path that ran (QuantDot.KernelPath: avx512, avx2, neon, scalar, ...)

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
        var ctx = new Option<int>("--ctx", "-c")
        {
            Description = "Context size in tokens (the KV cache allocated)", DefaultValueFactory = _ => 0,
            Validators = { r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--ctx must be at least 1"); } },
        }.DefaultLabel("prompt + gen");
        var cacheType = CommonOptions.CacheType("--cache-type", "key and value");
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key (overrides --cache-type)", defaultValue: null);
        var cacheV = CommonOptions.CacheType("--cache-type-v", "value (overrides --cache-type)", defaultValue: null);
        var json = CommonOptions.Json();
        var cmd = new Command("bench", "Measure prefill and decode speed and peak memory of a model on this machine")
        {
            model, threads, prompt, gen, reps, ctx, cacheType, cacheK, cacheV, json,
        };
        cmd.SetAction((pr, ct) =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            int nThreads = pr.GetValue(threads), nPrompt = pr.GetValue(prompt), nGen = pr.GetValue(gen), nReps = pr.GetValue(reps);

            var sw = Stopwatch.StartNew();
            using var m = DecoderModel.Load(path);
            int context = pr.GetValue(ctx) is > 0 and var c ? c : nPrompt + nGen;
            if (nPrompt + nGen > context)
                throw new OpenWeightsException($"--prompt {nPrompt} + --gen {nGen} tokens exceed --ctx {context}");
            if (context > m.Config.ContextLength)
                throw new OpenWeightsException($"a context of {context} tokens exceeds the model's context length {m.Config.ContextLength}");
            string both = pr.GetValue(cacheType)!;
            var types = new OpenWeights.Models.Common.KvCacheTypes(
                OpenWeights.Models.Common.KvCacheTypes.Parse(pr.GetValue(cacheK) ?? both), OpenWeights.Models.Common.KvCacheTypes.Parse(pr.GetValue(cacheV) ?? both));
            var session = new InferenceSession(m, context, nThreads, Math.Min(nPrompt, 512), types);
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
                context, OpenWeights.Models.Common.KvCacheTypes.Name(types.K), OpenWeights.Models.Common.KvCacheTypes.Name(types.V),
                OpenWeights.Tensors.Kernels.QuantDot.KernelPath);

            var o = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json)) { CliJson.Write(o, report); return Task.FromResult(0); }
            o.WriteLine($"model    {Path.GetFileName(path)} ({report.FileBytes / 1e6:F1} MB), {nThreads} threads");
            o.WriteLine($"context  {context} tokens, KV cache {types}");
            o.WriteLine($"load     {load:F2} s");
            o.WriteLine($"prefill  {prefill:F1} tok/s ({nPrompt}-token prompt)");
            o.WriteLine($"decode   {decode:F1} tok/s ({nGen} tokens, greedy)");
            o.WriteLine($"peak mem {report.PeakMemoryBytes / 1e6:F0} MB");
            o.WriteLine($"kernels  {report.Kernels}");
            return Task.FromResult(0);
        });
        return cmd;
    }
}
