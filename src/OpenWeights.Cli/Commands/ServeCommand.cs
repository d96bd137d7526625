using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using OpenWeights.Server;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights serve MODEL`: an OpenAI-compatible HTTP server with continuous batching.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var host = new Option<string>("--host") { Description = "Address to bind (default 127.0.0.1: this machine only)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port", DefaultValueFactory = _ => 8080 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' (default: env OPENWEIGHTS_API_KEY, else none)" };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Requests decoded together (slots)", DefaultValueFactory = _ => 4 };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a slot before 429", DefaultValueFactory = _ => 64 };
        var template = new Option<string?>("--chat-template") { Description = "Jinja chat template file (default: the model's own)" };
        var alias = new Option<string?>("--alias") { Description = "Model id clients use (default: the file name)" };
        var threads = CommonOptions.Threads();
        var ctx = CommonOptions.Context();
        var lora = CommonOptions.Lora();
        var cmd = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API")
        {
            model, host, port, apiKey, parallel, queue, template, alias, threads, ctx, lora,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            int p = pr.GetValue(port), np = pr.GetValue(parallel);
            if (p is < 0 or > 65535) throw new OpenWeightsException($"--port {p} must be between 0 and 65535");
            if (np < 1) throw new OpenWeightsException("--parallel must be at least 1");
            var options = new ServerOptions
            {
                ModelPath = path, ModelId = pr.GetValue(alias), Host = pr.GetValue(host)!, Port = p,
                ApiKey = pr.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("OPENWEIGHTS_API_KEY"),
                Parallel = np, MaxQueue = pr.GetValue(queue), ContextSize = pr.GetValue(ctx), Threads = pr.GetValue(threads),
                ChatTemplate = ChatCommand.ReadTemplate(pr.GetValue(template)),
                Loras = pr.GetValue(lora) ?? [],
            };
            await using var app = OpenWeightsServer.Build(options);
            await app.StartAsync(ct);
            var hostInfo = app.Services.GetService(typeof(ModelHost)) as ModelHost;
            pr.InvocationConfiguration.Output.WriteLine($"serving {hostInfo?.ModelId} on http://{options.Host}:{p}/v1 ({np} slots, context {hostInfo?.Scheduler.ContextSize}){(options.ApiKey is null ? "" : ", API key required")}; Ctrl-C stops");
            try { await Task.Delay(Timeout.Infinite, ct); } catch (OperationCanceledException) { }
            await app.StopAsync(CancellationToken.None);
            return 0;
        });
        return cmd;
    }
}
