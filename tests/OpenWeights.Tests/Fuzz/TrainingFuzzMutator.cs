using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OpenWeights.Tests.Fuzz;

/// <summary>A training-data file the fuzzer feeds to the reader: its bytes and its extension (which picks JSON or text).</summary>
public sealed record TrainingFuzzInput(byte[] Bytes, string Extension);

/// <summary>
/// Structured mutations of training-data files (issue 19): invalid UTF-8, truncated lines, CR/LF mixes, byte order
/// marks, raw control characters, JSON type changes, duplicate keys, deep nesting, huge strings, and wrong shapes of
/// the record fields. Deterministic: the same Random gives the same mutations.
/// </summary>
public static class TrainingFuzzMutator
{
    /// <summary>Largest input made (a huge string is at most 300 KB).</summary>
    public const int MaxBytes = 2 << 20;

    /// <summary>The record fields the reader looks at.</summary>
    public static readonly string[] Fields = ["messages", "prompt", "completion", "instruction", "input", "output", "text", "role", "content"];

    private static readonly byte[] Utf8Bom = [0xEF, 0xBB, 0xBF];

    private static readonly byte[][] BadUtf8 =
    [
        [0xFF], [0xFE], [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80],
        [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xE0, 0x80, 0xAF], [0xF0, 0x9F, 0x98],
    ];

    private static readonly byte[][] ControlBytes =
    [
        [0x00], [0x1B], [0x1B, (byte)'[', (byte)'3', (byte)'1', (byte)'m'], [0x07], [0x08], [0x0C], [0x0B], [0x7F], [0x0D],
        [0xC2, 0x85], [0xE2, 0x80, 0xA8], [0xE2, 0x80, 0xA9], [0xEF, 0xBB, 0xBF], [0xEF, 0xBF, 0xBE], [0xE2, 0x80, 0xAE],
    ];

    /// <summary>Raw JSON values a field can be changed to (some not valid JSON on purpose).</summary>
    private static readonly string[] Values =
    [
        "null", "true", "false", "0", "-0", "1.5", "-1e308", "1e999", "123456789012345678901234567890", "\"\"", "\"x\"",
        "[]", "{}", "[1,\"a\",null]", "{\"role\":\"user\"}", "[\"a\",\"b\"]", "\"\\ud800\"", "\"\\udc00\\ud800\"",
        "\"\\u0000\\u001b[31mred\\u0007\"", "\"<|im_start|>assistant\\n<|im_end|>\"", "\"<|begin_of_text|><|eot_id|>\"",
        "\"{{ 7 * 7 }}{% for x in y %}\"", "\"\\u2028\\u2029\\u0085\"", "\"\\r\\n\\r\"", "NaN", "'single'", "undefined",
        "\"\\x41\"", "[[[[[]]]]]", "{\"a\":{\"b\":{\"c\":{}}}}", "\"\\uD83D\\uDE00\"", "\"\\\\\"", "1,", "\"a\" \"b\"",
    ];

    /// <summary>Shapes of "messages", right and wrong.</summary>
    private static readonly string[] MessageShapes =
    [
        "{}", "\"hi\"", "[]", "[\"hi\"]", "[null]", "[[]]", "[{}]", "[{\"role\":\"user\"}]", "[{\"content\":\"x\"}]",
        "[{\"role\":1,\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]",
        "[{\"role\":\"assistant\",\"content\":[\"a\"]}]",
        "[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
        "[{\"role\":\"assistant\",\"content\":null}]", "[{\"role\":\"user\",\"content\":\"only a question\"}]",
        "[{\"role\":\"assistant\",\"content\":\"only an answer\"}]",
        "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\",\"content\":\"a\"}]",
        "[{\"role\":\"\",\"content\":\"\"},{\"role\":\"assistant\",\"content\":\"\"}]",
        "[{\"role\":\"<|im_end|>\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"<|im_start|>\"}]",
        "[{\"role\":\"tool\",\"content\":\"x\",\"tool_calls\":[{}]},{\"role\":\"assistant\",\"content\":\"y\"}]",
        "[{\"role\":\"user\",\"content\":\"a\",\"role\":\"assistant\"}]",
        "[{\"role\":\"assistant\",\"content\":\"a\"},\"tail\"]",
    ];

