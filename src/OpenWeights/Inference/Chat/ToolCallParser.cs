using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Finds tool calls in a model's reply: Hermes/Qwen <c>&lt;tool_call&gt;{...}&lt;/tool_call&gt;</c>, Llama 3.x
/// <c>&lt;|python_tag|&gt;</c> / bare JSON <c>{"name":..,"parameters":..}</c>, Mistral <c>[TOOL_CALLS][...]</c> and
/// <c>[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}</c> ([CALL_ID] optional), DeepSeek's <c>&lt;｜tool▁calls▁begin｜&gt;</c> blocks (V3/R1 and
/// V3.1/V3.2 forms, see <see cref="ToolCallFormat.DeepSeek"/>); gpt-oss harmony replies go to <see cref="HarmonyReplyParser"/>.
/// What is not a well-formed call stays text.
/// </summary>
public static class ToolCallParser
{
    public static ParsedReply Parse(string text, ToolCallFormat format = ToolCallFormat.Generic)
    {
        if (format == ToolCallFormat.Harmony) return HarmonyReplyParser.Parse(text);
        var calls = new List<ChatToolCall>();
        string content = text;
        if (format is ToolCallFormat.Hermes or ToolCallFormat.Generic && text.Contains("<tool_call>", StringComparison.Ordinal))
            content = ParseHermes(text, calls);
        else if (format is ToolCallFormat.Mistral or ToolCallFormat.Generic && text.Contains("[TOOL_CALLS]", StringComparison.Ordinal))
            content = ParseMistral(text, calls);
        else if (format is ToolCallFormat.DeepSeek or ToolCallFormat.Generic && text.Contains(DeepSeekCallBegin, StringComparison.Ordinal))
            content = ParseDeepSeek(text, calls);
        if (calls.Count == 0 && format is ToolCallFormat.Llama3 or ToolCallFormat.Generic or ToolCallFormat.Mistral)
        {
            string t = text.Trim();
            int tag = t.IndexOf("<|python_tag|>", StringComparison.Ordinal);
            string prefix = "";
            if (tag >= 0) { prefix = t[..tag].Trim(); t = t[(tag + "<|python_tag|>".Length)..].Trim(); }
            if (t.StartsWith("[TOOL_CALLS]", StringComparison.Ordinal)) t = t["[TOOL_CALLS]".Length..].Trim();
            if (TryParseCalls(t, calls)) content = prefix;
        }
        return new ParsedReply(calls.Count > 0 ? content.Trim() : text, calls);
    }

    private static string ParseHermes(string text, List<ChatToolCall> calls)
    {
        var rest = new StringBuilder();
        int pos = 0;
        while (true)
        {
            int open = text.IndexOf("<tool_call>", pos, StringComparison.Ordinal);
            if (open < 0) { rest.Append(text, pos, text.Length - pos); break; }
            rest.Append(text, pos, open - pos);
            int start = open + "<tool_call>".Length;
            int close = text.IndexOf("</tool_call>", start, StringComparison.Ordinal);
            string body = close < 0 ? text[start..] : text[start..close];
            if (!TryParseCalls(body.Trim(), calls)) rest.Append(text, open, (close < 0 ? text.Length : close + "</tool_call>".Length) - open);
            if (close < 0) break;
            pos = close + "</tool_call>".Length;
        }
        return rest.ToString();
    }

    private static string ParseMistral(string text, List<ChatToolCall> calls)
    {
        int i = text.IndexOf("[TOOL_CALLS]", StringComparison.Ordinal);
        string before = text[..i];
        string body = text[(i + "[TOOL_CALLS]".Length)..].Trim();
        if (TryParseCalls(body, calls)) return before;
        // newer format: [TOOL_CALLS]name[ARGS]{...}[TOOL_CALLS]name2[ARGS]{...}
        foreach (var part in body.Split("[TOOL_CALLS]"))
        {
            int a = part.IndexOf("[ARGS]", StringComparison.Ordinal);
            if (a < 0) return text;
            string name = part[..a].Trim(), args = part[(a + "[ARGS]".Length)..].Trim(), id = NewId();
            int ci = name.IndexOf("[CALL_ID]", StringComparison.Ordinal); // Mistral Small 3.2: name[CALL_ID]id[ARGS]{...}
            if (ci >= 0)
            {
                if (name[(ci + "[CALL_ID]".Length)..].Trim() is { Length: > 0 } given) id = given;
                name = name[..ci].Trim();
            }
            if (name.Length == 0 || !IsJsonObject(args)) return text;
            calls.Add(new ChatToolCall(id, name, args));
        }
        return before;
    }

    public const string DeepSeekCallsBegin = "<｜tool▁calls▁begin｜>", DeepSeekCallsEnd = "<｜tool▁calls▁end｜>",
        DeepSeekCallBegin = "<｜tool▁call▁begin｜>", DeepSeekCallEnd = "<｜tool▁call▁end｜>", DeepSeekSep = "<｜tool▁sep｜>";

