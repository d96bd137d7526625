using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Server;

/// <summary>The served model: weights, tokenizer, chat formatter, scheduler and metrics. One per server.</summary>
public sealed class ModelHost : IDisposable
{
    public ServerOptions Options { get; }
    public DecoderModel Model { get; }
    public Tokenizer Tokenizer { get; }
    /// <summary>The LoRA adapters requests select by name (<see cref="ServerOptions.Adapters"/>, <c>POST /v1/adapters</c>).</summary>
    public AdapterRegistry Adapters { get; }
    public string ModelId { get; }
    public Scheduler Scheduler { get; }
    public ServerMetrics Metrics { get; } = new();
    /// <summary>Responses API responses kept for GET and previous_response_id.</summary>
    public ResponseStore Responses { get; }
    /// <summary>One prompt scored at a time (<see cref="PromptScorer"/>: echo with logprobs).</summary>
    internal SemaphoreSlim Scoring { get; } = new(1);
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    public int Threads { get; }
    /// <summary>The audit log (serve --audit), or null.</summary>
    public OpenWeights.Audit.AuditLog? Audit { get; }
    private readonly ChatFormatter? formatter;
    private readonly string? formatterError;
    private readonly object shutdownLock = new();
    private readonly bool ownsAudit;
    private Timer? graceTimer;

    /// <param name="sharedAudit">the audit log of a server with several models (its router owns it); null: this host opens
    /// <see cref="ServerOptions.AuditPath"/> itself</param>
    public ModelHost(ServerOptions options, OpenWeights.Audit.AuditLog? sharedAudit = null)
    {
        Options = options;
        if (options.StreamBufferEvents < 1) throw new OpenWeightsException($"the stream buffer of {options.StreamBufferEvents} events must be at least 1");
        Responses = new ResponseStore(options.MaxStoredResponses);
        Model = DecoderModel.LoadOwned(OpenWeights.Models.ModelSources.Open(options.ModelPath));
        if (options.Loras.Count > 0) OpenWeights.Lora.LoraLoader.Attach(Model, options.Loras);
        try
        {
            Tokenizer = Tokenizer.FromGguf(Model.Source);
            Adapters = new AdapterRegistry(Model);
            foreach (var (name, spec) in options.Adapters)
            {
                try { Adapters.Load(name, spec); }
                catch (ApiException e) { throw new OpenWeightsException($"--lora {name}={spec}: {e.Message}"); }
            }
            ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(options.ModelPath);
            try { formatter = new ChatFormatter(Tokenizer, options.ChatTemplate, options.ChatTemplateLimits); }
            catch (OpenWeightsException e) { formatterError = e.Message; }
            Threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
            OpenWeights.Audit.AuditModel? auditModel = null;
            if (options.AuditPath is { } auditPath)
            {
                auditModel = OpenWeights.Audit.AuditModel.Describe(options.ModelPath, options.Loras, formatter?.Template.Source,
                    OpenWeights.Audit.AuditModel.CacheName(options.CacheTypes), Math.Min(options.ContextSize, Model.Config.ContextLength));
                ownsAudit = sharedAudit is null;
                Audit = sharedAudit ?? new OpenWeights.Audit.AuditLog(auditPath, auditModel, options.AuditContent);
            }
            var (kvBudget, promptCache) = Memory(options, Model, auditModel);
            Scheduler = new Scheduler(Model, Tokenizer, options.Parallel, options.ContextSize, Threads, options.MaxQueue, Metrics, cacheTypes: options.CacheTypes)
            {
                KvBudgetBytes = kvBudget,
                PromptCache = promptCache,
                AdapterSpace = id => Adapters.AuditOf(id) is { } a ? $"{a.Sha256}:{a.Scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}" : "adapter:" + id,
                StalledReaderTimeout = options.StalledReaderTimeout,
                Completed = Audit is null ? null : ServerAudit.Hook(Audit, auditModel!, Adapters, Tokenizer),
            };
        }
        catch { if (ownsAudit) Audit?.Dispose(); Model.Dispose(); throw; }
    }

