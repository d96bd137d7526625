using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace OpenWeights.Tokenizers;

/// <summary>
/// llama.cpp's unicode_regex_split: a list of regexes applied one after the other; each regex splits every current
/// piece into its matches and the text between them (both kept). Regexes run over one char per code point:
/// with \p{..} classes, on llama.cpp's "collapsed" text (non-ASCII code points replaced by one representative
/// per category, non-ASCII whitespace by \v); otherwise on the code points themselves (non-ASCII whitespace -> \v,
/// supplementary code points -> marker chars for the ranges the pattern names). A pattern that names letter
/// subcategories (\p{Lu}, \p{Ll}, \p{Lt}, \p{Lm}, \p{Lo}: o200k's, as Hugging Face runs it) gets a finer collapse,
/// one representative per general category, so those classes see what the code point is.
/// </summary>
internal sealed class RegexSplitter
{
    private sealed class Stage
    {
        public required Regex Regex { get; init; }
        public required bool Collapsed { get; init; }
        /// <summary>Collapsed to one representative per general category (the pattern names letter subcategories).</summary>
        public bool Fine { get; init; }
        public required (int Lo, int Hi, char Marker)[] Supplementary { get; init; }
    }

    private static readonly ConcurrentDictionary<string, Stage> StageCache = new();
    private readonly Stage[] stages;
    private readonly bool anyCollapsed, anyWide, anyFine;

    // representative chars for the collapsed text (each has the category its class needs, none is ASCII)
    private const char LetterRep = '\u00C0', NumberRep = '\u00B2', PunctRep = '\u00A1', MarkRep = '\u0300', SymbolRep = '\u00A2', OtherRep = '\u0080';
    private const char NoSupplementary = '\uFDEF';
    // the finer collapse: one representative per general category (each has that category in .NET's Unicode data; a test checks)
    internal static readonly Dictionary<UnicodeCategory, char> FineRep = new()
    {
        [UnicodeCategory.UppercaseLetter] = '\u00C0', [UnicodeCategory.LowercaseLetter] = '\u00E0', [UnicodeCategory.TitlecaseLetter] = '\u01C5',
        [UnicodeCategory.ModifierLetter] = '\u02B0', [UnicodeCategory.OtherLetter] = '\u00AA',
        [UnicodeCategory.NonSpacingMark] = '\u0300', [UnicodeCategory.SpacingCombiningMark] = '\u0903', [UnicodeCategory.EnclosingMark] = '\u20DD',
        [UnicodeCategory.DecimalDigitNumber] = '\u0660', [UnicodeCategory.LetterNumber] = '\u2160', [UnicodeCategory.OtherNumber] = '\u00B2',
    };

    public RegexSplitter(IReadOnlyList<string> patterns)
    {
        stages = patterns.Select(p => StageCache.GetOrAdd(p, BuildStage)).ToArray();
        anyCollapsed = stages.Any(s => s.Collapsed && !s.Fine);
        anyFine = stages.Any(s => s.Fine);
        anyWide = stages.Any(s => !s.Collapsed);
    }

    private static Stage BuildStage(string pattern)
    {
        bool collapsed = pattern.Contains(@"\p{", StringComparison.Ordinal);
        bool fine = Regex.IsMatch(pattern, @"\\p\{L[ultmo]\}");
        var ranges = new List<(int, int, char)>();
        var sb = new StringBuilder(pattern.Length);
        char marker = '\uFDD0';
        for (int i = 0; i < pattern.Length; i++)
        {
            if (char.IsHighSurrogate(pattern[i]) && i + 1 < pattern.Length)
            {
                int lo = char.ConvertToUtf32(pattern[i], pattern[i + 1]), hi = lo;
                i += 1;
                if (i + 3 < pattern.Length && pattern[i + 1] == '-' && char.IsHighSurrogate(pattern[i + 2]))
                {
                    hi = char.ConvertToUtf32(pattern[i + 2], pattern[i + 3]);
                    i += 3;
                }
                ranges.Add((lo, hi, marker));
                sb.Append(marker++);
                continue;
            }
            sb.Append(pattern[i]);
        }
        return new Stage
        {
            Regex = new Regex(sb.ToString(), RegexOptions.Compiled | RegexOptions.CultureInvariant),
            Collapsed = collapsed,
            Fine = fine,
            Supplementary = [.. ranges],
        };
    }

