using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using static OpenWeights.Server.OpenAiRequest;

namespace OpenWeights.Server;

/// <summary>
/// An Ollama request (/api/chat, /api/generate, /api/embed, /api/show) read into the shared types: messages (system,
/// user, assistant with tool_calls and thinking, tool with tool_name), tools, options (temperature, top_p, top_k, min_p,
/// seed, num_predict, stop, num_ctx, penalties), format ("json" or a JSON schema), think and stream (true unless false).
/// A wrong value is a 400 naming the field, as <see cref="OpenAiRequest"/> does (its JSON checks are the same).
/// </summary>
internal sealed class OllamaRequest(OpenAiRequest body)
{
    public OpenAiRequest Body { get; } = body;

    /// <summary>Ollama streams unless told "stream": false.</summary>
    public bool Stream => Body.Bool("stream", fallback: true);

    /// <summary>The model name a request gives (required, as Ollama requires it; "name" is its older spelling).</summary>
    public string Model() => Body.String("model") is { Length: > 0 } m ? m : Body.String("name") is { Length: > 0 } n ? n : throw Bad("model", "is required");

    public List<ChatTurn> Messages()
    {
        if (Body.Body["messages"] is not JsonArray a) throw Bad("messages", Body.Body["messages"] is null ? "is required" : "must be a list of messages");
        var turns = new List<ChatTurn>();
        var unanswered = new Queue<ChatToolCall>(); // tool messages answer the calls before them, in order (Ollama has no call ids)
        for (int i = 0; i < a.Count; i++)
        {
            string p = $"messages[{i}]";
            if (a[i] is not JsonObject m) throw Bad(p, "must be an object");
            string role = Str(m, "role", p) ?? throw Bad($"{p}.role", "is required");
            if (role is not ("system" or "user" or "assistant" or "tool")) throw Bad($"{p}.role", $"must be system, user, assistant or tool (got '{Printable(role)}')");
            string content = Str(m, "content", p) ?? "";
            if (m["images"] is JsonArray { Count: > 0 }) throw new ApiException(400, $"'{p}.images': this server's models read text only", $"{p}.images", "unsupported_content");
            List<ChatToolCall>? calls = null;
            if (m["tool_calls"] is JsonArray tc && tc.Count > 0)
            {
                calls = [];
                for (int k = 0; k < tc.Count; k++)
                {
                    string q = $"{p}.tool_calls[{k}]";
                    if (tc[k] is not JsonObject c || c["function"] is not JsonObject f) throw Bad(q, "must be {function: {name, arguments}}");
                    string name = Str(f, "name", $"{q}.function") ?? throw Bad($"{q}.function.name", "is required");
                    string args = f["arguments"] switch { null => "{}", JsonValue av when av.TryGetValue(out string? s) => s, var o => o.ToJsonString() };
                    var call = new ChatToolCall(Str(c, "id", q) ?? $"call_{i}_{k}", name, args);
                    calls.Add(call);
                    unanswered.Enqueue(call);
                }
            }
            else if (m["tool_calls"] is not (null or JsonArray)) throw Bad($"{p}.tool_calls", "must be a list");
            if (role == "tool")
            {
                string? toolName = Str(m, "tool_name", p) ?? Str(m, "name", p);
                string id = unanswered.TryDequeue(out var answered) ? answered.Id : $"call_{i}";
                turns.Add(ChatTurn.Tool(id, content, toolName ?? answered?.Name));
                continue;
            }
            string? thinking = role == "assistant" ? Str(m, "thinking", p) : null;
            turns.Add(new ChatTurn(role, content, calls, Reasoning: thinking));
        }
        if (turns.Count == 0) throw Bad("messages", "must hold at least one message");
        return turns;
    }

    /// <summary>tools: [{type: function, function: {name, description, parameters}}]; null when none.</summary>
    public List<ChatTool>? Tools()
    {
        switch (Body.Body["tools"])
        {
            case null: return null;
            case JsonArray a:
                var tools = new List<ChatTool>();
                for (int i = 0; i < a.Count; i++)
                {
                    if (a[i] is not JsonObject t || t["function"] is not JsonObject f) throw Bad($"tools[{i}]", "must be {type: function, function: {name, description, parameters}}");
                    string name = Str(f, "name", $"tools[{i}].function") is { Length: > 0 } n ? n : throw Bad($"tools[{i}].function.name", "is required");
                    if (f["parameters"] is not (null or JsonObject)) throw Bad($"tools[{i}].function.parameters", "must be a JSON schema object");
                    tools.Add(new ChatTool(name, Str(f, "description", $"tools[{i}].function"), f["parameters"]?.ToJsonString()));
                }
                return tools.Count == 0 ? null : tools;
            default: throw Bad("tools", "must be a list");
        }
    }

