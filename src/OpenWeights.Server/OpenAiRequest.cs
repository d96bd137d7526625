using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>Reads an OpenAI request body field by field, answering 400 with the parameter's name when a value is wrong.</summary>
internal sealed class OpenAiRequest(JsonObject body)
{
    public JsonObject Body { get; } = body;

    public static async Task<OpenAiRequest> ReadAsync(HttpRequestLike request, long maxBytes, CancellationToken ct)
    {
        var ms = new MemoryStream();
        var buf = new byte[16384];
        int n;
        while ((n = await request.Body.ReadAsync(buf, ct)) > 0)
        {
            if (ms.Length + n > maxBytes) throw new ApiException(413, $"the request body exceeds {maxBytes} bytes", code: "request_too_large");
            ms.Write(buf, 0, n);
        }
        JsonNode? node;
        try { node = JsonNode.Parse(ms.ToArray(), documentOptions: new JsonDocumentOptions { MaxDepth = 64 }); }
        catch (JsonException e) { throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", code: "invalid_json"); }
        if (node is not JsonObject o) throw new ApiException(400, "the request body must be a JSON object", code: "invalid_json");
        return new OpenAiRequest(o);
    }

    public bool Has(string name) => Body[name] is not null;

    public string? String(string name)
    {
        var v = Body[name];
        if (v is null) return null;
        if (v is JsonValue jv && jv.TryGetValue(out string? s)) return s;
        throw Bad(name, "must be a string");
    }

    public bool Bool(string name, bool fallback = false)
    {
        var v = Body[name];
        if (v is null) return fallback;
        if (v is JsonValue jv && jv.TryGetValue(out bool b)) return b;
        throw Bad(name, "must be a boolean");
    }

    public double? Number(string name, double min, double max, bool minExclusive = false)
    {
        var v = Body[name];
        if (v is null) return null;
        if (v is not JsonValue jv || jv.GetValueKind() != JsonValueKind.Number) throw Bad(name, "must be a number");
        double d = jv.GetValue<double>();
        if (double.IsNaN(d) || d > max || (minExclusive ? d <= min : d < min))
            throw Bad(name, $"must be {(minExclusive ? ">" : ">=")} {min} and <= {max} (got {d})");
        return d;
    }

    public long? Integer(string name, long min, long max)
    {
        var v = Body[name];
        if (v is null) return null;
        if (v is not JsonValue jv || jv.GetValueKind() != JsonValueKind.Number || !jv.TryGetValue(out long l))
            throw Bad(name, "must be an integer");
        if (l < min || l > max) throw Bad(name, $"must be between {min} and {max} (got {l})");
        return l;
    }

    public static ApiException Bad(string param, string what) => new(400, $"'{param}' {what}", param, "invalid_value");

    /// <summary>Sampling and stopping parameters shared by chat and text completions.</summary>
    public GenerationOptions GenerationOptions(ModelHost host, int promptTokens, int index)
    {
        int room = host.Scheduler.ContextSize - promptTokens;
        long? max = Integer("max_completion_tokens", 1, int.MaxValue) ?? Integer("max_tokens", 1, int.MaxValue);
        int maxTokens = (int)Math.Min(max ?? room, room);
        var bias = LogitBias(host.Tokenizer.VocabSize);
        long? seed = Body["seed"] is null ? null : Integer("seed", long.MinValue, long.MaxValue);
        var d = SamplingOptions.Default; // the CLI's defaults
        var sampling = new SamplingOptions
        {
            Temperature = (float?)Number("temperature", 0, 2) ?? d.Temperature,
            TopP = (float?)Number("top_p", 0, 1, minExclusive: true) ?? d.TopP,
            TopK = (int?)Integer("top_k", 0, int.MaxValue) ?? d.TopK,
            MinP = (float?)Number("min_p", 0, 1) ?? d.MinP,
            RepeatPenalty = (float?)Number("repeat_penalty", 0, 10, minExclusive: true) ?? d.RepeatPenalty,
            PresencePenalty = (float)(Number("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(Number("frequency_penalty", -2, 2) ?? 0),
            PenaltyLastN = -1,
            Seed = seed is { } s ? unchecked((ulong)s + (ulong)index) : null,
            LogitBias = bias,
        };
        return new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling, StopStrings = Stops() };
    }

    public IReadOnlyList<string> Stops()
    {
        var v = Body["stop"];
        switch (v)
        {
            case null: return [];
            case JsonValue jv when jv.TryGetValue(out string? s): return [s];
            case JsonArray a:
                if (a.Count > 16) throw Bad("stop", "may hold at most 16 strings");
                return a.Select(x => x is JsonValue xv && xv.TryGetValue(out string? xs) ? xs : throw Bad("stop", "must be a string or a list of strings")).ToList();
            default: throw Bad("stop", "must be a string or a list of strings");
        }
    }

    private Dictionary<int, float>? LogitBias(int vocab)
    {
        var v = Body["logit_bias"];
        if (v is null) return null;
        if (v is not JsonObject o) throw Bad("logit_bias", "must be an object mapping token ids to biases");
        var d = new Dictionary<int, float>();
        foreach (var (k, val) in o)
        {
            if (!int.TryParse(k, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) || id >= vocab)
                throw Bad("logit_bias", $"has key '{k}', not a token id of this model (0..{vocab - 1})");
            if (val is not JsonValue jv || jv.GetValueKind() != JsonValueKind.Number) throw Bad("logit_bias", "values must be numbers");
            double b = jv.GetValue<double>();
            if (b is < -100 or > 100) throw Bad("logit_bias", $"values must be between -100 and 100 (got {b})");
            d[id] = b <= -100 ? float.NegativeInfinity : (float)b;
        }
        return d;
    }

    public (bool Enabled, int Top) Logprobs(bool chat)
    {
        if (chat)
        {
            bool on = Bool("logprobs");
            int top = (int)(Integer("top_logprobs", 0, 20) ?? 0);
            if (top > 0 && !on) throw Bad("top_logprobs", "needs 'logprobs': true");
            return (on, top);
        }
        var v = Body["logprobs"];
        if (v is null) return (false, 0);
        int n = (int)Integer("logprobs", 0, 5)!;
        return (true, n);
    }

    public List<ChatTurn> Messages()
    {
        if (Body["messages"] is not JsonArray a) throw Bad("messages", Body["messages"] is null ? "is required" : "must be a list of messages");
        if (a.Count == 0) throw Bad("messages", "must hold at least one message");
        var turns = new List<ChatTurn>();
        for (int i = 0; i < a.Count; i++)
        {
            string p = $"messages[{i}]";
            if (a[i] is not JsonObject m) throw Bad(p, "must be an object");
            string role = m["role"] is JsonValue rv && rv.TryGetValue(out string? r) ? r : throw Bad($"{p}.role", "is required");
            if (role == "developer") role = "system";
            if (role is not ("system" or "user" or "assistant" or "tool")) throw Bad($"{p}.role", $"must be system, developer, user, assistant or tool (got '{role}')");
            string? content = Content(m["content"], $"{p}.content");
            List<ChatToolCall>? calls = null;
            if (m["tool_calls"] is JsonArray tc && tc.Count > 0)
            {
                calls = [];
                for (int k = 0; k < tc.Count; k++)
                {
                    string q = $"{p}.tool_calls[{k}]";
                    if (tc[k] is not JsonObject c || c["function"] is not JsonObject f) throw Bad(q, "must be {id, type: function, function: {name, arguments}}");
                    string name = f["name"] is JsonValue nv && nv.TryGetValue(out string? nm) ? nm : throw Bad($"{q}.function.name", "is required");
                    string args = f["arguments"] switch
                    {
                        null => "{}",
                        JsonValue av when av.TryGetValue(out string? astr) => astr,
                        var other => other.ToJsonString(),
                    };
                    string id = c["id"] is JsonValue iv && iv.TryGetValue(out string? ids) ? ids : $"call_{i}_{k}";
                    calls.Add(new ChatToolCall(id, name, args));
                }
            }
            if (content is null && calls is null && role != "assistant") throw Bad($"{p}.content", "is required");
            string? toolCallId = m["tool_call_id"] is JsonValue tv && tv.TryGetValue(out string? tid) ? tid : null;
            string? name2 = m["name"] is JsonValue n2 && n2.TryGetValue(out string? nn) ? nn : null;
            turns.Add(new ChatTurn(role, content, calls, toolCallId, name2));
        }
        return turns;
    }

    private static string? Content(JsonNode? c, string p)
    {
        switch (c)
        {
            case null: return null;
            case JsonValue v when v.TryGetValue(out string? s): return s;
            case JsonArray parts:
                var sb = new System.Text.StringBuilder();
                foreach (var part in parts)
                {
                    if (part is not JsonObject po || po["type"]?.GetValue<string>() is not { } t) throw Bad(p, "parts must be objects with a type");
                    if (t != "text") throw Bad(p, $"part type '{t}' is not supported (text only)");
                    sb.Append(po["text"]?.GetValue<string>() ?? "");
                }
                return sb.ToString();
            default: throw Bad(p, "must be a string or a list of content parts");
        }
    }

    /// <summary>
    /// tools and tool_choice: the tools to show the model (none when tool_choice is "none"), whether a call is required,
    /// and the function it must call (null: any).
    /// </summary>
    public ToolChoice Tools()
    {
        var v = Body["tools"];
        List<ChatTool>? tools = null;
        if (v is not null)
        {
            if (v is not JsonArray a) throw Bad("tools", "must be a list");
            tools = [];
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i] is not JsonObject t || t["function"] is not JsonObject f) throw Bad($"tools[{i}]", "must be {type: function, function: {name, description, parameters}}");
                string name = f["name"] is JsonValue nv && nv.TryGetValue(out string? n) && n.Length > 0 ? n : throw Bad($"tools[{i}].function.name", "is required");
                if (tools.Any(x => x.Name == name)) throw Bad($"tools[{i}].function.name", $"repeats the function name '{name}'");
                string? desc = f["description"] is JsonValue dv && dv.TryGetValue(out string? d) ? d : null;
                var parameters = f["parameters"];
                if (parameters is not (null or JsonObject)) throw Bad($"tools[{i}].function.parameters", "must be a JSON schema object");
                tools.Add(new ChatTool(name, desc, parameters?.ToJsonString()));
            }
            if (tools.Count == 0) tools = null;
        }
        var choice = Body["tool_choice"];
        switch (choice)
        {
            case null: return new ToolChoice(tools, false, null);
            case JsonValue cv when cv.TryGetValue(out string? cs):
                if (cs == "none") return new ToolChoice(null, false, null);
                if (cs == "auto") return new ToolChoice(tools, false, null);
                if (cs != "required") throw Bad("tool_choice", "must be none, auto, required or {type: function, function: {name}}");
                if (tools is null) throw Bad("tool_choice", "is 'required' but no 'tools' were given");
                return new ToolChoice(tools, true, null);
            case JsonObject co:
                string want = co["function"] is JsonObject fo && fo["name"] is JsonValue wv && wv.TryGetValue(out string? w) ? w
                    : throw Bad("tool_choice", "must be {type: function, function: {name}}");
                if (tools is null || tools.All(t => t.Name != want)) throw Bad("tool_choice", $"names the function '{want}', which is not in 'tools'");
                return new ToolChoice(tools, true, want);
            default: throw Bad("tool_choice", "must be a string or an object");
        }
    }
}

/// <summary>The tools of a chat request and what tool_choice asks: <paramref name="Required"/> a call, of <paramref name="Name"/> when set.</summary>
internal sealed record ToolChoice(List<ChatTool>? Tools, bool Required, string? Name);

/// <summary>The part of an HTTP request the reader needs (so it is testable without a server).</summary>
internal readonly record struct HttpRequestLike(Stream Body);