    /// <summary>Splits text into words; appends (charOffset, charLength) pairs relative to text.</summary>
    public void Split(ReadOnlySpan<char> text, List<(int Offset, int Length)> words)
    {
        if (text.IsEmpty) return;
        // code points and their char offsets
        var cps = new int[text.Length];
        var charAt = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length;)
        {
            charAt[n] = i;
            Rune.DecodeFromUtf16(text[i..], out var r, out int used); // lone surrogates -> U+FFFD
            cps[n++] = r.Value;
            i += used;
        }
        charAt[n] = text.Length;

        string? collapsed = anyCollapsed ? BuildCollapsed(cps, n, fine: false) : null;
        string? fineText = anyFine ? BuildCollapsed(cps, n, fine: true) : null;
        char[]? wide = anyWide ? new char[n] : null;
        (int, int, char)[]? wideFor = null;

        var pieces = new List<(int Start, int Len)> { (0, n) };
        var next = new List<(int Start, int Len)>(n / 3 + 4);
        foreach (var st in stages)
        {
            ReadOnlySpan<char> s;
            if (st.Fine) s = fineText;
            else if (st.Collapsed) s = collapsed;
            else
            {
                if (wideFor is null || !ReferenceEquals(wideFor, st.Supplementary)) { FillWide(cps, n, st.Supplementary, wide!); wideFor = st.Supplementary; }
                s = wide;
            }
            next.Clear();
            foreach (var (start, len) in pieces)
            {
                int last = 0;
                foreach (var m in st.Regex.EnumerateMatches(s.Slice(start, len)))
                {
                    if (m.Length == 0) continue;
                    if (m.Index > last) next.Add((start + last, m.Index - last));
                    next.Add((start + m.Index, m.Length));
                    last = m.Index + m.Length;
                }
                if (last < len) next.Add((start + last, len - last));
            }
            (pieces, next) = (next, pieces);
        }
        foreach (var (start, len) in pieces)
            words.Add((charAt[start], charAt[start + len] - charAt[start]));
    }

    private static string BuildCollapsed(int[] cps, int n, bool fine)
    {
        return string.Create(n, cps, (span, c) =>
        {
            for (int i = 0; i < span.Length; i++) span[i] = fine ? CollapseFine(c[i]) : Collapse(c[i]);
        });
    }

    /// <summary>A non-ASCII code point as the representative of its general category (letters, marks and numbers apart; the rest as <see cref="Collapse"/>).</summary>
    internal static char CollapseFine(int cp)
    {
        if (cp < 128) return (char)cp;
        var r = new Rune(cp);
        if (Rune.IsWhiteSpace(r)) return '\v';
        return FineRep.TryGetValue(Rune.GetUnicodeCategory(r), out char rep) ? rep : Collapse(cp);
    }

    internal static char Collapse(int cp)
    {
        if (cp < 128) return (char)cp;
        var r = new Rune(cp);
        if (Rune.IsWhiteSpace(r)) return '\v';
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => LetterRep,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => NumberRep,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
                or UnicodeCategory.OtherPunctuation => PunctRep,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => MarkRep,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol => SymbolRep,
            _ => OtherRep,
        };
    }

    private static void FillWide(int[] cps, int n, (int Lo, int Hi, char Marker)[] supp, char[] wide)
    {
        for (int i = 0; i < n; i++)
        {
            int cp = cps[i];
            char c;
            if (cp < 128) c = (char)cp;
            else if (Rune.IsWhiteSpace(new Rune(cp))) c = '\v';
            else if (cp < 0x10000) c = cp is >= 0xFDD0 and <= 0xFDEF ? NoSupplementary : (char)cp;
            else
            {
                c = NoSupplementary;
                foreach (var (lo, hi, marker) in supp)
                    if (cp >= lo && cp <= hi) { c = marker; break; }
            }
            wide[i] = c;
        }
    }
}
