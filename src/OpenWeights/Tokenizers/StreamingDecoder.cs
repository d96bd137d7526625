using System.Text;

namespace OpenWeights.Tokenizers;

/// <summary>
/// Turns generated token ids into text as they arrive without ever emitting half a UTF-8 character:
/// bytes of an incomplete character (e.g. an emoji split over &lt;0xF0&gt;&lt;0x9F&gt;... byte tokens) are held
/// until the character completes. Bytes that can never form a character come out as U+FFFD.
/// </summary>
/// <remarks>
/// Emits each token's <see cref="Tokenizer.TokenBytes"/>: the text continues whatever came before it, so no leading
/// space is removed and the BPE clean-up of spaces is not applied. Concatenating every Push and the final Flush gives
/// the UTF-8 decoding of the concatenated token bytes.
/// </remarks>
public sealed class StreamingDecoder
{
    private readonly Tokenizer tokenizer;
    private readonly bool skipSpecial;
    private readonly IReadOnlySet<int>? keepSpecial;
    private readonly Decoder utf8 = new UTF8Encoding(false, false).GetDecoder();
    private char[] chars = new char[64];

    /// <param name="tokenizer">the tokenizer whose ids will be pushed</param>
    /// <param name="skipSpecial">drop control tokens (BOS, EOS, chat markers) instead of writing their text</param>
    /// <param name="keepSpecial">with <paramref name="skipSpecial"/>: control tokens whose text is written all the same (e.g. tool-call markers)</param>
    public StreamingDecoder(Tokenizer tokenizer, bool skipSpecial = false, IReadOnlySet<int>? keepSpecial = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
        this.keepSpecial = keepSpecial;
    }

    /// <summary>Adds one token; returns the text that is now complete (possibly empty).</summary>
    public string Push(int id)
    {
        if (skipSpecial && tokenizer.IsControl(id) && keepSpecial?.Contains(id) != true) return "";
        return Convert(tokenizer.TokenBytes(id), flush: false);
    }

    /// <summary>Returns whatever is held back (an incomplete character becomes U+FFFD) and resets.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int need = bytes.Length + 8; // pending bytes of at most one character, plus replacement chars
        if (chars.Length < need) chars = new char[Math.Max(need, chars.Length * 2)];
        int n = utf8.GetChars(bytes, chars, flush);
        return n == 0 ? "" : new string(chars, 0, n);
    }
}
