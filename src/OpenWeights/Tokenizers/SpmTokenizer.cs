using OpenWeights.Formats;
using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using OpenWeights.Formats.Gguf;

namespace OpenWeights.Tokenizers;

/// <summary>
/// SentencePiece BPE (<c>tokenizer.ggml.model = llama</c>): Llama 1/2, Mistral v0.1, Phi-3, Baichuan, TinyLlama...
/// Spaces become ▁ (with a dummy prefix space), then adjacent symbols are merged greedily by the score of the
/// merged vocabulary string (llama.cpp llm_tokenizer_spm); characters outside the vocabulary fall back to
/// &lt;0xXX&gt; byte tokens.
/// </summary>
public sealed class SpmTokenizer : Tokenizer
{
    private readonly int[] byteTokens = new int[256];
    // Adjacent code-point pairs that occur inside some vocabulary string. Where a pair of the text is not in this set
    // no merge can ever cross it, so the text is cut there and the pieces are merged (and cached) independently:
    // the result is identical to merging the whole text at once, as llama.cpp does.
    private readonly HashSet<long> joinable = [];
    // User-defined tokens holding spaces (convert_hf_to_gguf writes Gemma's "▁▁" whitespace tokens as "  "), under
    // their escaped form: spaces in the text are matched as the token before escaping, but a literal "▁▁" in the text
    // reaches the token only through merges, as it does in the Hugging Face tokenizer (where "▁" and " " are one symbol).
    private readonly Dictionary<string, int> escapedUserDefined = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> escapedLookup;
    private readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> cacheLookup;
    private const int CacheLimit = 1 << 18;

    internal SpmTokenizer(IModelMetadata f) : base(f, "llama", new Defaults(
        Bos: 1, Eos: 2, Unk: 0, Sep: -1, Pad: -1, Mask: -1,
        AddBos: true, AddEos: false, AddSep: false, AddSpacePrefix: true, CleanSpaces: false, EscapeWhitespaces: true))
    {
        Span<char> buf = stackalloc char[6];
        for (int b = 0; b < 256; b++)
        {
            $"<0x{b:X2}>".AsSpan().CopyTo(buf);
            int id = LookupPiece(buf);
            if (id < 0 && b < 0x80) id = LookupPiece([(char)b]);
            byteTokens[b] = id;
        }
        for (int i = 0; i < VocabSize; i++)
        {
            string piece = Piece(i);
            if ((Attr(i) & TokenAttributes.UserDefined) != 0 && piece.Contains(' ', StringComparison.Ordinal))
            {
                piece = piece.Replace(' ', '\u2581');
                if (TokenToId(piece) < 0) escapedUserDefined.TryAdd(piece, i);
            }
            int prevCp = -1;
            foreach (var r in piece.EnumerateRunes())
            {
                if (prevCp >= 0) joinable.Add(((long)prevCp << 21) | (uint)r.Value);
                prevCp = r.Value;
            }
        }
        cacheLookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        escapedLookup = escapedUserDefined.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>The token of an escaped piece: a vocabulary string, or a user-defined token with spaces written as ▁.</summary>
    private int LookupEscaped(ReadOnlySpan<char> s)
    {
        int id = LookupPiece(s);
        if (id < 0 && escapedUserDefined.Count > 0 && escapedLookup.TryGetValue(s, out int u)) id = u;
        return id;
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, bool addSpecial, List<int> output)
    {
        bool isPrevSpecial = true; // prefix with a space if first
        if (addSpecial && AddBos) output.Add(Bos);
        char[]? rented = null;
        try
        {
            foreach (var fr in fragments)
            {
                if (fr.IsToken) { output.Add(fr.Token); isPrevSpecial = true; continue; }
                int n = fr.Length + 1;
                if (rented is null || rented.Length < n)
                {
                    if (rented is not null) ArrayPool<char>.Shared.Return(rented);
                    rented = ArrayPool<char>.Shared.Rent(n);
                }
                int len = 0;
                if (AddSpacePrefix && isPrevSpecial) rented[len++] = '\u2581';
                var src = text.AsSpan(fr.Offset, fr.Length);
                for (int i = 0; i < src.Length; i++) rented[len++] = src[i] == ' ' ? '\u2581' : src[i];
                TokenizeSegments(rented.AsSpan(0, len), output);
                isPrevSpecial = false;
            }
        }
        finally
        {
            if (rented is not null) ArrayPool<char>.Shared.Return(rented);
        }
        if (addSpecial && AddEos) output.Add(Eos);
    }

    private void TokenizeSegments(ReadOnlySpan<char> text, List<int> output)
    {
        int segStart = 0, prevCp = -1;
        for (int i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text[i..], out var r, out int used);
            int cp = char.IsSurrogate(text[i]) && used == 1 ? -2 : r.Value; // lone surrogate: never joinable
            if (prevCp != -1 && (prevCp < 0 || cp < 0 || !joinable.Contains(((long)prevCp << 21) | (uint)cp)))
            {
                TokenizeCached(text[segStart..i], output);
                segStart = i;
            }
            prevCp = cp;
            i += used;
        }
        TokenizeCached(text[segStart..], output);
    }

