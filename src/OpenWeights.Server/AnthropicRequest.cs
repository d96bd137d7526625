using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using static OpenWeights.Server.OpenAiRequest;

namespace OpenWeights.Server;

/// <summary>
/// An Anthropic Messages request (POST /v1/messages and /v1/messages/count_tokens) read into the shared chat types:
/// system (a string or text blocks), messages of user/assistant turns whose content is a string or blocks (text,
/// tool_use, tool_result, thinking; images and documents are refused), tools (name, description, input_schema),
/// tool_choice (auto, any, tool, none), stop_sequences, max_tokens, temperature, top_p, top_k. A wrong value is a 400
/// naming the field, as <see cref="OpenAiRequest"/> does (its JSON checks are the same).
/// </summary>
internal sealed class AnthropicRequest(OpenAiRequest body)
{
    public OpenAiRequest Body { get; } = body;

    /// <summary>The conversation as template turns: the system prompt first, each tool_result block as a tool turn.</summary>
    public List<ChatTurn> Turns()
    {
        var turns = new List<ChatTurn>();
        if (System() is { } system) turns.Add(ChatTurn.System(system));
        if (Body.Body["messages"] is not JsonArray a) throw Bad("messages", Body.Body["messages"] is null ? "is required" : "must be a list of messages");
        if (a.Count == 0) throw Bad("messages", "must hold at least one message");
        var toolNames = new Dictionary<string, string>(); // tool_use id -> name, for the tool turns that answer them
        for (int i = 0; i < a.Count; i++)
        {
            string p = $"messages[{i}]";
            if (a[i] is not JsonObject m) throw Bad(p, "must be an object");
            string role = m["role"] is JsonValue rv && rv.TryGetValue(out string? r) ? r : throw Bad($"{p}.role", "is required (user or assistant)");
            if (role is not ("user" or "assistant" or "system")) throw Bad($"{p}.role", $"must be user, assistant or system (got '{Printable(role)}')");
            switch (m["content"])
            {
                case JsonValue cv when cv.TryGetValue(out string? s): turns.Add(new ChatTurn(role, s)); break;
                case JsonArray blocks: Blocks(turns, role, blocks, $"{p}.content", toolNames); break;
                case null: throw Bad($"{p}.content", "is required");
                default: throw Bad($"{p}.content", "must be a string or a list of content blocks");
            }
        }
        return turns;
    }

    // one message's blocks: text joins, tool_use becomes the assistant's tool calls, each tool_result a tool turn of its own
    private static void Blocks(List<ChatTurn> turns, string role, JsonArray blocks, string p, Dictionary<string, string> toolNames)
    {
        var text = new StringBuilder();
        StringBuilder? thinking = null;
        List<ChatToolCall>? calls = null;
        for (int k = 0; k < blocks.Count; k++)
        {
            string q = $"{p}[{k}]";
            if (blocks[k] is not JsonObject b || b["type"] is not JsonValue tv || !tv.TryGetValue(out string? type)) throw Bad(q, "must be a content block with a string 'type'");
            switch (type)
            {
                case "text":
                    text.Append(Str(b, "text", q) ?? throw Bad($"{q}.text", "is required"));
                    break;
                case "image" or "document":
                    throw new ApiException(400, $"'{q}' is {(type == "image" ? "an image" : "a document")}: this server's models read text only", q, "unsupported_content");
                case "tool_use" when role == "assistant":
                    string id = Str(b, "id", q) ?? throw Bad($"{q}.id", "is required");
                    string name = Str(b, "name", q) ?? throw Bad($"{q}.name", "is required");
                    if (b["input"] is not JsonObject input) throw Bad($"{q}.input", "must be an object");
                    (calls ??= []).Add(new ChatToolCall(id, name, input.ToJsonString()));
                    toolNames[id] = name;
                    break;
                case "tool_result" when role == "user":
                    string useId = Str(b, "tool_use_id", q) ?? throw Bad($"{q}.tool_use_id", "is required");
                    string result = b["content"] switch
                    {
                        null => "",
                        JsonValue rv when rv.TryGetValue(out string? rs) => rs,
                        JsonArray parts => string.Concat(parts.Select((x, j) => x is JsonObject xo && Str(xo, "type", $"{q}.content[{j}]") == "text"
                            ? Str(xo, "text", $"{q}.content[{j}]") ?? "" : throw Bad($"{q}.content[{j}]", "must be a text block (this server's models read text only)"))),
                        _ => throw Bad($"{q}.content", "must be a string or a list of text blocks"),
                    };
                    if (b["is_error"] is JsonValue ev && ev.TryGetValue(out bool isError) && isError) result = "Error: " + result;
                    FlushText(turns, role, text, null, null);
                    turns.Add(ChatTurn.Tool(useId, result, toolNames.GetValueOrDefault(useId)));
                    break;
                case "thinking" when role == "assistant":
                    (thinking ??= new()).Append(Str(b, "thinking", q) ?? "");
                    break;
                case "redacted_thinking" when role == "assistant":
                    break; // another provider's encrypted thinking: nothing a local model can read
                case "tool_use" or "tool_result" or "thinking" or "redacted_thinking" when role != "system":
                    throw Bad($"{q}.type", $"'{type}' blocks belong in {(type == "tool_result" ? "user" : "assistant")} messages");
                default:
                    throw Bad($"{q}.type", role == "system" ? "must be text in a system message" : $"must be text, tool_use, tool_result or thinking (got '{Printable(type)}')");
            }
        }
        FlushText(turns, role, text, calls, thinking?.ToString());
    }

    private static void FlushText(List<ChatTurn> turns, string role, StringBuilder text, List<ChatToolCall>? calls, string? thinking)
    {
        if (text.Length == 0 && calls is null && thinking is null) return;
        turns.Add(new ChatTurn(role, text.ToString(), calls, Reasoning: thinking));
        text.Clear();
    }

