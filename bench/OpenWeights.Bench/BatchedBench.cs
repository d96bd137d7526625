using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using LLama;
using LLama.Common;
using LLama.Native;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Common;

namespace OpenWeights.Bench;

/// <summary>
/// `--batched --model FILE --streams 1,4,16,32 --prompt N --gen N`: N sequences decoding together, one token each per
/// forward pass, as a server's continuous batching does once every slot is past its prompt. Our engine goes through
/// <see cref="DecoderModel.Forward(ReadOnlySpan{SequenceBatch}, RunState, int, Span{float})"/> with one
/// <see cref="SequenceBatch"/> per sequence (what OpenWeights.Server's Scheduler does each step); llama.cpp through
/// LLamaSharp's <see cref="LLamaBatch"/> with one sequence id per sequence and <see cref="LLamaContext.Decode(LLamaBatch)"/>
/// (the batch llama-server and llama-batched-bench build). Reported: aggregate decode tokens/s = streams × gen / decode time.
/// Each engine runs in its own child process (`--batched --engine ours|llamacpp`), all stream counts in one child (one load);
/// the parent alternates the engines' order between reps and keeps each level's best.
/// </summary>
public static class BatchedBench
{
    /// <summary>One stream count of one engine: N prompts prefilled one after the other, then N sequences decoding together.</summary>
    public sealed record Level(int Streams, int PromptTokens, int Gen, double PrefillSeconds, double DecodeSeconds)
    {
        public double AggregateDecodeTokensPerSecond => Streams * (double)Gen / DecodeSeconds;
        public double PrefillTokensPerSecond => Streams * (double)PromptTokens / PrefillSeconds;
    }

    public sealed record EngineRun(string Engine, double LoadSeconds, long PeakRssBytes, string? Info, List<Level> Levels);

    public sealed record Row(int Streams, Level? Ours, Level? LlamaCpp)
    {
        public double? Ratio => Ours is null || LlamaCpp is null ? null : Ours.AggregateDecodeTokensPerSecond / LlamaCpp.AggregateDecodeTokensPerSecond;
    }

    public sealed record Report(string Model, string Commit, string Command, int Threads, int Prompt, int Gen, int Reps,
        string CacheTypeK, string CacheTypeV, string? LlamaCppInfo, long OursPeakRssBytes, long LlamaCppPeakRssBytes, List<Row> Rows, string? Error);

    // ---- parent ----------------------------------------------------------------------------------------------------------

