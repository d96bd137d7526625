using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using static OpenWeights.Server.OpenAiRequest;

namespace OpenWeights.Server;

/// <summary>
/// An OpenAI Responses request (POST /v1/responses) read into the shared chat types: <c>input</c> (a string, or items:
/// messages of role user, assistant, system or developer whose content is a string or input_text/output_text parts;
/// function_call and function_call_output items; reasoning items), <c>instructions</c>, function <c>tools</c> (flat:
/// name, description, parameters) and <c>tool_choice</c>, <c>text.format</c>, <c>reasoning.effort</c>,
/// <c>max_output_tokens</c>, <c>temperature</c>, <c>top_p</c>, <c>store</c>, <c>previous_response_id</c>. A wrong
/// value is a 400 naming the field, as <see cref="OpenAiRequest"/> does (its JSON checks are the same).
/// </summary>
internal sealed class ResponsesRequest(OpenAiRequest body)
{
    public OpenAiRequest Body { get; } = body;

    /// <summary>instructions: a system message put before the conversation (never carried over to a later response).</summary>
    public string? Instructions() => Body.String("instructions");

    public string? PreviousResponseId() => Body.String("previous_response_id") is { } id
        ? id.Length > 0 ? id : throw Bad("previous_response_id", "must not be empty")
        : null;

    /// <summary>store (default true): whether the response is kept for GET and previous_response_id.</summary>
    public bool Store() => Body.Bool("store", fallback: true);

    /// <summary>
    /// The new input as template turns. Consecutive assistant items (reasoning, a message, function calls) make one assistant
    /// turn, as chat completions' assistant message with tool_calls does; each function_call_output is a tool turn.
    /// <paramref name="history"/>: the turns of the previous response, which name the functions earlier calls used.
    /// </summary>
    public List<ChatTurn> Input(IReadOnlyList<ChatTurn> history)
    {
        var turns = new List<ChatTurn>();
        switch (Body.Body["input"])
        {
            case null:
                if (history.Count == 0) throw Bad("input", "is required (or 'previous_response_id' with the input that continues it)");
                return turns;
            case JsonValue v when v.TryGetValue(out string? s):
                turns.Add(ChatTurn.User(s));
                return turns;
            case JsonArray items:
                if (items.Count == 0 && history.Count == 0) throw Bad("input", "must hold at least one item");
                var callNames = new Dictionary<string, string>(); // call_id -> function name, for the tool turns that answer them
                foreach (var t in history)
                    foreach (var c in t.ToolCalls ?? []) callNames[c.Id] = c.Name;
                var assistant = new AssistantTurn();
                for (int i = 0; i < items.Count; i++) Item(turns, assistant, items[i], $"input[{i}]", callNames);
                assistant.Flush(turns);
                return turns;
            default: throw Bad("input", "must be a string or a list of input items");
        }
    }

    // the assistant's items gathered into one turn: its reasoning, text and calls
    private sealed class AssistantTurn
    {
        public StringBuilder? Reasoning, Text;
        public List<ChatToolCall>? Calls;

        public void Flush(List<ChatTurn> turns)
        {
            if (Reasoning is null && Text is null && Calls is null) return;
            turns.Add(new ChatTurn("assistant", Text?.ToString() ?? (Calls is null ? "" : null), Calls, Reasoning: Reasoning?.ToString()));
            Reasoning = Text = null; Calls = null;
        }
    }