    // The KV budget and the prompt cache: given, or from the RAM available at start (less the model file) - the prompt
    // cache a sixteenth of it (at most 1 GiB: its blocks are copies beside the slots'), the slots' caches three quarters of
    // the rest, never less than one whole context.
    private static (long KvBudget, PrefixCache? PromptCache) Memory(ServerOptions o, DecoderModel model, OpenWeights.Audit.AuditModel? described)
    {
        long bpp;
        using (var probe = model.CreateCache(1, o.CacheTypes)) bpp = probe.BytesPerPosition;
        int context = Math.Min(o.ContextSize, model.Config.ContextLength);
        long available = 0;
        if (o.KvBudgetBytes is null || o.PromptCacheBytes is null)
        {
            long file = 0;
            try { file = File.Exists(o.ModelPath) ? new FileInfo(o.ModelPath).Length : 0; } catch (IOException) { }
            available = Math.Max(0, OpenWeights.Hardware.HardwareProbe.AvailableMemoryBytes() - file);
        }
        long cacheBytes = o.PromptCacheBytes ?? Math.Min(1L << 30, available / 16);
        long kvBudget = o.KvBudgetBytes ?? Math.Max(bpp * context, (available - cacheBytes) / 4 * 3); // 0: slots x context
        PrefixCache? cache = null;
        if (cacheBytes > 0 || o.PromptCacheDir is not null)
        {
            string identity = "memory";
            if (o.PromptCacheDir is not null)
            {
                // on disk, blocks outlive the process: they are named by what computed them, never by a path or an id
                var m = described ?? OpenWeights.Audit.AuditModel.Describe(o.ModelPath, o.Loras, null, OpenWeights.Audit.AuditModel.CacheName(o.CacheTypes), context);
                identity = $"model {m.Sha256}; cache {OpenWeights.Audit.AuditModel.CacheName(o.CacheTypes)}; adapters {string.Join(",", m.Adapters.Select(a => a.Sha256 + ":" + a.Scale.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))}";
            }
            cache = new PrefixCache(cacheBytes, identity, directory: o.PromptCacheDir);
        }
        return (kvBudget, cache);
    }

    /// <summary>The chat formatter, or a 400 naming why chat is unavailable (no template).</summary>
    public ChatFormatter Formatter => formatter ?? throw new ApiException(400, formatterError ?? "chat is unavailable", code: "chat_template_missing");

    /// <summary>A text of the model file's metadata (general.name, general.license); null where the file does not say.</summary>
    public string? MetadataText(string key) => Model.Source.Metadata.TryGetValue(key, out var v) ? v as string : null;

    public bool IsModel(string? id) =>
        id is null || id.Length == 0 || id == ModelId || id == Path.GetFileName(Options.ModelPath) || id == Options.ModelPath
        || (id.LastIndexOf(':') is > 0 and var i && Adapters.Contains(id[(i + 1)..]) && IsModel(id[..i])); // "MODEL:ADAPTER"

    internal const string ItemKey = "openweights.host";

    /// <summary>
    /// The host of a request, for the endpoints' ModelHost parameter: the one a model router chose (several models), else the
    /// server's one model.
    /// </summary>
    public static ValueTask<ModelHost?> BindAsync(Microsoft.AspNetCore.Http.HttpContext ctx) =>
        ValueTask.FromResult<ModelHost?>(ctx.Items.TryGetValue(ItemKey, out var h) && h is ModelHost host ? host
            : Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetService<ModelHost>(ctx.RequestServices)
              ?? throw new ApiException(400, "name the model in the request's model field", "model", "model_required"));

    /// <summary>
    /// The server is stopping: refuse new generations (503) at once, let running ones go on for <paramref name="grace"/>,
    /// then end them as cancelled, so each stream still gets its final chunk and [DONE].
    /// </summary>
    public void BeginShutdown(TimeSpan grace)
    {
        Scheduler.StopAccepting();
        if (grace <= TimeSpan.Zero) { Scheduler.CancelAll(); return; }
        lock (shutdownLock)
            graceTimer ??= new Timer(_ => Scheduler.CancelAll(), null, grace, Timeout.InfiniteTimeSpan); // the first call sets the deadline
    }

    /// <summary>Embeds each input through the scheduler (taking turns with generation and other embedding requests).</summary>
    public Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, CancellationToken ct) => Scheduler.EmbedAsync(inputs, ct);

    public void Dispose()
    {
        lock (shutdownLock) graceTimer?.Dispose();
        Scheduler.Dispose();
        if (ownsAudit) Audit?.Dispose();
        Model.Dispose();
    }
}

/// <summary>An error answered in OpenAI's shape: {"error":{"message","type","param","code"}}.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
}
