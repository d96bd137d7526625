using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace OpenWeights.Server;

/// <summary>
/// Which model and adapter a request runs on, decided before its endpoint runs, from the body's <c>model</c> field (and
/// <c>adapter</c>): with several models (<see cref="ModelRouter"/>) the model is loaded if need be and held for the request;
/// with one, <c>model: "MODEL:ADAPTER"</c> or <c>adapter: "ADAPTER"</c> holds that adapter for the request (its jobs' rows take
/// it), any other model name being served by the one model as before. The endpoints receive the host through
/// <see cref="ModelHost.BindAsync"/> and the adapter through <see cref="AdapterLease.IdOf"/>.
/// </summary>
public static class RequestRouting
{
    internal static IApplicationBuilder UseRequestRouting(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        var router = ctx.RequestServices.GetService<ModelRouter>();
        if (router is not null && await router.TryAnswerAsync(ctx)) return;
        string path = ctx.Request.Path.Value ?? "";
        bool post = HttpMethods.IsPost(ctx.Request.Method);
        if (path.StartsWith("/v1/adapters", StringComparison.Ordinal) || path is "/v1/load_lora_adapter" or "/v1/unload_lora_adapter" || !post)
        {
            if (router is not null && path.Contains("adapter", StringComparison.Ordinal))
                throw new ApiException(400, "per-request adapters need single-model serving (this server routes among several models)", code: "adapters_unavailable");
            if (router is not null && router.Loaded is [var only]) ctx.Items[ModelHost.ItemKey] = only; // GET /metrics and the like: the one loaded model
            await next(ctx);
            return;
        }
        var (model, adapter) = await PeekAsync(ctx, path.StartsWith("/api/", StringComparison.Ordinal));
        ModelLease? modelLease = null;
        AdapterLease? adapterLease = null;
        try
        {
            if (router is not null)
            {
                if (adapter is not null) throw new ApiException(400, "per-request adapters need single-model serving (this server routes among several models)", "adapter", "adapters_unavailable");
                modelLease = await router.AcquireAsync(model, ctx.RequestAborted);
                ctx.Items[ModelHost.ItemKey] = modelLease.Host;
            }
            else if (ctx.RequestServices.GetService<ModelHost>() is { } host)
            {
                if (adapter is not null) adapterLease = host.Adapters.Acquire(adapter);
                else if (model is not null && model.LastIndexOf(':') is > 0 and var i)
                {
                    string suffix = model[(i + 1)..];
                    // "MODEL:ADAPTER"; an unknown suffix after this model's own name is a missing adapter (but Ollama's ":latest")
                    if (host.Adapters.Contains(suffix) || (suffix != "latest" && host.IsModel(model[..i]) && model[..i].Length > 0))
                        adapterLease = host.Adapters.Acquire(suffix);
                }
                if (adapterLease is not null && path is "/v1/embeddings" or "/api/embed" or "/api/embeddings")
                    throw new ApiException(400, $"the adapter '{adapterLease.Name}' applies to generation only; embeddings come from the base model (name it without the adapter)", "model", "adapter_not_supported");
                if (adapterLease is not null) ctx.Items[AdapterLease.ItemKey] = adapterLease;
            }
            await next(ctx);
        }
        finally
        {
            adapterLease?.Dispose();
            modelLease?.Dispose();
        }
    });

    // the body's top-level "model" (Ollama: or "name") and "adapter" strings; the body is left to be read again
    private static async Task<(string? Model, string? Adapter)> PeekAsync(HttpContext ctx, bool ollama)
    {
        ctx.Request.EnableBuffering();
        string? model = null, adapter = null;
        try
        {
            using var doc = await JsonDocument.ParseAsync(ctx.Request.Body, default, ctx.RequestAborted);
            if (doc.RootElement.ValueKind == JsonValueKind.Object)
            {
                var root = doc.RootElement;
                if (root.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.String) model = m.GetString();
                else if (ollama && root.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String) model = n.GetString();
                if (root.TryGetProperty("adapter", out var a) && a.ValueKind == JsonValueKind.String && a.GetString() is { Length: > 0 } s) adapter = s;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            model = adapter = null; // malformed JSON, invalid UTF-8 or lone surrogates: the endpoint answers them (400)
        }
        ctx.Request.Body.Position = 0;
        return (model, adapter);
    }

    /// <summary>
    /// POST /v1/adapters {name, path} loads an adapter (path: a GGUF LoRA file or PEFT folder on the server, FILE[:SCALE]),
    /// GET /v1/adapters lists them, DELETE /v1/adapters/{name} unloads one (409 while requests use it); vLLM's
    /// /v1/load_lora_adapter {lora_name, lora_path} and /v1/unload_lora_adapter {lora_name} do the same.
    /// </summary>
    public static IEndpointRouteBuilder MapAdapters(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/adapters", (ModelHost h) => Results.Text(new JsonObject { ["object"] = "list", ["data"] = h.Adapters.ToJson() }.ToJsonString(), "application/json"));
        app.MapPost("/v1/adapters", async (HttpContext ctx, ModelHost h) =>
        {
            var (name, path) = await ReadPair(ctx, "name", "path");
            h.Adapters.Load(name, path);
            return Results.Text(Entry(h, name).ToJsonString(), "application/json", statusCode: 201);
        });
        app.MapDelete("/v1/adapters/{name}", (string name, ModelHost h) =>
        {
            h.Adapters.Unload(name);
            return Results.Text(new JsonObject { ["name"] = name, ["object"] = "adapter", ["deleted"] = true }.ToJsonString(), "application/json");
        });
        app.MapPost("/v1/load_lora_adapter", async (HttpContext ctx, ModelHost h) =>
        {
            var (name, path) = await ReadPair(ctx, "lora_name", "lora_path");
            h.Adapters.Load(name, path);
            return Results.Text(Entry(h, name).ToJsonString(), "application/json");
        });
        app.MapPost("/v1/unload_lora_adapter", async (HttpContext ctx, ModelHost h) =>
        {
            var (name, _) = await ReadPair(ctx, "lora_name", null);
            h.Adapters.Unload(name);
            return Results.Text(new JsonObject { ["name"] = name, ["object"] = "adapter", ["deleted"] = true }.ToJsonString(), "application/json");
        });
        return app;
    }

    private static JsonNode Entry(ModelHost h, string name) =>
        h.Adapters.ToJson().FirstOrDefault(e => (string?)e!["name"] == name)?.DeepClone() ?? new JsonObject { ["name"] = name };

    private static async Task<(string Name, string Path)> ReadPair(HttpContext ctx, string nameKey, string? pathKey)
    {
        JsonNode? body;
        try { body = await JsonNode.ParseAsync(ctx.Request.Body, cancellationToken: ctx.RequestAborted); }
        catch (JsonException e) { throw new ApiException(400, $"the body is not JSON: {e.Message}", code: "invalid_json"); }
        string Field(string key) => body is JsonObject o && o[key] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0 ? s
            : throw new ApiException(400, $"'{key}' (a non-empty string) is required", key, "missing_required_parameter");
        return (Field(nameKey), pathKey is null ? "" : Field(pathKey));
    }
}