    /// <summary>Applies 1 to 4 mutations picked by rng to a seed file.</summary>
    public static TrainingFuzzInput Mutate(Random rng, TrainingFuzzInput seed, IReadOnlyList<TrainingFuzzInput> corpus)
    {
        var cur = seed;
        int n = 1 + rng.Next(4);
        for (int i = 0; i < n; i++)
        {
            var next = MutateOnce(rng, cur, corpus);
            if (next.Bytes.Length <= MaxBytes) cur = next; // stacked duplications of huge strings reached 168 MB: time better spent on more inputs
        }
        return cur;
    }

    private static TrainingFuzzInput MutateOnce(Random rng, TrainingFuzzInput input, IReadOnlyList<TrainingFuzzInput> corpus)
    {
        var b = input.Bytes;
        return rng.Next(20) switch
        {
            0 => input with { Bytes = Insert(b, rng.Next(b.Length + 1), Pick(rng, BadUtf8)) },
            1 => input with { Bytes = Insert(b, rng.Next(b.Length + 1), Pick(rng, ControlBytes)) },
            2 => input with { Bytes = b[..rng.Next(b.Length + 1)] },
            3 => input with { Bytes = TruncateLine(rng, b) },
            4 => input with { Bytes = LineEndings(rng, b) },
            5 => input with { Bytes = Bom(rng, b) },
            6 => input with { Bytes = FlipBytes(rng, b) },
            7 => input with { Bytes = Splice(rng, b, Pick(rng, corpus).Bytes) },
            8 => ToArrayOrLines(rng, input),
            9 => input with { Extension = Pick(rng, [".jsonl", ".json", ".txt", ".JSONL", ""]) },
            10 => input with { Bytes = Duplicate(rng, b) },
            _ => input with { Bytes = MutateJsonLine(rng, b) },
        };
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    private static byte[] Insert(byte[] b, int at, byte[] what) => [.. b.AsSpan(0, at), .. what, .. b.AsSpan(at)];

    private static List<byte[]> Lines(byte[] b)
    {
        var lines = new List<byte[]>();
        int start = 0;
        for (int i = 0; i <= b.Length; i++)
        {
            if (i == b.Length || b[i] == '\n') { lines.Add(b[start..i]); start = i + 1; }
        }
        return lines;
    }

    private static byte[] Join(List<byte[]> lines) => [.. lines.SelectMany((l, i) => i == 0 ? l : l.Prepend((byte)'\n'))];

    private static byte[] TruncateLine(Random rng, byte[] b)
    {
        var lines = Lines(b);
        int i = rng.Next(lines.Count);
        lines[i] = lines[i][..rng.Next(lines[i].Length + 1)];
        return Join(lines);
    }

    private static byte[] LineEndings(Random rng, byte[] b)
    {
        var lines = Lines(b);
        byte[][] endings = [[(byte)'\n'], [(byte)'\r', (byte)'\n'], [(byte)'\r'], [(byte)'\r', (byte)'\r', (byte)'\n'], [(byte)'\n', (byte)'\n'], [(byte)'\n', (byte)' ', (byte)'\t', (byte)'\n']];
        int mode = rng.Next(endings.Length + 1); // the last: a random ending per line
        var outp = new List<byte>();
        for (int i = 0; i < lines.Count; i++)
        {
            outp.AddRange(lines[i]);
            if (i < lines.Count - 1 || rng.Next(2) == 0) outp.AddRange(mode < endings.Length ? endings[mode] : Pick(rng, endings));
        }
        return [.. outp];
    }

    private static byte[] Bom(Random rng, byte[] b) => rng.Next(5) switch
    {
        0 => [0xEF, 0xBB, 0xBF, .. b],
        1 => [0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF, .. b],
        2 => [0xFF, 0xFE, .. b],
        3 => [0xFE, 0xFF, .. b],
        _ => b.AsSpan().StartsWith(Utf8Bom) ? b[3..] : Insert(b, Math.Max(0, Array.IndexOf(b, (byte)'\n') + 1), [0xEF, 0xBB, 0xBF]),
    };

    private static byte[] FlipBytes(Random rng, byte[] b)
    {
        if (b.Length == 0) return [(byte)rng.Next(256)];
        var c = (byte[])b.Clone();
        for (int k = 1 + rng.Next(3); k > 0; k--) c[rng.Next(c.Length)] = rng.Next(3) == 0 ? (byte)"{}[]\":,\\"[rng.Next(8)] : (byte)rng.Next(256);
        return c;
    }

    private static byte[] Splice(Random rng, byte[] a, byte[] other)
    {
        var la = Lines(a); var lb = Lines(other);
        la.Insert(rng.Next(la.Count + 1), Pick(rng, lb));
        return Join(la);
    }

    private static byte[] Duplicate(Random rng, byte[] b)
    {
        var lines = Lines(b);
        var line = Pick(rng, lines);
        int times = rng.Next(3) == 0 ? 1 + rng.Next(300) : 2;
        for (int i = 0; i < times; i++) lines.Insert(rng.Next(lines.Count + 1), line);
        return Join(lines);
    }

    /// <summary>JSON lines into a JSON array file (.json), or an array file's items into lines.</summary>
    private static TrainingFuzzInput ToArrayOrLines(Random rng, TrainingFuzzInput input)
    {
        var text = Encoding.UTF8.GetString(input.Bytes).Trim();
        if (text.StartsWith('['))
        {
            try
            {
                if (JsonNode.Parse(text) is JsonArray arr)
                    return new TrainingFuzzInput(Encoding.UTF8.GetBytes(string.Join("\n", arr.Select(x => x?.ToJsonString() ?? "null"))), ".jsonl");
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException) { } // not JSON, a lone surrogate, a duplicate key
            return input;
        }
        var items = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0);
        string sep = rng.Next(2) == 0 ? ",\n" : ",";
        string tail = rng.Next(4) == 0 ? "," : "";
        return new TrainingFuzzInput(Encoding.UTF8.GetBytes("[\n" + string.Join(sep, items) + tail + "\n]" + (rng.Next(8) == 0 ? " trailing" : "")), ".json");
    }

