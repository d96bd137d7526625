using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using OpenWeights.Catalog;
using OpenWeights.Hardware;
using OpenWeights.Models;

namespace OpenWeights.Server;

/// <summary>
/// Several models in one server: each GGUF file of <see cref="ServerOptions.ModelsDir"/> (and each of
/// <see cref="ServerOptions.ExtraModels"/>, with <see cref="ServerOptions.ModelPath"/>) is served under its file name without
/// extension. A model loads on the first request that names it (requests that come meanwhile wait for the same load), is
/// unloaded after <see cref="ServerOptions.IdleUnload"/> without requests (its host disposed: scheduler stopped, file map
/// closed, caches collected), and loads only when the fit estimator's figure for it (weights, KV caches of every slot,
/// runtime) fits the memory budget beside the models already loaded; idle models are unloaded, least recently used first,
/// to make room. A model that cannot fit, even after that, is refused (503, <c>insufficient_memory</c>).
/// </summary>
public sealed class ModelRouter : IDisposable
{
    private sealed class Entry(string name, string path)
    {
        public readonly string Name = name, Path = path;
        public Task<ModelHost>? Load;
        public int InUse;
        public long LastUsed = Stopwatch.GetTimestamp();
        public long? Estimate;
    }

    private readonly ServerOptions options;
    private readonly Dictionary<string, Entry> models = new(StringComparer.Ordinal);
    private readonly object gate = new();
    private readonly Timer? idleTimer;
    private readonly OpenWeights.Audit.AuditLog? audit; // one log for every model (serve --audit): one chain
    private bool disposed;

    /// <summary>The memory the loaded models may take together (bytes).</summary>
    public long BudgetBytes { get; }
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public ModelRouter(ServerOptions options)
    {
        this.options = options;
        if (options.Adapters.Count > 0) throw new OpenWeightsException("named adapters (--lora NAME=PATH) need single-model serving");
        var paths = new List<string>();
        if (!string.IsNullOrEmpty(options.ModelPath)) paths.Add(options.ModelPath);
        paths.AddRange(options.ExtraModels);
        if (options.ModelsDir is { } dir)
        {
            if (!Directory.Exists(dir)) throw new OpenWeightsException($"--models-dir {dir} is not a folder");
            paths.AddRange(Directory.EnumerateFiles(dir, "*.gguf").Order(StringComparer.Ordinal));
        }
        foreach (var p in paths)
        {
            if (!File.Exists(p) && !Directory.Exists(p)) throw new OpenWeightsException($"model not found: {p}");
            string name = System.IO.Path.GetFileNameWithoutExtension(p.TrimEnd('/', '\\'));
            if (models.TryGetValue(name, out var other) && other.Path != p) throw new OpenWeightsException($"two models are named '{name}': {other.Path} and {p}");
            models[name] = new Entry(name, p);
        }
        if (models.Count == 0) throw new OpenWeightsException($"no models to serve: {options.ModelsDir} holds no .gguf file");
        BudgetBytes = options.MemoryBudgetBytes ?? HardwareProbe.AvailableMemoryBytes();
        if (BudgetBytes <= 0) throw new OpenWeightsException($"the memory budget {BudgetBytes} must be positive");
        if (options.IdleUnload is { } idle)
        {
            if (idle <= TimeSpan.Zero) throw new OpenWeightsException("--idle-unload must be positive");
            var period = TimeSpan.FromMilliseconds(Math.Clamp(idle.TotalMilliseconds / 4, 50, 5000));
            idleTimer = new Timer(_ => UnloadIdle(), null, period, period);
        }
        if (options.AuditPath is { } auditPath) audit = new OpenWeights.Audit.AuditLog(auditPath, model: null, options.AuditContent); // last: nothing after it throws
    }

    /// <summary>Loads started since the server started (a load that requests wait for together counts once).</summary>
    public int Loads { get; private set; }

    /// <summary>The names served, in order.</summary>
    public IReadOnlyList<string> Names { get { lock (gate) return [.. models.Keys.Order(StringComparer.Ordinal)]; } }

    /// <summary>The models loaded now (a load in progress is not).</summary>
    public IReadOnlyList<ModelHost> Loaded
    {
        get { lock (gate) return [.. models.Values.Where(e => e.Load is { IsCompletedSuccessfully: true }).OrderBy(e => e.Name, StringComparer.Ordinal).Select(e => e.Load!.Result)]; }
    }

    /// <summary>Bytes the loaded (and loading) models take by the estimate.</summary>
    public long UsedBytes { get { lock (gate) return models.Values.Where(e => e.Load is not null).Sum(e => e.Estimate ?? 0); } }

    /// <summary>The entry a request's model field names: the name, the file name, or NAME:latest (Ollama's tag); null when none.</summary>
    private Entry? Find(string? name)
    {
        if (string.IsNullOrEmpty(name)) return models.Count == 1 ? models.Values.First() : null;
        if (models.TryGetValue(name, out var e)) return e;
        if (name.EndsWith(":latest", StringComparison.Ordinal) && models.TryGetValue(name[..^7], out e)) return e;
        return models.Values.FirstOrDefault(x => System.IO.Path.GetFileName(x.Path) == name || x.Path == name);
    }

