using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OpenWeights.Server;

/// <summary>
/// The model's loading, for readiness: loading, ready, or failed. With <see cref="ServerOptions.LoadInBackground"/> the
/// server listens at once and loads the model meanwhile; until it is ready every request but the probes is a 503
/// (<c>model_loading</c>), <c>GET /health</c> (readiness) says <c>{"status":"loading"}</c> with 503, and
/// <c>GET /livez</c> (liveness) says the process is up. A failed load leaves both probes at 503 (<c>failed</c>), so an
/// orchestrator restarts the replica. Without background loading the server only listens once the model is loaded.
/// </summary>
public sealed class ModelLoad
{
    private Task<ModelHost>? task;

    /// <summary>The probes, answered whether or not the model is loaded.</summary>
    public static bool IsProbe(string path) => path is "/health" or "/livez";

    /// <summary>Starts watching a load (the task that resolves the host).</summary>
    internal void Begin(Task<ModelHost> load) => task = load;

    public bool IsReady => task is { IsCompletedSuccessfully: true };

    /// <summary>Why the load failed; null while loading or once loaded.</summary>
    public Exception? Failure => task is { IsFaulted: true } t ? t.Exception!.GetBaseException() : null;

    /// <summary>The loaded host; null until it is ready.</summary>
    public ModelHost? Host => IsReady ? task!.Result : null;

    /// <summary>
    /// Loads the model (resolving <see cref="ModelHost"/>): in the calling thread, or, with background loading, on a thread
    /// of its own while the server already answers the probes. A failed background load is logged.
    /// </summary>
    internal static ModelLoad Start(IApplicationBuilder app)
    {
        var services = app.ApplicationServices;
        var load = services.GetRequiredService<ModelLoad>();
        if (services.GetService<ModelRouter>() is not null) // several models: each loads on first use (ModelRouter)
        {
            load.Begin(Task.FromResult<ModelHost>(null!));
            return load;
        }
        if (!services.GetRequiredService<ServerOptions>().LoadInBackground)
        {
            load.Begin(Task.FromResult(services.GetRequiredService<ModelHost>()));
            return load;
        }
        var logger = services.GetService<ILoggerFactory>()?.CreateLogger("OpenWeights.Server");
        load.Begin(Task.Run(() =>
        {
            try { return services.GetRequiredService<ModelHost>(); }
            catch (Exception e) { logger?.LogError(e, "loading the model failed"); throw; }
        }));
        return load;
    }

    /// <summary>Until the model is ready, every request but the probes and the chat page is a 503 in the request's API shape.</summary>
    internal static IApplicationBuilder UseReadinessGate(IApplicationBuilder app, ModelLoad load) => app.Use((ctx, next) =>
    {
        if (load.IsReady || IsProbe(ctx.Request.Path.Value ?? "") || ChatPage.IsPublic(ctx.Request)) return next(ctx);
        if (load.Failure is { } e)
            throw new ApiException(503, $"the model failed to load: {OpenAiRequest.Printable(e.Message, 300)}", code: "model_load_failed");
        ctx.Response.Headers.RetryAfter = "5";
        throw new ApiException(503, "the model is still loading; retry when GET /health answers 200", code: "model_loading");
    });

    /// <summary>GET /health (readiness: 200 once the model serves) and GET /livez (liveness: 200 unless the load failed).</summary>
    internal static void MapProbes(Microsoft.AspNetCore.Routing.IEndpointRouteBuilder app)
    {
        app.MapGet("/health", (ModelLoad load) => load.Host is { } h
            ? Results.Json(new { status = "ok", model = h.ModelId, slots = h.Scheduler.Parallel, slots_active = h.Scheduler.ActiveSlots, queue = h.Scheduler.QueueDepth })
            : load.Failure is { } e ? Results.Json(new { status = "failed", error = OpenAiRequest.Printable(e.Message, 300) }, statusCode: 503)
            : Results.Json(new { status = "loading" }, statusCode: 503));
        app.MapGet("/livez", (ModelLoad load) => load.Failure is { } e
            ? Results.Json(new { status = "failed", error = OpenAiRequest.Printable(e.Message, 300) }, statusCode: 503)
            : Results.Json(new { status = "alive", model_ready = load.IsReady }));
    }
}
