using OpenWeights.Formats;
using System.Globalization;
using System.Text;
using OpenWeights.Formats.Gguf;

namespace OpenWeights.Tokenizers;

/// <summary>
/// WordPiece (<c>tokenizer.ggml.model = bert</c>, e.g. BGE / MiniLM embedders) as llama.cpp's llm_tokenizer_wpm:
/// lowercase and strip accents (per <c>tokenizer.ggml.normalizer.*</c>, default on), split on whitespace, punctuation
/// and CJK characters, then greedy longest match of "▁word" pieces; a word with no full cover becomes [UNK].
/// </summary>
public sealed class WpmTokenizer : Tokenizer
{
    private readonly bool lowercase, stripAccents;
    private readonly int maxTokenChars;

    internal WpmTokenizer(IModelMetadata f) : base(f, "bert", new Defaults(
        Bos: 101, Eos: -1, Unk: 100, Sep: 102, Pad: 0, Mask: 103,
        AddBos: true, AddEos: false, AddSep: true, AddSpacePrefix: false, CleanSpaces: true, EscapeWhitespaces: false))
    {
        lowercase = f.GetBool("tokenizer.ggml.normalizer.lowercase") ?? true;
        stripAccents = f.GetBool("tokenizer.ggml.normalizer.strip_accents") ?? lowercase;
        for (int i = 0; i < VocabSize; i++) maxTokenChars = Math.Max(maxTokenChars, TokenPiece(i).Length);
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, bool addSpecial, List<int> output)
    {
        if (addSpecial) output.Add(Bos);
        foreach (var fr in fragments)
        {
            if (fr.IsToken) { output.Add(fr.Token); continue; }
            foreach (var word in Preprocess(text.AsSpan(fr.Offset, fr.Length)))
            {
                if (word.Length == 0) continue;
                string w = "\u2581" + word;
                int before = output.Count;
                for (int i = 0; i < w.Length;)
                {
                    bool match = false;
                    for (int j = Math.Min(w.Length, i + maxTokenChars + 1); j > i; j--)
                    {
                        int id = LookupPiece(w.AsSpan(i, j - i));
                        if (id >= 0) { output.Add(id); match = true; i = j; break; }
                    }
                    if (!match) { output.RemoveRange(before, output.Count - before); break; }
                }
                if (output.Count == before) output.Add(Unk);
            }
        }
        if (addSpecial) output.Add(Sep);
    }

    private List<string> Preprocess(ReadOnlySpan<char> text)
    {
        var words = new List<string> { "" };
        var cur = new StringBuilder();
        void Finish() { if (cur.Length > 0) { words[^1] = cur.ToString(); cur.Clear(); words.Add(""); } }
        foreach (var r0 in text.EnumerateRunes())
        {
            var r = r0;
            if (stripAccents) r = NfdBase(r);
            if (Rune.IsWhiteSpace(r)) { Finish(); continue; }
            var cat = Rune.GetUnicodeCategory(r);
            if (r.Value == 0 || r.Value == 0xFFFD || cat is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate) continue;
            if (stripAccents && cat is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark) continue;
            var c = lowercase ? Rune.ToLowerInvariant(r) : r;
            bool punct = cat is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
            bool symbol = cat is UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol or UnicodeCategory.OtherSymbol;
            if (punct || (r.Value < 0x7F && symbol) || IsChinese(r.Value))
            {
                Finish();
                words[^1] = c.ToString();
                words.Add("");
            }
            else cur.Append(c.ToString());
        }
        Finish();
        if (words[^1].Length == 0) words.RemoveAt(words.Count - 1);
        return words;
    }

    /// <summary>First code point of the canonical decomposition (llama.cpp's NFD table keeps only that).</summary>
    private static Rune NfdBase(Rune r) => new(NfdTable.Base(r.Value));

    private static bool IsChinese(int c) =>
        (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F)
        || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}