    private static string? Str(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw Bad($"{path}.{key}", "must be a string"),
    };

    /// <summary>The system prompt: a string, or text blocks joined; null when absent.</summary>
    public string? System() => Body.Body["system"] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonArray blocks => string.Join("\n", blocks.Select((b, i) => b is JsonObject bo && Str(bo, "type", $"system[{i}]") == "text"
            ? Str(bo, "text", $"system[{i}]") ?? throw Bad($"system[{i}].text", "is required") : throw Bad($"system[{i}]", "must be a text block"))),
        _ => throw Bad("system", "must be a string or a list of text blocks"),
    };

    /// <summary>tools and tool_choice in the shared form (Anthropic's any = OpenAI's required; tool = a named function).</summary>
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
                    if (a[i] is not JsonObject t) throw Bad(p, "must be {name, description, input_schema}");
                    if (Str(t, "type", p) is { } type && type != "custom")
                        throw Bad($"{p}.type", $"'{Printable(type)}' is one of Anthropic's server tools, which this server does not run; give custom tools (name, description, input_schema)");
                    string name = Str(t, "name", p) is { Length: > 0 } n ? n : throw Bad($"{p}.name", "is required");
                    if (tools.Any(x => x.Name == name)) throw Bad($"{p}.name", $"repeats the tool name '{Printable(name)}'");
                    var schema = t["input_schema"];
                    if (schema is not (null or JsonObject)) throw Bad($"{p}.input_schema", "must be a JSON schema object");
                    tools.Add(new ChatTool(name, Str(t, "description", p), schema?.ToJsonString()));
                }
                if (tools.Count == 0) tools = null;
                break;
            default: throw Bad("tools", "must be a list");
        }
        switch (Body.Body["tool_choice"])
        {
            case null: return new ToolChoice(tools, false, null);
            case JsonObject c:
                string type = Str(c, "type", "tool_choice") ?? throw Bad("tool_choice.type", "is required (auto, any, tool or none)");
                switch (type)
                {
                    case "auto": return new ToolChoice(tools, false, null);
                    case "none": return new ToolChoice(null, false, null);
                    case "any":
                        if (tools is null) throw Bad("tool_choice", "is 'any' but no 'tools' were given");
                        return new ToolChoice(tools, true, null);
                    case "tool":
                        string want = Str(c, "name", "tool_choice") ?? throw Bad("tool_choice.name", "is required for type tool");
                        if (tools is null || tools.All(t => t.Name != want)) throw Bad("tool_choice.name", $"names the tool '{Printable(want)}', which is not in 'tools'");
                        return new ToolChoice(tools, true, want);
                    default: throw Bad("tool_choice.type", $"must be auto, any, tool or none (got '{Printable(type)}')");
                }
            default: throw Bad("tool_choice", "must be an object {type: auto | any | tool | none}");
        }
    }

    /// <summary>stop_sequences: at most 16 non-empty strings.</summary>
    public IReadOnlyList<string> StopSequences()
    {
        switch (Body.Body["stop_sequences"])
        {
            case null: return [];
            case JsonArray a:
                if (a.Count > 16) throw Bad("stop_sequences", "may hold at most 16 strings");
                return a.Select(x => x is JsonValue v && v.TryGetValue(out string? s) && s.Length > 0 ? s : throw Bad("stop_sequences", "must be a list of non-empty strings")).ToList();
            default: throw Bad("stop_sequences", "must be a list of strings");
        }
    }

    /// <summary>max_tokens (required), temperature (0..1), top_p, top_k and stop_sequences, over the CLI's sampling defaults.</summary>
    public GenerationOptions GenerationOptions(ModelHost h, int promptTokens)
    {
        long maxTokens = Body.Integer("max_tokens", 1, int.MaxValue) ?? throw Bad("max_tokens", "is required");
        var d = SamplingOptions.Default;
        var sampling = d with
        {
            Temperature = (float?)Body.Number("temperature", 0, 1) ?? d.Temperature,
            TopP = (float?)Body.Number("top_p", 0, 1, minExclusive: true) ?? d.TopP,
            TopK = (int?)Body.Integer("top_k", 0, int.MaxValue) ?? d.TopK,
        };
        return new GenerationOptions
        {
            MaxTokens = (int)Math.Min(maxTokens, h.Scheduler.ContextSize - promptTokens),
            Sampling = sampling,
            StopStrings = StopSequences(),
        };
    }

    /// <summary>
    /// <c>thinking: {type: enabled | disabled}</c> as a &lt;think&gt; template's switch (<c>enable_thinking</c>: Qwen3,
    /// DeepSeek-V3.1); absent, or a model without the switch: the template's default (budget_tokens is not enforced).
    /// </summary>
    public Dictionary<string, object?>? ThinkingVariables(ChatFormatter f)
    {
        if (Body.Body["thinking"] is not JsonObject t) return null;
        string? type = t["type"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        bool on = type switch
        {
            "enabled" => true,
            "disabled" => false,
            _ => throw Bad("thinking.type", "must be \"enabled\" or \"disabled\""),
        };
        return f.IsThinking ? ChatFormatter.ThinkingVariables(on) : null;
    }

    /// <summary>Fields Anthropic defines that change nothing here, checked for their type only.</summary>
    public void Ignored()
    {
        if (Body.Body["metadata"] is not (null or JsonObject)) throw Bad("metadata", "must be an object");
        if (Body.Body["thinking"] is not (null or JsonObject)) throw Bad("thinking", "must be an object {type: enabled | disabled, budget_tokens}");
        Body.String("service_tier");
    }
}
