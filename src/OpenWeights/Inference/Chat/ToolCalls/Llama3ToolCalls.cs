namespace OpenWeights.Inference.Chat;

/// <summary>
/// Llama 3.1 / 3.2 / 3.3: the reply is a JSON call <c>{"name": .., "parameters": {..}}</c> (several: apart by ';' or
/// newlines), bare at the start of the reply or after <c>&lt;|python_tag|&gt;</c>. A reply that starts with '{' but is no
/// call object is text.
/// </summary>
internal sealed class Llama3ToolCalls : ToolCallSyntax
{
    public const string PythonTag = "<|python_tag|>";

    protected override IReadOnlyList<string> Openers => [PythonTag];

    public override int FindRegion(string text, bool atStart)
    {
        if (atStart)
        {
            int first = SkipWhitespace(text, 0);
            if (first < text.Length && text[first] == '{') return first; // not '[': it may begin Mistral's [TOOL_CALLS] (generic parsing)
        }
        return base.FindRegion(text, atStart);
    }

    public override RegionScan Scan(string region, bool final)
    {
        int start = region.StartsWith(PythonTag, StringComparison.Ordinal) ? PythonTag.Length : 0;
        return JsonCallText.ReadCalls(region, SkipWhitespace(region, start), final);
    }
}

/// <summary>
/// Mistral: <c>[TOOL_CALLS][{"name": .., "arguments": {..}, "id": ".."}, ..]</c> (Mistral Nemo, v3 tokenizers), or
/// <c>[TOOL_CALLS]NAME[ARGS]{..}</c> per call (Devstral, Ministral 3; Mistral Small 3.2 adds <c>[CALL_ID]ID</c> before
/// <c>[ARGS]</c>).
/// </summary>
internal sealed class MistralToolCalls : ToolCallSyntax
{
    public const string Open = "[TOOL_CALLS]", Args = "[ARGS]", CallId = "[CALL_ID]";

    protected override IReadOnlyList<string> Openers => [Open];

    public override RegionScan Scan(string s, bool final)
    {
        var calls = new List<CallSnapshot>();
        RegionScan Stop(int at) => calls.Count == 0 ? RegionScan.Rejected : new RegionScan(calls, at);
        RegionScan Wait() => final ? Stop(s.Length) : RegionScan.Open(calls);
        int i = 0;
        while (true)
        {
            i = SkipWhitespace(s, i);
            if (i >= s.Length) return Wait();
            var open = At(s, i, Open);
            if (open == Match.Yes) { i += Open.Length; continue; }
            if (open == Match.Partial) return Wait();
            if (s[i] is '[' or '{' && At(s, i, Args) == Match.No && At(s, i, CallId) == Match.No)
            {
                var json = JsonCallText.ReadCalls(s, i, final);
                if (json.NotACall) return Stop(i);
                calls.AddRange(json.Calls);
                if (json.End < 0) return new RegionScan(calls, -1);
                i = json.End;
                continue;
            }
            // NAME[CALL_ID]ID[ARGS]{..}
            int bracket = s.IndexOf('[', i);
            int limit = bracket < 0 ? s.Length : bracket;
            for (int k = i; k < limit; k++) if (char.IsWhiteSpace(s[k])) return Stop(i);
            if (bracket < 0) return limit - i > 128 ? Stop(i) : Wait();
            string name = s[i..bracket];
            if (name.Length == 0) return Stop(i);
            string? id = null;
            int a = bracket;
            if (At(s, a, CallId) == Match.Yes)
            {
                int idEnd = s.IndexOf('[', a + CallId.Length);
                if (idEnd < 0) return Wait();
                id = s[(a + CallId.Length)..idEnd];
                a = idEnd;
            }
            var args = At(s, a, Args);
            if (args == Match.Partial || (args == Match.No && At(s, a, CallId) == Match.Partial)) return Wait();
            if (args == Match.No) return Stop(i);
            int v = SkipWhitespace(s, a + Args.Length);
            if (v >= s.Length) { calls.Add(new CallSnapshot(name, "", id)); return Wait(); }
            int ve = JsonCallText.ScanValue(s, v, final);
            if (ve == JsonCallText.Invalid) return Stop(i);
            calls.Add(new CallSnapshot(name, JsonCallText.ArgumentsSoFar(s, v, ve), id));
            if (ve < 0) return Wait();
            i = ve;
        }
    }
}