    /// <summary>Picks a line that parses as JSON and changes its tree: field types, missing/renamed/duplicate keys, nesting, huge strings, message shapes.</summary>
    private static byte[] MutateJsonLine(Random rng, byte[] b)
    {
        var lines = Lines(b);
        var candidates = Enumerable.Range(0, lines.Count).Where(i => lines[i].Length > 0 && lines[i].AsSpan().TrimStart(" \t\r\uFEFF"u8).StartsWith("{"u8)).ToList();
        if (candidates.Count == 0) return FlipBytes(rng, b);
        int li = Pick(rng, candidates);
        JsonNode? root;
        List<JsonObject> objects;
        try
        {
            root = JsonNode.Parse(lines[li], documentOptions: new JsonDocumentOptions { MaxDepth = 256 });
            objects = Objects(root).ToList(); // JsonObject finds a duplicate key only when it is first enumerated
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException) { return TruncateLine(rng, b); }
        if (root is not JsonObject obj) return b;
        var raw = new Dictionary<string, string>();
        string Marker(string rawJson) { var m = $"@@FUZZ{raw.Count}@@"; raw[m] = rawJson; return m; }

        var target = Pick(rng, objects);
        switch (rng.Next(9))
        {
            case 0: // a field of the record (present or not) gets a value of another type
                obj[Pick(rng, Fields)] = Marker(Pick(rng, Values));
                break;
            case 1: // any value anywhere gets another type
                if (target.Count > 0) target[target.ElementAt(rng.Next(target.Count)).Key] = Marker(Pick(rng, Values));
                break;
            case 2: // a key removed
                if (target.Count > 0) target.Remove(target.ElementAt(rng.Next(target.Count)).Key);
                break;
            case 3: // a duplicate key (JsonObject cannot hold one: the marker key is renamed after serialization)
                {
                    var key = target.Count > 0 && rng.Next(3) > 0 ? target.ElementAt(rng.Next(target.Count)).Key : Pick(rng, Fields);
                    target[$"@@DUPKEY@@{raw.Count}"] = Marker(Pick(rng, Values));
                    raw[$"@@DUPKEY@@{raw.Count - 1}"] = JsonSerializer.Serialize(key);
                    break;
                }
            case 4: // deep nesting
                {
                    int depth = Pick(rng, new[] { 3, 63, 64, 65, 200, 1000, 5000 });
                    var inner = Pick(rng, Values);
                    var nested = rng.Next(2) == 0
                        ? new string('[', depth) + inner + new string(']', depth)
                        : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + inner + new string('}', depth);
                    target[target.Count > 0 && rng.Next(2) == 0 ? target.ElementAt(rng.Next(target.Count)).Key : Pick(rng, Fields)] = Marker(nested);
                    break;
                }
            case 5: // a huge string
                {
                    int len = Pick(rng, new[] { 1000, 10_000, 100_000, 300_000 });
                    string unit = Pick(rng, new[] { "x", "\u00e9", "\U0001F600", "\\n", "\\u0000", "<|im_end|>", " " });
                    var s = new StringBuilder("\"");
                    while (s.Length < len) s.Append(unit);
                    target[target.Count > 0 && rng.Next(2) == 0 ? target.ElementAt(rng.Next(target.Count)).Key : Pick(rng, Fields)] = Marker(s.Append('"').ToString());
                    break;
                }
            case 6: // messages of a wrong (or right) shape
                obj["messages"] = Marker(Pick(rng, MessageShapes));
                break;
            case 7: // a long conversation
                {
                    int turns = 1 + rng.Next(rng.Next(5) == 0 ? 400 : 20);
                    var msgs = Enumerable.Range(0, turns).Select(i => $"{{\"role\":\"{(i % 2 == 0 ? "user" : "assistant")}\",\"content\":\"turn {i}\"}}");
                    obj["messages"] = Marker("[" + string.Join(",", msgs) + "]");
                    break;
                }
            default: // a key renamed to a near miss or to another field
                if (target.Count > 0)
                {
                    var (k, v) = target.ElementAt(rng.Next(target.Count));
                    var name = Pick(rng, new[] { k.ToUpperInvariant(), k + " ", "\u001b" + k, k + "\u0000", "", Pick(rng, Fields), k + "\ud800" });
                    if (name == k || target.ContainsKey(name)) break;
                    target.Remove(k);
                    target[name] = v;
                }
                break;
        }
        string text;
        try { text = root.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return b; } // a key with a lone surrogate
        foreach (var (m, r) in raw) text = text.Replace(JsonSerializer.Serialize(m), r, StringComparison.Ordinal);
        lines[li] = Encoding.UTF8.GetBytes(text);
        return Join(lines);
    }

    private static IEnumerable<JsonObject> Objects(JsonNode? n)
    {
        if (n is JsonObject o)
        {
            yield return o;
            foreach (var (_, v) in o) foreach (var x in Objects(v)) yield return x;
        }
        else if (n is JsonArray a)
        {
            foreach (var v in a) foreach (var x in Objects(v)) yield return x;
        }
    }
}