    /// <summary>think: absent (null), true/false, or a level (low, medium, high: gpt-oss's reasoning effort).</summary>
    public (bool Show, string? Effort) Think() => Body.Body["think"] switch
    {
        null => (true, null),
        JsonValue v when v.TryGetValue(out bool b) => (b, null),
        JsonValue v when v.TryGetValue(out string? s) && s is "low" or "medium" or "high" => (true, s),
        _ => throw Bad("think", "must be true, false, \"low\", \"medium\" or \"high\""),
    };

    /// <summary>format: null (free text), or the JSON schema text ("" for any JSON value, as "json").</summary>
    public string? Format() => Body.Body["format"] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) && s == "" => null,
        JsonValue v when v.TryGetValue(out string? s) && s == "json" => "",
        JsonObject schema => schema.ToJsonString(),
        _ => throw Bad("format", "must be \"json\" or a JSON schema object"),
    };

    private static readonly HashSet<string> RuntimeOptions =
    [
        // how Ollama's runner loads and runs a model: nothing to do here (threads and batching are the server's)
        "num_keep", "num_batch", "num_gpu", "main_gpu", "low_vram", "vocab_only", "use_mmap", "use_mlock", "numa", "num_thread",
        "typical_p", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "f16_kv", "logits_all",
    ];

    /// <summary>
    /// options over the CLI's sampling defaults: temperature, top_p, top_k, min_p, seed, num_predict (-1: until the
    /// context is full; -2: fill the context), stop, num_ctx (at most the server's context; a smaller one bounds this
    /// request), repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty. Runner settings are ignored, other
    /// keys refused. Returns the options and the context this request may use.
    /// </summary>
    public (GenerationOptions Options, int Context) Options(ModelHost h, int promptTokens)
    {
        var o = new OpenAiRequest(Body.Body["options"] switch
        {
            null => new JsonObject(),
            JsonObject x => x,
            _ => throw Bad("options", "must be an object"),
        });
        foreach (var (k, _) in o.Body)
            if (!RuntimeOptions.Contains(k) && k is not ("temperature" or "top_p" or "top_k" or "min_p" or "seed" or "num_predict" or "stop" or "num_ctx"
                    or "repeat_penalty" or "repeat_last_n" or "presence_penalty" or "frequency_penalty"))
                throw Bad($"options.{Printable(k)}", "is not an option this server knows");
        int context = h.Scheduler.ContextSize;
        if (o.Integer("num_ctx", 1, int.MaxValue) is { } numCtx)
        {
            if (numCtx > context) throw new ApiException(400, $"'options.num_ctx' {numCtx} is more than this server's context of {context} tokens (set by `openweights serve --ctx`)", "options.num_ctx", "context_length_exceeded");
            context = (int)numCtx;
        }
        ChatRun.CheckContext(h, promptTokens, context);
        int room = context - promptTokens;
        long predict = o.Integer("num_predict", -2, int.MaxValue) ?? -1;
        if (predict == 0) throw Bad("options.num_predict", "must be -2, -1 or at least 1");
        var d = SamplingOptions.Default;
        long? seed = o.Body["seed"] is null ? null : o.Integer("seed", long.MinValue, long.MaxValue);
        var sampling = d with
        {
            Temperature = (float?)o.Number("temperature", 0, 2) ?? d.Temperature,
            TopP = (float?)o.Number("top_p", 0, 1, minExclusive: true) ?? d.TopP,
            TopK = (int?)o.Integer("top_k", 0, int.MaxValue) ?? d.TopK,
            MinP = (float?)o.Number("min_p", 0, 1) ?? d.MinP,
            RepeatPenalty = (float?)o.Number("repeat_penalty", 0, 10, minExclusive: true) ?? d.RepeatPenalty,
            PenaltyLastN = (int?)o.Integer("repeat_last_n", -1, int.MaxValue) ?? d.PenaltyLastN,
            PresencePenalty = (float?)o.Number("presence_penalty", -2, 2) ?? d.PresencePenalty,
            FrequencyPenalty = (float?)o.Number("frequency_penalty", -2, 2) ?? d.FrequencyPenalty,
            Seed = seed is { } s ? unchecked((ulong)s) : null,
        };
        var options = new GenerationOptions
        {
            MaxTokens = predict > 0 ? (int)Math.Min(predict, room) : room,
            Sampling = sampling,
            StopStrings = o.Stops(),
            IgnoreEos = predict == -2, // -2: fill the context
        };
        return (options, context);
    }

    private static string? Str(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw Bad($"{path}.{key}", "must be a string"),
    };
}
