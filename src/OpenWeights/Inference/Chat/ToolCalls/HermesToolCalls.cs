namespace OpenWeights.Inference.Chat;

/// <summary>
/// Hermes, Qwen 2.5 / 3: <c>&lt;tool_call&gt;\n{"name": .., "arguments": {..}}\n&lt;/tool_call&gt;</c>, one block per call
/// (parallel calls: several blocks). Qwen3-Coder writes the same block with an XML body,
/// <c>&lt;function=NAME&gt;&lt;parameter=P&gt;\nVALUE\n&lt;/parameter&gt;&lt;/function&gt;</c> (see <see cref="Qwen3CoderXmlCall"/>);
/// the body's first character tells which.
/// </summary>
internal sealed class HermesToolCalls(IReadOnlyList<ChatTool>? tools) : ToolCallSyntax
{
    public const string Open = "<tool_call>", Close = "</tool_call>";

    protected override IReadOnlyList<string> Openers => [Open];

    public override RegionScan Scan(string region, bool final)
    {
        int b = SkipWhitespace(region, Open.Length);
        if (b >= region.Length) return final ? RegionScan.Rejected : RegionScan.Open([]);
        RegionScan body;
        if (region[b] is '{' or '[') body = JsonCallText.ReadCalls(region, b, final);
        else if (At(region, b, Qwen3CoderXmlCall.FunctionOpen) != Match.No) body = Qwen3CoderXmlCall.Read(region, b, final, tools);
        else return RegionScan.Rejected;
        if (body.NotACall || body.End < 0) return body;
        // after the body: </tool_call> ends the block (anything the model wrote between is dropped)
        int close = region.IndexOf(Close, body.End, StringComparison.Ordinal);
        if (close >= 0) return body with { End = close + Close.Length };
        if (final) return body with { End = region.Length };
        return body with { End = -1 };
    }
}

/// <summary>
/// Qwen3-Coder's call body: <c>&lt;function=NAME&gt;</c>, then <c>&lt;parameter=P&gt;\nVALUE\n&lt;/parameter&gt;</c> per
/// argument, then <c>&lt;/function&gt;</c>. The arguments become a JSON object, each value typed by the tool's schema
/// (a string property stays text; numbers, booleans, objects and arrays are parsed); without a schema, a value that
/// is JSON is taken as JSON and anything else as a string. Arguments stream one whole parameter at a time.
/// </summary>
internal static class Qwen3CoderXmlCall
{
    public const string FunctionOpen = "<function=", FunctionClose = "</function>", ParamOpen = "<parameter=", ParamClose = "</parameter>";

    /// <summary>Reads the body at <paramref name="b"/>; End: just after &lt;/function&gt;.</summary>
    public static RegionScan Read(string s, int b, bool final, IReadOnlyList<ChatTool>? tools)
    {
        if (At(s, b, FunctionOpen) == Match.Partial) return final ? RegionScan.Rejected : RegionScan.Open([]);
        int nameStart = b + FunctionOpen.Length;
        int gt = s.IndexOf('>', nameStart);
        int nl = s.IndexOf('\n', nameStart);
        if (gt < 0 || (nl >= 0 && nl < gt)) return final || nl >= 0 ? RegionScan.Rejected : RegionScan.Open([]);
        string name = s[nameStart..gt].Trim();
        if (name.Length == 0) return RegionScan.Rejected;
        var schema = Properties(tools, name);
        var args = new System.Text.StringBuilder("{");
        int i = gt + 1, count = 0;
        while (true)
        {
            i = Ws(s, i);
            var close = At(s, i, FunctionClose);
            if (close == Match.Yes) return Done(i + FunctionClose.Length);
            var param = At(s, i, ParamOpen);
            if (i >= s.Length || close == Match.Partial || param == Match.Partial)
                return final ? Done(s.Length) : RegionScan.Open([new CallSnapshot(name, args.ToString())]);
            if (param == Match.No) return Done(i); // not XML we know: the call ends here
            int pStart = i + ParamOpen.Length;
            int pgt = s.IndexOf('>', pStart);
            int end = pgt < 0 ? -1 : s.IndexOf(ParamClose, pgt, StringComparison.Ordinal);
            if (end < 0)
                return final ? Done(s.Length) : RegionScan.Open([new CallSnapshot(name, args.ToString())]);
            string pname = s[pStart..pgt].Trim();
            string value = s[(pgt + 1)..end];
            if (value.StartsWith('\n')) value = value[1..];
            if (value.EndsWith('\n')) value = value[..^1];
            if (count++ > 0) args.Append(", ");
            args.Append(System.Text.Json.JsonSerializer.Serialize(pname)).Append(": ").Append(Typed(value, schema?[pname]));
            i = end + ParamClose.Length;
        }

        RegionScan Done(int end) => new([new CallSnapshot(name, args.Append('}').ToString())], end);
    }

    private static System.Text.Json.Nodes.JsonObject? Properties(IReadOnlyList<ChatTool>? tools, string name)
    {
        var tool = tools?.FirstOrDefault(t => t.Name == name);
        if (tool?.ParametersJson is null) return null;
        try { return System.Text.Json.Nodes.JsonNode.Parse(tool.ParametersJson)?["properties"] as System.Text.Json.Nodes.JsonObject; }
        catch (System.Text.Json.JsonException) { return null; }
    }

    /// <summary>A parameter's text as a JSON value of the type its schema gives (see the class).</summary>
    internal static string Typed(string value, System.Text.Json.Nodes.JsonNode? property)
    {
        var types = new List<string>();
        switch (property?["type"])
        {
            case System.Text.Json.Nodes.JsonValue v when v.TryGetValue(out string? t): types.Add(t); break;
            case System.Text.Json.Nodes.JsonArray a: types.AddRange(a.Select(x => x?.ToString() ?? "")); break;
        }
        string text = System.Text.Json.JsonSerializer.Serialize(value);
        if (types.Count > 0 && types.All(t => t == "string")) return text;
        System.Text.Json.Nodes.JsonNode? parsed;
        try { parsed = System.Text.Json.Nodes.JsonNode.Parse(value.Trim()); }
        catch (System.Text.Json.JsonException) { return text; }
        if (parsed is null) return types.Count == 0 || types.Contains("null") ? "null" : text;
        string kind = parsed.GetValueKind() switch
        {
            System.Text.Json.JsonValueKind.Number => parsed.ToJsonString().Contains('.') || parsed.ToJsonString().Contains('e') ? "number" : "integer",
            System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False => "boolean",
            System.Text.Json.JsonValueKind.Object => "object",
            System.Text.Json.JsonValueKind.Array => "array",
            _ => "string",
        };
        bool fits = types.Count == 0 || types.Contains(kind) || (kind == "integer" && types.Contains("number"));
        return fits ? parsed.ToJsonString() : text;
    }

    private enum Match { No, Partial, Yes }

    private static Match At(string s, int i, string marker)
    {
        int n = Math.Min(marker.Length, s.Length - i);
        if (n <= 0) return i >= s.Length ? Match.Partial : Match.No;
        if (!s.AsSpan(i, n).SequenceEqual(marker.AsSpan(0, n))) return Match.No;
        return n == marker.Length ? Match.Yes : Match.Partial;
    }

    private static int Ws(string s, int i)
    {
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
        return i;
    }
}
