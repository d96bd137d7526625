using OpenWeights.Formats;
using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using OpenWeights.Formats.Gguf;

namespace OpenWeights.Tokenizers;

/// <summary>
/// Byte-level BPE (<c>tokenizer.ggml.model = gpt2</c>): GPT-2, Llama 3, Qwen 2, DeepSeek, Falcon, MPT, StarCoder, ...
/// The text is split by the regexes of <c>tokenizer.ggml.pre</c>, each word's UTF-8 bytes are mapped to GPT-2's
/// byte characters, and adjacent symbols are merged by merge rank (lowest first, left-most on ties) as in
/// llama.cpp's llm_tokenizer_bpe. Word results are cached.
/// </summary>
public sealed class BpeTokenizer : Tokenizer
{
    private readonly RegexSplitter splitter;
    private readonly bool ignoreMerges;
    private readonly Dictionary<long, (int Rank, int Merged)> pairs;  // (leftSym << 32 | rightSym) -> rank, merged symbol
    private readonly int[] charSymbol = new int[0x144];                // byte char -> symbol id (-1 if unknown)
    private readonly string[] extraSymbols;                            // symbol ids >= VocabSize: merge results missing from the vocabulary
    private readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> cacheLookup;
    private const int CacheLimit = 1 << 18;

    internal BpeTokenizer(IModelMetadata f) : this(f, Spec(f)) { }

    private static PreTokenizerSpec Spec(IModelMetadata f)
    {
        string? pre = f.GetString("tokenizer.ggml.pre");
        return PreTokenizers.For(pre) ?? throw new OpenWeightsException(
            $"{System.IO.Path.GetFileName(f.Path)}: pre-tokenizer {UntrustedText.Quote(pre)} (tokenizer.ggml.pre) is not supported");
    }

    private BpeTokenizer(IModelMetadata f, PreTokenizerSpec spec) : base(f, "gpt2", new Defaults(
        Bos: 11, Eos: 11, Unk: -1, Sep: -1, Pad: -1, Mask: -1,
        AddBos: spec.AddBos, AddEos: false, AddSep: spec.AddSep, AddSpacePrefix: false, CleanSpaces: spec.CleanSpaces, EscapeWhitespaces: false))
    {
        splitter = new RegexSplitter(spec.Regexes);
        ignoreMerges = spec.IgnoreMerges;
        cacheLookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();

        var merges = f.GetArray<string>("tokenizer.ggml.merges")
            ?? throw new InvalidModelFileException($"{System.IO.Path.GetFileName(f.Path)}: metadata tokenizer.ggml.merges is missing");
        var extra = new Dictionary<string, int>(StringComparer.Ordinal);
        var extraList = new List<string>();
        int SymbolOf(string s)
        {
            int id = TokenToId(s);
            if (id >= 0) return id;
            if (extra.TryGetValue(s, out id)) return id;
            id = VocabSize + extraList.Count;
            extra.Add(s, id);
            extraList.Add(s);
            return id;
        }
        pairs = new Dictionary<long, (int, int)>(merges.Length);
        for (int rank = 0; rank < merges.Length; rank++)
        {
            string m = merges[rank];
            int sp = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
            if (sp < 0) continue;
            string a = m[..sp], b = m[(sp + 1)..];
            if (a.Length == 0 || b.Length == 0) continue;
            long key = ((long)SymbolOf(a) << 32) | (uint)SymbolOf(b);
            pairs.TryAdd(key, (rank, SymbolOf(a + b))); // first occurrence wins (llama.cpp emplace)
        }
        extraSymbols = [.. extraList];
        for (int c = 0; c < charSymbol.Length; c++)
        {
            string s = ((char)c).ToString();
            charSymbol[c] = TokenToId(s) is int id and >= 0 ? id : extra.GetValueOrDefault(s, -1);
        }
    }

    private protected override void EncodeFragments(string text, List<Fragment> fragments, bool addSpecial, List<int> output)
    {
        if (addSpecial && AddBos) output.Add(Bos);
        var words = new List<(int Offset, int Length)>();
        foreach (var fr in fragments)
        {
            if (fr.IsToken) { output.Add(fr.Token); continue; }
            var span = text.AsSpan(fr.Offset, fr.Length);
            words.Clear();
            splitter.Split(span, words);
            foreach (var (off, len) in words) EncodeWord(span.Slice(off, len), output);
        }
        if (addSpecial && AddEos) output.Add(Eos);
    }

