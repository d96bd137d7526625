using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>Jinja's default Undefined: prints as "", iterates as empty, is falsy; most other uses raise.</summary>
public sealed class JinjaUndefined
{
    /// <summary>The error raised when the value is used in a way Undefined does not allow.</summary>
    internal string Hint { get; }
    /// <summary>True for the sandbox's "unsafe attribute" undefined (raises SecurityError when called).</summary>
    internal bool Unsafe { get; }
    internal JinjaUndefined(string hint, bool isUnsafe = false) { Hint = hint; Unsafe = isUnsafe; }
    public static readonly JinjaUndefined Instance = new("value is undefined");
    internal static JinjaUndefined Named(string name) => new($"'{name}' is undefined");
    internal static JinjaUndefined Missing(object? obj, object? key) => key is string s
        ? new($"{JinjaValue.ObjectTypeRepr(obj)} has no attribute {JinjaValue.Repr(s)}")
        : new($"{JinjaValue.ObjectTypeRepr(obj).Trim('\'')} has no element {JinjaValue.Repr(key)}");
    public override string ToString() => "";
}

/// <summary>A Python tuple (immutable sequence, printed as (a, b)).</summary>
public sealed class JinjaTuple : IReadOnlyList<object?>
{
    internal readonly object?[] Items;
    public JinjaTuple(params object?[] items) { Items = items; }
    public object? this[int index] => Items[index];
    public int Count => Items.Length;
    public IEnumerator<object?> GetEnumerator() => ((IEnumerable<object?>)Items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => Items.GetEnumerator();
}

/// <summary>
/// A Python generator (what map, select, selectattr, unique... return): iterable once, always truthy,
/// no len(), not JSON-serializable.
/// </summary>
public sealed class JinjaGenerator
{
    private List<object?>? items;
    internal JinjaGenerator(List<object?> items) { this.items = items; }
    internal List<object?> Take()
    {
        var r = items ?? [];
        items = null;
        return r;
    }
}

/// <summary>
/// MarkupSafe's Markup (what |safe and |escape return): prints as its text; <c>markup + str</c> and
/// <c>markup % args</c> HTML-escape the plain-string side, as Python does.
/// </summary>
public sealed class JinjaMarkup(string value)
{
    public string Value { get; } = value;
    public override string ToString() => Value;
}

/// <summary>A Python dict: insertion-ordered, keys compared like Python (1 == 1.0 == True).</summary>
public sealed class JinjaDict : Dictionary<object, object?>
{
    public JinjaDict() : base(PyKeyComparer.Instance) { }
    public JinjaDict(int capacity) : base(capacity, PyKeyComparer.Instance) { }
}

internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();
    public new bool Equals(object? x, object? y) => JinjaValue.PyEquals(x, y);
    private int TupleHash(JinjaTuple t)
    {
        using var level = JinjaValue.Nest();
        return t.Items.Aggregate(17, (h, v) => h * 31 + (v is null ? 0 : GetHashCode(v)));
    }

    public int GetHashCode(object obj) => obj switch
    {
        string s => StringComparer.Ordinal.GetHashCode(s),
        bool b => (b ? 1.0 : 0.0).GetHashCode(),
        long l => ((double)l).GetHashCode(),
        double d => d.GetHashCode(),
        JinjaTuple t => TupleHash(t),
        _ => obj.GetHashCode(),
    };
}

/// <summary>The object made by <c>namespace(...)</c>: attributes settable with <c>{% set ns.x = ... %}</c>.</summary>
public sealed class JinjaNamespace
{
    // values, or a StringAccumulator for a string built by repeated `set ns.x = ns.x ~ ...` (read as its string)
    private readonly JinjaDict attributes = new();

    internal bool TryGet(object key, out object? value)
    {
        if (!attributes.TryGetValue(key, out value)) return false;
        if (value is StringAccumulator acc) value = acc.Value;
        return true;
    }

