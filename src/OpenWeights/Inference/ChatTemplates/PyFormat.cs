using System.Globalization;
using System.Text;

namespace OpenWeights.Inference.ChatTemplates;

/// <summary>Python's printf-style <c>%</c> formatting and <c>str.format</c>, the common subset.</summary>
internal static class PyFormat
{
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    public static string Percent(string fmt, object? args)
    {
        var positional = args is JinjaTuple t ? t.Items.ToList() : [args];
        var mapping = args as JinjaDict;
        var next = 0;
        var sb = new StringBuilder();
        for (var i = 0; i < fmt.Length; i++)
        {
            var c = fmt[i];
            if (c != '%') { sb.Append(c); continue; }
            if (++i >= fmt.Length) throw new JinjaError("incomplete format");
            object? value = null;
            var haveValue = false;
            if (fmt[i] == '(')
            {
                var close = fmt.IndexOf(')', i);
                if (close < 0) throw new JinjaError("incomplete format key");
                var key = fmt[(i + 1)..close];
                if (mapping is null) throw new JinjaError("format requires a mapping");
                value = mapping.TryGetValue(key, out var v) ? v : throw new JinjaError($"KeyError: {JinjaValue.Repr(key)}");
                haveValue = true;
                i = close + 1;
            }
            var flags = "";
            while (i < fmt.Length && "-+ #0".Contains(fmt[i])) flags += fmt[i++];
            int? width = null, prec = null;
            if (i < fmt.Length && fmt[i] == '*') { width = (int)JinjaValue.ToLong(NextArg(positional, ref next)); i++; }
            else { var s = i; while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) i++; if (i > s) width = int.Parse(fmt[s..i], Ci); }
            if (i < fmt.Length && fmt[i] == '.')
            {
                i++;
                if (i < fmt.Length && fmt[i] == '*') { prec = (int)JinjaValue.ToLong(NextArg(positional, ref next)); i++; }
                else { var s = i; while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) i++; prec = i > s ? int.Parse(fmt[s..i], Ci) : 0; }
            }
            while (i < fmt.Length && fmt[i] is 'h' or 'l' or 'L') i++;
            if (i >= fmt.Length) throw new JinjaError("incomplete format");
            var type = fmt[i];
            if (type == '%') { sb.Append('%'); continue; }
            if (!haveValue) value = mapping is not null && args is JinjaDict ? args : NextArg(positional, ref next);
            var body = Convert(value, type, prec, flags.Contains('#'), flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "");
            var padded = Pad(body, width ?? 0, flags.Contains('-') ? '<' : '>', flags.Contains('0') && type is not ('s' or 'r' or 'a' or 'c') ? '0' : ' ');
            RenderBudget.Current.CheckOutput((long)sb.Length + padded.Length);
            sb.Append(padded);
        }
        if (mapping is null && next < positional.Count) throw new JinjaError("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static object? NextArg(List<object?> a, ref int next)
    {
        if (next >= a.Count) throw new JinjaError("not enough arguments for format string");
        return a[next++];
    }

    private static string Pad(string body, int width, char align, char fill)
    {
        var n = JinjaBuiltins.PyLen(body);
        if (n >= width) return body;
        RenderBudget.Current.CheckString(width);
        if (fill == '0' && align == '>')
        {
            var sign = body.Length > 0 && body[0] is '-' or '+' or ' ' ? body[..1] : "";
            return sign + new string('0', width - n) + body[sign.Length..];
        }
        return align switch
        {
            '<' => body + new string(fill, width - n),
            '^' => new string(fill, (width - n) / 2) + body + new string(fill, width - n - (width - n) / 2),
            _ => new string(fill, width - n) + body,
        };
    }

    private static string Convert(object? v, char type, int? prec, bool alt, string sign)
    {
        string WithSign(string s, bool negative) => negative ? "-" + s : sign + s;
        switch (type)
        {
            case 's':
                {
                    var s = JinjaValue.ToPyString(v);
                    return prec is { } p && p < s.Length ? s[..p] : s;
                }
            case 'r' or 'a':
                {
                    var s = JinjaValue.Repr(v);
                    return prec is { } p && p < s.Length ? s[..p] : s;
                }
            case 'd' or 'i' or 'u':
                {
                    if (!JinjaValue.IsNumber(v)) throw new JinjaError($"%{type} format: a real number is required, not {JinjaValue.TypeName(v)}");
                    var l = v is double d ? (long)Math.Truncate(d) : JinjaValue.ToLong(v);
                    return WithSign(Math.Abs(l).ToString(Ci), l < 0);
                }
            case 'f' or 'F' or 'e' or 'E' or 'g' or 'G':
                {
                    if (!JinjaValue.IsNumber(v)) throw new JinjaError($"must be real number, not {JinjaValue.TypeName(v)}");
                    var d = JinjaValue.ToDouble(v);
                    return WithSign(FormatFloat(Math.Abs(d), type, prec ?? 6, alt), d < 0 || (d == 0 && double.IsNegative(d)));
                }
            case 'x' or 'X' or 'o':
                {
                    var l = JinjaValue.ToLong(v);
                    var s = type == 'o' ? System.Convert.ToString(Math.Abs(l), 8) : Math.Abs(l).ToString(type == 'x' ? "x" : "X", Ci);
                    if (alt) s = (type == 'o' ? "0o" : type == 'x' ? "0x" : "0X") + s;
                    return WithSign(s, l < 0);
                }
            case 'c':
                return v is string cs ? cs : char.ConvertFromUtf32((int)JinjaValue.ToLong(v));
            default:
                throw new JinjaError($"unsupported format character '{type}'");
        }
    }

    private static string FormatFloat(double d, char type, int prec, bool alt)
    {
        RenderBudget.Current.CheckString(Math.Max(0, prec) + 320L); // digits of the precision asked, plus the integer part
        if (double.IsInfinity(d)) return char.IsUpper(type) ? "INF" : "inf";
        if (double.IsNaN(d)) return char.IsUpper(type) ? "NAN" : "nan";
        switch (type)
        {
            case 'f' or 'F': return d.ToString("F" + prec, Ci);
            case 'e' or 'E':
                {
                    var s = d.ToString((type == 'e' ? "e" : "E") + prec, Ci);
                    return FixExp(s);
                }
            default:
                {
                    if (prec == 0) prec = 1;
                    if (d == 0) return alt ? "0." + new string('0', prec - 1) : "0";
                    var exp = (int)Math.Floor(Math.Log10(d));
                    var rounded = double.Parse(d.ToString("E" + (prec - 1), Ci), Ci);
                    if (rounded != 0) exp = (int)Math.Floor(Math.Log10(rounded));
                    string s;
                    if (exp < -4 || exp >= prec)
                    {
                        s = FixExp(d.ToString((type == 'g' ? "e" : "E") + (prec - 1), Ci));
                        if (!alt)
                        {
                            var ei = s.IndexOfAny(['e', 'E']);
                            var mant = s[..ei];
                            if (mant.Contains('.')) mant = mant.TrimEnd('0').TrimEnd('.');
                            s = mant + s[ei..];
                        }
                    }
                    else
                    {
                        s = d.ToString("F" + Math.Max(0, prec - 1 - exp), Ci);
                        if (!alt && s.Contains('.')) s = s.TrimEnd('0').TrimEnd('.');
                    }
                    return s;
                }
        }
    }

    private static string FixExp(string s)
    {
        // .NET: 1.5e+003 -> Python: 1.5e+03
        var ei = s.IndexOfAny(['e', 'E']);
        if (ei < 0) return s;
        var sign = s[ei + 1];
        var digits = s[(ei + 2)..].TrimStart('0');
        if (digits.Length < 2) digits = digits.PadLeft(2, '0');
        return s[..(ei + 1)] + sign + digits;
    }

    // ------------------------------------------------------------------ str.format

    public static string StrFormat(string fmt, List<object?> args, List<KeyValuePair<string, object?>> kwargs)
    {
        var sb = new StringBuilder();
        var auto = 0;
        for (var i = 0; i < fmt.Length; i++)
        {
            var c = fmt[i];
            if (c == '}')
            {
                if (i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i++; continue; }
                throw new JinjaError("Single '}' encountered in format string");
            }
            if (c != '{') { sb.Append(c); continue; }
            if (i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i++; continue; }
            var close = FindClose(fmt, i);
            if (close < 0) throw new JinjaError("Single '{' encountered in format string");
            var field = fmt[(i + 1)..close];
            i = close;
            string? spec = null;
            char? conv = null;
            var colon = field.IndexOf(':');
            if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
            var bang = field.IndexOf('!');
            if (bang >= 0) { conv = field.Length > bang + 1 ? field[bang + 1] : null; field = field[..bang]; }
            var end = field.IndexOfAny(['.', '[']);
            var head = end < 0 ? field : field[..end];
            object? value;
            if (head.Length == 0) value = auto < args.Count ? args[auto++] : throw new JinjaError($"Replacement index {auto} out of range for positional args tuple");
            else if (int.TryParse(head, NumberStyles.None, Ci, out var idx)) value = idx < args.Count ? args[idx] : throw new JinjaError($"Replacement index {idx} out of range for positional args tuple");
            else
            {
                var found = kwargs.FindIndex(p => p.Key == head);
                value = found >= 0 ? kwargs[found].Value : throw new JinjaError($"KeyError: {JinjaValue.Repr(head)}");
            }
            var rest = end < 0 ? "" : field[end..];
            while (rest.Length > 0)
            {
                if (rest[0] == '.')
                {
                    var e2 = rest.IndexOfAny(['.', '['], 1);
                    var name = e2 < 0 ? rest[1..] : rest[1..e2];
                    value = JinjaBuiltins.GetAttr(value, name, true);
                    rest = e2 < 0 ? "" : rest[e2..];
                }
                else
                {
                    var e2 = rest.IndexOf(']');
                    var key = rest[1..e2];
                    value = JinjaBuiltins.GetItem(value, long.TryParse(key, NumberStyles.None, Ci, out var n) ? n : key, true);
                    rest = rest[(e2 + 1)..];
                }
            }
            if (conv is 'r' or 'a') value = JinjaValue.Repr(value);
            else if (conv == 's') value = JinjaValue.ToPyString(value);
            var formatted = FormatSpec(value, spec ?? "");
            RenderBudget.Current.CheckOutput((long)sb.Length + formatted.Length);
            sb.Append(formatted);
        }
        return sb.ToString();
    }

    private static int FindClose(string s, int open)
    {
        var depth = 0;
        for (var i = open; i < s.Length; i++)
        {
            if (s[i] == '{') depth++;
            else if (s[i] == '}' && --depth == 0) return i;
        }
        return -1;
    }

    private static string FormatSpec(object? v, string spec)
    {
        if (spec.Length == 0) return JinjaValue.ToPyString(v);
        var i = 0;
        char fill = ' ', align = '\0';
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^' or '=') { fill = spec[0]; align = spec[1]; i = 2; }
        else if (spec[0] is '<' or '>' or '^' or '=') { align = spec[0]; i = 1; }
        var sign = "";
        if (i < spec.Length && spec[i] is '+' or '-' or ' ') { sign = spec[i] == '-' ? "" : spec[i].ToString(); i++; }
        var alt = false;
        if (i < spec.Length && spec[i] == '#') { alt = true; i++; }
        if (i < spec.Length && spec[i] == '0' && align == '\0') { fill = '0'; align = '='; i++; }
        var ws = i;
        while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
        var width = i > ws ? int.Parse(spec[ws..i], Ci) : 0;
        var comma = false;
        if (i < spec.Length && spec[i] is ',' or '_') { comma = true; i++; }
        int? prec = null;
        if (i < spec.Length && spec[i] == '.')
        {
            i++;
            var ps = i;
            while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
            prec = int.Parse(spec[ps..i], Ci);
        }
        var type = i < spec.Length ? spec[i] : '\0';
        if (type == '\0' && comma && v is long) type = 'd';
        string body;
        var numeric = JinjaValue.IsNumber(v) && v is not bool || (v is bool && type != '\0');
        switch (type)
        {
            case '\0' when v is string s: body = prec is { } p && p < s.Length ? s[..p] : s; break;
            case 's': body = JinjaValue.ToPyString(v); if (prec is { } p2 && p2 < body.Length) body = body[..p2]; break;
            case '\0' when v is double d && prec is { } gp: body = (d < 0 ? "-" : sign) + FormatFloat(Math.Abs(d), 'g', gp, alt); break;
            case '\0': body = JinjaValue.ToPyString(v); if (numeric && sign.Length > 0 && JinjaValue.ToDouble(v) >= 0) body = sign + body; break;
            case 'd' or 'n':
                {
                    var l = JinjaValue.ToLong(v);
                    var digits = Math.Abs(l).ToString(comma ? "#,0" : "0", Ci);
                    body = (l < 0 ? "-" : sign) + digits;
                    break;
                }
            case '%':
                {
                    var d = JinjaValue.ToDouble(v) * 100;
                    body = (d < 0 ? "-" : sign) + FormatFloat(Math.Abs(d), 'f', prec ?? 6, alt) + "%";
                    break;
                }
            default:
                body = Convert(v, type, prec, alt, sign);
                break;
        }
        if (align == '\0') align = numeric ? '>' : '<';
        if (align == '=') return Pad(body, width, '>', fill == '0' ? '0' : fill);
        return Pad(body, width, align, fill);
    }
}
