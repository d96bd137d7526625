using System.Text;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>Python's json.dumps as Hugging Face's tojson filter calls it (ensure_ascii=False by default, key order kept).</summary>
internal static class JinjaJson
{
    public static string Dumps(object? value, bool ensureAscii = false, object? indent = null, object? separators = null, bool sortKeys = false)
    {
        string? ind = indent switch
        {
            null or JinjaUndefined => null,
            string s => s,
            _ => new string(' ', JinjaBuiltins.Width(indent)),
        };
        string itemSep = ind is null ? ", " : ",", keySep = ": ";
        if (separators is not null and not JinjaUndefined)
        {
            var seps = JinjaBuiltins.Iterate(separators);
            if (seps.Count != 2) throw new JinjaError("separators must be a (item_separator, key_separator) pair");
            itemSep = JinjaValue.ToPyString(seps[0]);
            keySep = JinjaValue.ToPyString(seps[1]);
        }
        var sb = new StringBuilder();
        Write(sb, value, ind, 0, itemSep, keySep, sortKeys, ensureAscii);
        RenderBudget.Current.Charge(sb.Length >> 4);
        return sb.ToString();
    }

    private static void NewLine(StringBuilder sb, string? ind, int level)
    {
        if (ind is null) return;
        sb.Append('\n');
        for (var i = 0; i < level; i++) sb.Append(ind);
    }

    private static void Write(StringBuilder sb, object? v, string? ind, int level, string itemSep, string keySep, bool sortKeys, bool ascii)
    {
        using var nested = JinjaValue.Nest();
        var budget = RenderBudget.Current;
        budget.CheckOutput((long)sb.Length + (ind is null ? 0 : (long)ind.Length * (level + 1)) + (v is string str ? str.Length : 0));
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : JinjaValue.FloatRepr(d));
                break;
            case string s: WriteString(sb, s, ascii); break;
            case JinjaMarkup m: WriteString(sb, m.Value, ascii); break;
            case List<object?> or JinjaTuple:
                {
                    var items = (IReadOnlyList<object?>)v;
                    if (items.Count == 0) { sb.Append("[]"); break; }
                    sb.Append('[');
                    for (var i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        NewLine(sb, ind, level + 1);
                        Write(sb, items[i], ind, level + 1, itemSep, keySep, sortKeys, ascii);
                    }
                    NewLine(sb, ind, level);
                    sb.Append(']');
                    break;
                }
            case JinjaDict d:
                {
                    if (d.Count == 0) { sb.Append("{}"); break; }
                    IEnumerable<KeyValuePair<object, object?>> pairs = d;
                    if (sortKeys) pairs = d.OrderBy(p => p.Key, Comparer<object>.Create((x, y) => JinjaValue.PyCompare(x, y)));
                    sb.Append('{');
                    var first = true;
                    foreach (var (k, x) in pairs)
                    {
                        if (!first) sb.Append(itemSep);
                        first = false;
                        NewLine(sb, ind, level + 1);
                        var key = k switch
                        {
                            string s => s,
                            bool b => b ? "true" : "false",
                            long or double => JinjaValue.Repr(k),
                            _ => throw new JinjaError($"keys must be str, int, float, bool or None, not {JinjaValue.TypeName(k)}"),
                        };
                        WriteString(sb, key, ascii);
                        sb.Append(keySep);
                        Write(sb, x, ind, level + 1, itemSep, keySep, sortKeys, ascii);
                    }
                    NewLine(sb, ind, level);
                    sb.Append('}');
                    break;
                }
            default:
                throw new JinjaError($"Object of type {JinjaValue.TypeName(v)} is not JSON serializable");
        }
    }

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