    private void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        if (cacheLookup.TryGetValue(word, out var cached)) { output.AddRange(cached); return; }
        var ids = Bpe(word);
        if (cache.Count >= CacheLimit) cache.Clear();
        cacheLookup.TryAdd(word, ids);
        output.AddRange(ids);
    }

    /// <summary>Byte-level BPE of one pre-tokenized word.</summary>
    private int[] Bpe(ReadOnlySpan<char> word)
    {
        int maxBytes = Encoding.UTF8.GetMaxByteCount(word.Length);
        byte[] bytes = ArrayPool<byte>.Shared.Rent(maxBytes);
        char[] enc = ArrayPool<char>.Shared.Rent(maxBytes);
        try
        {
            int n = Encoding.UTF8.GetBytes(word, bytes);
            for (int i = 0; i < n; i++) enc[i] = ByteLevel.ByteToChar[bytes[i]];
            var encoded = enc.AsSpan(0, n);
            if (n == 0) return [];

            if (ignoreMerges)
            {
                int whole = LookupPiece(encoded);
                if (whole >= 0) return [whole];
            }
            if (n == 1)
            {
                int single = charSymbol[encoded[0]];
                return single >= 0 && single < VocabSize ? [single] : FallbackBytes(encoded);
            }
            return Merge(encoded);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
            ArrayPool<char>.Shared.Return(enc);
        }
    }

    private int[] Merge(ReadOnlySpan<char> encoded)
    {
        int n = encoded.Length;
        int[] len = ArrayPool<int>.Shared.Rent(n), prev = ArrayPool<int>.Shared.Rent(n), next = ArrayPool<int>.Shared.Rent(n), sym = ArrayPool<int>.Shared.Rent(n);
        try
        {
            for (int i = 0; i < n; i++) { len[i] = 1; prev[i] = i - 1; next[i] = i + 1; sym[i] = charSymbol[encoded[i]]; }
            next[n - 1] = -1;
            var queue = new MergeQueue(n);
            for (int i = 1; i < n; i++) AddBigram(i - 1, i, len, sym, ref queue);
            while (queue.Count > 0)
            {
                var bg = queue.Pop();
                int l = bg.Left, r = bg.Right;
                if (len[l] == 0 || len[r] == 0 || len[l] + len[r] != bg.Size) continue; // outdated
                len[l] += len[r];
                len[r] = 0;
                sym[l] = bg.Merged;
                next[l] = next[r];
                if (next[r] >= 0) prev[next[r]] = l;
                AddBigram(prev[l], l, len, sym, ref queue);
                AddBigram(l, next[l], len, sym, ref queue);
            }
            var result = new List<int>(n);
            for (int i = 0; i != -1; i = next[i])
            {
                int s = sym[i];
                if (s >= 0 && s < VocabSize) result.Add(s);
                else result.AddRange(FallbackBytes(encoded.Slice(i, len[i])));
            }
            return [.. result];
        }
        finally
        {
            ArrayPool<int>.Shared.Return(len); ArrayPool<int>.Shared.Return(prev);
            ArrayPool<int>.Shared.Return(next); ArrayPool<int>.Shared.Return(sym);
        }
    }

    private void AddBigram(int left, int right, int[] len, int[] sym, ref MergeQueue queue)
    {
        if (left < 0 || right < 0) return;
        int a = sym[left], b = sym[right];
        if (a < 0 || b < 0) return;
        if (!pairs.TryGetValue(((long)a << 32) | (uint)b, out var m)) return;
        queue.Push(new MergeQueue.Item { Key = ((ulong)(uint)m.Rank << 32) | (uint)left, Right = right, Size = len[left] + len[right], Merged = m.Merged });
    }

    /// <summary>
    /// A symbol that is not a token: llama.cpp looks up each UTF-8 byte of its byte-level text as a one-byte
    /// token and drops the bytes that are not tokens (only ASCII characters can be).
    /// </summary>
    private int[] FallbackBytes(ReadOnlySpan<char> encoded)
    {
        var r = new List<int>();
        foreach (char c in encoded)
        {
            if (c >= 0x80) continue;
            int id = LookupPiece([c]);
            if (id >= 0) r.Add(id);
        }
        return [.. r];
    }

    /// <summary>Number of merge results that are not in the vocabulary (diagnostics).</summary>
    internal int ExtraSymbolCount => extraSymbols.Length;
}
