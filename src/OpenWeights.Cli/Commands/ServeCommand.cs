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
        var model = CommonOptions.Model();
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
        var lora = CommonOptions.Lora();
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var audit = new CliAudit();
        var cmd = new Command("serve", "Serve a model over HTTP: the OpenAI API, with the Anthropic Messages and Ollama APIs beside it")
        {
            model, host, port, apiKey, parallel, queue, template, alias, shutdown, logFormat, threads, ctx, lora, cacheK, cacheV,
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
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            if (pr.GetValue(audit.Content) && pr.GetValue(audit.File) is null) throw new OpenWeightsException("--audit-content needs --audit FILE");
            var options = new ServerOptions
            {
                ModelPath = path, ModelId = pr.GetValue(alias), Host = bind, Port = p, ApiKey = key,
                Parallel = np, MaxQueue = pr.GetValue(queue), ContextSize = pr.GetValue(ctx), Threads = pr.GetValue(threads),
                ChatTemplate = ChatCommand.ReadTemplate(pr.GetValue(template)),
                Loras = pr.GetValue(lora) ?? [], CacheTypes = CommonOptions.CacheTypes(pr, cacheK, cacheV),
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
            if (load.Host is not { } hostInfo) { await app.StopAsync(CancellationToken.None); err.WriteLine("stopped"); return 0; } // stopped while loading
            output.WriteLine($"serving {hostInfo.ModelId} on {url}/v1 ({np} slots, context {hostInfo.Scheduler.ContextSize}){(key is null ? "" : ", API key required")}; Ctrl-C stops");
            output.Flush();
            try { await Task.Delay(Timeout.Infinite, stop.Token); } catch (OperationCanceledException) { }
            await app.StopAsync(CancellationToken.None);
            err.WriteLine("stopped");
            return 0;
        });
        return cmd;
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