    public static int Run(BenchOptions o)
    {
        var model = o.Model ?? Driver.EnsureModel(o.ModelsDir, o.Presets[0], o.Types[0]);
        var best = new Dictionary<string, Dictionary<int, Level>> { ["ours"] = [], ["llamacpp"] = [] };
        var rss = new Dictionary<string, long> { ["ours"] = 0, ["llamacpp"] = 0 };
        string? info = null, error = null;
        for (int rep = 0; rep < o.Reps && error is null; rep++)
        {
            string[] order = rep % 2 == 0 ? ["ours", "llamacpp"] : ["llamacpp", "ours"];
            foreach (var engine in order)
            {
                var (r, err) = RunChild(o, engine, model);
                if (r is null) { error = $"{engine}: {err}"; Driver.Log($"batched {engine} rep {rep + 1}: FAILED {err}"); break; }
                foreach (var l in r.Levels)
                {
                    Driver.Log($"batched {engine,-8} rep {rep + 1}/{o.Reps}: {l.Streams,3} streams  decode {l.AggregateDecodeTokensPerSecond,8:F1} tok/s aggregate  prefill {l.PrefillTokensPerSecond,7:F1} tok/s");
                    if (!best[engine].TryGetValue(l.Streams, out var b) || l.AggregateDecodeTokensPerSecond > b.AggregateDecodeTokensPerSecond) best[engine][l.Streams] = l;
                }
                rss[engine] = Math.Max(rss[engine], r.PeakRssBytes);
                if (engine == "llamacpp") info ??= r.Info;
            }
        }
        var rows = o.Streams.Select(n => new Row(n, best["ours"].GetValueOrDefault(n), best["llamacpp"].GetValueOrDefault(n))).ToList();
        var report = new Report(model, Driver.GitCommit(),
            "dotnet bench/OpenWeights.Bench/bin/Release/net10.0/OpenWeights.Bench.dll " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            o.Threads, o.Prompt, o.Gen, o.Reps, o.CacheTypeK, o.CacheTypeV, info, rss["ours"], rss["llamacpp"], rows, error);
        if (o.Out is not null) File.WriteAllText(o.Out, Markdown(report));
        if (o.Json) Console.Out.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions(Json.Options) { WriteIndented = true }));
        else Console.Out.Write(Markdown(report));
        return error is null ? 0 : 1;
    }

    private static (EngineRun?, string?) RunChild(BenchOptions o, string engine, string model)
    {
        var args = new List<string> { "--batched", "--engine", engine, "--model", model, "--threads", o.Threads.ToString(CultureInfo.InvariantCulture),
            "--prompt", o.Prompt.ToString(CultureInfo.InvariantCulture), "--gen", o.Gen.ToString(CultureInfo.InvariantCulture),
            "--streams", string.Join(',', o.Streams), "--cache-type-k", o.CacheTypeK, "--cache-type-v", o.CacheTypeV };
        if (o.KvUnified is { } u) args.Add(u ? "--kv-unified" : "--no-kv-unified");
        return ChildRun.Json<EngineRun>(args);
    }

    private static string Markdown(Report r)
    {
        static string F(double? v, string fmt) => v is { } d ? d.ToString(fmt, CultureInfo.InvariantCulture) : "—";
        var sb = new StringBuilder();
        sb.AppendLine($"Batched decode: {Path.GetFileName(r.Model)}; commit {r.Commit}; {r.Threads} threads; prompt {r.Prompt} tokens per sequence " +
                      $"(distinct ids), then {r.Gen} greedy tokens of every sequence together (the first decode step untimed); " +
                      $"KV cache {r.CacheTypeK}/{r.CacheTypeV}; best of {r.Reps} (engines alternated, each in its own process)");
        if (r.LlamaCppInfo is { } i) sb.AppendLine($"llama.cpp: {i}");
        sb.AppendLine($"peak RSS over all levels: ours {r.OursPeakRssBytes / 1e6:F0} MB, llama.cpp {r.LlamaCppPeakRssBytes / 1e6:F0} MB");
        sb.AppendLine();
        sb.AppendLine("| streams | ours decode tok/s (aggregate) | llama.cpp decode tok/s (aggregate) | ratio | ours per stream | llama.cpp per stream | ours vs 1 stream | llama.cpp vs 1 stream |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        var one = r.Rows.FirstOrDefault(x => x.Streams == 1);
        foreach (var x in r.Rows)
        {
            double? o = x.Ours?.AggregateDecodeTokensPerSecond, l = x.LlamaCpp?.AggregateDecodeTokensPerSecond;
            double? o1 = one?.Ours?.AggregateDecodeTokensPerSecond, l1 = one?.LlamaCpp?.AggregateDecodeTokensPerSecond;
            sb.AppendLine($"| {x.Streams} | {F(o, "F1")} | {F(l, "F1")} | {F(x.Ratio, "F2")}× | {F(o / x.Streams, "F1")} | {F(l / x.Streams, "F1")} " +
                          $"| {F(o / o1, "F2")}× | {F(l / l1, "F2")}× |");
        }
        if (r.Error is not null) sb.AppendLine($"error: {r.Error}");
        return sb.ToString();
    }

    // ---- children --------------------------------------------------------------------------------------------------------

    public static int Child(BenchOptions o)
    {
        var r = o.Engine == "ours" ? Ours(o) : LlamaCpp(o);
        Console.Out.WriteLine(JsonSerializer.Serialize(r, Json.Options));
        return 0;
    }

    /// <summary>Sequence s's prompt: ids [s·prompt, (s+1)·prompt) of one deterministic list, the same for both engines.</summary>
    private static int[] Prompts(int streams, int prompt, int vocab) => SpeedTest.PromptTokens(streams * prompt, vocab);

    private static EngineRun Ours(BenchOptions o)
    {
        var sw = Stopwatch.StartNew();
        using var m = DecoderModel.Load(o.Model!);
        int maxStreams = o.Streams.Max(), vocab = m.Config.VocabSize, context = o.Prompt + o.Gen + 1;
        var caches = new KvCache[maxStreams];
        for (int s = 0; s < maxStreams; s++) caches[s] = m.CreateCache(context, o.CacheTypes);       // one per sequence, as a server slot
        var state = m.CreateState(Math.Max(Math.Min(o.Prompt, 512), maxStreams), context);
        var logits = new float[maxStreams * vocab];                                                 // (streams, vocab)
        double load = sw.Elapsed.TotalSeconds;
        var ids = Prompts(maxStreams, o.Prompt, vocab);

        // warm-up: 8 tokens and one decode step, then an empty cache (as SpeedTest.WarmUp)
        m.Forward(ids.AsSpan(0, Math.Min(8, o.Prompt)), caches[0], state, o.Threads);
        m.Forward([Sampler.ArgMax(state.Logits)], caches[0], state, o.Threads);
        caches[0].Length = 0;

        var levels = new List<Level>();
        var next = new int[maxStreams];
        var one = new int[maxStreams][];
        for (int s = 0; s < maxStreams; s++) one[s] = new int[1];
        foreach (int n in o.Streams)
        {
            for (int s = 0; s < n; s++) caches[s].Length = 0;
            sw.Restart();
            for (int s = 0; s < n; s++) // each prompt alone, in chunks of the state's batch
            {
                var p = ids.AsSpan(s * o.Prompt, o.Prompt);
                for (int at = 0; at < p.Length; at += state.MaxBatch) m.Forward(p[at..Math.Min(p.Length, at + state.MaxBatch)], caches[s], state, o.Threads);
                next[s] = Sampler.ArgMax(state.Logits);
            }
            double prefill = sw.Elapsed.TotalSeconds;
            var segments = new SequenceBatch[n];
            void Step()
            {
                for (int s = 0; s < n; s++) { one[s][0] = next[s]; segments[s] = new SequenceBatch(one[s], caches[s]); }
                m.Forward(segments, state, o.Threads, logits);
                for (int s = 0; s < n; s++) next[s] = Sampler.ArgMax(logits.AsSpan(s * vocab, vocab));
            }
            Step(); // untimed: the first step at this batch size
            sw.Restart();
            for (int g = 0; g < o.Gen; g++) Step();
            levels.Add(new Level(n, o.Prompt, o.Gen, prefill, sw.Elapsed.TotalSeconds));
            Console.Error.WriteLine($"ours {n} streams: {levels[^1].AggregateDecodeTokensPerSecond:F1} tok/s");
        }
        return new EngineRun("ours", load, SpeedTest.PeakMemoryBytes(), $"kernels={OpenWeights.Tensors.Kernels.QuantDot.KernelPath}", levels);
    }

    private static ModelParams LlamaParams(BenchOptions o, int streams)
    {
        var p = new ModelParams(o.Model!)
        {
            // n_ctx for all sequences together; llama.cpp gives each sequence n_ctx / n_seq_max when the cache is not unified
            ContextSize = (uint)(streams * (o.Prompt + o.Gen + 1)),
            SeqMax = (uint)streams,
            TypeK = LlamaCppEngine.Ggml(o.CacheTypes.K), TypeV = LlamaCppEngine.Ggml(o.CacheTypes.V),
            BatchSize = (uint)Math.Max(o.Prompt, streams),
            GpuLayerCount = 0,
            Threads = o.Threads,
            BatchThreads = o.Threads,
            KVUnified = o.KvUnified, // null: LLamaSharp's default (llama.cpp's: one cache stream per sequence)
        };
        if (o.CacheTypes.V == OpenWeights.Tensors.Quant.GgmlType.Q8_0) p.FlashAttention = true;
        return p;
    }

    private static EngineRun LlamaCpp(BenchOptions o)
    {
        NativeLibraryConfig.All.WithLogCallback((level, msg) => { });
        NativeApi.llama_empty_call();
        var sw = Stopwatch.StartNew();
        using var w = LLamaWeights.LoadFromFile(LlamaParams(o, 1));
        double load = sw.Elapsed.TotalSeconds;
        int maxStreams = o.Streams.Max(), vocab = w.Vocab.Count;
        var ids = Prompts(maxStreams, o.Prompt, vocab);
        var batch = new LLamaBatch();
        var levels = new List<Level>();
        var next = new int[maxStreams];
        var index = new int[maxStreams];
        string? info = null;
        foreach (int n in o.Streams)
        {
            var p = LlamaParams(o, n);
            using var ctx = w.CreateContext(p);
            info ??= $"flash_attention={p.FlashAttention?.ToString() ?? "default"} kv_unified={p.KVUnified?.ToString() ?? "default"} type_k={p.TypeK} type_v={p.TypeV} " +
                     $"n_ubatch={ctx.NativeHandle.UBatchSize}; {LlamaCppEngine.SystemInfo()}";
            // every new context: 8 tokens and one decode step, then an empty context (as LlamaCppEngine)
            {
                int k = Math.Min(8, o.Prompt);
                batch.Clear();
                for (int i = 0; i < k; i++) batch.Add((LLamaToken)ids[i], i, LLamaSeqId.Zero, i == k - 1);
                LlamaCppEngine.Decode(ctx, batch);
                int t0 = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(k - 1));
                batch.Clear();
                batch.Add((LLamaToken)t0, k, LLamaSeqId.Zero, true);
                LlamaCppEngine.Decode(ctx, batch);
                ctx.NativeHandle.MemoryClear(true);
            }
            sw.Restart();
            for (int s = 0; s < n; s++) // each prompt alone
            {
                batch.Clear();
                for (int i = 0; i < o.Prompt; i++) batch.Add((LLamaToken)ids[s * o.Prompt + i], i, (LLamaSeqId)s, i == o.Prompt - 1);
                LlamaCppEngine.Decode(ctx, batch);
                next[s] = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(o.Prompt - 1));
            }
            double prefill = sw.Elapsed.TotalSeconds;
            int pos = o.Prompt;
            void Step()
            {
                batch.Clear();
                for (int s = 0; s < n; s++) index[s] = batch.Add((LLamaToken)next[s], pos, (LLamaSeqId)s, true);
                LlamaCppEngine.Decode(ctx, batch);
                for (int s = 0; s < n; s++) next[s] = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(index[s]));
                pos++;
            }
            Step(); // untimed: the first step at this batch size
            sw.Restart();
            for (int g = 0; g < o.Gen; g++) Step();
            levels.Add(new Level(n, o.Prompt, o.Gen, prefill, sw.Elapsed.TotalSeconds));
            Console.Error.WriteLine($"llama.cpp {n} streams: {levels[^1].AggregateDecodeTokensPerSecond:F1} tok/s");
        }
        return new EngineRun("llamacpp", load, SpeedTest.PeakMemoryBytes(), info, levels);
    }

}
