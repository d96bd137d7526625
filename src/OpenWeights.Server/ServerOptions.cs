using OpenWeights.Inference.Chat;
using OpenWeights.Inference.Constraints;
using OpenWeights.Tokenizers;

namespace OpenWeights.Server;

/// <summary>How the server runs.</summary>
public sealed record ServerOptions
{
    public required string ModelPath { get; init; }
    /// <summary>LoRA adapters applied to the model, FILE[:SCALE] each (GGUF LoRA files or PEFT folders).</summary>
    public IReadOnlyList<string> Loras { get; init; } = [];
    /// <summary>
    /// Per-request LoRA adapters by name (<c>serve --lora NAME=FILE[:SCALE]</c>): a request takes one with
    /// <c>model: "MODEL:NAME"</c> or an <c>adapter</c> field, others take none (<see cref="Loras"/>, unnamed, apply to every
    /// request). More can be loaded at run time (<c>POST /v1/adapters</c>). Single-model serving only.
    /// </summary>
    public IReadOnlyDictionary<string, string> Adapters { get; init; } = new Dictionary<string, string>();
    /// <summary>Serve every GGUF file of this folder, routed by the request's model field (file name without extension), loaded on first use.</summary>
    public string? ModelsDir { get; init; }
    /// <summary>More model files served beside <see cref="ModelPath"/>, routed by name (several models: see <see cref="ModelRouter"/>).</summary>
    public IReadOnlyList<string> ExtraModels { get; init; } = [];
    /// <summary>Several models: a model that served no request this long is unloaded (null: kept until memory is needed).</summary>
    public TimeSpan? IdleUnload { get; init; }
    /// <summary>Several models: the memory the loaded models may take together, by the fit estimator (null: the RAM available at start).</summary>
    public long? MemoryBudgetBytes { get; init; }
    /// <summary>Memory the slots' KV caches may hold together (null: most of the RAM available at start; see
    /// <see cref="Scheduler.KvBudgetBytes"/>).</summary>
    public long? KvBudgetBytes { get; init; }
    /// <summary>Memory of the prompt cache shared across requests (null: a sixteenth of the available RAM, at most 1 GiB; 0: off).</summary>
    public long? PromptCacheBytes { get; init; }
    /// <summary>A folder where the prompt cache is kept across restarts (null: memory only).</summary>
    public string? PromptCacheDir { get; init; }
    /// <summary>Whether this server routes among several models (<see cref="ModelsDir"/> or <see cref="ExtraModels"/>).</summary>
    public bool IsMultiModel => ModelsDir is not null || ExtraModels.Count > 0;
    /// <summary>The model id clients name (default: the file name without extension).</summary>
    public string? ModelId { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    /// <summary>When set, every /v1 request and /metrics needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Slots decoding together (continuous batching).</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Context size of each slot.</summary>
    public int ContextSize { get; init; } = 4096;
    /// <summary>The KV cache's key and value types of every slot (F16 unless asked; F32 or Q8_0 as well).</summary>
    public OpenWeights.Models.Common.KvCacheTypes CacheTypes { get; init; } = OpenWeights.Models.Common.KvCacheTypes.Default;
    /// <summary>Requests that may wait for a slot before the server answers 429.</summary>
    public int MaxQueue { get; init; } = 64;
    public int Threads { get; init; }
    /// <summary>A Jinja chat template (source text) instead of the model's own.</summary>
    public string? ChatTemplate { get; init; }
    /// <summary>Budgets of each chat-template render (steps, output, list sizes); null: the defaults.</summary>
    public OpenWeights.Inference.ChatTemplates.TemplateLimits? ChatTemplateLimits { get; init; }
    public long MaxRequestBodyBytes { get; init; } = 8 * 1024 * 1024;
    /// <summary>Events (about one per token) that may wait unread for one request before its generation pauses for the reader.</summary>
    public int StreamBufferEvents { get; init; } = 64;
    /// <summary>
    /// On shutdown (SIGINT/SIGTERM, or the host stopping), how long running replies may go on before they are ended as
    /// cancelled (each stream still gets its final chunk and [DONE]); new requests are refused at once.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Where one line per request is written (method, path, status, tokens, time to first token, duration; never the prompt); null: nowhere.</summary>
    public TextWriter? AccessLog { get; init; }
    public AccessLogFormat AccessLogFormat { get; init; } = AccessLogFormat.Text;
    /// <summary>The audit log: one hash-chained JSON line per generation (<see cref="OpenWeights.Audit.AuditLog"/>); null: none.</summary>
    public string? AuditPath { get; init; }
    /// <summary>With <see cref="AuditPath"/>: the lines carry the prompt and output texts and token ids (what replay needs).</summary>
    public bool AuditContent { get; init; }
    /// <summary>A streaming client that leaves its events unread this long (generation paused) is cut off and its slot freed.</summary>
    public TimeSpan StalledReaderTimeout { get; init; } = TimeSpan.FromMinutes(2);
    /// <summary>
    /// Listen at once and load the model meanwhile: until it is loaded, GET /health (readiness) answers 503
    /// {"status":"loading"} and every API request 503 (model_loading); GET /livez (liveness) answers 200 throughout. False:
    /// the server listens only once the model is loaded.
    /// </summary>
    public bool LoadInBackground { get; init; }
    /// <summary>Responses (POST /v1/responses with store) kept in memory for GET and previous_response_id; the least recently used go first. 0: none kept.</summary>
    public int MaxStoredResponses { get; init; } = 1000;
    /// <summary>Builds the constraint for response_format (schema JSON, or null for any JSON object); null: response_format json answers 400.</summary>
    public Func<Tokenizer, string?, ITokenConstraint>? JsonConstraintFactory { get; init; } = JsonConstraint.Create;
    /// <summary>
    /// Builds the constraint that forces a tool call (tool_choice "required": any tool, or a named function); null: tool_choice
    /// is not enforced (a named function only narrows the tools shown to the model).
    /// </summary>
    public Func<ChatFormatter, IReadOnlyList<ChatTool>, string?, ITokenConstraint>? ToolCallConstraintFactory { get; init; } = ToolCallConstraint.Create;
}

/// <summary>The access log's line format: text (one space-separated line) or json (one object per line).</summary>
public enum AccessLogFormat { Text, Json }