    /// <summary>
    /// The input as the Responses API lists it (GET .../input_items): items, each with an id and a type; a string input is
    /// one user message; a message's string content becomes one input_text (output_text for the assistant) part.
    /// </summary>
    public JsonArray InputItems()
    {
        var items = new JsonArray();
        switch (Body.Body["input"])
        {
            case JsonValue v when v.TryGetValue(out string? s):
                items.Add(Message("user", s));
                break;
            case JsonArray a:
                foreach (var node in a)
                {
                    var item = (JsonObject)node!.DeepClone();
                    string type = item["type"]?.GetValue<string>() ?? "message";
                    item["type"] = type;
                    if (type == "message" && item["content"] is JsonValue cv && cv.TryGetValue(out string? text))
                        item["content"] = new JsonArray(new JsonObject { ["type"] = item["role"]?.GetValue<string>() == "assistant" ? "output_text" : "input_text", ["text"] = text });
                    if (item["id"] is null)
                        item["id"] = type switch { "message" => "msg_", "function_call" => "fc_", "function_call_output" => "fco_", "reasoning" => "rs_", _ => "item_" } + Guid.NewGuid().ToString("N");
                    items.Add(item);
                }
                break;
        }
        return items;

        static JsonObject Message(string role, string text) => new()
        {
            ["id"] = "msg_" + Guid.NewGuid().ToString("N"), ["type"] = "message", ["role"] = role, ["status"] = "completed",
            ["content"] = new JsonArray(new JsonObject { ["type"] = "input_text", ["text"] = text }),
        };
    }

    private static void Item(List<ChatTurn> turns, AssistantTurn assistant, JsonNode? node, string p, Dictionary<string, string> callNames)
    {
        if (node is not JsonObject item) throw Bad(p, "must be an input item (an object)");
        string type = Str(item, "type", p) ?? (item["role"] is not null ? "message" : throw Bad($"{p}.type", "is required"));
        switch (type)
        {
            case "message":
                string role = Str(item, "role", p) ?? throw Bad($"{p}.role", "is required (user, assistant, system or developer)");
                if (role == "developer") role = "system";
                if (role is not ("user" or "assistant" or "system")) throw Bad($"{p}.role", $"must be user, assistant, system or developer (got '{Printable(role)}')");
                string text = Content(item["content"], $"{p}.content", role);
                if (role == "assistant")
                {
                    if (assistant.Calls is not null) assistant.Flush(turns); // text after a call: the next turn
                    (assistant.Text ??= new()).Append(text);
                    return;
                }
                assistant.Flush(turns);
                turns.Add(new ChatTurn(role, text));
                return;
            case "function_call":
                string callId = Str(item, "call_id", p) ?? throw Bad($"{p}.call_id", "is required");
                string name = Str(item, "name", p) is { Length: > 0 } n ? n : throw Bad($"{p}.name", "is required");
                string args = Str(item, "arguments", p) ?? throw Bad($"{p}.arguments", "is required (the call's arguments as a JSON string)");
                (assistant.Calls ??= []).Add(new ChatToolCall(callId, name, args));
                callNames[callId] = name;
                return;
            case "function_call_output":
                string answers = Str(item, "call_id", p) ?? throw Bad($"{p}.call_id", "is required");
                string output = item["output"] switch
                {
                    JsonValue ov when ov.TryGetValue(out string? os) => os,
                    JsonArray parts => Parts(parts, $"{p}.output", "input_text"),
                    null => throw Bad($"{p}.output", "is required"),
                    _ => throw Bad($"{p}.output", "must be a string or a list of input_text parts"),
                };
                assistant.Flush(turns);
                turns.Add(ChatTurn.Tool(answers, output, callNames.GetValueOrDefault(answers)));
                return;
            case "reasoning":
                // the model's earlier thinking: its reasoning_text content, else its summary
                string thought = item["content"] is JsonArray rc && rc.Count > 0 ? Parts(rc, $"{p}.content", "reasoning_text")
                    : item["summary"] is JsonArray sm ? Parts(sm, $"{p}.summary", "summary_text")
                    : item["summary"] is null ? "" : throw Bad($"{p}.summary", "must be a list of summary_text parts");
                if (assistant.Text is not null || assistant.Calls is not null) assistant.Flush(turns);
                (assistant.Reasoning ??= new()).Append(thought);
                return;
            case "item_reference":
                throw Bad($"{p}.type", "item_reference is not supported: give the item itself, or continue with 'previous_response_id'");
            default:
                throw Bad($"{p}.type", $"must be message, function_call, function_call_output or reasoning (got '{Printable(type)}')");
        }
    }

