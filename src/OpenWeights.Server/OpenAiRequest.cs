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
        return Parse(ms.GetBuffer().AsMemory(0, (int)ms.Length));
    }

    /// <summary>The deepest nesting of arrays and objects a request may have.</summary>
    public const int MaxDepth = 64;

    /// <summary>
    /// Parses a request body: a JSON object in UTF-8, every string valid Unicode (no invalid or overlong UTF-8, no lone
    /// surrogate escapes), no key twice in an object, at most <see cref="MaxDepth"/> levels deep. Anything else is a 400
    /// <c>invalid_json</c>. The tree is built eagerly, so no later field access can meet an undecodable value.
    /// </summary>
    public static OpenAiRequest Parse(ReadOnlyMemory<byte> utf8)
    {
        var options = new JsonDocumentOptions { MaxDepth = MaxDepth };
        JsonDocument doc;
        try { doc = JsonDocument.Parse(utf8, options); }
        catch (JsonException e) { throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", code: "invalid_json"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ApiException(400, $"the request body must be a JSON object (got {Kind(doc.RootElement.ValueKind)})", code: "invalid_json");
            Check(doc.RootElement, "");
        }
        // checked: every string decodes and every key is unique, so the tree's lazy decoding cannot fail later
        return new OpenAiRequest((JsonObject)JsonNode.Parse(utf8.Span, documentOptions: options)!);
    }

    // JsonNode decodes strings and builds objects lazily and would throw on first access; check them all now
    private static void Check(JsonElement e, string path)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>();
                foreach (var p in e.EnumerateObject())
                {
                    string name = Decode(() => p.Name, path.Length == 0 ? "a key" : $"a key in '{Printable(path)}'", path.Length == 0 ? null : Printable(path));
                    string child = path.Length == 0 ? name : $"{path}.{name}";
                    if (!seen.Add(name)) throw new ApiException(400, $"the request body has the key '{Printable(child)}' twice", Printable(child), "invalid_json");
                    Check(p.Value, child);
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var x in e.EnumerateArray())
                {
                    if (x.ValueKind is JsonValueKind.Object or JsonValueKind.Array or JsonValueKind.String) Check(x, $"{path}[{i}]");
                    i++;
                }
                break;
            case JsonValueKind.String:
                Decode(e.GetString, $"'{Printable(path)}'", Printable(path));
                break;
        }
    }

    private static string Decode(Func<string?> get, string what, string? param)
    {
        try { return get()!; }
        catch (InvalidOperationException) { throw new ApiException(400, $"{what} is not valid Unicode text (invalid UTF-8 or a lone surrogate)", param, "invalid_json"); }
    }

    /// <summary>Text from a request or an exception, safe to echo: at most <paramref name="max"/> characters, control characters and surrogates escaped.</summary>
    internal static string Printable(string s, int max = 64)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in s.Length > max ? s[..max] : s)
            if (char.IsControl(c) || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:x4}"); else sb.Append(c);
        if (s.Length > max) sb.Append("...");
        return sb.ToString();
    }

    internal static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "an object", JsonValueKind.Array => "a list", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", _ => "null",
    };

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
        if (!jv.TryGetValue(out double d) || !double.IsFinite(d)) throw Bad(name, $"must be a number between {min} and {max}");
        if (d > max || (minExclusive ? d <= min : d < min))
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
    public GenerationOptions GenerationOptions(ModelHost host, int promptTokens, int index) =>
        GenerationOptions(host.Scheduler.ContextSize, host.Tokenizer.VocabSize, promptTokens, index);

    /// <summary>Sampling and stopping parameters for a context of <paramref name="contextSize"/> and a vocabulary of <paramref name="vocabSize"/>.</summary>
    public GenerationOptions GenerationOptions(int contextSize, int vocabSize, int promptTokens, int index)
    {
        int room = contextSize - promptTokens;
        long? max = Integer("max_completion_tokens", 1, int.MaxValue) ?? Integer("max_tokens", 1, int.MaxValue);
        int maxTokens = (int)Math.Min(max ?? room, room);
        var bias = LogitBias(vocabSize);
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
        // ignore_eos (llama.cpp's server and vLLM read it too): end-of-generation tokens do not end the reply (benchmarks)
        return new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling, StopStrings = Stops(), IgnoreEos = Bool("ignore_eos") };
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
                throw Bad("logit_bias", $"has key '{Printable(k)}', not a token id of this model (0..{vocab - 1})");
            if (val is not JsonValue jv || jv.GetValueKind() != JsonValueKind.Number) throw Bad("logit_bias", "values must be numbers");
            if (!jv.TryGetValue(out double b) || b is < -100 or > 100) throw Bad("logit_bias", $"values must be between -100 and 100 (got {jv.ToJsonString()})");
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

    // a string member of a request object, or null when absent; any other type is a 400 naming it
    private static string? OptionalString(JsonObject o, string key, string path)
    {
        var v = o[key];
        if (v is null) return null;
        return v is JsonValue jv && jv.TryGetValue(out string? s) ? s : throw Bad($"{path}.{key}", "must be a string");
    }

    /// <summary>stream_options.include_usage (false when absent).</summary>
    public bool IncludeUsage()
    {
        var v = Body["stream_options"];
        if (v is null) return false;
        if (v is not JsonObject o) throw Bad("stream_options", "must be an object");
        if (o["include_usage"] is null) return false;
        return o["include_usage"] is JsonValue jv && jv.TryGetValue(out bool b) ? b : throw Bad("stream_options.include_usage", "must be a boolean");
    }

    /// <summary>The most prompts one text completion request may hold.</summary>
    public const int MaxPrompts = 16;

    /// <summary>
    /// The prompts of a text completion, as OpenAI takes them: a string, a list of strings, a list of token ids, or a list of
    /// token-id lists. Each is text (Ids null) or token ids (Text null; checked to be integers >= 0, the vocabulary is the caller's).
    /// </summary>
    public List<(string? Text, int[]? Ids)> Prompts()
    {
        const string shape = "must be a string, a list of strings, a list of token ids or a list of token-id lists";
        var items = new List<(string?, int[]?)>();
        switch (Body["prompt"])
        {
            case JsonValue v when v.TryGetValue(out string? s): items.Add((s, null)); break;
            case JsonArray a when a.Count > 0 && a.All(x => x is JsonValue xv && xv.GetValueKind() == JsonValueKind.Number):
                items.Add((null, TokenIds(a, "prompt"))); break;
            case JsonArray a when a.Count > 0:
                if (a.Count > MaxPrompts) throw Bad("prompt", $"may hold at most {MaxPrompts} prompts");
                for (int i = 0; i < a.Count; i++)
                    items.Add(a[i] switch
                    {
                        JsonValue xv when xv.TryGetValue(out string? xs) => (xs, null),
                        JsonArray ids when ids.Count > 0 => (null, TokenIds(ids, $"prompt[{i}]")),
                        JsonArray => throw Bad($"prompt[{i}]", "must not be empty"),
                        _ => throw Bad($"prompt[{i}]", shape),
                    });
                break;
            case null: throw Bad("prompt", "is required");
            case JsonArray: throw Bad("prompt", "must not be empty");
            default: throw Bad("prompt", shape);
        }
        return items;
    }

    /// <summary>The most items one embeddings request may hold.</summary>
    public const int MaxEmbeddingInputs = 2048;

    /// <summary>
    /// The input of an embeddings request: a string, a list of strings, a list of token ids, or a list of token-id lists.
    /// Each item is text (Ids null) or token ids (Text null); ids are checked to be integers >= 0 (the vocabulary is the caller's).
    /// </summary>
    public List<(string? Text, int[]? Ids)> EmbeddingInput()
    {
        const string shape = "must be a string, a list of strings, a list of token ids or a list of token-id lists";
        var items = new List<(string?, int[]?)>();
        switch (Body["input"])
        {
            case JsonValue v when v.TryGetValue(out string? s): items.Add((s, null)); break;
            case JsonArray a when a.Count > 0 && a.All(x => x is JsonValue xv && xv.GetValueKind() == JsonValueKind.Number):
                if (a.Count > 1 << 20) throw Bad("input", "holds too many token ids");
                items.Add((null, TokenIds(a, "input"))); break;
            case JsonArray a when a.Count > 0:
                if (a.Count > MaxEmbeddingInputs) throw Bad("input", $"may hold at most {MaxEmbeddingInputs} items");
                for (int i = 0; i < a.Count; i++)
                    items.Add(a[i] switch
                    {
                        JsonValue xv when xv.TryGetValue(out string? xs) => (xs, null),
                        JsonArray ids => (null, TokenIds(ids, $"input[{i}]")),
                        _ => throw Bad($"input[{i}]", shape),
                    });
                break;
            case null: throw Bad("input", "is required");
            case JsonArray: throw Bad("input", "must not be empty");
            default: throw Bad("input", shape);
        }
        return items;
    }

    private static int[] TokenIds(JsonArray a, string p)
    {
        var ids = new int[a.Count];
        for (int i = 0; i < a.Count; i++)
            ids[i] = a[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int id) && id >= 0 ? id
                : throw Bad(p, $"token ids must be integers >= 0 (item {i} is {(a[i] is null ? "null" : a[i]!.ToJsonString().Length > 32 ? a[i]!.GetValueKind().ToString().ToLowerInvariant() : a[i]!.ToJsonString())})");
        return ids;
    }

    /// <summary>response_format: (type, schema JSON); type is text, json_object or json_schema; the schema only for json_schema.</summary>
    public (string Type, string? Schema) ResponseFormat()
    {
        if (Body["response_format"] is not { } rf) return ("text", null);
        string type = rf is JsonObject ro && ro["type"] is JsonValue tv && tv.TryGetValue(out string? t) ? t : throw Bad("response_format", "must be {type: text | json_object | json_schema}");
        if (type is not ("text" or "json_object" or "json_schema")) throw Bad("response_format.type", $"must be text, json_object or json_schema (got '{Printable(type)}')");
        if (type != "json_schema") return (type, null);
        var js = rf["json_schema"] as JsonObject ?? throw Bad("response_format.json_schema", "is required for type json_schema");
        var schema = js["schema"] ?? throw Bad("response_format.json_schema.schema", "is required");
        if (schema is not JsonObject && !(schema is JsonValue bv && bv.GetValueKind() is JsonValueKind.True or JsonValueKind.False))
            throw Bad("response_format.json_schema.schema", "must be a JSON schema (an object)");
        return (type, schema.ToJsonString());
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
            string role = OptionalString(m, "role", p) ?? throw Bad($"{p}.role", "is required");
            if (role == "developer") role = "system";
            if (role is not ("system" or "user" or "assistant" or "tool")) throw Bad($"{p}.role", $"must be system, developer, user, assistant or tool (got '{Printable(role)}')");
            string? content = Content(m["content"], $"{p}.content");
            List<ChatToolCall>? calls = null;
            if (m["tool_calls"] is not (null or JsonArray)) throw Bad($"{p}.tool_calls", "must be a list");
            if (m["tool_calls"] is JsonArray tc && tc.Count > 0)
            {
                calls = [];
                for (int k = 0; k < tc.Count; k++)
                {
                    string q = $"{p}.tool_calls[{k}]";
                    if (tc[k] is not JsonObject c || c["function"] is not JsonObject f) throw Bad(q, "must be {id, type: function, function: {name, arguments}}");
                    string name = OptionalString(f, "name", $"{q}.function") ?? throw Bad($"{q}.function.name", "is required");
                    string args = f["arguments"] switch
                    {
                        null => "{}",
                        JsonValue av when av.TryGetValue(out string? astr) => astr,
                        var other => other.ToJsonString(),
                    };
                    string id = OptionalString(c, "id", q) ?? $"call_{i}_{k}";
                    calls.Add(new ChatToolCall(id, name, args));
                }
            }
            if (content is null && calls is null && role != "assistant") throw Bad($"{p}.content", "is required");
            string? toolCallId = OptionalString(m, "tool_call_id", p);
            string? name2 = OptionalString(m, "name", p);
            // an assistant's earlier reasoning, as this server returns it (llama.cpp's field name)
            string? reasoning = role == "assistant" ? OptionalString(m, "reasoning_content", p) : null;
            turns.Add(new ChatTurn(role, content, calls, toolCallId, name2, reasoning));
        }
        return turns;
    }

    /// <summary>
    /// Template variables a request sets (null when none):
    /// <list type="bullet">
    /// <item><c>reasoning_effort</c>: none, minimal, low, medium, high or xhigh (what OpenAI's clients send). gpt-oss's
    /// template writes low, medium or high into its system message (none and minimal give low: gpt-oss cannot stop
    /// thinking; xhigh gives high). For templates with a thinking switch, none sets <c>enable_thinking</c> false (Qwen3,
    /// DeepSeek-V3.1/V3.2: no thinking) and any other level sets it true (DeepSeek-V3.1/V3.2 think only when asked).</item>
    /// <item><c>chat_template_kwargs</c>: an object whose members become template variables, as llama.cpp's and vLLM's
    /// servers take them (<c>{"enable_thinking": false}</c> for Qwen3, <c>{"thinking": true}</c> for DeepSeek-V3.1); they win
    /// over what reasoning_effort sets. The variables the server sets itself (messages, tools, add_generation_prompt,
    /// bos_token, eos_token) cannot be given.</item>
    /// </list>
    /// </summary>
    public Dictionary<string, object?>? TemplateVariables() => TemplateVariables(String("reasoning_effort"), "reasoning_effort");

    /// <summary>
    /// The template variables of <see cref="TemplateVariables()"/> with the reasoning effort given apart
    /// (<paramref name="effort"/>, named <paramref name="effortParam"/> in errors): the Responses API's <c>reasoning.effort</c>.
    /// </summary>
    public Dictionary<string, object?>? TemplateVariables(string? effort, string effortParam)
    {
        Dictionary<string, object?>? vars = null;
        if (effort is not null)
        {
            string level = effort switch
            {
                "none" or "minimal" or "low" => "low",
                "medium" => "medium",
                "high" or "xhigh" => "high",
                _ => throw Bad(effortParam, $"must be none, minimal, low, medium, high or xhigh (got '{Printable(effort)}')"),
            };
            vars = ChatFormatter.ThinkingVariables(effort != "none");
            vars["reasoning_effort"] = level;
        }
        switch (Body["chat_template_kwargs"])
        {
            case null: break;
            case JsonObject kwargs:
                foreach (var (key, value) in kwargs)
                {
                    if (ServerVariables.Contains(key))
                        throw Bad($"chat_template_kwargs.{Printable(key)}", "is set by the server and cannot be given (messages, tools, add_generation_prompt, bos_token, eos_token)");
                    (vars ??= new())[key] = value?.DeepClone();
                }
                break;
            default: throw Bad("chat_template_kwargs", "must be an object of template variables, e.g. {\"enable_thinking\": false}");
        }
        return vars;
    }

    private static readonly HashSet<string> ServerVariables = ["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"];

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
                    if (part is not JsonObject po || po["type"] is not JsonValue tv || !tv.TryGetValue(out string? t)) throw Bad(p, "parts must be objects with a string type");
                    if (t != "text") throw Bad(p, $"part type '{Printable(t)}' is not supported (text only)");
                    sb.Append(po["text"] is JsonValue xv && xv.TryGetValue(out string? x) ? x : throw Bad(p, "a text part needs a string 'text'"));
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
                if (tools.Any(x => x.Name == name)) throw Bad($"tools[{i}].function.name", $"repeats the function name '{Printable(name)}'");
                string? desc = OptionalString(f, "description", $"tools[{i}].function");
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
                if (tools is null || tools.All(t => t.Name != want)) throw Bad("tool_choice", $"names the function '{Printable(want)}', which is not in 'tools'");
                return new ToolChoice(tools, true, want);
            default: throw Bad("tool_choice", "must be a string or an object");
        }
    }
}

/// <summary>The tools of a chat request and what tool_choice asks: <paramref name="Required"/> a call, of <paramref name="Name"/> when set.</summary>
internal sealed record ToolChoice(List<ChatTool>? Tools, bool Required, string? Name);

/// <summary>The part of an HTTP request the reader needs (so it is testable without a server).</summary>
internal readonly record struct HttpRequestLike(Stream Body);
