using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using OpenWeights;
using OpenWeights.Bench;
using OpenWeights.Formats.Gguf;
using OpenWeights.Hardware;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

// Side-by-side benchmark: our engine vs llama.cpp (LLamaSharp 0.30.0 CPU backend), same GGUF, same threads,
// same token ids. Each measurement runs in its own child process (`--engine ours|llamacpp --model X`) so that
// peak RSS is the engine's own and the two engines never share a process; the parent alternates them.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
try
{
    var o = BenchOptions.Parse(args);
    if (o.Kernels) return KernelBench.Run(o);
    if (o.DotKernels) return DotKernelBench.Run();
    if (o.KQuantAvx512) return KQuantAvx512Bench.Run(o);
    if (o.KernelPaths) return PathBench.Run(o);
    if (o.DecodeBandwidth) return DecodeBandwidthBench.Run(o);
    if (o.Avx512VsAvx2) return WidthBench.Run(o);
    if (o.AttentionKernels) return AttentionBench.Run(o);
    if (o.AttentionRows) return AttentionBench.RowsPerPass(o.ThreadsSet ? o.Threads : 2);
    if (o.FusedProjections) return FusedProjectionsBench.Run(o);
    if (o.Batched) return o.Engine is not null ? BatchedBench.Child(o) : BatchedBench.Run(o);
    if (o.LatentAttention) return LatentAttentionBench.Run(o);
    if (o.Engine is not null) return Child.Run(o);
    return Driver.Run(o);
}
catch (Exception e) when (e is OpenWeightsException or ArgumentException or FileNotFoundException)
{
    Console.Error.WriteLine($"bench: error: {e.Message}");
    return 1;
}

namespace OpenWeights.Bench
{
    public sealed class BenchOptions
    {
        public string ModelsDir { get; set; } = Path.Combine(FindRepoRoot(), "bench", ".models");
        public string[] Presets { get; set; } = ["smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b"];
        public string[] Types { get; set; } = ["q8_0", "q4_0", "q4_k_m", "f16"];
        public int Threads { get; set; } = 2;
        /// <summary>Whether --threads was given (--attention then measures that count alone, not 1 and 2).</summary>
        public bool ThreadsSet { get; set; }
        public int Prompt { get; set; } = 512;
        public int Gen { get; set; } = 128;
        public int Reps { get; set; } = 3;
        /// <summary>Context size both engines allocate (0: prompt + gen).</summary>
        public int Context { get; set; }
        /// <summary>KV cache key / value types of both engines: f32, f16 (default, llama.cpp's) or q8_0.</summary>
        public string CacheTypeK { get; set; } = "f16";
        public string CacheTypeV { get; set; } = "f16";
        public int ContextSize => Context > 0 ? Context : Prompt + Gen;
        public OpenWeights.Models.Common.KvCacheTypes CacheTypes =>
            new(OpenWeights.Models.Common.KvCacheTypes.Parse(CacheTypeK), OpenWeights.Models.Common.KvCacheTypes.Parse(CacheTypeV));
        public bool Json { get; set; }
        public bool Kernels { get; set; }
        public bool DotKernels { get; set; }
        public bool KQuantAvx512 { get; set; }
        public bool DecodeBandwidth { get; set; }
        public bool Avx512VsAvx2 { get; set; }
        public bool KernelPaths { get; set; }
        public bool AttentionKernels { get; set; }
        public bool AttentionRows { get; set; }
        public bool FusedProjections { get; set; }
        /// <summary>--batched: N sequences decoding together, ours vs llama.cpp (<see cref="BatchedBench"/>), at each of <see cref="Streams"/>.</summary>
        public bool Batched { get; set; }
        public int[] Streams { get; set; } = [1, 4, 16, 32];
        /// <summary>--batched: llama.cpp's kv_unified (one cache buffer for all sequences); null: its default.</summary>
        public bool? KvUnified { get; set; }
        public bool LatentAttention { get; set; }
        public string? Engine { get; set; }
        public string? Model { get; set; }
        public string? Out { get; set; }

