using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using OpenWeights.Server;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights serve MODEL`: an OpenAI-compatible HTTP server with continuous batching.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Argument<string[]>("model")
        {
            Description = "A GGUF file, a Hugging Face checkpoint folder, or a catalog id / org/name[:QUANT] in the local store; several: routed by the request's model field (the file name without extension)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var modelsDir = new Option<string?>("--models-dir") { Description = "Serve every .gguf file of this folder, routed by the request's model field (file name without extension), each loaded on first use" };
        var idleUnload = new Option<double?>("--idle-unload") { Description = "Several models: unload a model after this many seconds without requests" };
        var memoryBudget = new Option<string?>("--memory-budget") { Description = "Several models: memory the loaded models may take together, by the fit estimator (bytes, or 512M, 8G; default: the RAM available at start)" };
        var host = new Option<string>("--host") { Description = "Address to bind (default 127.0.0.1: this machine only)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' (Anthropic clients: x-api-key) (default: env OPENWEIGHTS_API_KEY, else none)" };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Requests decoded together (slots)", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a slot before 429", DefaultValueFactory = _ => 64 };
        var template = new Option<string?>("--chat-template") { Description = "Jinja chat template file (default: the model's own)" };
        var alias = new Option<string?>("--alias") { Description = "Model id clients use (default: the file name)" };
        var shutdown = new Option<double>("--shutdown-timeout") { Description = "Seconds running replies may go on after Ctrl-C/SIGTERM before they are ended", DefaultValueFactory = _ => 10 };
        var logFormat = new Option<string>("--log-format") { Description = "Access log on stderr, one line per request: text or json", DefaultValueFactory = _ => "text" };
        logFormat.AcceptOnlyFromAmong("text", "json");
        var threads = CommonOptions.Threads();
        var ctx = CommonOptions.Context();
        var lora = new Option<string[]>("--lora")
        {
            Description = "LoRA adapter, repeatable: NAME=FILE[:SCALE] is served per request (model \"MODEL:NAME\" or an \"adapter\" field); FILE[:SCALE] alone applies to every request",
            AllowMultipleArgumentsPerToken = false,
        };
        var kvBudget = new Option<string?>("--kv-budget") { Description = "Memory the slots' KV caches may hold together (8G, 512M; default: most of the RAM available at start). A cache takes memory only for the tokens it holds; past the budget, requests wait" };
        var cacheRam = new Option<string?>("--cache-ram") { Description = "Memory for the prompt cache shared across requests (0: off; default: a sixteenth of the available RAM, at most 1G)" };
        var cacheDir = new Option<string?>("--cache-dir") { Description = "Keep the prompt cache in this folder too, so a restart finds it again" };
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var audit = new CliAudit();
        var cmd = new Command("serve", "Serve a model over HTTP: the OpenAI API, with the Anthropic Messages and Ollama APIs beside it")
        {
            model, host, port, apiKey, parallel, queue, template, alias, shutdown, logFormat, threads, ctx, lora, cacheK, cacheV, modelsDir, idleUnload, memoryBudget,
            kvBudget, cacheRam, cacheDir,
        };
        audit.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            var output = pr.InvocationConfiguration.Output;
            var err = pr.InvocationConfiguration.Error;
            int p = pr.GetValue(port), np = pr.GetValue(parallel);
            double grace = pr.GetValue(shutdown);
            if (p is < 0 or > 65535) throw new OpenWeightsException($"--port {p} must be between 0 and 65535");
            if (np < 1) throw new OpenWeightsException("--parallel must be at least 1");
            if (!(grace >= 0 && grace <= 86400)) throw new OpenWeightsException($"--shutdown-timeout {grace} must be between 0 and 86400 seconds");
            string bind = pr.GetValue(host)!;
            string? key = pr.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("OPENWEIGHTS_API_KEY");
            if (ExposureWarning(bind, key, p) is { } warning) err.WriteLine(warning);
            var modelArgs = pr.GetValue(model) ?? [];
            string? dir = pr.GetValue(modelsDir);
            if (modelArgs.Length == 0 && dir is null) throw new OpenWeightsException("serve needs a MODEL (or --models-dir DIR)");
            var paths = modelArgs.Select(CommonOptions.ResolveModel).ToArray();
            var (named, unnamed) = SplitLoras(pr.GetValue(lora) ?? []);
            double? idle = pr.GetValue(idleUnload);
            if (idle is { } i && !(i > 0)) throw new OpenWeightsException($"--idle-unload {i} must be a positive number of seconds");
            if (pr.GetValue(audit.Content) && pr.GetValue(audit.File) is null) throw new OpenWeightsException("--audit-content needs --audit FILE");
            var options = new ServerOptions
            {
                ModelPath = paths.FirstOrDefault() ?? "", ExtraModels = paths.Skip(1).ToArray(), ModelsDir = dir,
                IdleUnload = idle is { } sec ? TimeSpan.FromSeconds(sec) : null, MemoryBudgetBytes = ParseBytes(pr.GetValue(memoryBudget)),
                KvBudgetBytes = ParseBytes(pr.GetValue(kvBudget), "--kv-budget"), PromptCacheBytes = ParseBytes(pr.GetValue(cacheRam), "--cache-ram", allowZero: true),
                PromptCacheDir = pr.GetValue(cacheDir), Adapters = named, ModelId = pr.GetValue(alias), Host = bind, Port = p, ApiKey = key,
                Parallel = np, MaxQueue = pr.GetValue(queue), ContextSize = pr.GetValue(ctx), Threads = pr.GetValue(threads),
                ChatTemplate = ChatCommand.ReadTemplate(pr.GetValue(template)),
                Loras = unnamed, CacheTypes = CommonOptions.CacheTypes(pr, cacheK, cacheV),
                ShutdownTimeout = TimeSpan.FromSeconds(grace),
                AccessLog = err,
                AccessLogFormat = pr.GetValue(logFormat) == "json" ? AccessLogFormat.Json : AccessLogFormat.Text,
                AuditPath = pr.GetValue(audit.File), AuditContent = pr.GetValue(audit.Content),
                LoadInBackground = true, // /livez answers at once, /health once the model serves
            };
            // The first Ctrl-C / SIGTERM stops gracefully; a second one terminates at once (default signal handling).
            // Nothing else may handle them: the host has no ConsoleLifetime (OpenWeightsServer.Build), and System.CommandLine
            // 2.0.0 installs none (its ProcessTerminationTimeout ships null, dotnet/command-line-api#2739). A version with the
            // documented 2 s default would force exit 130/143 two seconds after the signal, cutting the grace period short:
            // then set ProcessTerminationTimeout = null in Cli.Run.
            using var stop = new StopSignal(ct, err, $"stopping: running replies may finish for {grace:0.#} s (Ctrl-C again quits at once)");
            await using var app = OpenWeightsServer.Build(options, callerHandlesSignals: true);
            await app.StartAsync(CancellationToken.None);
            string url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? $"http://{bind}:{p}";
            err.WriteLine($"listening on {url}; loading the model (GET /livez answers now, GET /health once it serves)");
            var load = app.Services.GetRequiredService<ModelLoad>();
            while (!load.IsReady && load.Failure is null && !stop.Token.IsCancellationRequested)
                try { await Task.Delay(50, stop.Token); } catch (OperationCanceledException) { }
            if (load.Failure is { } failure)
            {
                await app.StopAsync(CancellationToken.None);
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure); // reported as a failed load always was
            }
            if (app.Services.GetService<ModelRouter>() is { } router)
                output.WriteLine($"serving {router.Names.Count} models ({string.Join(", ", router.Names)}), each loaded on first use, on {url}/v1 ({np} slots each, memory budget {router.BudgetBytes / (double)(1L << 30):0.##} GiB){(key is null ? "" : ", API key required")}; Ctrl-C stops");
            else if (load.Host is not { } hostInfo) { await app.StopAsync(CancellationToken.None); err.WriteLine("stopped"); return 0; } // stopped while loading
            else output.WriteLine($"serving {hostInfo.ModelId} on {url}/v1 ({np} slots, context {hostInfo.Scheduler.ContextSize}){(key is null ? "" : ", API key required")}; Ctrl-C stops");
            output.Flush();
            try { await Task.Delay(Timeout.Infinite, stop.Token); } catch (OperationCanceledException) { }
            await app.StopAsync(CancellationToken.None);
            err.WriteLine("stopped");
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// `--lora` values: NAME=FILE[:SCALE] (NAME of letters, digits, '.', '_', '-', and the whole not an existing path) is a
    /// per-request adapter; anything else is FILE[:SCALE] applied to every request, as before.
    /// </summary>
    public static (Dictionary<string, string> Named, string[] Unnamed) SplitLoras(IEnumerable<string> values)
    {
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        var unnamed = new List<string>();
        foreach (var v in values)
        {
            if (string.IsNullOrWhiteSpace(v)) throw new OpenWeightsException("--lora needs a file: FILE[:SCALE] or NAME=FILE[:SCALE]");
            int eq = v.IndexOf('=');
            if (eq > 0 && eq < v.Length - 1 && AdapterRegistry.IsValidName(v[..eq]) && !File.Exists(v) && !Directory.Exists(v))
            {
                if (!named.TryAdd(v[..eq], v[(eq + 1)..])) throw new OpenWeightsException($"--lora {v}: the name '{v[..eq]}' is given twice");
            }
            else unnamed.Add(v);
        }
        return (named, [.. unnamed]);
    }

    /// <summary>"8G", "512M", "1.5GiB", "1000000" -> bytes (binary units); null stays null.</summary>
    public static long? ParseBytes(string? s, string flag = "--memory-budget", bool allowZero = false)
    {
        if (string.IsNullOrWhiteSpace(s)) return null;
        var t = s.Trim().ToUpperInvariant().Replace("IB", "").TrimEnd('B');
        long unit = t.EndsWith('K') ? 1L << 10 : t.EndsWith('M') ? 1L << 20 : t.EndsWith('G') ? 1L << 30 : t.EndsWith('T') ? 1L << 40 : 1;
        if (unit > 1) t = t[..^1];
        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || !(v > 0 || (allowZero && v == 0)) || v * unit > long.MaxValue / 2)
            throw new OpenWeightsException($"{flag} {s}: expected a size such as 8G, 512M or a number of bytes{(allowZero ? " (0: off)" : "")}");
        return (long)(v * unit);
    }

    /// <summary>A warning when the server is reachable from other machines and no API key guards it; null otherwise.</summary>
    public static string? ExposureWarning(string host, string? apiKey, int port)
    {
        if (apiKey is { Length: > 0 }) return null;
        System.Net.IPAddress address;
        try { address = OpenWeightsServer.Address(host); }
        catch (OpenWeightsException) { return null; } // the bind reports the bad address
        if (System.Net.IPAddress.IsLoopback(address)) return null;
        return $"openweights: warning: --host {host} accepts connections from other machines and no API key is set: anyone who can reach port {port} can use the model (set --api-key or OPENWEIGHTS_API_KEY)";
    }
}
