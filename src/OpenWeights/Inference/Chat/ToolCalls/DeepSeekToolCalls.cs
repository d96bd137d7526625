namespace OpenWeights.Inference.Chat;

/// <summary>
/// DeepSeek: <c>&lt;｜tool▁calls▁begin｜&gt;</c>, then per call <c>&lt;｜tool▁call▁begin｜&gt;</c> … <c>&lt;｜tool▁call▁end｜&gt;</c>, then
/// <c>&lt;｜tool▁calls▁end｜&gt;</c>. A call is <c>function&lt;｜tool▁sep｜&gt;NAME\n```json\n{..}\n```</c> in V3 and R1, and
/// <c>NAME&lt;｜tool▁sep｜&gt;{..}</c> in V3.1 / V3.2 (the arguments are JSON either way; a JSON string holding the object, as
/// <c>tojson</c> of a string writes it, is unwrapped).
/// </summary>
internal sealed class DeepSeekToolCalls : ToolCallSyntax
{
    private const string CallsBegin = ToolCallParser.DeepSeekCallsBegin, CallsEnd = ToolCallParser.DeepSeekCallsEnd,
        CallBegin = ToolCallParser.DeepSeekCallBegin, CallEnd = ToolCallParser.DeepSeekCallEnd, Sep = ToolCallParser.DeepSeekSep;

    protected override IReadOnlyList<string> Openers => [CallsBegin, CallBegin];

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
            if (At(s, i, CallsBegin) is var cb && cb != Match.No) { if (cb == Match.Partial) return Wait(); i += CallsBegin.Length; continue; }
            if (At(s, i, CallsEnd) is var ce && ce != Match.No) return ce == Match.Partial ? Wait() : Stop(i + CallsEnd.Length);
            var c = At(s, i, CallBegin);
            if (c == Match.Partial) return Wait();
            if (c == Match.No) return Stop(i);
            int head = i + CallBegin.Length;
            int sep = s.IndexOf(Sep, head, StringComparison.Ordinal);
            if (sep < 0) return s.Length - head > 256 || s.IndexOf('\n', head) >= 0 ? Stop(i) : Wait();
            if (s.AsSpan(head, sep - head).Contains('\n')) return Stop(i); // a head is one line (as it is judged before the separator arrives)
            int after = sep + Sep.Length;
            int v = SkipWhitespace(s, after);
            if (v >= s.Length) return Wait();
            string name;
            bool fenced = false;
            if (s[v] is '{' or '"') name = s[head..sep].Trim(); // V3.1: NAME<sep>{..}
            else // V3 / R1: TYPE<sep>NAME\n```json\n{..}\n```
            {
                int nl = s.IndexOf('\n', after);
                if (nl < 0) return s.Length - after > 256 ? Stop(i) : Wait();
                name = s[after..nl].Trim();
                int f = nl + 1;
                var fence = At(s, f, "```json\n");
                if (fence == Match.Partial) return Wait();
                if (fence == Match.No) return Stop(i);
                v = SkipWhitespace(s, f + "```json\n".Length);
                if (v >= s.Length) { if (name.Length > 0) calls.Add(new CallSnapshot(name, "")); return Wait(); }
                fenced = true;
            }
            if (name.Length == 0) return Stop(i);
            int ve = JsonCallText.ScanValue(s, v, final);
            if (ve == JsonCallText.Invalid) return Stop(i);
            calls.Add(new CallSnapshot(name, JsonCallText.ArgumentsSoFar(s, v, ve)));
            if (ve < 0) return Wait();
            int k = SkipWhitespace(s, ve);
            if (fenced)
            {
                var close = At(s, k, "```");
                if (close == Match.Partial) return Wait();
                if (close == Match.Yes) k = SkipWhitespace(s, k + 3);
            }
            var end = At(s, k, CallEnd);
            if (end == Match.Partial) return Wait();
            i = end == Match.Yes ? k + CallEnd.Length : k;
            if (end == Match.No) return Stop(k);
        }
    }
}
