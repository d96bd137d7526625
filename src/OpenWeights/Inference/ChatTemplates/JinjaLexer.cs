using System.Globalization;
using System.Text;

namespace OpenWeights.Inference.ChatTemplates;

internal enum TokKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof }

internal readonly record struct Token(TokKind Kind, string Value, int Line, int Col)
{
    public bool Is(TokKind k, string v) => Kind == k && Value == v;
    public bool IsOp(string v) => Kind == TokKind.Op && Value == v;
    public bool IsName(string v) => Kind == TokKind.Name && Value == v;
    public override string ToString() => Kind switch
    {
        TokKind.Eof => "end of template",
        TokKind.VarEnd => "'}}'",
        TokKind.BlockEnd => "'%}'",
        TokKind.String => "string " + JinjaValue.Repr(Value),
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a template into text and tag tokens with Hugging Face's settings:
/// trim_blocks, lstrip_blocks, no trailing newline kept, and the -/+ whitespace modifiers.
/// </summary>
internal sealed class JinjaLexer
{
    private static readonly string[] Ops =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";"];

    private readonly string src;
    private readonly List<int> lineStarts = [0];
    private readonly List<Token> toks = [];
    private readonly bool trimBlocks, lstripBlocks;

    private JinjaLexer(string source, bool trimBlocks, bool lstripBlocks, bool keepTrailingNewline)
    {
        source = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (!keepTrailingNewline && source.EndsWith('\n')) source = source[..^1];
        src = source;
        this.trimBlocks = trimBlocks;
        this.lstripBlocks = lstripBlocks;
        for (var i = 0; i < src.Length; i++) if (src[i] == '\n') lineStarts.Add(i + 1);
    }

    public static List<Token> Tokenize(string source, bool trimBlocks = true, bool lstripBlocks = true, bool keepTrailingNewline = false)
    {
        var lx = new JinjaLexer(source, trimBlocks, lstripBlocks, keepTrailingNewline);
        lx.Run();
        return lx.toks;
    }

    private (int line, int col) LineCol(int pos)
    {
        var i = lineStarts.BinarySearch(pos);
        if (i < 0) i = ~i - 1;
        return (i + 1, pos - lineStarts[i] + 1);
    }

    private TemplateException Fail(string msg, int pos)
    {
        var (l, c) = LineCol(pos);
        return new TemplateException(msg, l, c);
    }

    private void Add(TokKind k, string v, int pos)
    {
        var (l, c) = LineCol(pos);
        toks.Add(new Token(k, v, l, c));
    }

    private void Run()
    {
        var pos = 0;
        var lineStarting = true;
        while (true)
        {
            var idx = FindTagStart(pos);
            if (idx < 0)
            {
                if (pos < src.Length) Add(TokKind.Text, src[pos..], pos);
                break;
            }
            var text = src[pos..idx];
            var kind = src[idx + 1];
            var mod = idx + 2 < src.Length ? src[idx + 2] : '\0';
            if (mod == '-') text = text.TrimEnd();
            else if (mod != '+' && kind != '{' && lstripBlocks)
            {
                var lpos = text.LastIndexOf('\n') + 1;
                if ((lpos > 0 || lineStarting) && lpos < text.Length && text.AsSpan(lpos).IsWhiteSpace())
                    text = text[..lpos];
            }
            if (text.Length > 0) Add(TokKind.Text, text, pos);
            var p = idx + 2;
            if (mod is '-' or '+') p++;
            if (kind == '#')
            {
                var end = src.IndexOf("#}", p, StringComparison.Ordinal);
                if (end < 0) throw Fail("missing end of comment tag", idx);
                pos = TagEnd(end, p, trimBlocks);
            }
            else if (kind == '%' && TryRaw(idx, p, out var after))
            {
                pos = after;
            }
            else
            {
                Add(kind == '{' ? TokKind.VarBegin : TokKind.BlockBegin, kind == '{' ? "{{" : "{%", idx);
                pos = LexTag(p, kind == '{' ? '}' : '%', idx);
            }
            lineStarting = pos > 0 && src[pos - 1] == '\n';
        }
        Add(TokKind.Eof, "", src.Length);
    }

    private int FindTagStart(int from)
    {
        var i = from;
        while (true)
        {
            i = src.IndexOf('{', i);
            if (i < 0 || i + 1 >= src.Length) return -1;
            var c = src[i + 1];
            if (c is '{' or '%' or '#') return i;
            i++;
        }
    }

    /// <summary>Position after a tag end at <paramref name="closer"/>: "-X}" strips following whitespace,
    /// "+X}" keeps it, plain "X}" eats one newline when trim applies. A modifier counts only at or after modFrom.</summary>
    private int TagEnd(int closer, int modFrom, bool trim)
    {
        var afterEnd = closer + 2;
        var mod = closer - 1 >= modFrom ? src[closer - 1] : '\0';
        if (mod == '-')
        {
            var q = afterEnd;
            while (q < src.Length && char.IsWhiteSpace(src[q])) q++;
            return q;
        }
        if (mod == '+') return afterEnd;
        if (trim && afterEnd < src.Length && src[afterEnd] == '\n') return afterEnd + 1;
        return afterEnd;
    }

    private bool TryRaw(int tagStart, int p, out int after)
    {
        after = 0;
        var q = p;
        while (q < src.Length && char.IsWhiteSpace(src[q])) q++;
        if (string.CompareOrdinal(src, q, "raw", 0, 3) != 0) return false;
        q += 3;
        while (q < src.Length && char.IsWhiteSpace(src[q])) q++;
        var modFrom = q;
        if (q < src.Length && src[q] is '-' or '+') q++;
        if (string.CompareOrdinal(src, q, "%}", 0, 2) != 0) return false;
        var contentStart = TagEnd(q, modFrom, trimBlocks);
        var search = contentStart;
        while (true)
        {
            var s = src.IndexOf("{%", search, StringComparison.Ordinal);
            if (s < 0) throw Fail("missing end of raw directive", tagStart);
            var r = s + 2;
            var lmod = r < src.Length ? src[r] : '\0';
            if (lmod is '-' or '+') r++;
            while (r < src.Length && char.IsWhiteSpace(src[r])) r++;
            if (string.CompareOrdinal(src, r, "endraw", 0, 6) != 0) { search = s + 2; continue; }
            r += 6;
            while (r < src.Length && char.IsWhiteSpace(src[r])) r++;
            var rmodFrom = r;
            if (r < src.Length && src[r] is '-' or '+') r++;
            if (string.CompareOrdinal(src, r, "%}", 0, 2) != 0) { search = s + 2; continue; }
            var content = src[contentStart..s];
            if (lmod == '-') content = content.TrimEnd();
            else if (lmod != '+' && lstripBlocks)
            {
                var lpos = content.LastIndexOf('\n') + 1;
                if (lpos > 0 && lpos < content.Length && content.AsSpan(lpos).IsWhiteSpace()) content = content[..lpos];
            }
            if (content.Length > 0) Add(TokKind.Text, content, contentStart);
            after = TagEnd(r, rmodFrom, trimBlocks);
            return true;
        }
    }

    private int LexTag(int p, char closer, int tagStart)
    {
        var depth = 0;
        while (true)
        {
            while (p < src.Length && char.IsWhiteSpace(src[p])) p++;
            if (p >= src.Length) throw Fail(closer == '}' ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'", tagStart);
            if (depth == 0)
            {
                var e = p;
                if (src[e] is '-' or '+' && e + 2 < src.Length && src[e + 1] == closer && src[e + 2] == '}'
                    && !(src[e] == '+' && closer == '}')) e++;
                if (src[e] == closer && e + 1 < src.Length && src[e + 1] == '}')
                {
                    Add(closer == '}' ? TokKind.VarEnd : TokKind.BlockEnd, closer == '}' ? "}}" : "%}", p);
                    return TagEnd(e, p, closer == '%' && trimBlocks);
                }
            }
            var c = src[p];
            if (char.IsLetter(c) || c == '_')
            {
                var s = p;
                while (p < src.Length && (char.IsLetterOrDigit(src[p]) || src[p] == '_')) p++;
                Add(TokKind.Name, src[s..p], s);
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                var s = p;
                while (p < src.Length && (char.IsAsciiDigit(src[p]) || src[p] == '_')) p++;
                var isFloat = false;
                if (p + 1 < src.Length && src[p] == '.' && char.IsAsciiDigit(src[p + 1]))
                {
                    isFloat = true;
                    p++;
                    while (p < src.Length && (char.IsAsciiDigit(src[p]) || src[p] == '_')) p++;
                }
                if (p < src.Length && src[p] is 'e' or 'E')
                {
                    var q = p + 1;
                    if (q < src.Length && src[q] is '+' or '-') q++;
                    if (q < src.Length && char.IsAsciiDigit(src[q]))
                    {
                        isFloat = true;
                        p = q;
                        while (p < src.Length && char.IsAsciiDigit(src[p])) p++;
                    }
                }
                Add(isFloat ? TokKind.Float : TokKind.Int, src[s..p].Replace("_", ""), s);
                continue;
            }
            if (c is '"' or '\'')
            {
                var s = p;
                p = LexString(p, out var value);
                Add(TokKind.String, value, s);
                continue;
            }
            string? op = null;
            foreach (var o in Ops)
                if (string.CompareOrdinal(src, p, o, 0, o.Length) == 0) { op = o; break; }
            if (op is null) throw Fail($"unexpected char {JinjaValue.Repr(c.ToString())}", p);
            if (op is "(" or "[" or "{") depth++;
            else if (op is ")" or "]" or "}")
            {
                if (depth == 0) throw Fail($"unexpected '{op}'", p);
                depth--;
            }
            Add(TokKind.Op, op, p);
            p += op.Length;
        }
    }

    private int LexString(int p, out string value)
    {
        var q = src[p];
        var start = p;
        p++;
        var sb = new StringBuilder();
        while (true)
        {
            if (p >= src.Length) throw Fail("unterminated string", start);
            var c = src[p];
            if (c == q) { p++; break; }
            if (c != '\\') { sb.Append(c); p++; continue; }
            if (p + 1 >= src.Length) throw Fail("unterminated string", start);
            var e = src[p + 1];
            p += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '0': sb.Append('\0'); break;
                case 'x': sb.Append((char)Hex(p, 2, start)); p += 2; break;
                case 'u': sb.Append((char)Hex(p, 4, start)); p += 4; break;
                case 'U': sb.Append(char.ConvertFromUtf32(Hex(p, 8, start))); p += 8; break;
                default: sb.Append('\\').Append(e); break;
            }
        }
        value = sb.ToString();
        return p;
    }

    private int Hex(int p, int n, int start)
    {
        if (p + n > src.Length || !int.TryParse(src.AsSpan(p, n), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v))
            throw Fail("bad escape in string", start);
        return v;
    }
}
