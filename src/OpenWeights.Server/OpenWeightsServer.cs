using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace OpenWeights.Server;

/// <summary>Builds the server for one model: the OpenAI API, with the Anthropic Messages and Ollama APIs beside it.</summary>
public static class OpenWeightsServer
{
    /// <summary>Kestrel's share of the shutdown beyond the grace period: time for cut-off streams to write their last chunk.</summary>
    public static readonly TimeSpan ShutdownMargin = TimeSpan.FromSeconds(5);

    /// <summary>Registers the model host (loads the model) and the server's settings.</summary>
    public static IServiceCollection AddOpenWeightsServer(this IServiceCollection services, ServerOptions options)
    {
        if (options.ShutdownTimeout < TimeSpan.Zero) throw new OpenWeightsException($"the shutdown timeout {options.ShutdownTimeout.TotalSeconds} s must be >= 0");
        services.AddSingleton(options);
        if (options.IsMultiModel) services.AddSingleton(_ => new ModelRouter(options)); // several models, loaded on first use
        else services.AddSingleton(_ => new ModelHost(options));
        services.AddSingleton<ModelLoad>();
        services.AddRouting();
        services.Configure<KestrelServerOptions>(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.AddServerHeader = false;
        });
        // stopping waits for running requests: the grace period, then the cut-off streams' last chunks
        services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout + ShutdownMargin);
        return services;
    }

    /// <summary>
    /// The request pipeline: access log and metrics, errors and API key, the readiness gate, then the endpoints (and the
    /// <see cref="ChatPage"/> at /, which needs no key and no loaded model). The model
    /// loads here, before the first request, or meanwhile with <see cref="ServerOptions.LoadInBackground"/> (<see cref="ModelLoad"/>).
    /// </summary>
    public static IApplicationBuilder UseOpenWeightsServer(this IApplicationBuilder app)
    {
        var load = ModelLoad.Start(app);
        app.ApplicationServices.GetService<IHostApplicationLifetime>()?.ApplicationStopping.Register(() =>
        {
            if (load.Host is { } host) host.BeginShutdown(host.Options.ShutdownTimeout);
            app.ApplicationServices.GetService<ModelRouter>()?.BeginShutdown(app.ApplicationServices.GetRequiredService<ServerOptions>().ShutdownTimeout);
        });
        app.UseRequestLog();
        app.UseApiDialects(); // Anthropic, Ollama and Responses paths: their error shapes (and x-api-key)
        app.UseOpenAiErrors();
        ModelLoad.UseReadinessGate(app, load); // 503 until the model serves, but for /health and /livez
        app.UseRequestRouting(); // the request's model (several models) and adapter
        app.UseRouting();
        app.UseEndpoints(e => e.MapChatPage().MapAnthropic().MapOllama().MapResponses().MapAdapters().MapOpenAi());
        return app;
    }

    /// <summary>
    /// A Kestrel server listening on options.Host:options.Port (127.0.0.1 unless told otherwise). Stopping it (StopAsync,
    /// or Ctrl-C/SIGTERM under <c>app.Run()</c>) lets running replies finish for <see cref="ServerOptions.ShutdownTimeout"/>
    /// and then ends them cleanly. With <paramref name="callerHandlesSignals"/> the host installs no signal handlers (no
    /// console lifetime): the caller decides what SIGINT/SIGTERM do and calls StopAsync (`openweights serve` does this); a
    /// host application that calls <c>app.Run()</c> keeps the default, so Ctrl-C still drains the server.
    /// </summary>
    public static WebApplication Build(ServerOptions options, Action<ILoggingBuilder>? logging = null, bool callerHandlesSignals = false)
    {
        var address = System.Net.IPAddress.Parse(ResolveHost(options.Host)); // fails before the model loads
        if (options.Port is < 0 or > 65535) throw new OpenWeightsException($"port {options.Port} must be between 0 and 65535");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        if (callerHandlesSignals) builder.Services.AddSingleton<IHostLifetime, CallerStopsLifetime>();
        builder.Services.AddOpenWeightsServer(options);
        builder.WebHost.UseKestrel(k => k.Listen(address, options.Port));
        var app = builder.Build();
        app.UseOpenWeightsServer();
        return app;
    }

    /// <summary>The address <paramref name="host"/> binds (localhost, *, + or an IP address).</summary>
    public static System.Net.IPAddress Address(string host) => System.Net.IPAddress.Parse(ResolveHost(host));

    private static string ResolveHost(string host) => host switch
    {
        "localhost" => "127.0.0.1",
        "*" or "+" => "0.0.0.0",
        _ when System.Net.IPAddress.TryParse(host, out _) => host,
        _ => throw new OpenWeightsException($"--host {host} must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost"),
    };

    // ASP.NET's default ConsoleLifetime swallows SIGINT/SIGTERM (it only flags the host as stopping, which nobody awaits
    // after StartAsync) and blocks Environment.Exit until the host is disposed; the caller owns the signals instead.
    private sealed class CallerStopsLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