    /// <summary>
    /// DeepSeek's calls: the text before the first call block is content; each block between call-begin and call-end is
    /// <c>TYPE&lt;sep&gt;NAME</c>, a newline, a <c>json</c>-fenced JSON block (V3, R1) or <c>NAME&lt;sep&gt;ARGS</c> (V3.1, V3.2). A malformed block leaves the
    /// whole reply as text.
    /// </summary>
    private static string ParseDeepSeek(string text, List<ChatToolCall> calls)
    {
        int first = text.IndexOf(DeepSeekCallBegin, StringComparison.Ordinal);
        int outer = text.IndexOf(DeepSeekCallsBegin, StringComparison.Ordinal);
        string before = text[..(outer >= 0 && outer < first ? outer : first)];
        var found = new List<ChatToolCall>();
        int pos = first;
        while (pos >= 0)
        {
            int start = pos + DeepSeekCallBegin.Length;
            int end = text.IndexOf(DeepSeekCallEnd, start, StringComparison.Ordinal);
            string block = end < 0 ? text[start..] : text[start..end];
            int sep = block.IndexOf(DeepSeekSep, StringComparison.Ordinal);
            if (sep < 0) return text;
            string head = block[..sep].Trim(), rest = block[(sep + DeepSeekSep.Length)..];
            string name, args;
            int fence = rest.IndexOf("```", StringComparison.Ordinal);
            if (fence >= 0) // V3 / R1: the type before the separator, then the name and a fenced JSON block
            {
                name = rest[..fence].Trim();
                int body = rest.IndexOf('\n', fence);
                int close = body < 0 ? -1 : rest.IndexOf("```", body, StringComparison.Ordinal);
                if (body < 0 || close < 0) return text;
                args = rest[(body + 1)..close].Trim();
            }
            else { name = head; args = rest.Trim(); }
            if (args.Length > 1 && args[0] == '"' && TryParse(args) is JsonValue sv && sv.TryGetValue(out string? inner)) args = inner.Trim(); // tojson of a string
            if (name.Length == 0 || !IsJsonObject(args)) return text;
            found.Add(new ChatToolCall(NewId(), name, args));
            pos = end < 0 ? -1 : text.IndexOf(DeepSeekCallBegin, end, StringComparison.Ordinal);
        }
        calls.AddRange(found);
        return before;
    }

    /// <summary>A JSON call object, an array of them, or several separated by ';' / newlines.</summary>
    private static bool TryParseCalls(string s, List<ChatToolCall> calls)
    {
        if (s.Length == 0 || s[0] is not ('{' or '[')) return false;
        var found = new List<ChatToolCall>();
        var bytes = Encoding.UTF8.GetBytes(s);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { AllowMultipleValues = true, AllowTrailingCommas = true });
        try
        {
            while (true)
            {
                var node = JsonNode.Parse(ref reader);
                if (node is null) return false;
                if (node is JsonArray arr) { foreach (var n in arr) if (!TryCall(n, found)) return false; }
                else if (!TryCall(node, found)) return false;
                // skip separators between values
                int at = (int)reader.BytesConsumed;
                while (at < bytes.Length && (bytes[at] is (byte)';' or (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t' or (byte)',')) at++;
                if (at >= bytes.Length) break;
                reader = new Utf8JsonReader(bytes.AsSpan(at), new JsonReaderOptions { AllowMultipleValues = true });
                bytes = bytes[at..];
            }
        }
        catch (JsonException) { return false; }
        if (found.Count == 0) return false;
        calls.AddRange(found);
        return true;
    }

    private static bool TryCall(JsonNode? n, List<ChatToolCall> found)
    {
        if (n is not JsonObject o) return false;
        if (o["function"] is JsonObject f && o["name"] is null) o = f; // {"type":"function","function":{...}}
        if (o["name"] is not JsonValue nv || !nv.TryGetValue(out string? name) || string.IsNullOrEmpty(name)) return false;
        var args = o["arguments"] ?? o["parameters"];
        string argText = args switch
        {
            null => "{}",
            JsonValue v when v.TryGetValue(out string? str) => IsJsonObject(str) ? str : JsonSerializer.Serialize(str),
            _ => args.ToJsonString(),
        };
        string id = o["id"] is JsonValue iv && iv.TryGetValue(out string? sid) && !string.IsNullOrEmpty(sid) ? sid : NewId();
        found.Add(new ChatToolCall(id, name, argText));
        return true;
    }

    private static JsonNode? TryParse(string s)
    {
        try { return JsonNode.Parse(s); } catch (JsonException) { return null; }
    }

    private static bool IsJsonObject(string s)
    {
        try { return JsonNode.Parse(s) is JsonObject; } catch (JsonException) { return false; }
    }

    // 9 alphanumerics: the shortest id every template accepts (Mistral's insist on exactly 9)
    private static string NewId() => Guid.NewGuid().ToString("N")[..9];
}
