using System.Globalization;
using System.Text;

namespace OpenWeights.Formats;

/// <summary>
/// Strings that come from a model file, a template, a tokenizer, a hub response or a request, made safe to put in an
/// error message: quoted, control and invisible formatting characters escaped (so a crafted key cannot send escape
/// sequences to a terminal, break the message onto several lines or reverse its text), and cut to a bounded length
/// with a count of what was left out (so 9 KB of metadata do not end up on one line).
/// </summary>
public static class UntrustedText
{
    /// <summary>Characters of the original string kept by <see cref="Quote"/> by default.</summary>
    public const int DefaultMaxChars = 80;

    /// <summary><c>'text'</c> with escapes, at most <paramref name="maxChars"/> characters of the original then <c>…(N more)</c>; <c>null</c> for null.</summary>
    public static string Quote(string? s, int maxChars = DefaultMaxChars) => s is null ? "null" : "'" + Escape(s, maxChars) + "'";

    /// <summary>As <see cref="Quote"/> without the quotes.</summary>
    public static string Escape(string s, int maxChars = DefaultMaxChars)
    {
        ArgumentNullException.ThrowIfNull(s);
        int take = Math.Min(s.Length, Math.Max(0, maxChars));
        if (take < s.Length && take > 0 && char.IsHighSurrogate(s[take - 1]) && char.IsLowSurrogate(s[take])) take--; // never split a pair
        var sb = new StringBuilder(take + 16);
        for (int i = 0; i < take; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < take && char.IsLowSurrogate(s[i + 1]))
            {
                // a well-formed pair: kept unless it is a tag or other invisible format character
                int cp = char.ConvertToUtf32(c, s[i + 1]);
                if (CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.Format) sb.Append(CultureInfo.InvariantCulture, $"\\U{cp:X8}");
                else sb.Append(c).Append(s[i + 1]);
                i++;
                continue;
            }
            switch (c)
            {
                case '\n': sb.Append("\\n"); continue;
                case '\r': sb.Append("\\r"); continue;
                case '\t': sb.Append("\\t"); continue;
                case '\\': sb.Append("\\\\"); continue;
                case '\'': sb.Append("\\'"); continue;
            }
            if (NeedsEscape(c)) sb.Append(c <= 0xFF ? $"\\x{(int)c:X2}" : $"\\u{(int)c:X4}");
            else sb.Append(c);
        }
        if (take < s.Length) sb.Append(CultureInfo.InvariantCulture, $"…({s.Length - take} more)");
        return sb.ToString();
    }

    /// <summary>C0/C1 controls and DEL, lone surrogates, line/paragraph separators and invisible format characters (bidi overrides, zero-width).</summary>
    private static bool NeedsEscape(char c) =>
        c < 0x20 || c is >= '\x7F' and <= '\x9F' || char.IsSurrogate(c) || c is '\u2028' or '\u2029'
        || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.Format;
}
