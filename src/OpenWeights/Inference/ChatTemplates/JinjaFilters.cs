using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace OpenWeights.Inference.ChatTemplates;

internal static partial class JinjaBuiltins
{
    private sealed class FArgs(string filter, List<object?> a, List<KeyValuePair<string, object?>> kw)
    {
        public object? Get(int index, string name, object? def)
        {
            foreach (var (k, v) in kw) if (k == name) return v;
            return index < a.Count ? a[index] : def;
        }
        public bool Has(int index, string name) => index < a.Count || kw.Any(p => p.Key == name);
        public bool Bool(int index, string name, bool def) => JinjaValue.IsTruthy(Get(index, name, def));
        public List<object?> Positional => a;
        public string Filter => filter;
    }

    private static string SoftStr(object? v) => JinjaValue.ToPyString(v);

    public static object? CallFilter(string name, object? value, List<object?> args, List<KeyValuePair<string, object?>> kwargs, JinjaInterpreter interp)
    {
        if (value is JinjaMarkup && name is not ("safe" or "e" or "escape" or "forceescape" or "string" or "default" or "d"))
            value = JinjaValue.Unwrap(value);
        var f = new FArgs(name, args, kwargs);
        var sandboxed = interp.Options.Sandboxed;
        switch (name)
        {
            case "tojson":
                return JinjaJson.Dumps(value,
                    ensureAscii: f.Bool(0, "ensure_ascii", false),
                    indent: f.Get(1, "indent", null),
                    separators: f.Get(2, "separators", null),
                    sortKeys: f.Bool(3, "sort_keys", false));
            case "trim":
                {
                    var chars = f.Get(0, "chars", null);
                    return PyStrip(SoftStr(value), chars is null ? null : SoftStr(chars), true, true);
                }
            case "length" or "count": return Length(value);
            case "string": return value is JinjaMarkup ? value : SoftStr(value);
            case "safe": return value is JinjaMarkup ? value : new JinjaMarkup(SoftStr(value));
            case "upper": return SoftStr(value).ToUpperInvariant();
            case "lower": return SoftStr(value).ToLowerInvariant();
            case "capitalize": return PyCapitalize(SoftStr(value));
            case "title": return JinjaTitle(SoftStr(value));
            case "e" or "escape": return value is JinjaMarkup ? value : new JinjaMarkup(HtmlEscape(SoftStr(value)));
            case "forceescape": return new JinjaMarkup(HtmlEscape(SoftStr(value)));
            case "default" or "d":
                {
                    var def = f.Get(0, "default_value", "");
                    var boolean = f.Bool(1, "boolean", false);
                    if (value is JinjaUndefined || (boolean && !JinjaValue.IsTruthy(value))) return def;
                    return value;
                }
            case "join":
                {
                    var sep = SoftStr(f.Get(0, "d", ""));
                    var attr = f.Get(1, "attribute", null);
                    var items = Iterate(value);
                    if (attr is not null) items = items.Select(x => AttrPath(x, attr, sandboxed)).ToList();
                    return Join(sep, items.Select(SoftStr));
                }
            case "list": return Iterate(value);
            case "first":
                {
                    var items = Iterate(value);
                    return items.Count > 0 ? items[0] : new JinjaUndefined("No first item, sequence was empty.");
                }
            case "last":
                {
                    var items = Iterate(value);
                    return items.Count > 0 ? items[^1] : new JinjaUndefined("No last item, sequence was empty.");
                }
            case "int": return ToInt(value, f.Get(0, "default", 0L), JinjaValue.ToLong(f.Get(1, "base", 10L)));
            case "float": return ToFloat(value, f.Get(0, "default", 0.0));
            case "abs":
                return value switch
                {
                    long l => (object)Math.Abs(l),
                    double d => Math.Abs(d),
                    bool b => b ? 1L : 0L,
                    _ => throw new JinjaError($"bad operand type for abs(): '{JinjaValue.TypeName(value)}'"),
                };
            case "round":
                {
                    var precision = (int)JinjaValue.ToLong(f.Get(0, "precision", 0L));
                    var method = SoftStr(f.Get(1, "method", "common"));
                    if (method == "common")
                    {
                        if (value is long or bool) return JinjaValue.ToLong(value);
                        return Math.Round(JinjaValue.ToDouble(value), Math.Clamp(precision, 0, 15), MidpointRounding.ToEven);
                    }
                    var m = Math.Pow(10, precision);
                    var x = JinjaValue.ToDouble(value) * m;
                    return (method == "ceil" ? Math.Ceiling(x) : method == "floor" ? Math.Floor(x)
                        : throw new JinjaError("method must be common, ceil or floor")) / m;
                }
            case "replace":
                {
                    var count = f.Get(2, "count", null);
                    return PyReplace(SoftStr(value), SoftStr(f.Get(0, "old", "")), SoftStr(f.Get(1, "new", "")),
                        count is null ? -1 : JinjaValue.ToLong(count));
                }
            case "indent":
                {
                    var width = f.Get(0, "width", 4L);
                    var ind = width is string ws ? ws : new string(' ', Width(width));
                    return Indent(SoftStr(value), ind, f.Bool(1, "first", false), f.Bool(2, "blank", false));
                }
            case "center": return Center(SoftStr(value), Width(f.Get(0, "width", 80L)));
            case "truncate":
                {
                    var s = SoftStr(value);
                    var length = (int)JinjaValue.ToLong(f.Get(0, "length", 255L));
                    var killwords = f.Bool(1, "killwords", false);
                    var end = SoftStr(f.Get(2, "end", "..."));
                    var leeway = f.Get(3, "leeway", null) is { } lw ? (int)JinjaValue.ToLong(lw) : 5;
                    if (s.Length <= length + leeway) return s;
                    if (killwords) return s[..Math.Max(0, length - end.Length)] + end;
                    var cut = s[..Math.Max(0, length - end.Length)];
                    var sp = cut.LastIndexOf(' ');
                    return (sp >= 0 ? cut[..sp] : cut) + end;
                }
            case "wordcount": return (long)WordRe().Matches(SoftStr(value)).Count;
            case "reverse":
                {
                    if (value is string s) return string.Concat(CodePoints(s).Cast<string>().Reverse());
                    var items = Iterate(value);
                    items.Reverse();
                    return new JinjaGenerator(items);
                }
            case "items":
                {
                    if (value is JinjaUndefined) return new List<object?>();
                    if (value is not JinjaDict d) throw new JinjaError($"Can only get item pairs from a mapping.");
                    return new JinjaGenerator(d.Select(p => (object?)new JinjaTuple(p.Key, p.Value)).ToList());
                }
            case "dictsort":
                {
                    if (value is not JinjaDict d) throw new JinjaError("dictsort filter requires a mapping");
                    var cs = f.Bool(0, "case_sensitive", false);
                    var by = SoftStr(f.Get(1, "by", "key"));
                    var rev = f.Bool(2, "reverse", false);
                    var pos = by == "key" ? 0 : by == "value" ? 1 : throw new JinjaError("You can only sort by either \"key\" or \"value\"");
                    var pairs = d.Select(p => (object?)new JinjaTuple(p.Key, p.Value)).ToList();
                    return SortBy(pairs, x => SortKey(((JinjaTuple)x!)[pos], cs), rev);
                }
            case "sort":
                {
                    var rev = f.Bool(0, "reverse", false);
                    var cs = f.Bool(1, "case_sensitive", false);
                    var attr = f.Get(2, "attribute", null);
                    return SortItems(Iterate(value), rev, cs, attr is null ? null : x => AttrPath(x, attr, sandboxed));
                }
            case "unique":
                {
                    var cs = f.Bool(0, "case_sensitive", false);
                    var attr = f.Get(1, "attribute", null);
                    // hashable keys (as Python's set needs) are looked up in a hash set, others compared one by one
                    var seenHashed = new HashSet<object>(PyKeyComparer.Instance);
                    var seen = new List<object?>();
                    var r = new List<object?>();
                    foreach (var x in Iterate(value))
                    {
                        var k = SortKey(attr is null ? x : AttrPath(x, attr, sandboxed), cs);
                        if (IsHashable(k))
                        {
                            if (!seenHashed.Add(k!)) continue;
                        }
                        else
                        {
                            interp.Budget.Charge(seen.Count >> 2);
                            if (seen.Any(s => JinjaValue.PyEquals(s, k))) continue;
                            seen.Add(k);
                        }
                        r.Add(x);
                    }
                    return new JinjaGenerator(r);
                }
            case "min" or "max":
                {
                    var cs = f.Bool(0, "case_sensitive", false);
                    var attr = f.Get(1, "attribute", null);
                    var items = Iterate(value);
                    if (items.Count == 0) return new JinjaUndefined($"No aggregated item, sequence was empty.");
                    var best = items[0];
                    object? Key(object? x) => SortKey(attr is null ? x : AttrPath(x, attr, sandboxed), cs);
                    foreach (var x in items.Skip(1))
                    {
                        var c = JinjaValue.PyCompare(Key(x), Key(best));
                        if (name == "min" ? c < 0 : c > 0) best = x;
                    }
                    return best;
                }
            case "sum":
                {
                    var attr = f.Get(0, "attribute", null);
                    object? total = f.Get(1, "start", 0L);
                    foreach (var x in Iterate(value)) total = BinaryOp("+", total, attr is null ? x : AttrPath(x, attr, sandboxed));
                    return total;
                }
            case "batch":
                {
                    var n = JinjaValue.ToLong(f.Get(0, "linecount", 1L));
                    if (n <= 0) throw new JinjaError("batch linecount must be positive");
                    interp.Budget.CheckItems(n);
                    var hasFill = f.Has(1, "fill_with") && f.Get(1, "fill_with", null) is not null;
                    var fill = f.Get(1, "fill_with", null);
                    var r = new List<object?>();
                    List<object?>? cur = null;
                    foreach (var x in Iterate(value))
                    {
                        cur ??= [];
                        cur.Add(x);
                        if (cur.Count == n) { r.Add(cur); cur = null; }
                    }
                    if (cur is not null)
                    {
                        if (hasFill) while (cur.Count < n) cur.Add(fill);
                        r.Add(cur);
                    }
                    return new JinjaGenerator(r);
                }
            case "slice":
                {
                    var slicesArg = JinjaValue.ToLong(f.Get(0, "slices", 1L));
                    if (slicesArg == 0) throw new JinjaError("integer division or modulo by zero");
                    if (slicesArg < 0) return new JinjaGenerator([]);
                    interp.Budget.CheckItems(slicesArg);
                    var slices = (int)slicesArg;
                    var fill = f.Get(1, "fill_with", null);
                    var hasFill = fill is not null;
                    var seq = Iterate(value);
                    var length = seq.Count;
                    var per = length / slices;
                    var extra = length % slices;
                    var offset = 0;
                    var r = new List<object?>();
                    for (var s = 0; s < slices; s++)
                    {
                        var start = offset + s * per;
                        if (s < extra) offset++;
                        var end = offset + (s + 1) * per;
                        var tmp = seq.GetRange(start, end - start);
                        if (hasFill && s >= extra) tmp.Add(fill);
                        r.Add(tmp);
                    }
                    return new JinjaGenerator(r);
                }
            case "map":
                {
                    // Jinja's map/select/reject start with "if value:", so a falsy input (None too) yields nothing
                    var items = JinjaValue.IsTruthy(value) ? Iterate(value) : [];
                    if (f.Has(99, "attribute"))
                    {
                        var attr = f.Get(99, "attribute", null);
                        var hasDef = f.Has(99, "default");
                        var def = f.Get(99, "default", null);
                        return new JinjaGenerator(items.Select(x =>
                        {
                            var v = AttrPath(x, attr, sandboxed);
                            return hasDef && v is JinjaUndefined ? def : v;
                        }).ToList());
                    }
                    if (args.Count == 0) return new JinjaGenerator(items);
                    var fname = SoftStr(args[0]);
                    if (!HasFilter(fname)) throw new JinjaError($"No filter named '{fname}'.");
                    var rest = args.Skip(1).ToList();
                    var restKw = kwargs.ToList();
                    return new JinjaGenerator(items.Select(x => CallFilter(fname, x, rest, restKw, interp)).ToList());
                }
            case "select" or "reject":
                {
                    var keep = name == "select";
                    if (!JinjaValue.IsTruthy(value)) return new JinjaGenerator([]);
                    return new JinjaGenerator(Iterate(value).Where(x => SelectTest(x, args, 0, interp) == keep).ToList());
                }
            case "selectattr" or "rejectattr":
                {
                    var keep = name == "selectattr";
                    if (args.Count == 0) throw new JinjaError($"{name} needs an attribute name");
                    var attr = args[0];
                    if (!JinjaValue.IsTruthy(value)) return new JinjaGenerator([]);
                    return new JinjaGenerator(Iterate(value).Where(x => SelectTest(AttrPath(x, attr, sandboxed), args, 1, interp) == keep).ToList());
                }
            case "attr":
                {
                    // getattr only: unlike obj.name, dict items are not consulted
                    var an = SoftStr(f.Get(0, "name", ""));
                    if (value is JinjaUndefined u) throw new JinjaError(u.Hint);
                    if (value is JinjaNamespace or JinjaLoop) return GetAttr(value, an, sandboxed);
                    return Method(JinjaValue.Unwrap(value), an, sandboxed) ?? JinjaUndefined.Missing(value, an);
                }
            case "format":
                {
                    var s = SoftStr(value);
                    if (args.Count > 0 && kwargs.Count > 0) throw new JinjaError("can't handle positional and keyword arguments at the same time");
                    if (kwargs.Count > 0)
                    {
                        var d = new JinjaDict();
                        foreach (var (k, v) in kwargs) d[k] = v;
                        return PyFormat.Percent(s, d);
                    }
                    return PyFormat.Percent(s, new JinjaTuple([.. args]));
                }
            case "pprint": return JinjaValue.Repr(value);
            case "striptags":
                {
                    var s = TagRe().Replace(SoftStr(value), "");
                    return string.Join(" ", s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
                }
            default:
                throw new JinjaError(HasFilter(name) ? $"filter '{name}' is not supported" : $"No filter named '{name}'.");
        }
    }

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRe();
    [GeneratedRegex(@"(<!--.*?-->|<[^>]*>)", RegexOptions.Singleline)]
    private static partial Regex TagRe();
    [GeneratedRegex(@"([-\s\(\{\[<]+)")]
    private static partial Regex WordBeginRe();

    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder();
        foreach (var item in WordBeginRe().Split(s))
        {
            if (item.Length == 0) continue;
            sb.Append(char.ToUpperInvariant(item[0])).Append(item[1..].ToLowerInvariant());
        }
        return sb.ToString();
    }

