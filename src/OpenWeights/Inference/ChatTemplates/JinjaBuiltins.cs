using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>Filters, tests, globals, attribute access, methods and operators.</summary>
internal static partial class JinjaBuiltins
{
    private static readonly HashSet<string> FilterNames =
    [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
        "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
        "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
        "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
        "wordwrap", "xmlattr",
    ];

    private static readonly HashSet<string> TestNames =
    [
        "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false",
        "true", "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable",
        "callable", "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan",
        ">=", "ge", "<", "lt", "lessthan", "<=", "le",
    ];

    public static bool HasFilter(string name) => FilterNames.Contains(name);
    public static bool HasTest(string name) => TestNames.Contains(name);

    // ------------------------------------------------------------------ globals

    public static Dictionary<string, object?> MakeGlobals(JinjaTemplateOptions options)
    {
        var g = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["range"] = new BuiltinFunction("range", (a, _) => Range(a)),
            ["dict"] = new BuiltinFunction("dict", (a, kw) =>
            {
                var d = new JinjaDict();
                foreach (var x in a)
                {
                    if (x is JinjaDict src) foreach (var (k, v) in src) d[k] = v;
                    else foreach (var pair in Iterate(x))
                        {
                            var kv = Iterate(pair);
                            if (kv.Count != 2) throw new JinjaError("dictionary update sequence element has wrong length");
                            d[kv[0]!] = kv[1];
                        }
                }
                foreach (var (k, v) in kw) d[k] = v;
                return d;
            }),
            ["namespace"] = new BuiltinFunction("namespace", (a, kw) =>
            {
                var ns = new JinjaNamespace();
                foreach (var x in a)
                {
                    if (x is not JinjaDict src) throw new JinjaError("namespace() positional argument must be a dict");
                    foreach (var (k, v) in src) ns.Set(k, v);
                }
                foreach (var (k, v) in kw) ns.Set(k, v);
                return ns;
            }),
            ["joiner"] = new BuiltinFunction("joiner", (a, kw) =>
            {
                var sep = JinjaValue.ToPyString(Arg(a, kw, 0, "sep", ", "));
                var used = false;
                return new BuiltinFunction("joiner", (_, _) =>
                {
                    if (!used) { used = true; return ""; }
                    return sep;
                });
            }),
            ["cycler"] = new BuiltinFunction("cycler", (a, _) =>
            {
                if (a.Count == 0) throw new JinjaError("at least one item has to be provided");
                var ns = new JinjaNamespace();
                var pos = 0;
                ns.Set("current", a[0]);
                ns.Set("next", new BuiltinFunction("next", (_, _) =>
                {
                    var r = a[pos];
                    pos = (pos + 1) % a.Count;
                    ns.Set("current", a[pos]);
                    return r;
                }));
                ns.Set("reset", new BuiltinFunction("reset", (_, _) =>
                {
                    pos = 0;
                    ns.Set("current", a[0]);
                    return null;
                }));
                return ns;
            }),
            ["raise_exception"] = new BuiltinFunction("raise_exception", (a, _) =>
                throw new JinjaError(a.Count > 0 ? JinjaValue.ToPyString(a[0]) : "", raisedByTemplate: true)),
            ["strftime_now"] = new BuiltinFunction("strftime_now", (a, _) =>
                Strftime(options.Now(), a.Count > 0 ? JinjaValue.ToPyString(a[0]) : "")),
        };
        return g;
    }

    private static List<object?> Range(List<object?> a)
    {
        long start = 0, stop, step = 1;
        if (a.Count == 1) stop = JinjaValue.ToLong(a[0]);
        else if (a.Count >= 2)
        {
            start = JinjaValue.ToLong(a[0]);
            stop = JinjaValue.ToLong(a[1]);
            if (a.Count >= 3) step = JinjaValue.ToLong(a[2]);
        }
        else throw new JinjaError("range expected at least 1 argument, got 0");
        if (step == 0) throw new JinjaError("range() arg 3 must not be zero");
        // charge the list before building it: a loop that calls range(100000) each time is a loop of that size
        var span = step > 0 ? (double)stop - start : (double)start - stop;
        var count = span <= 0 ? 0 : (long)Math.Min(Math.Ceiling(span / Math.Abs((double)step)), 100001);
        var budget = RenderBudget.Current;
        budget.CheckItems(count, copy: false);
        budget.Charge(count); // an object per item, not just a copied reference
        var r = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            r.Add(i);
            if (r.Count > 100000) throw new JinjaError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        }
        return r;
    }

    internal static string Strftime(DateTime t, string fmt)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (var i = 0; i < fmt.Length; i++)
        {
            if (fmt[i] != '%' || i + 1 >= fmt.Length) { sb.Append(fmt[i]); continue; }
            var c = fmt[++i];
            var noPad = false;
            if (c == '-' && i + 1 < fmt.Length) { noPad = true; c = fmt[++i]; }
            string Num(int v, int w) => noPad ? v.ToString(ci) : v.ToString(new string('0', w), ci);
            sb.Append(c switch
            {
                'Y' => t.Year.ToString(ci),
                'y' => Num(t.Year % 100, 2),
                'm' => Num(t.Month, 2),
                'd' => Num(t.Day, 2),
                'e' => t.Day.ToString(ci).PadLeft(2),
                'H' => Num(t.Hour, 2),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", ci),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' or 'h' => t.ToString("MMM", ci),
                'B' => t.ToString("MMMM", ci),
                'a' => t.ToString("ddd", ci),
                'A' => t.ToString("dddd", ci),
                'j' => Num(t.DayOfYear, 3),
                'w' => ((int)t.DayOfWeek).ToString(ci),
                'u' => (t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(ci),
                'F' => t.ToString("yyyy-MM-dd", ci),
                'T' => t.ToString("HH:mm:ss", ci),
                'D' => t.ToString("MM/dd/yy", ci),
                'R' => t.ToString("HH:mm", ci),
                'c' => t.ToString("ddd MMM ", ci) + t.Day.ToString(ci).PadLeft(2) + t.ToString(" HH:mm:ss yyyy", ci),
                'x' => t.ToString("MM/dd/yy", ci),
                'X' => t.ToString("HH:mm:ss", ci),
                'Z' or 'z' => "",
                'n' => "\n",
                't' => "\t",
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }

    // ------------------------------------------------------------------ iteration, attributes, items

    public static List<object?> Iterate(object? v)
    {
        var u = JinjaValue.Unwrap(v);
        switch (u)
        {
            case List<object?> l: RenderBudget.Current.Charge(l.Count >> 4); return [.. l];
            case JinjaTuple t: RenderBudget.Current.Charge(t.Count >> 4); return [.. t.Items];
            case JinjaDict d: RenderBudget.Current.Charge(d.Count >> 4); return [.. d.Keys];
            case JinjaGenerator g: return g.Take();
            case string s: return CodePoints(s);
            case JinjaUndefined: return [];
            case null: throw new JinjaError("'NoneType' object is not iterable");
            default: throw new JinjaError($"'{JinjaValue.TypeName(v)}' object is not iterable");
        }
    }

    private static List<object?> CodePoints(string s)
    {
        RenderBudget.Current.CheckItems(s.Length);
        var r = new List<object?>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { r.Add(s.Substring(i, 2)); i++; }
            else r.Add(s[i].ToString());
        }
        return r;
    }

    /// <summary>PyLen scans the string: charged, for the calls a template makes in a loop (len, s[i]).</summary>
    private static int ChargedPyLen(string s)
    {
        RenderBudget.Current.Charge(s.Length >> 4);
        return PyLen(s);
    }

    internal static int PyLen(string s)
    {
        var n = s.Length;
        for (var i = 0; i + 1 < s.Length; i++)
            if (char.IsHighSurrogate(s[i]) && char.IsLowSurrogate(s[i + 1])) { n--; i++; }
        return n;
    }

    public static long Length(object? v) => JinjaValue.Unwrap(v) switch
    {
        string s => ChargedPyLen(s),
        List<object?> l => l.Count,
        JinjaTuple t => t.Count,
        JinjaDict d => d.Count,
        JinjaUndefined => 0,
        _ => throw new JinjaError($"object of type '{JinjaValue.TypeName(v)}' has no len()"),
    };

    public static object? GetAttr(object? obj, string name, bool sandboxed)
    {
        obj = JinjaValue.Unwrap(obj);
        switch (obj)
        {
            case JinjaUndefined u: throw new JinjaError(u.Hint);
            case JinjaDict d:
                {
                    var m = Method(d, name, sandboxed);
                    if (m is not null) return m;
                    return d.TryGetValue(name, out var v) ? v : JinjaUndefined.Missing(obj, name);
                }
            case JinjaNamespace ns:
                return ns.TryGet(name, out var a) ? a : JinjaUndefined.Missing(obj, name);
            case JinjaLoop loop: return loop.Get(name);
            default:
                return Method(obj, name, sandboxed) ?? JinjaUndefined.Missing(obj, name);
        }
    }

    public static object? GetItem(object? obj, object? key, bool sandboxed)
    {
        obj = JinjaValue.Unwrap(obj);
        key = JinjaValue.Unwrap(key);
        switch (obj)
        {
            case JinjaUndefined u: throw new JinjaError(u.Hint);
            case JinjaDict d:
                if (key is not null and not JinjaUndefined and not List<object?> and not JinjaDict && d.TryGetValue(key, out var v)) return v;
                break;
            case List<object?> or JinjaTuple or string when key is long or bool:
                {
                    var idx = JinjaValue.ToLong(key);
                    var n = obj is string str ? ChargedPyLen(str) : obj is List<object?> l ? l.Count : ((JinjaTuple)obj).Count;
                    if (idx < 0) idx += n;
                    if (idx < 0 || idx >= n) return JinjaUndefined.Missing(obj, key);
                    return obj switch
                    {
                        List<object?> list => list[(int)idx],
                        JinjaTuple t => t[(int)idx],
                        _ => n == ((string)obj).Length ? ((string)obj)[(int)idx].ToString() : CodePoints((string)obj)[(int)idx],
                    };
                }
            case JinjaNamespace ns when key is string s:
                return ns.TryGet(s, out var a) ? a : JinjaUndefined.Missing(obj, key);
            case JinjaLoop loop when key is string s:
                return loop.Get(s);
        }
        if (key is string name)
        {
            var m = Method(obj, name, sandboxed);
            if (m is not null) return m;
        }
        return JinjaUndefined.Missing(obj, key);
    }

    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        obj = JinjaValue.Unwrap(obj);
        if (obj is JinjaUndefined u) throw new JinjaError(u.Hint);
        List<object?> items;
        switch (obj)
        {
            case List<object?> l: items = l; break;
            case JinjaTuple t: items = [.. t.Items]; break;
            case string s: items = CodePoints(s); break;
            case null: return JinjaUndefined.Missing(obj, "slice");
            default: throw new JinjaError($"'{JinjaValue.TypeName(obj)}' object is not subscriptable");
        }
        long? Opt(object? v) => v is null or JinjaUndefined ? null : JinjaValue.ToLong(v);
        var n = (long)items.Count;
        var st = Opt(step) ?? 1;
        if (st == 0) throw new JinjaError("slice step cannot be zero");
        long Clamp(long? v, long def, bool isStart)
        {
            if (v is null) return def;
            var x = v.Value;
            if (x < 0) x += n;
            if (st > 0) return Math.Clamp(x, 0, n);
            return Math.Clamp(x, -1, n - 1);
        }
        var a = Clamp(Opt(start), st > 0 ? 0 : n - 1, true);
        var b = Clamp(Opt(stop), st > 0 ? n : -1, false);
        var r = new List<object?>();
        RenderBudget.Current.Charge(Math.Abs(b - a) / Math.Max(1, Math.Abs(st)) >> 2);
        for (var i = a; st > 0 ? i < b : i > b; i += st) r.Add(items[(int)i]);
        return obj switch
        {
            string => string.Concat(r.Cast<string>()),
            JinjaTuple => new JinjaTuple([.. r]),
            _ => r,
        };
    }

    // ------------------------------------------------------------------ methods

    private static readonly HashSet<string> UnsafeListMethods = ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"];
    private static readonly HashSet<string> UnsafeDictMethods = ["pop", "popitem", "update", "clear", "setdefault"];

    private static object? Unsafe(object obj, string name) =>
        new JinjaUndefined($"access to attribute '{name}' of '{JinjaValue.TypeName(obj)}' object is unsafe.", true);

    private static BuiltinFunction Fn(string name, Func<List<object?>, List<KeyValuePair<string, object?>>, object?> f) => new(name, f);

    private static object? Method(object? obj, string name, bool sandboxed)
    {
        switch (obj)
        {
            case string s:
                if (name is not ("startswith" or "endswith")) RenderBudget.Current.Charge(s.Length >> 4); // most methods scan or copy the string
                return StringMethod(s, name);
            case JinjaDict d:
                if (sandboxed && UnsafeDictMethods.Contains(name)) return Unsafe(d, name);
                return name switch
                {
                    "items" => Fn(name, (_, _) => d.Select(p => (object?)new JinjaTuple(p.Key, p.Value)).ToList()),
                    "keys" => Fn(name, (_, _) => d.Keys.Select(k => (object?)k).ToList()),
                    "values" => Fn(name, (_, _) => d.Values.ToList()),
                    "get" => Fn(name, (a, kw) =>
                    {
                        if (a.Count == 0) throw new JinjaError("get expected at least 1 argument, got 0");
                        var k = a[0];
                        return k is not null and not JinjaUndefined and not List<object?> and not JinjaDict && d.TryGetValue(k, out var v)
                            ? v : (a.Count > 1 ? a[1] : null);
                    }),
                    "copy" => Fn(name, (_, _) => { var c = new JinjaDict(); foreach (var (k, v) in d) c[k] = v; return c; }),
                    "pop" => Fn(name, (a, _) =>
                    {
                        if (a.Count > 0 && a[0] is { } k && d.Remove(k, out var v)) return v;
                        if (a.Count > 1) return a[1];
                        throw new JinjaError($"KeyError: {JinjaValue.Repr(a.Count > 0 ? a[0] : null)}");
                    }),
                    "update" => Fn(name, (a, kw) =>
                    {
                        foreach (var x in a) if (x is JinjaDict src) foreach (var (k, v) in src) d[k] = v;
                        foreach (var (k, v) in kw) d[k] = v;
                        return null;
                    }),
                    "setdefault" => Fn(name, (a, _) =>
                    {
                        var k = a[0]!;
                        if (!d.TryGetValue(k, out var v)) d[k] = v = a.Count > 1 ? a[1] : null;
                        return v;
                    }),
                    "clear" => Fn(name, (_, _) => { d.Clear(); return null; }),
                    _ => null,
                };
            case List<object?> l:
                if (sandboxed && UnsafeListMethods.Contains(name)) return Unsafe(l, name);
                return name switch
                {
                    "index" => Fn(name, (a, _) =>
                    {
                        var i = l.FindIndex(x => JinjaValue.PyEquals(x, a[0]));
                        if (i < 0) throw new JinjaError($"{JinjaValue.Repr(a[0])} is not in list");
                        return (long)i;
                    }),
                    "count" => Fn(name, (a, _) => (long)l.Count(x => JinjaValue.PyEquals(x, a[0]))),
                    "copy" => Fn(name, (_, _) => l.ToList()),
                    "append" => Fn(name, (a, _) => { RenderBudget.Current.CheckItems(l.Count + 1L, copy: false); l.Add(a[0]); return null; }),
                    "extend" => Fn(name, (a, _) =>
                    {
                        var more = Iterate(a[0]);
                        RenderBudget.Current.CheckItems((long)l.Count + more.Count, copy: false);
                        l.AddRange(more);
                        return null;
                    }),
                    "insert" => Fn(name, (a, _) =>
                    {
                        RenderBudget.Current.CheckItems(l.Count + 1L, copy: false);
                        var i = JinjaValue.ToLong(a[0]);
                        if (i < 0) i = Math.Max(0, i + l.Count);
                        l.Insert((int)Math.Min(i, l.Count), a[1]);
                        return null;
                    }),
                    "pop" => Fn(name, (a, _) =>
                    {
                        if (l.Count == 0) throw new JinjaError("pop from empty list");
                        var i = a.Count > 0 ? JinjaValue.ToLong(a[0]) : -1;
                        if (i < 0) i += l.Count;
                        if (i < 0 || i >= l.Count) throw new JinjaError("pop index out of range");
                        var v = l[(int)i];
                        l.RemoveAt((int)i);
                        return v;
                    }),
                    "remove" => Fn(name, (a, _) =>
                    {
                        var i = l.FindIndex(x => JinjaValue.PyEquals(x, a[0]));
                        if (i < 0) throw new JinjaError("list.remove(x): x not in list");
                        l.RemoveAt(i);
                        return null;
                    }),
                    "clear" => Fn(name, (_, _) => { l.Clear(); return null; }),
                    "reverse" => Fn(name, (_, _) => { l.Reverse(); return null; }),
                    "sort" => Fn(name, (a, kw) =>
                    {
                        var sorted = SortItems(l, JinjaValue.IsTruthy(Arg(a, kw, -1, "reverse", false)), true, null);
                        l.Clear();
                        l.AddRange(sorted);
                        return null;
                    }),
                    _ => null,
                };
            case JinjaTuple t:
                return name switch
                {
                    "index" => Fn(name, (a, _) =>
                    {
                        var i = Array.FindIndex(t.Items, x => JinjaValue.PyEquals(x, a[0]));
                        if (i < 0) throw new JinjaError("tuple.index(x): x not in tuple");
                        return (long)i;
                    }),
                    "count" => Fn(name, (a, _) => (long)t.Items.Count(x => JinjaValue.PyEquals(x, a[0]))),
                    _ => null,
                };
            default: return null;
        }
    }

    private static string Str(object? v, string what)
    {
        v = JinjaValue.Unwrap(v);
        if (v is string s) return s;
        throw new JinjaError($"{what} must be str, not {JinjaValue.TypeName(v)}");
    }

    private static object? Arg(List<object?> a, List<KeyValuePair<string, object?>> kw, int index, string name, object? def)
    {
        foreach (var (k, v) in kw) if (k == name) return v;
        return index >= 0 && index < a.Count ? a[index] : def;
    }

    private static bool IsStripChar(char c, string? chars) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);

    internal static string PyStrip(string s, string? chars, bool left, bool right)
    {
        var a = 0;
        var b = s.Length;
        if (left) while (a < b && IsStripChar(s[a], chars)) a++;
        if (right) while (b > a && IsStripChar(s[b - 1], chars)) b--;
        return s[a..b];
    }

    private static List<object?> PySplit(string s, string? sep, long maxsplit)
    {
        var r = new List<object?>();
        if (sep is null)
        {
            var i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxsplit >= 0 && r.Count >= maxsplit) { r.Add(s[i..].TrimEnd()); break; }
                var j = i;
                while (j < s.Length && !char.IsWhiteSpace(s[j])) j++;
                r.Add(s[i..j]);
                i = j;
            }
            return r;
        }
        if (sep.Length == 0) throw new JinjaError("empty separator");
        var pos = 0;
        while (maxsplit < 0 || r.Count < maxsplit)
        {
            var k = s.IndexOf(sep, pos, StringComparison.Ordinal);
            if (k < 0) break;
            r.Add(s[pos..k]);
            pos = k + sep.Length;
        }
        r.Add(s[pos..]);
        return r;
    }

    private static List<object?> PyRSplit(string s, string? sep, long maxsplit)
    {
        if (maxsplit < 0) return PySplit(s, sep, -1);
        var r = new List<object?>();
        if (sep is null)
        {
            var i = s.Length;
            while (true)
            {
                while (i > 0 && char.IsWhiteSpace(s[i - 1])) i--;
                if (i <= 0) break;
                if (r.Count >= maxsplit) { r.Add(s[..i].TrimStart()); break; }
                var j = i;
                while (j > 0 && !char.IsWhiteSpace(s[j - 1])) j--;
                r.Add(s[j..i]);
                i = j;
            }
            r.Reverse();
            return r;
        }
        var end = s.Length;
        while (r.Count < maxsplit)
        {
            if (end == 0) break;
            var k = s.LastIndexOf(sep, end - 1, StringComparison.Ordinal);
            if (k < 0 || k + sep.Length > end) break;
            r.Add(s[(k + sep.Length)..end]);
            end = k;
        }
        r.Add(s[..end]);
        r.Reverse();
        return r;
    }

    internal static List<string> SplitLines(string s, bool keepEnds = false)
    {
        var r = new List<string>();
        var start = 0;
        var i = 0;
        while (i < s.Length)
        {
            var c = s[i];
            var eol = c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029';
            if (!eol) { i++; continue; }
            var next = i + 1;
            if (c == '\r' && next < s.Length && s[next] == '\n') next++;
            r.Add(keepEnds ? s[start..next] : s[start..i]);
            start = i = next;
        }
        if (start < s.Length) r.Add(s[start..]);
        return r;
    }

    internal static string PyTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var prevCased = false;
        foreach (var c in s)
        {
            if (char.IsLetter(c))
            {
                sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
                prevCased = true;
            }
            else { sb.Append(c); prevCased = false; }
        }
        return sb.ToString();
    }

    internal static string PyCapitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static string PyReplace(string s, string old, string @new, long count)
    {
        var budget = RenderBudget.Current;
        if (count < 0 && old.Length == 0)
        {
            budget.CheckString(s.Length + (s.Length + 1L) * @new.Length);
            return InsertEverywhere(s, @new);
        }
        if (count < 0 && @new.Length <= old.Length)
        {
            budget.CheckString(s.Length);
            return s.Replace(old, @new, StringComparison.Ordinal);
        }
        var sb = new StringBuilder();
        var pos = 0;
        var n = 0L;
        while (count < 0 || n < count)
        {
            var k = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (k < 0 || old.Length == 0) break;
            budget.CheckOutput((long)sb.Length + (k - pos) + @new.Length);
            sb.Append(s, pos, k - pos).Append(@new);
            pos = k + old.Length;
            n++;
        }
        budget.CheckString((long)sb.Length + s.Length - pos);
        sb.Append(s, pos, s.Length - pos);
        return sb.ToString();
    }

    private static string InsertEverywhere(string s, string ins)
    {
        var sb = new StringBuilder(ins);
        foreach (var c in s) sb.Append(c).Append(ins);
        return sb.ToString();
    }

    private static bool Affix(string s, object? arg, bool start, List<object?> a)
    {
        var begin = a.Count > 1 && a[1] is not null ? (int)Math.Clamp(Norm(JinjaValue.ToLong(a[1]), s.Length), 0, s.Length) : 0;
        var end = a.Count > 2 && a[2] is not null ? (int)Math.Clamp(Norm(JinjaValue.ToLong(a[2]), s.Length), 0, s.Length) : s.Length;
        if (end < begin) return false;
        var sub = s.AsSpan(begin, end - begin); // no copy: startswith on a long string costs the prefix, not the string
        IEnumerable<object?> cands = arg is JinjaTuple t ? t.Items : [arg];
        foreach (var c in cands)
        {
            var p = Str(c, start ? "startswith first arg" : "endswith first arg");
            if (start ? sub.StartsWith(p, StringComparison.Ordinal) : sub.EndsWith(p, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static long Norm(long i, int n) => i < 0 ? i + n : i;

    private static object? StringMethod(string s, string name)
    {
        string? Chars(List<object?> a) => a.Count > 0 && a[0] is not null ? Str(a[0], "strip arg") : null;
        long MaxSplit(List<object?> a, List<KeyValuePair<string, object?>> kw) =>
            JinjaValue.ToLong(Arg(a, kw, 1, "maxsplit", -1L));
        string? Sep(List<object?> a, List<KeyValuePair<string, object?>> kw) =>
            Arg(a, kw, 0, "sep", null) is { } x ? Str(x, "separator") : null;
        return name switch
        {
            "strip" => Fn(name, (a, _) => PyStrip(s, Chars(a), true, true)),
            "lstrip" => Fn(name, (a, _) => PyStrip(s, Chars(a), true, false)),
            "rstrip" => Fn(name, (a, _) => PyStrip(s, Chars(a), false, true)),
            "split" => Fn(name, (a, kw) => PySplit(s, Sep(a, kw), MaxSplit(a, kw))),
            "rsplit" => Fn(name, (a, kw) => PyRSplit(s, Sep(a, kw), MaxSplit(a, kw))),
            "splitlines" => Fn(name, (a, kw) => SplitLines(s, JinjaValue.IsTruthy(Arg(a, kw, 0, "keepends", false))).Select(x => (object?)x).ToList()),
            "startswith" => Fn(name, (a, _) => Affix(s, a.Count > 0 ? a[0] : null, true, a)),
            "endswith" => Fn(name, (a, _) => Affix(s, a.Count > 0 ? a[0] : null, false, a)),
            "replace" => Fn(name, (a, kw) => PyReplace(s, Str(a[0], "replace arg 1"), Str(a[1], "replace arg 2"),
                JinjaValue.ToLong(Arg(a, kw, 2, "count", -1L)))),
            "upper" => Fn(name, (_, _) => s.ToUpperInvariant()),
            "lower" or "casefold" => Fn(name, (_, _) => s.ToLowerInvariant()),
            "title" => Fn(name, (_, _) => PyTitle(s)),
            "capitalize" => Fn(name, (_, _) => PyCapitalize(s)),
            "swapcase" => Fn(name, (_, _) => string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)))),
            "format" => Fn(name, (a, kw) => PyFormat.StrFormat(s, a, kw)),
            "join" => Fn(name, (a, _) => Join(s, Iterate(a[0]).Select(x => Str(x, "sequence item")))),
            "find" => Fn(name, (a, _) => (long)IndexOf(s, Str(a[0], "find arg"), a, false)),
            "rfind" => Fn(name, (a, _) => (long)IndexOf(s, Str(a[0], "rfind arg"), a, true)),
            "index" or "rindex" => Fn(name, (a, _) =>
            {
                var i = IndexOf(s, Str(a[0], "index arg"), a, name == "rindex");
                if (i < 0) throw new JinjaError("substring not found");
                return (long)i;
            }),
            "count" => Fn(name, (a, _) =>
            {
                var sub = Str(a[0], "count arg");
                if (sub.Length == 0) return (long)(PyLen(s) + 1);
                long n = 0;
                for (var k = s.IndexOf(sub, StringComparison.Ordinal); k >= 0; k = s.IndexOf(sub, k + sub.Length, StringComparison.Ordinal)) n++;
                return n;
            }),
            "isdigit" or "isnumeric" or "isdecimal" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
            "isalpha" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsLetter)),
            "isalnum" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsLetterOrDigit)),
            "isspace" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
            "islower" => Fn(name, (_, _) => IsLower(s)),
            "isupper" => Fn(name, (_, _) => IsUpper(s)),
            "istitle" => Fn(name, (_, _) => s.Any(char.IsLetter) && PyTitle(s) == s),
            "zfill" => Fn(name, (a, _) =>
            {
                var w = Width(a[0]);
                if (s.Length >= w) return s;
                RenderBudget.Current.CheckString(w);
                var sign = s.Length > 0 && s[0] is '+' or '-' ? s[..1] : "";
                return sign + new string('0', w - s.Length) + s[sign.Length..];
            }),
            "center" => Fn(name, (a, _) => Center(s, Width(a[0]), a.Count > 1 ? Str(a[1], "fillchar") : " ")),
            "ljust" => Fn(name, (a, _) => s.PadRight(Width(a[0]), a.Count > 1 ? Str(a[1], "fillchar")[0] : ' ')),
            "rjust" => Fn(name, (a, _) => s.PadLeft(Width(a[0]), a.Count > 1 ? Str(a[1], "fillchar")[0] : ' ')),
            "partition" or "rpartition" => Fn(name, (a, _) =>
            {
                var sep = Str(a[0], "separator");
                var k = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                if (k < 0) return name == "partition" ? new JinjaTuple(s, "", "") : new JinjaTuple("", "", s);
                return new JinjaTuple(s[..k], sep, s[(k + sep.Length)..]);
            }),
            "removeprefix" => Fn(name, (a, _) => { var p = Str(a[0], "prefix"); return s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s; }),
            "removesuffix" => Fn(name, (a, _) => { var p = Str(a[0], "suffix"); return p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s; }),
            _ => null,
        };
    }

    private static bool IsLower(string s) => s.Any(char.IsLetter) && !s.Any(char.IsUpper);
    private static bool IsUpper(string s) => s.Any(char.IsLetter) && !s.Any(char.IsLower);

    private static int IndexOf(string s, string sub, List<object?> a, bool last)
    {
        var start = a.Count > 1 && a[1] is not null ? (int)Math.Clamp(Norm(JinjaValue.ToLong(a[1]), s.Length), 0, s.Length) : 0;
        var end = a.Count > 2 && a[2] is not null ? (int)Math.Clamp(Norm(JinjaValue.ToLong(a[2]), s.Length), 0, s.Length) : s.Length;
        if (end < start) return -1;
        var region = s[start..end];
        var k = last ? region.LastIndexOf(sub, StringComparison.Ordinal) : region.IndexOf(sub, StringComparison.Ordinal);
        return k < 0 ? -1 : k + start;
    }

    /// <summary>A padding width (ljust, center, zfill...), within the string budget.</summary>
    internal static int Width(object? w)
    {
        var n = JinjaValue.ToLong(w);
        if (n <= 0) return 0;
        RenderBudget.Current.CheckString(n);
        return (int)n;
    }

    /// <summary>string.Join within the string budget.</summary>
    internal static string Join(string sep, IEnumerable<string> items)
    {
        var budget = RenderBudget.Current;
        var sb = new StringBuilder();
        var first = true;
        foreach (var x in items)
        {
            var add = (first ? 0L : sep.Length) + x.Length;
            budget.CheckOutput(sb.Length + add);
            if (!first) sb.Append(sep);
            sb.Append(x);
            first = false;
        }
        budget.Charge(sb.Length >> 4);
        return sb.ToString();
    }

    internal static string Center(string s, int width, string fill = " ")
    {
        var n = PyLen(s);
        if (width <= n) return s;
        RenderBudget.Current.CheckString(width);
        var marg = width - n;
        var left = marg / 2 + (marg & width & 1);
        return new string(fill[0], left) + s + new string(fill[0], marg - left);
    }

    // ------------------------------------------------------------------ operators

    private static void NoUndefined(object? a, object? b)
    {
        if (a is JinjaUndefined u) throw new JinjaError(u.Hint);
        if (b is JinjaUndefined v) throw new JinjaError(v.Hint);
    }

    private static JinjaError Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand type(s) for {op}: '{JinjaValue.TypeName(a)}' and '{JinjaValue.TypeName(b)}'");

    /// <summary>Python ints are unbounded; ours are 64-bit, and a result that does not fit is refused.</summary>
    internal const string IntegerOverflow = "integer overflow: the result does not fit in 64 bits";

    public static object? Negate(object? x) => x switch
    {
        long l => (object)checked(-l),
        bool b => b ? -1L : 0L,
        double d => -d,
        JinjaUndefined u => throw new JinjaError(u.Hint),
        _ => throw new JinjaError($"bad operand type for unary -: '{JinjaValue.TypeName(x)}'"),
    };

    public static object? Positive(object? x) => x switch
    {
        long or double => x,
        bool b => (object)(b ? 1L : 0L),
        JinjaUndefined u => throw new JinjaError(u.Hint),
        _ => throw new JinjaError($"bad operand type for unary +: '{JinjaValue.TypeName(x)}'"),
    };

    public static object? BinaryOp(string op, object? a, object? b)
    {
        NoUndefined(a, b);
        if (a is JinjaMarkup || b is JinjaMarkup)
        {
            static string Esc(object? x) => x is JinjaMarkup m ? m.Value : HtmlEscape((string)x!);
            if (op == "+" && a is string or JinjaMarkup && b is string or JinjaMarkup)
            {
                string l = Esc(a), r = Esc(b);
                RenderBudget.Current.CheckString((long)l.Length + r.Length);
                return new JinjaMarkup(l + r);
            }
            if (op == "%" && a is JinjaMarkup fm)
            {
                object? EscArg(object? x) => x is string s ? HtmlEscape(s) : x is JinjaMarkup m ? m.Value : x;
                var escaped = b switch
                {
                    JinjaTuple t => new JinjaTuple(t.Items.Select(EscArg).ToArray()),
                    JinjaDict d => d.Aggregate(new JinjaDict(), (acc, p) => { acc[p.Key] = EscArg(p.Value); return acc; }),
                    _ => EscArg(b),
                };
                return new JinjaMarkup(PyFormat.Percent(fm.Value, escaped));
            }
            if (op == "*" && a is JinjaMarkup rm && b is long or bool) return new JinjaMarkup((string)Repeat(rm.Value, JinjaValue.ToLong(b))!);
            a = JinjaValue.Unwrap(a);
            b = JinjaValue.Unwrap(b);
        }
        var num = JinjaValue.IsNumber(a) && JinjaValue.IsNumber(b);
        var isFloat = a is double || b is double;
        switch (op)
        {
            case "+":
                if (num) return isFloat ? (object)(JinjaValue.ToDouble(a) + JinjaValue.ToDouble(b)) : checked(JinjaValue.ToLong(a) + JinjaValue.ToLong(b));
                if (a is string s1 && b is string s2)
                {
                    RenderBudget.Current.CheckString((long)s1.Length + s2.Length);
                    return s1 + s2;
                }
                if (a is List<object?> l1 && b is List<object?> l2)
                {
                    RenderBudget.Current.CheckItems((long)l1.Count + l2.Count);
                    return l1.Concat(l2).ToList();
                }
                if (a is JinjaTuple t1 && b is JinjaTuple t2)
                {
                    RenderBudget.Current.CheckItems((long)t1.Count + t2.Count);
                    return new JinjaTuple([.. t1.Items, .. t2.Items]);
                }
                if (a is string) throw new JinjaError($"can only concatenate str (not \"{JinjaValue.TypeName(b)}\") to str");
                if (a is List<object?>) throw new JinjaError($"can only concatenate list (not \"{JinjaValue.TypeName(b)}\") to list");
                throw Unsupported("+", a, b);
            case "-":
                if (num) return isFloat ? (object)(JinjaValue.ToDouble(a) - JinjaValue.ToDouble(b)) : checked(JinjaValue.ToLong(a) - JinjaValue.ToLong(b));
                throw Unsupported("-", a, b);
            case "*":
                if (num) return isFloat ? (object)(JinjaValue.ToDouble(a) * JinjaValue.ToDouble(b)) : checked(JinjaValue.ToLong(a) * JinjaValue.ToLong(b));
                if (a is string or List<object?> or JinjaTuple && b is long or bool) return Repeat(a, JinjaValue.ToLong(b));
                if (b is string or List<object?> or JinjaTuple && a is long or bool) return Repeat(b, JinjaValue.ToLong(a));
                throw Unsupported("*", a, b);
            case "/":
                if (!num) throw Unsupported("/", a, b);
                if (JinjaValue.ToDouble(b) == 0) throw new JinjaError("division by zero");
                return JinjaValue.ToDouble(a) / JinjaValue.ToDouble(b);
            case "//":
                if (!num) throw Unsupported("//", a, b);
                if (JinjaValue.ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                if (isFloat) return Math.Floor(JinjaValue.ToDouble(a) / JinjaValue.ToDouble(b));
                {
                    long x = JinjaValue.ToLong(a), y = JinjaValue.ToLong(b);
                    var q = checked(x / y);
                    if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                    return q;
                }
            case "%":
                if (a is string fmt) return PyFormat.Percent(fmt, b);
                if (!num) throw Unsupported("%", a, b);
                if (JinjaValue.ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                if (isFloat)
                {
                    double x = JinjaValue.ToDouble(a), y = JinjaValue.ToDouble(b);
                    var m = x % y;
                    if (m != 0 && (m < 0) != (y < 0)) m += y;
                    return m;
                }
                {
                    long x = JinjaValue.ToLong(a), y = JinjaValue.ToLong(b);
                    if (y == -1) return 0L; // long.MinValue % -1 throws in .NET; Python: 0
                    var m = x % y;
                    if (m != 0 && (m < 0) != (y < 0)) m += y;
                    return m;
                }
            case "**":
                if (!num) throw Unsupported("**", a, b);
                if (!isFloat && JinjaValue.ToLong(b) >= 0) return IntPow(JinjaValue.ToLong(a), JinjaValue.ToLong(b));
                return Math.Pow(JinjaValue.ToDouble(a), JinjaValue.ToDouble(b));
            default: throw new JinjaError($"unknown operator {op}");
        }
    }

    /// <summary>x ** e by squaring (O(log e)); a result beyond 64 bits is refused, not wrapped.</summary>
    internal static long IntPow(long x, long e)
    {
        long r = 1;
        while (e > 0)
        {
            if ((e & 1) != 0) r = checked(r * x);
            e >>= 1;
            // when more bits remain, x² divides the result, so an overflow here is an overflow of the result
            if (e > 0) x = checked(x * x);
        }
        return r;
    }

    private static object? Repeat(object? seq, long n)
    {
        if (n < 0) n = 0;
        var budget = RenderBudget.Current;
        switch (seq)
        {
            case string s:
                if (s.Length == 0 || n == 0) return "";
                budget.CheckString(n > budget.MaxString ? n : s.Length * n);
                return new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();
            case List<object?> l:
                {
                    if (l.Count == 0 || n == 0) return new List<object?>();
                    budget.CheckItems(n > budget.MaxItems ? n : l.Count * n);
                    var r = new List<object?>(l.Count * (int)n);
                    for (var i = 0; i < n; i++) r.AddRange(l);
                    return r;
                }
            default:
                {
                    var t = (JinjaTuple)seq!;
                    if (t.Count == 0 || n == 0) return new JinjaTuple();
                    budget.CheckItems(n > budget.MaxItems ? n : t.Count * n);
                    var r = new List<object?>();
                    for (var i = 0; i < n; i++) r.AddRange(t.Items);
                    return new JinjaTuple([.. r]);
                }
        }
    }

    public static bool Contains(object? container, object? item)
    {
        container = JinjaValue.Unwrap(container);
        item = JinjaValue.Unwrap(item);
        switch (container)
        {
            case string s:
                if (item is not string sub) throw new JinjaError($"'in <string>' requires string as left operand, not {JinjaValue.TypeName(item)}");
                RenderBudget.Current.Charge(s.Length >> 4);
                return s.Contains(sub, StringComparison.Ordinal);
            case List<object?> l: RenderBudget.Current.Charge(l.Count >> 2); return l.Any(x => JinjaValue.PyEquals(x, item));
            case JinjaTuple t: RenderBudget.Current.Charge(t.Count >> 2); return t.Items.Any(x => JinjaValue.PyEquals(x, item));
            case JinjaDict d: return item is not null and not JinjaUndefined and not List<object?> and not JinjaDict && d.ContainsKey(item);
            case JinjaUndefined: return false;
            case JinjaGenerator g: return g.Take().Any(x => JinjaValue.PyEquals(x, item));
            default: throw new JinjaError($"argument of type '{JinjaValue.TypeName(container)}' is not iterable");
        }
    }

    public static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => JinjaValue.PyEquals(a, b),
        "!=" => !JinjaValue.PyEquals(a, b),
        "<" => JinjaValue.PyCompare(a, b, op) < 0,
        "<=" => JinjaValue.PyCompare(a, b, op) <= 0,
        ">" => JinjaValue.PyCompare(a, b, op) > 0,
        ">=" => JinjaValue.PyCompare(a, b, op) >= 0,
        "in" => Contains(b, a),
        "notin" => !Contains(b, a),
        _ => throw new JinjaError($"unknown comparison {op}"),
    };
}