        public static BenchOptions Parse(string[] args)
        {
            var o = new BenchOptions();
            bool quick = false;
            int? prompt = null, gen = null, reps = null;
            for (int i = 0; i < args.Length; i++)
            {
                string a = args[i];
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
                int NextInt() => int.TryParse(Next(), out int v) && v > 0 ? v : throw new ArgumentException($"{a} needs a positive integer");
                switch (a)
                {
                    case "--models": o.ModelsDir = Next(); break;
                    case "--presets": o.Presets = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                    case "--types": o.Types = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                    case "--threads": o.Threads = NextInt(); o.ThreadsSet = true; break;
                    case "--prompt": prompt = NextInt(); break;
                    case "--gen": gen = NextInt(); break;
                    case "--reps": reps = NextInt(); break;
                    case "--ctx": o.Context = NextInt(); break;
                    case "--cache-type": o.CacheTypeK = o.CacheTypeV = Next(); break;
                    case "--cache-type-k": o.CacheTypeK = Next(); break;
                    case "--cache-type-v": o.CacheTypeV = Next(); break;
                    case "--json": o.Json = true; break;
                    case "--kernels": o.Kernels = true; break;
                    case "--dot-kernels": o.DotKernels = true; break;
                    case "--kquant-avx512": o.KQuantAvx512 = true; break;
                    case "--decode-bandwidth": o.DecodeBandwidth = true; break;
                    case "--avx512-vs-avx2": o.Avx512VsAvx2 = true; break;
                    case "--kernel-paths": o.KernelPaths = true; break;
                    case "--attention": o.AttentionKernels = true; break;
                    case "--attention-rows": o.AttentionRows = true; break;
                    case "--fused-projections": o.FusedProjections = true; break;
                    case "--batched": o.Batched = true; break;
                    case "--kv-unified": o.KvUnified = true; break;
                    case "--no-kv-unified": o.KvUnified = false; break;
                    case "--streams":
                        o.Streams = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                            .Select(x => int.TryParse(x, out int v) && v > 0 ? v : throw new ArgumentException($"--streams needs positive integers, not {x}")).ToArray();
                        if (o.Streams.Length == 0) throw new ArgumentException("--streams needs at least one count");
                        break;
                    case "--latent-attention": o.LatentAttention = true; break;
                    case "--quick": quick = true; break;
                    case "--engine": o.Engine = Next(); break;
                    case "--model": o.Model = Next(); break;
                    case "--out": o.Out = Next(); break;
                    case "-h" or "--help":
                        Console.WriteLine("""
                            usage: OpenWeights.Bench [--models DIR] [--presets a,b] [--types q8_0,q4_0,q4_k_m,f16] [--threads 2]
                                                     [--prompt 512] [--gen 128] [--reps 3] [--json] [--quick] [--out FILE]
                                                     [--ctx N] [--cache-type f16|f32|q8_0] [--cache-type-k T] [--cache-type-v T]
                                   OpenWeights.Bench --engine ours|llamacpp --model FILE [--threads N] [--prompt N] [--gen N] [--ctx N] [--cache-type-k T] [--cache-type-v T]
                                   OpenWeights.Bench --kernels [--threads N]   (WeightMatrix.MatMul per weight type)
                                   OpenWeights.Bench --dot-kernels              (Q8_K row dot kernels, ours vs ggml's, 1 thread)
                                   OpenWeights.Bench --kquant-avx512 [--threads N] (Q4_K / Q6_K MatMul, Llama-3.2-1B shapes, AVX-512 vs AVX2)
                                   OpenWeights.Bench --kernel-paths [--threads N] (AVX-512 vs AVX2 kernels, SmolLM2-135M shapes)
                                   OpenWeights.Bench --attention [--threads N]  (Attention.Causal over F32 / F16 / Q8_0 KV caches)
                                   OpenWeights.Bench --attention-rows [--threads N] (query rows per kernel pass: 1 vs several, prefill and decode at 4k / 16k keys)
                                   OpenWeights.Bench --fused-projections --model FILE [--threads N] (decode: Q/K/V and gate/up as one dispatch vs one each)
                                   OpenWeights.Bench --decode-bandwidth [--threads N] (one-token MatMul out of cache: GB/s against a plain read)
                                   OpenWeights.Bench --avx512-vs-avx2 --model FILE [--threads N] [--prompt N] [--gen N] [--reps N]
                                                     (prefill and decode, our AVX-512 vs AVX2 kernels, alternated in one process)
                                   OpenWeights.Bench --batched [--model FILE] [--streams 1,4,16,32] [--prompt N] [--gen N] [--threads N] [--reps N] [--json]
                                                     [--kv-unified | --no-kv-unified]   (llama.cpp's kv_unified; default: its own)
                                                     (N sequences decoding together: aggregate decode tok/s, ours vs llama.cpp; default model:
                                                      the first of --presets/--types in --models)
                                   OpenWeights.Bench --latent-attention [--threads N] (DeepSeek-V2-Lite's absorbed decode: per head vs LatentDecode)
                            """);
                        Environment.Exit(0);
                        break;
                    default: throw new ArgumentException($"unknown option {a} (see --help)");
                }
            }
            if (quick)
            {
                o.Presets = ["smollm2-135m"]; o.Types = ["q8_0"];
                o.Prompt = 64; o.Gen = 32; o.Reps = 1;
            }
            if (prompt is { } p) o.Prompt = p;
            if (gen is { } g) o.Gen = g;
            if (reps is { } r) o.Reps = r;
            if (o.Engine is not null and not ("ours" or "llamacpp")) throw new ArgumentException($"--engine must be ours or llamacpp, not {o.Engine}");
            if (o.Engine is not null && o.Model is null) throw new ArgumentException("--engine needs --model FILE");
            foreach (var p2 in o.Presets) SynthPreset.Get(p2);
            foreach (var t in o.Types) SynthType.Parse(t);
            _ = o.CacheTypes; // unknown cache types fail here, with the accepted values named
            if (o.Context > 0 && o.Context < o.Prompt + o.Gen) throw new ArgumentException($"--ctx {o.Context} is less than --prompt {o.Prompt} + --gen {o.Gen}");
            return o;
        }