    /// <summary>Whether <paramref name="name"/> names a served model.</summary>
    public bool Serves(string? name) { lock (gate) return !string.IsNullOrEmpty(name) && Find(name) is not null; }

    /// <summary>The fit estimator's memory for <paramref name="path"/> as this server runs it: the file's weights, one KV cache per slot, the runtime.</summary>
    public long EstimateBytes(string path)
    {
        using var src = OpenWeights.Models.ModelSources.Open(path);
        var shape = ModelShape.FromSource(src);
        var hw = new HardwareInfo { TotalRamBytes = BudgetBytes, AvailableRamBytes = BudgetBytes };
        var fit = FitEstimator.Estimate(shape, hw, new FitOptions
        {
            Context = Math.Min(options.ContextSize, shape.ContextLength ?? options.ContextSize),
            Sequences = options.Parallel,
            CacheTypes = options.CacheTypes,
        });
        return fit.Memory.TotalBytes;
    }

    /// <summary>
    /// Holds the model a request names, loading it first if need be (one load, however many requests wait for it); dispose
    /// the lease when the request is over. 404 (<c>model_not_found</c>) for a name not served; 503
    /// (<c>insufficient_memory</c>) when the model does not fit the budget beside the busy models.
    /// </summary>
    public async Task<ModelLease> AcquireAsync(string? name, CancellationToken ct)
    {
        Entry e;
        Task<ModelHost> load;
        List<ModelHost> unloaded = [];
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            e = Find(name) ?? throw (string.IsNullOrEmpty(name)
                ? new ApiException(400, $"name the model in the request's model field (served: {string.Join(", ", models.Keys.Order(StringComparer.Ordinal))})", "model", "model_required")
                : new ApiException(404, $"the model '{OpenAiRequest.Printable(name, 200)}' does not exist (served: {string.Join(", ", models.Keys.Order(StringComparer.Ordinal))})", "model", "model_not_found"));
            if (e.Load is null)
            {
                long need;
                try { need = e.Estimate ??= EstimateBytes(e.Path); }
                catch (OpenWeightsException x) { throw new ApiException(503, $"the model '{e.Name}' cannot be loaded: {x.Message}", "model", "model_load_failed"); }
                if (need > BudgetBytes)
                    throw new ApiException(503, $"the model '{e.Name}' needs {Gib(need)} but the memory budget is {Gib(BudgetBytes)}; it cannot be loaded on this server", "model", "insufficient_memory");
                while (Used() + need > BudgetBytes)
                {
                    var victim = models.Values.Where(x => x.Load is { IsCompleted: true } && x.InUse == 0).MinBy(x => x.LastUsed);
                    if (victim is null)
                        throw new ApiException(503, $"the model '{e.Name}' needs {Gib(need)}; the models in use take {Gib(Used())} of the {Gib(BudgetBytes)} budget; retry when they are idle", "model", "insufficient_memory");
                    if (Detach(victim) is { } h) unloaded.Add(h);
                }
                var path = e.Path; var id = e.Name;
                Loads++;
                e.Load = Task.Run(() => new ModelHost(options with
                {
                    ModelPath = path, ModelId = id, ModelsDir = null, ExtraModels = [], Adapters = new Dictionary<string, string>(),
                    // the fit estimate that admitted the model counts slots x context of KV and no prompt cache: its host
                    // keeps to that unless the operator sized them (each model then gets what was given)
                    KvBudgetBytes = options.KvBudgetBytes ?? 0, PromptCacheBytes = options.PromptCacheBytes ?? 0,
                }, audit));
            }
            e.InUse++;
            load = e.Load;
        }
        Release(unloaded);
        try
        {
            var host = await load.WaitAsync(ct);
            return new ModelLease(this, e, host);
        }
        catch (Exception x)
        {
            lock (gate)
            {
                e.InUse--;
                if (e.Load == load && load.IsFaulted) e.Load = null; // the next request tries again
            }
            if (x is OperationCanceledException) throw;
            throw new ApiException(503, $"the model '{e.Name}' failed to load: {OpenAiRequest.Printable(x.GetBaseException().Message, 300)}", "model", "model_load_failed");
        }
    }

    private long Used() => models.Values.Where(x => x.Load is not null).Sum(x => x.Estimate ?? 0);

    private static string Gib(long b) => $"{b / (double)(1L << 30):0.###} GiB";

    internal void Return(object entry)
    {
        var e = (Entry)entry;
        lock (gate) { e.InUse--; e.LastUsed = Stopwatch.GetTimestamp(); }
    }

    // under the gate: takes a loaded, idle model off the table; its host is disposed outside the gate (Release)
    private static ModelHost? Detach(Entry e)
    {
        var load = e.Load;
        e.Load = null;
        return load is { IsCompletedSuccessfully: true } ? load.Result : null;
    }

    private static void Release(List<ModelHost> hosts)
    {
        if (hosts.Count == 0) return;
        foreach (var h in hosts) h.Dispose();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true); // the KV caches and run states go back to the OS
    }

    /// <summary>Unloads every loaded model that has served no request for the idle time; the names unloaded.</summary>
    public IReadOnlyList<string> UnloadIdle()
    {
        if (options.IdleUnload is not { } idle) return [];
        var hosts = new List<ModelHost>();
        var names = new List<string>();
        lock (gate)
        {
            if (disposed) return [];
            foreach (var e in models.Values)
                if (e.Load is { IsCompleted: true } && e.InUse == 0 && Stopwatch.GetElapsedTime(e.LastUsed) >= idle)
                {
                    if (Detach(e) is { } h) hosts.Add(h);
                    names.Add(e.Name);
                }
        }
        Release(hosts);
        return names;
    }

    /// <summary>Shutdown: every loaded model stops taking requests and lets running ones finish for <paramref name="grace"/>.</summary>
    public void BeginShutdown(TimeSpan grace)
    {
        foreach (var h in Loaded) h.BeginShutdown(grace);
    }

    public void Dispose()
    {
        idleTimer?.Dispose();
        List<ModelHost> hosts = [];
        lock (gate)
        {
            disposed = true;
            foreach (var e in models.Values) if (Detach(e) is { } h) hosts.Add(h);
        }
        foreach (var h in hosts) h.Dispose();
        audit?.Dispose();
    }

    // ---- the list endpoints and the probes, for several models ----

    private JsonObject ModelObject(string name)
    {
        Entry e; lock (gate) e = models[name];
        var host = e.Load is { IsCompletedSuccessfully: true } l ? l.Result : null;
        return new JsonObject
        {
            ["id"] = name, ["object"] = "model", ["created"] = Created, ["owned_by"] = "openweights",
            ["meta"] = new JsonObject
            {
                ["loaded"] = host is not null, ["estimated_bytes"] = e.Estimate,
                ["context_length"] = host?.Scheduler.ContextSize, ["parallel"] = host?.Scheduler.Parallel,
            },
        };
    }

    private JsonObject OllamaEntry(ModelHost h, bool running)
    {
        var o = new JsonObject { ["name"] = h.ModelId, ["model"] = h.ModelId, ["size"] = FileBytes(h.Options.ModelPath) };
        if (running) { o["expires_at"] = "0001-01-01T00:00:00Z"; o["size_vram"] = 0; o["context_length"] = h.Scheduler.ContextSize; }
        return o;
    }

    private static long FileBytes(string path)
    {
        var f = new FileInfo(path);
        return f.Exists ? (f.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? f).Length : 0; // a folder (checkpoint): 0
    }

    // answers the requests about the set of models; false for the others
    internal async Task<bool> TryAnswerAsync(HttpContext ctx)
    {
        string path = ctx.Request.Path.Value ?? "";
        bool get = HttpMethods.IsGet(ctx.Request.Method);
        JsonNode? body = null;
        if (get && path == "/v1/models")
            body = new JsonObject
            {
                ["object"] = "list", ["data"] = new JsonArray([.. Names.Select(n => (JsonNode)ModelObject(n))]),
                ["memory"] = new JsonObject { ["budget_bytes"] = BudgetBytes, ["used_bytes"] = UsedBytes },
            };
        else if (get && path.StartsWith("/v1/models/", StringComparison.Ordinal))
        {
            string id = Uri.UnescapeDataString(path["/v1/models/".Length..]);
            string? name; lock (gate) name = Find(id)?.Name;
            body = name is null ? throw new ApiException(404, $"the model '{OpenAiRequest.Printable(id, 200)}' does not exist", "model", "model_not_found") : ModelObject(name);
        }
        else if (get && path == "/api/ps") body = new JsonObject { ["models"] = new JsonArray([.. Loaded.Select(h => (JsonNode)OllamaEntry(h, true))]) };
        else if (get && path == "/api/tags")
            body = new JsonObject { ["models"] = new JsonArray([.. Names.Select(n => (JsonNode)new JsonObject { ["name"] = n, ["model"] = n })]) };
        else if (get && path == "/health")
            body = new JsonObject { ["status"] = "ok", ["models"] = new JsonArray([.. Names.Select(n => (JsonNode)n)]), ["loaded"] = new JsonArray([.. Loaded.Select(h => (JsonNode)h.ModelId)]) };
        if (body is null) return false;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(body.ToJsonString(), ctx.RequestAborted);
        return true;
    }
}

/// <summary>A request's hold on a loaded model (it is not unloaded meanwhile).</summary>
public sealed class ModelLease : IDisposable
{
    private readonly ModelRouter router;
    private readonly object entry;
    private int released;
    public ModelHost Host { get; }

    internal ModelLease(ModelRouter router, object entry, ModelHost host) { this.router = router; this.entry = entry; Host = host; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref released, 1) == 0) router.Return(entry);
    }
}