    internal static string HtmlEscape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")
        .Replace("\"", "&#34;").Replace("'", "&#39;");

    internal static string Indent(string s, string ind, bool first, bool blank)
    {
        s += "\n";
        string rv;
        var lines = SplitLines(s);
        RenderBudget.Current.CheckString(s.Length + (lines.Count + 1L) * ind.Length);
        if (blank) rv = string.Join("\n" + ind, lines);
        else
        {
            rv = lines[0];
            if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? ind + l : l));
        }
        if (first) rv = ind + rv;
        return rv;
    }

    private static object? ToInt(object? v, object? def, long @base)
    {
        switch (v)
        {
            case long l: return l;
            case bool b: return b ? 1L : 0L;
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : def;
            case string s:
                {
                    var t = s.Trim().Replace("_", "");
                    try
                    {
                        if (@base == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var r)) return r;
                        if (@base != 10 && t.Length > 0) return Convert.ToInt64(t, (int)@base);
                    }
                    catch (Exception e) when (e is FormatException or ArgumentException or OverflowException) { return def; }
                    if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var dd) && double.IsFinite(dd)) return (long)Math.Truncate(dd);
                    return def;
                }
            default: return def;
        }
    }

    private static object? ToFloat(object? v, object? def) => v switch
    {
        long l => (double)l,
        bool b => b ? 1.0 : 0.0,
        double d => d,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        string s when s.Trim().ToLowerInvariant() is "inf" or "+inf" or "infinity" => double.PositiveInfinity,
        string s when s.Trim().ToLowerInvariant() is "-inf" or "-infinity" => double.NegativeInfinity,
        string s when s.Trim().ToLowerInvariant() == "nan" => double.NaN,
        _ => def,
    };

    /// <summary>Jinja's attribute getter: dotted path, integer parts index sequences.</summary>
    private static object? AttrPath(object? obj, object? attr, bool sandboxed)
    {
        if (attr is long or bool) return GetItem(obj, attr, sandboxed);
        foreach (var part in SoftStr(attr).Split('.'))
        {
            object? key = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : part;
            obj = GetItem(obj, key, sandboxed);
        }
        return obj;
    }

    private static object? SortKey(object? v, bool caseSensitive) =>
        !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    private static bool IsHashable(object? k) => k switch
    {
        string or long or double or bool => true,
        JinjaTuple t => t.Items.All(IsHashable),
        _ => false,
    };

    private static List<object?> SortBy(List<object?> items, Func<object?, object?> key, bool reverse)
    {
        RenderBudget.Current.Charge((long)items.Count * (1 + (long)Math.Log2(items.Count + 1)) >> 2);
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        keyed.Sort((p, q) =>
        {
            var c = JinjaValue.PyCompare(p.Key, q.Key);
            if (reverse) c = -c;
            return c != 0 ? c : p.Index.CompareTo(q.Index);
        });
        return keyed.Select(p => p.Item).ToList();
    }

    internal static List<object?> SortItems(List<object?> items, bool reverse, bool caseSensitive, Func<object?, object?>? attr) =>
        SortBy(items, x => SortKey(attr is null ? x : attr(x), caseSensitive), reverse);

    private static bool SelectTest(object? x, List<object?> args, int at, JinjaInterpreter interp)
    {
        if (args.Count <= at) return JinjaValue.IsTruthy(x);
        var test = SoftStr(args[at]);
        if (!HasTest(test)) throw new JinjaError($"No test named '{test}'.");
        return CallTest(test, x, args.Skip(at + 1).ToList(), interp);
    }

    // ------------------------------------------------------------------ tests

    public static bool CallTest(string name, object? v, List<object?> args, JinjaInterpreter interp)
    {
        object? A(int i) => i < args.Count ? args[i] : throw new JinjaError($"test '{name}' needs an argument");
        if (name == "escaped") return v is JinjaMarkup;
        v = JinjaValue.Unwrap(v);
        switch (name)
        {
            case "defined": return v is not JinjaUndefined;
            case "undefined": return v is JinjaUndefined;
            case "none": return v is null;
            case "boolean": return v is bool;
            case "true": return v is true;
            case "false": return v is false;
            case "integer": return v is long;
            case "float": return v is double;
            case "number": return v is long or double or bool;
            case "string": return v is string;
            case "mapping": return v is JinjaDict;
            case "sequence": return v is string or List<object?> or JinjaTuple or JinjaDict;
            case "iterable": return v is string or List<object?> or JinjaTuple or JinjaDict or JinjaUndefined or JinjaGenerator;
            case "callable": return v is JinjaCallable;
            case "escaped": return false;
            case "lower": return IsLower(SoftStr(v));
            case "upper": return IsUpper(SoftStr(v));
            case "odd": return JinjaValue.ToLong(v) % 2 != 0;
            case "even": return JinjaValue.ToLong(v) % 2 == 0;
            case "divisibleby":
                {
                    var n = A(0);
                    if (v is double || n is double) return JinjaValue.ToDouble(v) % JinjaValue.ToDouble(n) == 0;
                    return JinjaValue.ToLong(v) % JinjaValue.ToLong(n) == 0;
                }
            case "filter": return HasFilter(SoftStr(v));
            case "test": return HasTest(SoftStr(v));
            case "sameas":
                {
                    var o = A(0);
                    if (v is null || o is null) return v is null && o is null;
                    if (v is bool || o is bool) return v is bool b1 && o is bool b2 && b1 == b2;
                    if (v is long l1 && o is long l2) return l1 == l2;
                    if (v is string s1 && o is string s2) return ReferenceEquals(s1, s2) || s1 == s2;
                    return ReferenceEquals(v, o);
                }
            case "in": return Contains(A(0), v);
            case "==" or "eq" or "equalto": return JinjaValue.PyEquals(v, A(0));
            case "!=" or "ne": return !JinjaValue.PyEquals(v, A(0));
            case "<" or "lt" or "lessthan": return JinjaValue.PyCompare(v, A(0), "<") < 0;
            case "<=" or "le": return JinjaValue.PyCompare(v, A(0), "<=") <= 0;
            case ">" or "gt" or "greaterthan": return JinjaValue.PyCompare(v, A(0), ">") > 0;
            case ">=" or "ge": return JinjaValue.PyCompare(v, A(0), ">=") >= 0;
            default: throw new JinjaError($"No test named '{name}'.");
        }
    }
}