        private static string FindRepoRoot()
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx"))) return d.FullName;
            return Directory.GetCurrentDirectory();
        }
    }

    /// <summary>
    /// What one child process reports (one JSON line on stdout). Kernels: ours only, the kernel path that ran in that
    /// process (<see cref="OpenWeights.Tensors.Kernels.QuantDot.KernelPath"/>: "avx512", "avx2" or "scalar").
    /// </summary>
    public sealed record EngineResult(
        string Engine, double LoadSeconds, double PrefillTokensPerSecond, double DecodeTokensPerSecond, long PeakRssBytes, string? Info,
        string? Kernels = null);

    public static class Json
    {
        public static readonly JsonSerializerOptions Options = new()
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            WriteIndented = false,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
    }

    /// <summary>One engine, one model, one timed pass, in this process.</summary>
    public static class Child
    {
        public static int Run(BenchOptions o)
        {
            var r = o.Engine == "ours" ? Ours(o) : LlamaCppEngine.Run(o);
            Console.Out.WriteLine(JsonSerializer.Serialize(r, Json.Options));
            return 0;
        }

        private static EngineResult Ours(BenchOptions o)
        {
            // the AVX2 kernels with AVX-512 still visible to the JIT (DOTNET_EnableAVX512=0 hides it from all code)
            if (Environment.GetEnvironmentVariable("OPENWEIGHTS_BENCH_AVX512_KERNELS") == "0") OpenWeights.Tensors.Kernels.QuantDot.UseAvx512 = false;
            var sw = Stopwatch.StartNew();
            using var m = DecoderModel.Load(o.Model!);
            var session = new InferenceSession(m, o.ContextSize, o.Threads, Math.Min(o.Prompt, 512), o.CacheTypes);
            double load = sw.Elapsed.TotalSeconds;
            var ids = SpeedTest.PromptTokens(o.Prompt, m.Config.VocabSize);
            SpeedTest.WarmUp(session, ids);
            var s = SpeedTest.Run(session, ids, o.Gen);
            return new EngineResult("ours", load, s.PrefillTokensPerSecond, s.DecodeTokensPerSecond, SpeedTest.PeakMemoryBytes(),
                m.Config.ExpertCount > 0 ? ExpertBytesPerDecodeToken(m, session, ids, Math.Min(16, o.Gen)) : null, OpenWeights.Tensors.Kernels.QuantDot.KernelPath);
        }

        /// <summary>
        /// Mixture of experts: the expert weight bytes one decode step actually read, measured by the engine's counter
        /// (<see cref="DecoderModel.ExpertBytesRead"/>) over <paramref name="steps"/> greedy steps after the prompt, against the
        /// bytes of k routed experts per MoE layer. Outside the timed pass.
        /// </summary>
        private static string ExpertBytesPerDecodeToken(DecoderModel m, InferenceSession session, int[] prompt, int steps)
        {
            session.Reset();
            int next = Sampler.ArgMax(session.EvaluatePrompt(prompt));
            long before = m.ExpertBytesRead;
            Span<int> one = stackalloc int[1];
            for (int i = 0; i < steps; i++) { one[0] = next; next = Sampler.ArgMax(session.Evaluate(one)); }
            double measured = (m.ExpertBytesRead - before) / (double)steps;
            long routed = m.Layers.Sum(l => l.Experts is { } e ? (long)e.Used * e.BytesPerExpert : 0);
            long all = m.Layers.Sum(l => l.Experts is { } e ? (long)e.Count * e.BytesPerExpert : 0);
            return $"expert bytes read per decode token {measured / 1e6:F1} MB (k routed experts: {routed / 1e6:F1} MB, all experts: {all / 1e6:F1} MB)";
        }
    }

    public sealed record Row(
        string Preset, string Type, long FileBytes, long WeightBytesPerToken, long OursKvBytesPerToken, long LlamaKvBytesPerToken,
        EngineResult? Ours, EngineResult? LlamaCpp, string? Error)
    {
        public double? PrefillRatio => Ours is null || LlamaCpp is null ? null : Ours.PrefillTokensPerSecond / LlamaCpp.PrefillTokensPerSecond;
        public double? DecodeRatio => Ours is null || LlamaCpp is null ? null : Ours.DecodeTokensPerSecond / LlamaCpp.DecodeTokensPerSecond;
        public long OursBytesPerToken => WeightBytesPerToken + OursKvBytesPerToken;
        public long LlamaBytesPerToken => WeightBytesPerToken + LlamaKvBytesPerToken;
    }

    public sealed record Report(
        string Cpu, int Cores, long MemoryBytes, string Dotnet, string LlamaCpp, string? LlamaCppSystemInfo, string Commit, string Command,
        int Threads, int Prompt, int Gen, int Reps, double BandwidthGBps, List<Row> Rows);

    /// <summary>The parent: prepares models, measures bandwidth, runs the children alternately, prints the table.</summary>
    public static class Driver
    {
        public static int Run(BenchOptions o)
        {
            Directory.CreateDirectory(o.ModelsDir);
            var models = new List<(string Preset, string Type)>();
            foreach (var p in o.Presets)
                foreach (var t in o.Types)
                    models.Add((p, t));

            Log($"measuring read bandwidth ({o.Threads} threads, 1 GiB, best of 3)...");
            double bw = HardwareProbe.MeasureReadBandwidthGBps(1L << 30, 3, o.Threads);
            GC.Collect();
            Log($"read bandwidth {bw:F1} GB/s");

            string? sysInfo = null;
            var rows = new List<Row>();
            foreach (var (preset, type) in models)
            {
                var path = EnsureModel(o.ModelsDir, preset, type, Math.Max(o.Context, o.Prompt + o.Gen)); // generated when first needed, so measuring starts early
                var (weights, oursKv, llamaKv) = BytesPerToken(path, o.Prompt, o.Gen, o.CacheTypes);
                EngineResult? bestOurs = null, bestLlama = null;
                string? error = null;
                for (int rep = 0; rep < o.Reps && error is null; rep++)
                {
                    string[] order = rep % 2 == 0 ? ["ours", "llamacpp"] : ["llamacpp", "ours"];
                    foreach (var engine in order)
                    {
                        var (r, err) = RunChild(o, engine, path);
                        if (r is null) { error = $"{engine}: {err}"; Log($"{preset} {type} {engine} rep {rep + 1}: FAILED {err}"); break; }
                        Log($"{preset} {type} {engine,-8} rep {rep + 1}/{o.Reps}: prefill {r.PrefillTokensPerSecond,8:F1} tok/s  decode {r.DecodeTokensPerSecond,7:F2} tok/s  peak RSS {r.PeakRssBytes / 1e6,7:F0} MB{(engine == "ours" && r.Info is not null ? "; " + r.Info : "")}");
                        if (engine == "ours") bestOurs = Best(bestOurs, r); else { bestLlama = Best(bestLlama, r); sysInfo ??= r.Info; }
                    }
                }
                rows.Add(new Row(preset, type, new FileInfo(path).Length, weights, oursKv, llamaKv, bestOurs, bestLlama, error));
                if (o.Out is not null) File.WriteAllText(o.Out, Markdown(MakeReport(o, bw, sysInfo, rows)));
            }

            var report = MakeReport(o, bw, sysInfo, rows);
            if (o.Out is not null) File.WriteAllText(o.Out, Markdown(report));
            if (o.Json) Console.Out.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions(Json.Options) { WriteIndented = true }));
            else Console.Out.Write(Markdown(report));
            return rows.Any(r => r.Error is not null) ? 1 : 0;
        }

        private static Report MakeReport(BenchOptions o, double bw, string? sysInfo, List<Row> rows) => new(Cpu(), Environment.ProcessorCount, TotalMemory(), RuntimeInformation.FrameworkDescription,
                "LLamaSharp 0.30.0 + LLamaSharp.Backend.Cpu 0.30.0", sysInfo, GitCommit(),
                "dotnet bench/OpenWeights.Bench/bin/Release/net10.0/OpenWeights.Bench.dll " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
                o.Threads, o.Prompt, o.Gen, o.Reps, bw, [.. rows]);

        private static EngineResult Best(EngineResult? a, EngineResult b) => a is null ? b : a with
        {
            LoadSeconds = Math.Min(a.LoadSeconds, b.LoadSeconds),
            PrefillTokensPerSecond = Math.Max(a.PrefillTokensPerSecond, b.PrefillTokensPerSecond),
            DecodeTokensPerSecond = Math.Max(a.DecodeTokensPerSecond, b.DecodeTokensPerSecond),
            PeakRssBytes = Math.Max(a.PeakRssBytes, b.PeakRssBytes),
        };

        public static void Log(string s) { Console.Error.WriteLine($"[{DateTime.UtcNow:HH:mm:ss}] {s}"); Console.Error.Flush(); }

        /// <summary>The preset's file in <paramref name="dir"/>, written when missing. A context beyond the preset's trained one
        /// (SmolLM2-135M: 8,192) gets a file whose context_length is 131,072 or the next power of two above (name suffix -ctxN, one file for 16k and 32k rows): both engines
        /// refuse or clamp a context above it, and the long-context rows measure speed, not quality.</summary>
        internal static string EnsureModel(string dir, string preset, string type, int context = 0)
        {
            var shape = SynthPreset.Get(preset);
            string suffix = "";
            if (context > shape.ContextLength)
            {
                shape = shape with { ContextLength = Math.Max(1 << 17, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)context)) };
                suffix = $"-ctx{shape.ContextLength}";
            }
            var path = Path.Combine(dir, $"{preset}-{type}{suffix}.gguf");
            if (File.Exists(path)) return path;
            // another process (e.g. `openweights synth -o X.tmp.gguf && mv`) may be writing it: wait for that
            var other = path + ".tmp.gguf";
            for (var wait = Stopwatch.StartNew(); File.Exists(other) && wait.Elapsed < TimeSpan.FromMinutes(20) && !File.Exists(path);)
                Thread.Sleep(2000);
            if (File.Exists(path)) return path;
            Log($"generating {path}...");
            var sw = Stopwatch.StartNew();
            var tmp = path + ".tmp";
            SyntheticModel.Write(shape, SynthType.Parse(type), tmp);
            File.Move(tmp, path, overwrite: true);
            Log($"generated {path} ({new FileInfo(path).Length / 1e6:F0} MB) in {sw.Elapsed.TotalSeconds:F0} s");
            return path;
        }

        /// <summary>
        /// Bytes a decode step must read: every weight tensor once (the token embedding only one row, unless it is
        /// also the tied output projection; of a mixture of experts' stacked expert tensors only the k routed experts: the
        /// active parameters), plus K and V of every past position at the average decode position
        /// (prompt + gen/2), both engines in the same cache types (<paramref name="types"/>).
        /// </summary>
        public static (long Weights, long OursKv, long LlamaKv) BytesPerToken(string path, int prompt, int gen, OpenWeights.Models.Common.KvCacheTypes types)
        {
            using var f = GgufFile.Open(path);
            long weights = 0;
            bool hasOutput = f.TryGetTensor("output.weight", out _);
            var c = ModelConfig.FromGguf(f);
            foreach (var t in f.Tensors)
            {
                if (t.Name == "token_embd.weight")
                    weights += (hasOutput ? 0 : t.ByteSize) + t.ByteSize / Math.Max(1, t.RowCount);
                else if (t.Dimensions.Length == 3 && c.ExpertCount > 1 && t.Dimensions[2] == c.ExpertCount)
                    weights += t.ByteSize / c.ExpertCount * c.ExpertsUsed; // stacked experts: a token reads its k routed ones
                else weights += t.ByteSize;
            }
            long positions = prompt + gen / 2;
            long kv = c.Layers * positions * (c.Mla is null
                ? OpenWeights.Models.Common.KvCacheTypes.Bytes(types.K, c.KvDim) + OpenWeights.Models.Common.KvCacheTypes.Bytes(types.V, c.KvDim)
                : OpenWeights.Models.Common.KvCacheTypes.Bytes(types.K, c.KvDim));
            return (weights, kv, kv);
        }

        private static (EngineResult?, string?) RunChild(BenchOptions o, string engine, string model) =>
            ChildRun.Json<EngineResult>(["--engine", engine, "--model", model, "--threads", o.Threads.ToString(), "--prompt", o.Prompt.ToString(), "--gen", o.Gen.ToString(),
                "--ctx", o.ContextSize.ToString(), "--cache-type-k", o.CacheTypeK, "--cache-type-v", o.CacheTypeV]);

        private static string Markdown(Report r)
        {
            var sb = new StringBuilder();
            sb.AppendLine($"Machine: {r.Cpu}, {r.Cores} cores, {r.MemoryBytes / 1e9:F1} GB RAM; {r.Dotnet}; llama.cpp = {r.LlamaCpp}");
            if (r.LlamaCppSystemInfo is { } si) sb.AppendLine($"llama.cpp system info: {si}");
            sb.AppendLine($"Commit {r.Commit}; {r.Threads} threads; prompt {r.Prompt} tokens; decode {r.Gen} tokens; best of {r.Reps} (engines alternated, each run in its own process); read bandwidth {r.BandwidthGBps:F1} GB/s");
            sb.AppendLine();
            sb.AppendLine("| model | type | ours prefill tok/s | llama.cpp prefill tok/s | prefill ratio | ours decode tok/s | llama.cpp decode tok/s | decode ratio | our peak RSS MB | llama.cpp peak RSS MB | bytes/token MB (ours / llama.cpp) | % of bandwidth limit (ours / llama.cpp) |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var x in r.Rows)
            {
                string F(double? v, string fmt) => v is { } d ? d.ToString(fmt, CultureInfo.InvariantCulture) : "—";
                double? Pct(EngineResult? e, long bytes) => e is null ? null : 100 * e.DecodeTokensPerSecond * bytes / (r.BandwidthGBps * 1e9);
                sb.Append($"| {x.Preset} | {x.Type} ");
                sb.Append($"| {F(x.Ours?.PrefillTokensPerSecond, "F1")} | {F(x.LlamaCpp?.PrefillTokensPerSecond, "F1")} | {F(x.PrefillRatio, "F2")}× ");
                sb.Append($"| {F(x.Ours?.DecodeTokensPerSecond, "F2")} | {F(x.LlamaCpp?.DecodeTokensPerSecond, "F2")} | {F(x.DecodeRatio, "F2")}× ");
                sb.Append($"| {F(x.Ours?.PeakRssBytes / 1e6, "F0")} | {F(x.LlamaCpp?.PeakRssBytes / 1e6, "F0")} ");
                sb.Append($"| {x.OursBytesPerToken / 1e6:F1} / {x.LlamaBytesPerToken / 1e6:F1} ");
                sb.Append($"| {F(Pct(x.Ours, x.OursBytesPerToken), "F0")}% / {F(Pct(x.LlamaCpp, x.LlamaBytesPerToken), "F0")}% |");
                if (x.Error is not null) sb.Append($" error: {x.Error}");
                sb.AppendLine();
            }
            foreach (var x in r.Rows.Where(x => x.Ours?.Info is not null))
                sb.AppendLine($"- {x.Preset} {x.Type}, ours: {x.Ours!.Info}");
            return sb.ToString();
        }

        private static string Cpu()
        {
            try
            {
                foreach (var l in File.ReadLines("/proc/cpuinfo"))
                    if (l.StartsWith("model name", StringComparison.Ordinal)) return l[(l.IndexOf(':') + 1)..].Trim();
            }
            catch (IOException) { }
            return RuntimeInformation.ProcessArchitecture.ToString();
        }

        private static long TotalMemory() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

        internal static string GitCommit()
        {
            try
            {
                var psi = new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = Process.Start(psi)!;
                var s = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                if (p.ExitCode != 0) return "unknown";
                using var d = Process.Start(new ProcessStartInfo("git", "status --porcelain --untracked-files=no") { RedirectStandardOutput = true })!;
                bool dirty = d.StandardOutput.ReadToEnd().Trim().Length > 0;
                d.WaitForExit();
                return dirty ? s + "+dirty" : s;
            }
            catch (System.ComponentModel.Win32Exception) { return "unknown"; }
        }
    }
}