    private void TokenizeCached(ReadOnlySpan<char> segment, List<int> output)
    {
        if (segment.IsEmpty) return;
        if (cacheLookup.TryGetValue(segment, out var ids)) { output.AddRange(ids); return; }
        var tmp = new List<int>(segment.Length);
        Tokenize(segment, tmp);
        ids = [.. tmp];
        if (segment.Length <= 256)
        {
            if (cache.Count >= CacheLimit) cache.Clear();
            cacheLookup.TryAdd(segment, ids);
        }
        output.AddRange(ids);
    }

    /// <summary>Symbol-merge loop over one escaped text run: O(n log n) with a heap of candidate bigrams.</summary>
    private void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty) return;
        int cap = text.Length;
        int[] start = ArrayPool<int>.Shared.Rent(cap), len = ArrayPool<int>.Shared.Rent(cap);
        int[] prev = ArrayPool<int>.Shared.Rent(cap), next = ArrayPool<int>.Shared.Rent(cap);
        try
        {
            // split into code points (a surrogate pair is one symbol, like one UTF-8 character)
            int n = 0;
            for (int i = 0; i < text.Length;)
            {
                int l = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
                start[n] = i; len[n] = l; prev[n] = n - 1; next[n] = n + 1;
                n++; i += l;
            }
            next[n - 1] = -1;

            var queue = new MergeQueue(n);
            for (int i = 1; i < n; i++) TryAddBigram(text, start, len, i - 1, i, ref queue);

            while (queue.Count > 0)
            {
                var bg = queue.Pop();
                int l = bg.Left, r = bg.Right;
                if (len[l] == 0 || len[r] == 0 || len[l] + len[r] != bg.Size) continue;
                len[l] += len[r];
                len[r] = 0;
                next[l] = next[r];
                if (next[r] >= 0) prev[next[r]] = l;
                TryAddBigram(text, start, len, prev[l], l, ref queue);
                TryAddBigram(text, start, len, l, next[l], ref queue);
            }

            Span<byte> utf8 = stackalloc byte[4];
            for (int i = 0; i != -1; i = next[i])
            {
                var s = text.Slice(start[i], len[i]);
                int id = LookupEscaped(s);
                if (id >= 0) { output.Add(id); continue; }
                // no token for this character: emit its UTF-8 bytes as byte tokens
                int nb = Encoding.UTF8.GetBytes(s, utf8);
                for (int k = 0; k < nb; k++)
                {
                    int bt = byteTokens[utf8[k]];
                    if (bt < 0) bt = Unk; // llama.cpp would abort here: the vocabulary has no byte fallback
                    if (bt >= 0) output.Add(bt);
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(start); ArrayPool<int>.Shared.Return(len);
            ArrayPool<int>.Shared.Return(prev); ArrayPool<int>.Shared.Return(next);
        }
    }

    private void TryAddBigram(ReadOnlySpan<char> text, int[] start, int[] len, int left, int right, ref MergeQueue queue)
    {
        if (left < 0 || right < 0) return;
        int size = len[left] + len[right];
        int id = LookupEscaped(text.Slice(start[left], size));
        if (id < 0) return;
        queue.Push(new MergeQueue.Item
        {
            Key = ((ulong)MergeQueue.DescendingScoreKey(Score(id)) << 32) | (uint)left,
            Right = right,
            Size = size,
            Merged = id,
        });
    }
}