    // a message's content: a string, or text parts joined (input_text for user/system, output_text or refusal for the assistant)
    private static string Content(JsonNode? content, string p, string role) => content switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonArray parts => Parts(parts, p, role == "assistant" ? "output_text" : "input_text"),
        null => throw Bad(p, "is required"),
        _ => throw Bad(p, "must be a string or a list of content parts"),
    };

    private static string Parts(JsonArray parts, string p, string textType)
    {
        var sb = new StringBuilder();
        for (int k = 0; k < parts.Count; k++)
        {
            string q = $"{p}[{k}]";
            if (parts[k] is not JsonObject part) throw Bad(q, "must be a content part (an object)");
            string type = Str(part, "type", q) ?? throw Bad($"{q}.type", "is required");
            switch (type)
            {
                case "input_text" or "output_text" or "text" or "reasoning_text" or "summary_text":
                    sb.Append(Str(part, "text", q) ?? throw Bad($"{q}.text", "is required"));
                    break;
                case "refusal":
                    sb.Append(Str(part, "refusal", q) ?? "");
                    break;
                case "input_image" or "input_file" or "input_audio":
                    throw new ApiException(400, $"'{q}' is {type}: this server's models read text only", q, "unsupported_content");
                default:
                    throw Bad($"{q}.type", $"must be {textType} (got '{Printable(type)}')");
            }
        }
        return sb.ToString();
    }

    private static string? Str(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw Bad($"{path}.{key}", "must be a string"),
    };

    /// <summary>
    /// tools (function tools only, in the Responses API's flat shape {type: function, name, description, parameters,
    /// strict}) and tool_choice (none, auto, required, or {type: function, name}). Hosted tools (web_search, file_search,
    /// ...) are refused: this server does not run them.
    /// </summary>
    public ToolChoice Tools()
    {
        List<ChatTool>? tools = null;
        switch (Body.Body["tools"])
        {
            case null: break;
            case JsonArray a:
                tools = [];
                for (int i = 0; i < a.Count; i++)
                {
                    string p = $"tools[{i}]";
                    if (a[i] is not JsonObject t) throw Bad(p, "must be {type: function, name, description, parameters}");
                    string type = Str(t, "type", p) ?? throw Bad($"{p}.type", "is required (function)");
                    if (type != "function") throw Bad($"{p}.type", $"'{Printable(type)}' is a tool this server does not run; give function tools (type function, name, parameters)");
                    string name = Str(t, "name", p) is { Length: > 0 } n ? n : throw Bad($"{p}.name", "is required");
                    if (tools.Any(x => x.Name == name)) throw Bad($"{p}.name", $"repeats the function name '{Printable(name)}'");
                    var parameters = t["parameters"];
                    if (parameters is not (null or JsonObject)) throw Bad($"{p}.parameters", "must be a JSON schema object");
                    if (t["strict"] is { } strict && !(strict is JsonValue sv && sv.GetValueKind() is JsonValueKind.True or JsonValueKind.False))
                        throw Bad($"{p}.strict", "must be a boolean");
                    tools.Add(new ChatTool(name, Str(t, "description", p), parameters?.ToJsonString()));
                }
                if (tools.Count == 0) tools = null;
                break;
            default: throw Bad("tools", "must be a list");
        }
        switch (Body.Body["tool_choice"])
        {
            case null: return new ToolChoice(tools, false, null);
            case JsonValue cv when cv.TryGetValue(out string? cs):
                switch (cs)
                {
                    case "none": return new ToolChoice(null, false, null);
                    case "auto": return new ToolChoice(tools, false, null);
                    case "required":
                        if (tools is null) throw Bad("tool_choice", "is 'required' but no 'tools' were given");
                        return new ToolChoice(tools, true, null);
                    default: throw Bad("tool_choice", $"must be none, auto, required or {{type: function, name}} (got '{Printable(cs)}')");
                }
            case JsonObject co:
                string ctype = Str(co, "type", "tool_choice") ?? throw Bad("tool_choice.type", "is required (function)");
                if (ctype != "function") throw Bad("tool_choice.type", $"must be function (got '{Printable(ctype)}'): this server runs function tools only");
                string want = Str(co, "name", "tool_choice") ?? throw Bad("tool_choice.name", "is required");
                if (tools is null || tools.All(t => t.Name != want)) throw Bad("tool_choice.name", $"names the function '{Printable(want)}', which is not in 'tools'");
                return new ToolChoice(tools, true, want);
            default: throw Bad("tool_choice", "must be a string or {type: function, name}");
        }
    }

    /// <summary>text.format: (type, schema JSON); type is text, json_object or json_schema (its schema flat: text.format.schema).</summary>
    public (string Type, string? Schema) TextFormat()
    {
        switch (Body.Body["text"])
        {
            case null: return ("text", null);
            case JsonObject text:
                if (text["format"] is null) return ("text", null);
                if (text["format"] is not JsonObject format) throw Bad("text.format", "must be {type: text | json_object | json_schema}");
                string type = Str(format, "type", "text.format") ?? throw Bad("text.format.type", "is required (text, json_object or json_schema)");
                if (type is not ("text" or "json_object" or "json_schema")) throw Bad("text.format.type", $"must be text, json_object or json_schema (got '{Printable(type)}')");
                if (type != "json_schema") return (type, null);
                var schema = format["schema"] ?? throw Bad("text.format.schema", "is required for type json_schema");
                if (schema is not JsonObject) throw Bad("text.format.schema", "must be a JSON schema (an object)");
                return (type, schema.ToJsonString());
            default: throw Bad("text", "must be an object {format: {...}}");
        }
    }

    /// <summary>reasoning.effort (none, minimal, low, medium, high, xhigh) and the template variables it sets, with chat_template_kwargs.</summary>
    public Dictionary<string, object?>? TemplateVariables()
    {
        string? effort = null;
        switch (Body.Body["reasoning"])
        {
            case null: break;
            case JsonObject r:
                effort = Str(r, "effort", "reasoning");
                Str(r, "summary", "reasoning"); // auto, concise, detailed: the model's own reasoning is returned whole
                break;
            default: throw Bad("reasoning", "must be an object {effort, summary}");
        }
        return Body.TemplateVariables(effort, "reasoning.effort");
    }

    /// <summary>max_output_tokens, temperature and top_p (and the extensions chat completions takes: seed, top_k, ...) over the CLI's defaults.</summary>
    public GenerationOptions GenerationOptions(ModelHost h, int promptTokens)
    {
        var o = Body.GenerationOptions(h, promptTokens, 0);
        if (Body.Integer("max_output_tokens", 1, int.MaxValue) is { } max)
            o = o with { MaxTokens = (int)Math.Min(max, h.Scheduler.ContextSize - promptTokens) };
        return o;
    }

    /// <summary>Fields the Responses API defines that change nothing here, checked for their type only.</summary>
    public void Ignored()
    {
        if (Body.Body["metadata"] is not (null or JsonObject)) throw Bad("metadata", "must be an object");
        if (Body.Body["include"] is not (null or JsonArray)) throw Bad("include", "must be a list");
        if (Body.Body["stream_options"] is not (null or JsonObject)) throw Bad("stream_options", "must be an object");
        Body.Bool("parallel_tool_calls", true);
        if (Body.Bool("background")) throw Bad("background", "is not supported: this server answers in the request (stream for progress)");
        Body.String("user"); Body.String("truncation"); Body.String("service_tier"); Body.String("safety_identifier"); Body.String("prompt_cache_key");
        if (Body.Body["conversation"] is not null) throw Bad("conversation", "is not supported: continue with 'previous_response_id'");
        if (Body.Body["prompt"] is not null) throw Bad("prompt", "(a stored prompt template) is not supported: give 'input' and 'instructions'");
    }
}