    internal void Set(object key, object? value) => attributes[key] = value;
    internal bool TryGetRaw(object key, out object? value) => attributes.TryGetValue(key, out value);
    internal void SetRaw(object key, StringAccumulator value) => attributes[key] = value;

    /// <summary>The attributes as a dict of plain values.</summary>
    internal JinjaDict Snapshot()
    {
        var d = new JinjaDict(attributes.Count);
        foreach (var (k, v) in attributes) d[k] = v is StringAccumulator acc ? acc.Value : v;
        return d;
    }
}

/// <summary>
/// A namespace attribute that a template builds by appending (<c>set ns.out = ns.out ~ part</c>): appended in place,
/// read as a string (made once per change), so building an output of n characters costs O(n), not O(n²).
/// Only ever grows, so the value it had at length L is its first L characters.
/// </summary>
internal sealed class StringAccumulator(string initial)
{
    private readonly StringBuilder sb = new(initial);
    private string? value = initial;
    public int Length => sb.Length;
    public string Value => value ??= sb.ToString();
    public string Prefix(int length) => length == sb.Length ? Value : sb.ToString(0, length);
    public bool EndsWith(string s) =>
        s.Length <= sb.Length && (value is not null ? value.EndsWith(s, StringComparison.Ordinal) : sb.ToString(sb.Length - s.Length, s.Length) == s);
    public bool StartsWith(string s) =>
        s.Length <= sb.Length && (value is not null ? value.StartsWith(s, StringComparison.Ordinal) : sb.ToString(0, s.Length) == s);
    public void Append(string s)
    {
        if (s.Length == 0) return;
        sb.Append(s);
        value = null;
    }
}

/// <summary>Something callable from a template: a global function, a bound method, a macro.</summary>
public abstract class JinjaCallable
{
    internal abstract object? Call(List<object?> args, List<KeyValuePair<string, object?>> kwargs);
    internal virtual string Name => "function";
}

/// <summary>A callable wrapping a delegate, for globals supplied by the host.</summary>
public sealed class JinjaFunction : JinjaCallable
{
    private readonly Func<IReadOnlyList<object?>, IReadOnlyDictionary<string, object?>, object?> fn;
    private readonly string name;
    public JinjaFunction(string name, Func<IReadOnlyList<object?>, IReadOnlyDictionary<string, object?>, object?> fn) { this.name = name; this.fn = fn; }
    internal override string Name => name;
    internal override object? Call(List<object?> args, List<KeyValuePair<string, object?>> kwargs)
    {
        var kw = new Dictionary<string, object?>();
        foreach (var (k, v) in kwargs) kw[k] = v;
        return JinjaValue.Normalize(fn(args, kw));
    }
}

