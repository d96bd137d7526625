using System.Text.Json;
using System.Text.Json.Nodes;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Reads JSON tool calls out of text that may still be arriving: a call object <c>{"name": .., "arguments"|"parameters": ..}</c>
/// (or <c>{"type":"function","function":{..}}</c>), and runs of them. Positions: <see cref="Incomplete"/> when the text
/// ends before the value does, <see cref="Invalid"/> when it is not JSON.
/// </summary>
internal static class JsonCallText
{
    public const int Incomplete = -1, Invalid = -2;

    /// <summary>One call object read from <c>s[start..]</c>: <see cref="End"/> just after its '}' (or Incomplete / Invalid).</summary>
    public readonly record struct CallObject(string? Name, string? Id, int ArgsStart, int ArgsEnd, int End)
    {
        /// <summary>The arguments so far: the raw JSON value as it stands (a string value only once whole, decoded); "{}" when the object ended without them.</summary>
        public string Arguments(string s) => ArgsStart < 0 ? (End >= 0 ? "{}" : "") : ArgumentsSoFar(s, ArgsStart, ArgsEnd);
    }

    /// <summary>Arguments whose JSON value begins at <paramref name="start"/> and ends at <paramref name="end"/> (-1: not yet): the raw text so far; a string value only once whole, decoded.</summary>
    public static string ArgumentsSoFar(string s, int start, int end)
    {
        if (s[start] != '"') return s[start..(end >= 0 ? end : s.Length)];
        return end < 0 ? "" : StringArguments(s[start..end]);
    }

    /// <summary>Arguments written as a JSON string (OpenAI's wire form, or a template's <c>tojson</c> of one): the object it holds, else the string as JSON.</summary>
    public static string StringArguments(string jsonString)
    {
        string inner = JsonSerializer.Deserialize<string>(jsonString) ?? "";
        try { if (JsonNode.Parse(inner) is JsonObject) return inner.Trim(); } catch (JsonException) { }
        return jsonString;
    }

    /// <summary>Reads a call object at <paramref name="start"/> (which must be '{').</summary>
    public static CallObject ReadCall(string s, int start, bool final)
    {
        string? name = null, id = null;
        int argsStart = -1, argsEnd = -1;
        CallObject Result(int end) => new(name, id, argsStart, argsEnd, end);
        if (start >= s.Length) return Result(Incomplete);
        if (s[start] != '{') return Result(Invalid);
        int i = start + 1;
        while (true)
        {
            i = Ws(s, i);
            if (i >= s.Length) return Result(Incomplete);
            if (s[i] == '}') return Result(i + 1);
            int ke = ScanString(s, i);
            if (ke < 0) return Result(ke);
            string key = Decode(s[i..ke]);
            i = Ws(s, ke);
            if (i >= s.Length) return Result(Incomplete);
            if (s[i] != ':') return Result(Invalid);
            int v = Ws(s, i + 1);
            if (v >= s.Length) return Result(Incomplete);
            int ve;
            if (key is "arguments" or "parameters" && argsStart < 0)
            {
                argsStart = v;
                ve = ScanValue(s, v, final);
                if (ve < 0) { if (ve == Invalid) return Result(Invalid); return Result(Incomplete); }
                argsEnd = ve;
            }
            else if (key == "function" && s[v] == '{' && name is null)
            {
                var inner = ReadCall(s, v, final);
                name = inner.Name; argsStart = inner.ArgsStart; argsEnd = inner.ArgsEnd;
                if (inner.End < 0) return Result(inner.End);
                ve = inner.End;
            }
            else
            {
                ve = ScanValue(s, v, final);
                if (ve < 0) return Result(ve);
                if (key is "name" or "id" && s[v] == '"')
                {
                    string val = Decode(s[v..ve]);
                    if (key == "name") name = val; else id = val;
                }
            }
            i = Ws(s, ve);
            if (i >= s.Length) return Result(Incomplete);
            if (s[i] == ',') { i++; continue; }
            if (s[i] == '}') return Result(i + 1);
            return Result(Invalid);
        }
    }

    /// <summary>
    /// A run of calls from <paramref name="start"/>: objects, or arrays of them, apart by whitespace, ',' or ';'. The
    /// run ends where something else begins (End: that position); while the text may still continue it, End is -1.
    /// NotACall when its first value is no call.
    /// </summary>
    public static RegionScan ReadCalls(string s, int start, bool final)
    {
        var calls = new List<CallSnapshot>();
        int i = start, depthArray = 0;
        while (true)
        {
            int j = i;
            while (j < s.Length && (char.IsWhiteSpace(s[j]) || s[j] is ',' or ';')) j++;
            if (j >= s.Length) return new RegionScan(calls, final ? s.Length : -1, calls.Count == 0 && final);
            if (s[j] == '[' && depthArray == 0) { depthArray = 1; i = j + 1; continue; }
            if (s[j] == ']' && depthArray == 1) { depthArray = 0; i = j + 1; continue; }
            if (s[j] != '{') return calls.Count == 0 ? RegionScan.Rejected : new RegionScan(calls, i);
            var c = ReadCall(s, j, final);
            if (c.End == Invalid || (c.End >= 0 || final) && string.IsNullOrEmpty(c.Name))
                return calls.Count == 0 ? RegionScan.Rejected : new RegionScan(calls, i);
            if (c.Name is not null) calls.Add(new CallSnapshot(c.Name, c.Arguments(s), c.Id));
            if (c.End < 0) return new RegionScan(calls, final ? s.Length : -1);
            i = c.End;
        }
    }

    /// <summary>Just after the JSON value at <paramref name="i"/>, or Incomplete / Invalid.</summary>
    public static int ScanValue(string s, int i, bool final)
    {
        if (i >= s.Length) return Incomplete;
        char c = s[i];
        if (c == '"') return ScanString(s, i);
        if (c is '{' or '[')
        {
            int depth = 0;
            for (int k = i; k < s.Length; k++)
            {
                char ch = s[k];
                if (ch == '"') { int e = ScanString(s, k); if (e < 0) return e; k = e - 1; }
                else if (ch is '{' or '[') depth++;
                else if (ch is '}' or ']') { if (--depth == 0) return k + 1; }
            }
            return Incomplete;
        }
        int j = i;
        while (j < s.Length && !(char.IsWhiteSpace(s[j]) || s[j] is ',' or '}' or ']' or ';')) j++;
        if (j == s.Length && !final) return Incomplete;
        try { JsonNode.Parse(s[i..j]); return j; } catch (JsonException) { return Invalid; }
    }

    /// <summary>Just after the JSON string at <paramref name="i"/> (which must be '"'), or Incomplete / Invalid.</summary>
    public static int ScanString(string s, int i)
    {
        if (i >= s.Length) return Incomplete;
        if (s[i] != '"') return Invalid;
        for (int k = i + 1; k < s.Length; k++)
        {
            if (s[k] == '\\') { k++; continue; }
            if (s[k] == '"') return k + 1;
            if (s[k] == '\n') return Invalid;
        }
        return Incomplete;
    }

    public static string Decode(string jsonString)
    {
        try { return JsonSerializer.Deserialize<string>(jsonString) ?? ""; } catch (JsonException) { return jsonString.Trim('"'); }
    }

    /// <summary>Whether <paramref name="s"/> is a JSON object.</summary>
    public static bool IsObject(string s)
    {
        try { return JsonNode.Parse(s) is JsonObject; } catch (JsonException) { return false; }
    }

    private static int Ws(string s, int i)
    {
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
        return i;
    }
}