/// <summary>Conversions and Python semantics (truthiness, str(), repr(), ==, &lt;) for template values.</summary>
public static class JinjaValue
{
    /// <summary>Parses JSON into plain .NET values: Dictionary&lt;string, object?&gt; (order kept), List&lt;object?&gt;, string, long, double, bool, null.</summary>
    public static object? FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return PlainFromElement(doc.RootElement);
    }

    private static object? PlainFromElement(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var d = new Dictionary<string, object?>();
                foreach (var p in e.EnumerateObject()) d[p.Name] = PlainFromElement(p.Value);
                return d;
            case JsonValueKind.Array:
                var l = new List<object?>();
                foreach (var x in e.EnumerateArray()) l.Add(PlainFromElement(x));
                return l;
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number: return e.TryGetInt64(out var i) ? (object)i : e.GetDouble();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            default: return null;
        }
    }

    /// <summary>Converts a host value into the engine's representation (deep copy of containers).</summary>
    public static object? Normalize(object? v)
    {
        switch (v)
        {
            case null: return null;
            case string or bool or long or double or JinjaUndefined or JinjaNamespace or JinjaCallable or JinjaMarkup or JinjaGenerator: return v;
            case int i: return (long)i;
            case short s: return (long)s;
            case byte b: return (long)b;
            case sbyte sb: return (long)sb;
            case uint ui: return (long)ui;
            case ushort us: return (long)us;
            case ulong ul: return (long)ul;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case char c: return c.ToString();
            case JsonElement e: return FromElement(e);
            case JsonNode n: return FromNode(n);
            case JinjaTuple t: return new JinjaTuple(t.Items.Select(Normalize).ToArray());
            case JinjaDict jd:
                {
                    var d = new JinjaDict(jd.Count);
                    foreach (var (k, x) in jd) d[k] = Normalize(x);
                    return d;
                }
            case IDictionary<string, object?> gd:
                {
                    var d = new JinjaDict(gd.Count);
                    foreach (var (k, x) in gd) d[k] = Normalize(x);
                    return d;
                }
            case IReadOnlyDictionary<string, object?> rd:
                {
                    var d = new JinjaDict(rd.Count);
                    foreach (var (k, x) in rd) d[k] = Normalize(x);
                    return d;
                }
            case IDictionary nd:
                {
                    var d = new JinjaDict(nd.Count);
                    foreach (DictionaryEntry de in nd) d[Normalize(de.Key) ?? "None"] = Normalize(de.Value);
                    return d;
                }
            case IEnumerable en:
                {
                    var l = new List<object?>();
                    foreach (var x in en) l.Add(Normalize(x));
                    return l;
                }
            default: return v;
        }
    }

    private static object? FromElement(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var d = new JinjaDict();
                foreach (var p in e.EnumerateObject()) d[p.Name] = FromElement(p.Value);
                return d;
            case JsonValueKind.Array:
                var l = new List<object?>();
                foreach (var x in e.EnumerateArray()) l.Add(FromElement(x));
                return l;
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number: return e.TryGetInt64(out var i) ? (object)i : e.GetDouble();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            default: return null;
        }
    }

    private static object? FromNode(JsonNode? n)
    {
        switch (n)
        {
            case null: return null;
            case JsonObject o:
                var d = new JinjaDict();
                foreach (var (k, x) in o) d[k] = FromNode(x);
                return d;
            case JsonArray a:
                return a.Select(FromNode).ToList();
            default:
                return FromElement(n.Deserialize<JsonElement>());
        }
    }

    // ---------------------------------------------------------------- Python semantics

    internal static bool IsTruthy(object? v) => v switch
    {
        null => false,
        JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0.0,
        string s => s.Length > 0,
        JinjaMarkup m => m.Value.Length > 0,
        List<object?> l => l.Count > 0,
        JinjaTuple t => t.Count > 0,
        JinjaDict d => d.Count > 0,
        _ => true,
    };

    internal static bool IsNumber(object? v) => v is long or double or bool;

    internal static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new JinjaError($"expected a number, got {TypeName(v)}"),
    };

    internal static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        JinjaTuple => "tuple",
        JinjaDict => "dict",
        JinjaUndefined => "Undefined",
        JinjaNamespace => "Namespace",
        JinjaCallable => "function",
        JinjaGenerator => "generator",
        JinjaMarkup => "Markup",
        _ => v.GetType().Name,
    };

    internal static string ObjectTypeRepr(object? v) => v is null ? "None" : $"'{TypeName(v)} object'";

    /// <summary>Python str() of a value; Undefined prints as "".</summary>
    public static string ToPyString(object? v) => v switch
    {
        string s => s,
        JinjaMarkup m => m.Value,
        JinjaUndefined => "",
        _ => Repr(v),
    };

    /// <summary>Python repr() of a value.</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        var budget = RenderBudget.Current;
        AppendRepr(sb, v, budget);
        budget.Charge(sb.Length >> 4);
        return sb.ToString();
    }

    [ThreadStatic] private static int nesting;

    /// <summary>Python's recursion limit, for walking nested values (repr, ==, &lt;, tojson, hashing).</summary>
    internal const int MaxNesting = 1000;

    /// <summary>
    /// Enters one level of a walk over a nested value. A loop can nest a value (<c>set ns.l = [ns.l]</c>) deeper than
    /// any recursion over it can go: past <see cref="MaxNesting"/> levels (or the stack) it fails cleanly, as Python
    /// raises RecursionError, instead of overflowing the stack.
    /// </summary>
    internal static NestingScope Nest()
    {
        if (++nesting > MaxNesting || !System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
        {
            nesting--;
            throw new JinjaError("maximum recursion depth exceeded");
        }
        return default;
    }

    internal readonly struct NestingScope : IDisposable
    {
        public void Dispose() => nesting--;
    }

    private static void AppendRepr(StringBuilder sb, object? v, RenderBudget budget)
    {
        using var level = Nest();
        budget.CheckOutput(sb.Length);
        switch (v)
        {
            case null: sb.Append("None"); break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatRepr(d)); break;
            case string s: budget.CheckOutput((long)sb.Length + s.Length); AppendStringRepr(sb, s); break;
            case JinjaUndefined: break;
            case List<object?> list:
                sb.Append('[');
                for (var i = 0; i < list.Count; i++) { if (i > 0) sb.Append(", "); AppendRepr(sb, list[i], budget); }
                sb.Append(']');
                break;
            case JinjaTuple t:
                sb.Append('(');
                for (var i = 0; i < t.Count; i++) { if (i > 0) sb.Append(", "); AppendRepr(sb, t[i], budget); }
                if (t.Count == 1) sb.Append(',');
                sb.Append(')');
                break;
            case JinjaDict d:
                sb.Append('{');
                var first = true;
                foreach (var (k, x) in d)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k, budget);
                    sb.Append(": ");
                    AppendRepr(sb, x, budget);
                }
                sb.Append('}');
                break;
            case JinjaNamespace ns:
                sb.Append("<Namespace ");
                AppendRepr(sb, ns.Snapshot(), budget);
                sb.Append('>');
                break;
            case JinjaCallable c: sb.Append("<function ").Append(c.Name).Append('>'); break;
            case JinjaGenerator: sb.Append("<generator object>"); break;
            case JinjaMarkup m: sb.Append("Markup("); AppendStringRepr(sb, m.Value); sb.Append(')'); break;
            default: sb.Append(v.ToString()); break;
        }
    }

    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            switch (c)
            {
                case '\\': sb.Append("\\\\"); continue;
                case '\n': sb.Append("\\n"); continue;
                case '\r': sb.Append("\\r"); continue;
                case '\t': sb.Append("\\t"); continue;
            }
            if (c == quote) { sb.Append('\\').Append(c); continue; }
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                var cp = char.ConvertToUtf32(c, s[i + 1]);
                var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
                if (IsPrintableCategory(cat)) sb.Append(c).Append(s[i + 1]);
                else sb.Append("\\U").Append(cp.ToString("x8"));
                i++;
                continue;
            }
            if (c == ' ' || IsPrintableCategory(CharUnicodeInfo.GetUnicodeCategory(c))) { sb.Append(c); continue; }
            if (c <= 0xff) sb.Append("\\x").Append(((int)c).ToString("x2"));
            else sb.Append("\\u").Append(((int)c).ToString("x4"));
        }
        sb.Append(quote);
    }

    private static bool IsPrintableCategory(UnicodeCategory cat) => cat switch
    {
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
            or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
            or UnicodeCategory.SpaceSeparator => false,
        _ => true,
    };

    /// <summary>Python repr(float): shortest round-trip digits, exponent form outside 1e-4 .. 1e16.</summary>
    internal static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        var r = d.ToString("R", CultureInfo.InvariantCulture);
        var neg = r.StartsWith('-');
        if (neg) r = r[1..];
        string digits;
        int decpt;
        var ei = r.IndexOfAny(['E', 'e']);
        if (ei >= 0)
        {
            var mant = r[..ei];
            var exp = int.Parse(r[(ei + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            var dot = mant.IndexOf('.');
            var intPart = dot < 0 ? mant : mant[..dot];
            digits = mant.Replace(".", "");
            decpt = exp + intPart.Length;
        }
        else
        {
            var dot = r.IndexOf('.');
            var intPart = dot < 0 ? r : r[..dot];
            var frac = dot < 0 ? "" : r[(dot + 1)..];
            if (intPart.TrimStart('0').Length > 0)
            {
                intPart = intPart.TrimStart('0');
                digits = intPart + frac;
                decpt = intPart.Length;
            }
            else
            {
                var z = frac.Length - frac.TrimStart('0').Length;
                digits = frac.TrimStart('0');
                decpt = -z;
            }
        }
        var lead = digits.Length - digits.TrimStart('0').Length;
        digits = digits.TrimStart('0');
        decpt -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var sb = new StringBuilder();
        if (neg) sb.Append('-');
        if (decpt <= -4 || decpt > 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            var e = decpt - 1;
            sb.Append('e').Append(e < 0 ? '-' : '+').Append(Math.Abs(e).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (decpt <= 0) sb.Append("0.").Append('0', -decpt).Append(digits);
        else if (decpt >= digits.Length) sb.Append(digits).Append('0', decpt - digits.Length).Append(".0");
        else sb.Append(digits, 0, decpt).Append('.').Append(digits, decpt, digits.Length - decpt);
        return sb.ToString();
    }

    /// <summary>Markup behaves as the plain string it wraps, except where Python's Markup differs.</summary>
    internal static object? Unwrap(object? v) => v is JinjaMarkup m ? m.Value : v;

    internal static bool PyEquals(object? a, object? b)
    {
        a = Unwrap(a);
        b = Unwrap(b);
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case string s: return b is string s2 && string.Equals(s, s2, StringComparison.Ordinal);
            case JinjaUndefined: return b is JinjaUndefined;
            case List<object?> l:
                if (b is not List<object?> m || l.Count != m.Count) return false;
                RenderBudget.Current.Charge(l.Count >> 2);
                using (Nest()) return l.Zip(m).All(p => PyEquals(p.First, p.Second));
            case JinjaTuple t:
                if (b is not JinjaTuple u || t.Count != u.Count) return false;
                RenderBudget.Current.Charge(t.Count >> 2);
                using (Nest()) return t.Items.Zip(u.Items).All(p => PyEquals(p.First, p.Second));
            case JinjaDict d:
                if (b is not JinjaDict e || d.Count != e.Count) return false;
                RenderBudget.Current.Charge(d.Count >> 2);
                using (Nest())
                    foreach (var (k, v) in d) if (!e.TryGetValue(k, out var w) || !PyEquals(v, w)) return false;
                return true;
        }
        return ReferenceEquals(a, b) || a.Equals(b);
    }

    internal static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new JinjaError($"expected an integer, got {TypeName(v)}"),
    };

    /// <summary>Python ordering (&lt;): numbers, strings, lists and tuples.</summary>
    internal static int PyCompare(object? a, object? b, string op = "<")
    {
        a = Unwrap(a);
        b = Unwrap(b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string s && b is string t) return Math.Sign(string.CompareOrdinal(s, t));
        if ((a is List<object?> && b is List<object?>) || (a is JinjaTuple && b is JinjaTuple))
        {
            var x = (IReadOnlyList<object?>)a;
            var y = (IReadOnlyList<object?>)b;
            using var level = Nest();
            for (var i = 0; i < Math.Min(x.Count, y.Count); i++)
            {
                if (PyEquals(x[i], y[i])) continue;
                return PyCompare(x[i], y[i], op);
            }
            return x.Count.CompareTo(y.Count);
        }
        if (a is JinjaUndefined u) throw new JinjaError(u.Hint);
        if (b is JinjaUndefined u2) throw new JinjaError(u2.Hint);
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }
}
