using OpenWeights.Formats;
using System.Buffers;
using System.Collections.Frozen;
using System.Text;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;

namespace OpenWeights.Tokenizers;

/// <summary>
/// A tokenizer built from GGUF <c>tokenizer.*</c> metadata that reproduces llama.cpp's tokenization exactly:
/// special-token partitioning, BOS/EOS rules, end-of-generation detection and detokenization
/// (llama-vocab.cpp is the reference; its quirks are kept on purpose so that token ids match).
/// </summary>
/// <remarks>
/// Instances are immutable and thread-safe. Where llama.cpp and a model's own (Hugging Face) tokenizer disagree, the
/// model's tokenizer wins (RealTokenizerTests checks Gemma 3, Qwen3, Llama 3 and DeepSeek-V3 against it): the
/// <see cref="HfTokenizer.NormalizerKey"/> normalization (Qwen's NFC), a literal ▁ reaching user-defined whitespace tokens
/// in SentencePiece vocabularies, and '~' as a symbol in \p{S} (llama.cpp's unicode.cpp forgets it).
/// </remarks>
public abstract class Tokenizer
{
    private readonly string[] pieces;
    private readonly float[] scores;
    private readonly TokenAttributes[] attrs;
    private readonly byte[][] pieceBytes;           // llama.cpp token_to_piece(special: true)
    private readonly int[] specialTokens;           // control | user-defined | unknown, longest first
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup;
    private readonly Dictionary<string, int> tokenToId;

    /// <summary>Per-model defaults applied before the GGUF metadata overrides them (llama.cpp's load order).</summary>
    private protected readonly record struct Defaults(
        int Bos, int Eos, int Unk, int Sep, int Pad, int Mask,
        bool AddBos, bool AddEos, bool AddSep, bool AddSpacePrefix, bool CleanSpaces, bool EscapeWhitespaces);

    private protected Tokenizer(IModelMetadata f, string model, Defaults d)
    {
        string file = System.IO.Path.GetFileName(f.Path);
        Model = model;
        PreTokenizerName = f.GetString("tokenizer.ggml.pre");
        ChatTemplate = f.GetString("tokenizer.chat_template");
        AddSpacePrefix = f.GetBool("tokenizer.ggml.add_space_prefix") ?? d.AddSpacePrefix;
        CleanSpaces = d.CleanSpaces;
        Normalization = f.GetString(HfTokenizer.NormalizerKey) switch
        {
            null => null,
            "NFC" => NormalizationForm.FormC,
            "NFD" => NormalizationForm.FormD,
            var other => throw new OpenWeightsException($"{file}: {HfTokenizer.NormalizerKey} {UntrustedText.Quote(other)} is not supported (NFC, NFD)"),
        };
        EscapeWhitespaces = d.EscapeWhitespaces;

        var tokens = f.GetArray<string>("tokenizer.ggml.tokens")
            ?? throw new InvalidModelFileException($"{file}: metadata tokenizer.ggml.tokens is missing");
        int n = tokens.Length;
        float[]? sc = f.Contains("tokenizer.ggml.scores") ? f.GetArray<float>("tokenizer.ggml.scores") : null;
        int[]? types = f.Contains("tokenizer.ggml.token_type") ? f.GetArray<int>("tokenizer.ggml.token_type") : null;
        if (sc is not null && sc.Length < n) throw new InvalidModelFileException($"{file}: tokenizer.ggml.scores has {sc.Length} entries for {n} tokens");
        if (types is not null && types.Length < n) throw new InvalidModelFileException($"{file}: tokenizer.ggml.token_type has {types.Length} entries for {n} tokens");

        pieces = new string[n];
        scores = new float[n];
        attrs = new TokenAttributes[n];
        tokenToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            var word = tokens[i];
            if (string.IsNullOrEmpty(word)) word = "[EMPTY_" + i + "]";
            if (!tokenToId.TryAdd(word, i))
                throw new InvalidModelFileException($"{file}: duplicate token in vocabulary: {UntrustedText.Quote(word)} has ids {tokenToId[word]} and {i}");
            pieces[i] = word;
            scores[i] = sc is null ? 0f : sc[i];
            attrs[i] = types is null ? TokenAttributes.Normal : (GgufTokenType)types[i] switch
            {
                GgufTokenType.Unknown => TokenAttributes.Unknown,
                GgufTokenType.Unused => TokenAttributes.Unused,
                GgufTokenType.Normal => TokenAttributes.Normal,
                GgufTokenType.Control => TokenAttributes.Control,
                GgufTokenType.UserDefined => TokenAttributes.UserDefined,
                GgufTokenType.Byte => TokenAttributes.Byte,
                _ => TokenAttributes.Undefined,
            };
        }
        lookup = tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();

        // special token ids: defaults out of range are disabled, metadata wins when in range
        int Special(string key, int def)
        {
            if (def >= n) def = -1;
            long? v = f.GetInteger("tokenizer.ggml." + key);
            return v is long id && id >= 0 && id < n ? (int)id : def;
        }
        Bos = Special("bos_token_id", d.Bos);
        Eos = Special("eos_token_id", d.Eos);
        Eot = Special("eot_token_id", -1);
        Eom = Special("eom_token_id", -1);
        Unk = Special("unknown_token_id", d.Unk);
        Sep = Special("seperator_token_id", d.Sep); // sic: llama.cpp's key spelling
        Pad = Special("padding_token_id", d.Pad);
        Mask = Special("mask_token_id", d.Mask);
        int fimPre = Special("fim_pre_token_id", -1), fimSuf = Special("fim_suf_token_id", -1), fimMid = Special("fim_mid_token_id", -1);
        int fimPad = Special("fim_pad_token_id", -1), fimRep = Special("fim_rep_token_id", -1), fimSep = Special("fim_sep_token_id", -1);
        fimPre = Special("prefix_token_id", fimPre); fimSuf = Special("suffix_token_id", fimSuf); fimMid = Special("middle_token_id", fimMid);

        AddBos = f.GetBool("tokenizer.ggml.add_bos_token") ?? d.AddBos;
        AddEos = f.GetBool("tokenizer.ggml.add_eos_token") ?? d.AddEos;
        AddSep = f.GetBool("tokenizer.ggml.add_sep_token") ?? d.AddSep;
        if (AddBos && Bos < 0) throw new InvalidModelFileException($"{file}: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
        if (AddEos && Eos < 0) throw new InvalidModelFileException($"{file}: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");
        if (AddSep && Sep < 0) throw new InvalidModelFileException($"{file}: tokenizer.ggml.add_sep_token is true, but tokenizer.ggml.seperator_token_id is not set");

        // llama.cpp detects EOT/EOM/FIM tokens by their text and forces them to control type.
        // (llama.cpp walks an unordered_map; we walk ids in order so the choice is deterministic.)
        for (int i = 0; i < n; i++)
        {
            string t = pieces[i];
            if (Eot < 0 && t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<end_of_turn>" or "<|endoftext|>" or "<|end_of_text|>"
                    or "<EOT>" or "_<EOT>" or "[EOT]" or "<｜end▁of▁sentence｜>" or "<end_of_utterance>") { Eot = i; attrs[i] |= TokenAttributes.Control; }
            if (Eom < 0 && t is "<|eom_id|>") { Eom = i; attrs[i] |= TokenAttributes.Control; }
            if (fimPre < 0 && t is "<|fim_prefix|>" or "<fim-prefix>" or "<fim_prefix>" or "<｜fim▁begin｜>" or "<PRE>" or "▁<PRE>" or "<|code_prefix|>" or "<|prefix|>") { fimPre = i; attrs[i] |= TokenAttributes.Control; }
            if (fimSuf < 0 && t is "<|fim_suffix|>" or "<fim-suffix>" or "<fim_suffix>" or "<｜fim▁hole｜>" or "<SUF>" or "▁<SUF>" or "<|code_suffix|>" or "<|suffix|>") { fimSuf = i; attrs[i] |= TokenAttributes.Control; }
            if (fimMid < 0 && t is "<|fim_middle|>" or "<fim-middle>" or "<fim_middle>" or "<｜fim▁end｜>" or "<MID>" or "▁<MID>" or "<|code_middle|>" or "<|middle|>") { fimMid = i; attrs[i] |= TokenAttributes.Control; }
            if (fimPad < 0 && t is "<|fim_pad|>" or "<fim-pad>" or "<fim_pad>" or "<PAD>" or "[PAD]") { fimPad = i; attrs[i] |= TokenAttributes.Control; }
            if (fimRep < 0 && t is "<|fim_repo|>" or "<|repo_name|>" or "<fim-repo>" or "<REPO>" or "<reponame>") { fimRep = i; attrs[i] |= TokenAttributes.Control; }
            if (fimSep < 0 && t is "<|file_sep|>") { fimSep = i; attrs[i] |= TokenAttributes.Control; }
        }
        for (int i = 0; i < n; i++)
            if ((attrs[i] & TokenAttributes.Control) != 0 && pieces[i].Contains("unused", StringComparison.Ordinal)) attrs[i] |= TokenAttributes.Unused;

        var eog = new SortedSet<int>();
        if (fimPad >= 0) eog.Add(fimPad);
        if (fimRep >= 0) eog.Add(fimRep);
        if (fimSep >= 0) eog.Add(fimSep);
        for (int i = 0; i < n; i++)
        {
            if (pieces[i] is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<|return|>" or "<|call|>" or "<|flush|>" or "<|calls|>"
                or "<end_of_turn>" or "<|endoftext|>" or "</s>" or "<|eom_id|>" or "<EOT>" or "_<EOT>" or "[EOT]" or "[EOS]"
                or "<|end_of_text|>" or "<end_of_utterance>" or "<eos>" or "<turn|>" or "<|tool_response>" or "<｜end▁of▁sentence｜>" or "[e~[")
            {
                eog.Add(i);
                attrs[i] |= TokenAttributes.Control;
            }
        }
        for (int i = 0; i < n; i++)
            if (pieces[i] is "<|channel|>" or "<|message|>" or "<|start|>" or "<|constrain|>") attrs[i] = TokenAttributes.UserDefined;
        if (Eos >= 0) eog.Add(Eos);
        if (Eot >= 0) eog.Add(Eot);
        if (Eom >= 0) eog.Add(Eom);
        {
            bool hasReturn = false, hasCall = false, hasFlush = false; int endId = -1, sId = -1; bool hasToolResponse = false;
            foreach (var id in eog)
            {
                switch (pieces[id])
                {
                    case "<|return|>": hasReturn = true; break;
                    case "<|call|>" or "<|calls|>": hasCall = true; break;
                    case "<|flush|>": hasFlush = true; break;
                    case "<|end|>": endId = id; break;
                    case "<|tool_response>": hasToolResponse = true; break;
                    case "</s>": sId = id; break;
                }
            }
            if (endId >= 0 && ((hasReturn && hasCall) || (hasCall && hasFlush))) { eog.Remove(endId); attrs[endId] = TokenAttributes.UserDefined; }
            if (hasToolResponse && sId >= 0) { eog.Remove(sId); attrs[sId] = TokenAttributes.Normal; }
        }
        EndOfGeneration = eog.ToFrozenSet();

        specialTokens = Enumerable.Range(0, n)
            .Where(i => (attrs[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0)
            .OrderByDescending(i => pieces[i].Length).ThenBy(i => i).ToArray();

        // model-name specific attributes (llama.cpp sets these after building the special-token cache)
        string modelName = (f.GetString("general.name") ?? "").ToLowerInvariant();
        string arch = f.GetString("general.architecture") ?? "";
        string pre = PreTokenizerName ?? "";
        if (pre.Contains("jina-v2-de") || pre.Contains("jina-v2-es") || pre.Contains("jina-v2-code") || arch.Contains("nomic-bert-moe") || arch.Contains("jina-bert-v3"))
        {
            if (tokenToId.TryGetValue("<mask>", out int m)) attrs[m] |= TokenAttributes.LStrip;
        }
        else if (modelName.Contains("phi-3") || modelName.Contains("phi3"))
        {
            foreach (var id in specialTokens) attrs[id] |= TokenAttributes.RStrip;
            if (tokenToId.TryGetValue("</s>", out int s)) attrs[s] |= TokenAttributes.RStrip;
            foreach (var t in (string[])["<unk>", "<s>", "<|endoftext|>"])
                if (tokenToId.TryGetValue(t, out int id)) attrs[id] &= ~TokenAttributes.RStrip;
        }
        else if (modelName.Contains("modern-bert"))
        {
            if (tokenToId.TryGetValue("[MASK]", out int m)) attrs[m] |= TokenAttributes.LStrip;
        }

        pieceBytes = new byte[n][];
        for (int i = 0; i < n; i++) pieceBytes[i] = RenderPiece(i);
    }

    // ---- public surface ----

    /// <summary>Reads the tokenizer stored in a GGUF file's metadata.</summary>
    /// <exception cref="OpenWeightsException">the tokenizer type or pre-tokenizer is not supported.</exception>
    public static Tokenizer FromGguf(IModelMetadata f)
    {
        ArgumentNullException.ThrowIfNull(f);
        string file = System.IO.Path.GetFileName(f.Path);
        string model = f.GetString("tokenizer.ggml.model")
            ?? throw new InvalidModelFileException($"{file}: metadata tokenizer.ggml.model is missing (no tokenizer in this file)");
        return model switch
        {
            "llama" => new SpmTokenizer(f),
            "gpt2" => new BpeTokenizer(f),
            "bert" => new WpmTokenizer(f),
            _ => throw new OpenWeightsException($"{file}: tokenizer model {UntrustedText.Quote(model)} is not supported (supported: llama, gpt2, bert)"),
        };
    }

    /// <summary>Reads the tokenizer from a GGUF file on disk.</summary>
    public static Tokenizer FromGguf(string path)
    {
        using var f = GgufFile.Open(path);
        return FromGguf(f);
    }

    /// <summary>GGUF <c>tokenizer.ggml.model</c>: llama (SentencePiece BPE), gpt2 (byte-level BPE), bert (WordPiece).</summary>
    public string Model { get; }
    /// <summary>GGUF <c>tokenizer.ggml.pre</c>, or null when absent.</summary>
    public string? PreTokenizerName { get; }
    /// <summary>GGUF <c>tokenizer.chat_template</c>, passed through; null when absent.</summary>
    public string? ChatTemplate { get; }

    public int VocabSize => pieces.Length;
    /// <summary>Beginning-of-sequence id, or -1 when none.</summary>
    public int Bos { get; }
    /// <summary>End-of-sequence id, or -1 when none.</summary>
    public int Eos { get; }
    /// <summary>End-of-turn id (from metadata or detected by its text as llama.cpp does), or -1.</summary>
    public int Eot { get; }
    /// <summary>End-of-message id (<c>&lt;|eom_id|&gt;</c>), or -1.</summary>
    public int Eom { get; }
    public int Unk { get; }
    public int Sep { get; }
    public int Pad { get; }
    public int Mask { get; }
    /// <summary>Every id that ends generation (EOS, EOT, EOM and the tokens llama.cpp recognises by text).</summary>
    public IReadOnlySet<int> EndOfGeneration { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial prepends BOS (<c>tokenizer.ggml.add_bos_token</c>, else the model's default).</summary>
    public bool AddBos { get; }
    /// <summary>Whether <see cref="Encode"/> with addSpecial appends EOS.</summary>
    public bool AddEos { get; }
    public bool AddSep { get; }
    /// <summary>SentencePiece dummy prefix: a space is put before text that follows BOS, a special token or the start.</summary>
    public bool AddSpacePrefix { get; }
    /// <summary>Decode removes the space before ?!., and some contractions (HF clean_up_tokenization_spaces).</summary>
    public bool CleanSpaces { get; }
    private protected bool EscapeWhitespaces { get; }
    /// <summary>Unicode normalization applied to the text between special tokens before it is split (<see cref="HfTokenizer.NormalizerKey"/>), or null.</summary>
    public NormalizationForm? Normalization { get; }

    /// <summary>The raw vocabulary string of a token.</summary>
    public string TokenPiece(int id) => pieces[CheckId(id)];
    public float TokenScore(int id) => scores[CheckId(id)];
    public TokenAttributes GetTokenAttributes(int id) => attrs[CheckId(id)];
    /// <summary>Control or unknown token: rendered by <see cref="Decode"/> only when skipSpecial is false.</summary>
    public bool IsControl(int id) => (attrs[CheckId(id)] & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0;
    public bool IsEndOfGeneration(int id) => EndOfGeneration.Contains(id);

    /// <summary>The id of a vocabulary string, or -1.</summary>
    public int TokenToId(ReadOnlySpan<char> piece) => lookup.TryGetValue(piece, out int id) ? id : -1;

    /// <summary>The bytes this token contributes to decoded text (special tokens render their text). Do not modify the array.</summary>
    public byte[] TokenBytes(int id) => pieceBytes[CheckId(id)];

    /// <summary>Tokenizes text.</summary>
    /// <param name="text">the text; lone surrogates are treated as U+FFFD</param>
    /// <param name="addSpecial">add BOS/EOS (and SEP for BERT) as the model asks</param>
    /// <param name="parseSpecial">recognise control tokens written in the text (user-defined tokens are always recognised, as in llama.cpp)</param>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        var fragments = Partition(text, parseSpecial);
        if (Normalization is { } form) (text, fragments) = Normalize(text, fragments, form);
        EncodeFragments(text, fragments, addSpecial, output);
        return output.ToArray();
    }

    /// <summary>Detokenizes like llama.cpp's <c>llama_detokenize</c>.</summary>
    /// <param name="skipSpecial">false: control tokens are written as their text (llama.cpp unparse_special);
    /// true: they are dropped, and a leading BOS / trailing EOS is removed when the model adds them (remove_special)</param>
    /// <remarks>
    /// With <see cref="AddSpacePrefix"/>, the leading space of the first token is removed unless the sequence starts with BOS
    /// (llama.cpp keeps " Hello" for [BOS, ▁Hello] and gives "Hello" for [▁Hello]).
    /// </remarks>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = false)
    {
        bool removeSpecial = skipSpecial, unparse = !skipSpecial;
        bool removeSpace = AddSpacePrefix;
        if (removeSpecial && AddBos && ids.Length > 0 && ids[0] == Bos) { removeSpace = false; ids = ids[1..]; }
        if (removeSpecial && AddEos && ids.Length > 0 && ids[^1] == Eos) ids = ids[..^1];

        var buf = new ArrayBufferWriter<byte>(Math.Max(16, ids.Length * 4));
        foreach (int id in ids)
        {
            CheckId(id);
            ReadOnlySpan<byte> p = !unparse && (attrs[id] & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0
                ? default : pieceBytes[id];
            if (removeSpace && p.Length > 0 && p[0] == (byte)' ') p = p[1..];
            removeSpace = false;
            buf.Write(p);
        }
        if (!CleanSpaces) return Encoding.UTF8.GetString(buf.WrittenSpan);
        var text = buf.WrittenSpan.ToArray();
        int len = CleanUpSpaces(text);
        return Encoding.UTF8.GetString(text, 0, len);
    }

    // ---- implementation ----

    private protected abstract void EncodeFragments(string text, List<Fragment> fragments, bool addSpecial, List<int> output);

    /// <summary>A piece of the input: a special token, or a run of raw text.</summary>
    private protected readonly record struct Fragment(int Token, int Offset, int Length)
    {
        public bool IsToken => Token >= 0;
        public static Fragment Text(int offset, int length) => new(-1, offset, length);
    }

    private protected int LookupPiece(ReadOnlySpan<char> s) => lookup.TryGetValue(s, out int id) ? id : -1;
    private protected TokenAttributes Attr(int id) => attrs[id];
    private protected string Piece(int id) => pieces[id];
    private protected float Score(int id) => scores[id];

    private int CheckId(int id) =>
        (uint)id < (uint)pieces.Length ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id out of range (vocabulary has {pieces.Length} tokens)");

    /// <summary>llama.cpp tokenizer_st_partition: for each special token, longest first, split every raw fragment at its occurrences.</summary>
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var frags = new List<Fragment>();
        if (text.Length == 0) return frags;
        frags.Add(Fragment.Text(0, text.Length));
        var next = new List<Fragment>();
        foreach (int special in specialTokens)
        {
            var a = attrs[special];
            if (!parseSpecial && (a & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            string st = pieces[special];
            bool any = false;
            foreach (var fr in frags)
            {
                if (!fr.IsToken && fr.Length >= st.Length && text.AsSpan(fr.Offset, fr.Length).IndexOf(st, StringComparison.Ordinal) >= 0) { any = true; break; }
            }
            if (!any) continue;

            next.Clear();
            foreach (var fr in frags)
            {
                if (fr.IsToken) { next.Add(fr); continue; }
                int off = fr.Offset, len = fr.Length;
                while (true)
                {
                    int m = len >= st.Length ? text.AsSpan(off, len).IndexOf(st, StringComparison.Ordinal) : -1;
                    if (m < 0) { if (len > 0) next.Add(Fragment.Text(off, len)); break; }
                    int matchAt = off + m;
                    if (matchAt > off)
                    {
                        int leftLen = matchAt - off;
                        if ((a & TokenAttributes.LStrip) != 0)
                            while (leftLen > 0 && IsCSpace(text[off + leftLen - 1])) leftLen--;
                        if (leftLen > 0) next.Add(Fragment.Text(off, leftLen));
                    }
                    next.Add(new Fragment(special, matchAt, st.Length));
                    int rOff = matchAt + st.Length, rLen = off + len - rOff;
                    if (rLen <= 0) break;
                    if ((a & TokenAttributes.RStrip) != 0)
                        while (rLen > 0 && IsCSpace(text[rOff])) { rOff++; rLen--; }
                    if (rLen <= 0) break;
                    off = rOff; len = rLen;
                }
            }
            (frags, next) = (next, frags);
        }
        return frags;
    }

    /// <summary>
    /// The text with each raw fragment normalized (Hugging Face matches added tokens in the raw text and normalizes the
    /// rest), and the fragments re-pointed into it.
    /// </summary>
    private static (string, List<Fragment>) Normalize(string text, List<Fragment> fragments, NormalizationForm form)
    {
        if (fragments.All(fr => fr.IsToken || UnicodeNormalizer.IsQuickNormalized(text.AsSpan(fr.Offset, fr.Length), form))) return (text, fragments);
        var sb = new StringBuilder(text.Length + 16);
        var result = new List<Fragment>(fragments.Count);
        foreach (var fr in fragments)
        {
            if (fr.IsToken) { result.Add(fr); continue; }
            string part = UnicodeNormalizer.Normalize(text.Substring(fr.Offset, fr.Length), form);
            result.Add(Fragment.Text(sb.Length, part.Length));
            sb.Append(part);
        }
        return (sb.ToString(), result);
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    /// <summary>llama.cpp token_to_piece(special: true).</summary>
    private byte[] RenderPiece(int id)
    {
        var a = attrs[id];
        string t = pieces[id];
        if ((a & (TokenAttributes.Unknown | TokenAttributes.Control | TokenAttributes.UserDefined)) != 0)
            return Encoding.UTF8.GetBytes(t);
        if ((a & TokenAttributes.Normal) != 0)
        {
            if (Model == "gpt2" && !EscapeWhitespaces) return DecodeByteLevel(t);
            return Encoding.UTF8.GetBytes(t.Replace('\u2581', ' '));
        }
        if ((a & TokenAttributes.Byte) != 0)
            return [ParseByteToken(t)];
        return [];
    }

    private static byte ParseByteToken(string t)
    {
        // "<0xXX>"; llama.cpp parses text[3..5] with strtol (0 on garbage)
        if (t.Length >= 5 && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b)) return b;
        return 0;
    }

    /// <summary>llama_decode_text: byte-level characters back to bytes.</summary>
    private static byte[] DecodeByteLevel(string t)
    {
        var r = new List<byte>(t.Length);
        Span<byte> u = stackalloc byte[4];
        foreach (var rune in t.EnumerateRunes())
        {
            int c = rune.Value;
            if (c < ByteLevel.CharToByte.Length && ByteLevel.CharToByte[c] >= 0) { r.Add((byte)ByteLevel.CharToByte[c]); continue; }
            r.AddRange(Encoding.UTF8.GetBytes("[UNK_BYTE_0x"));
            int nb = rune.EncodeToUtf8(u);
            for (int k = 0; k < nb; k++) r.AddRange(Encoding.UTF8.GetBytes(u[k].ToString("x2")));
            r.AddRange(Encoding.UTF8.GetBytes(t + "]"));
        }
        return r.ToArray();
    }

    /// <summary>llama.cpp's clean_spaces passes over the detokenized bytes; returns the new length.</summary>
    private static int CleanUpSpaces(byte[] text)
    {
        int total = text.Length;
        // pass 1: " ?", " !", " .", " ,"
        int total1 = total; total = total > 0 ? 1 : 0;
        for (int i = 1; i < total1; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') total--;
            text[total++] = x;
        }
        // pass 2: single apostrophe between spaces " ' "
        int total2 = total; total = total > 0 ? 1 : 0;
        for (int i = 1; i < total2; i++)
        {
            byte x = text[i];
            if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                total--;
                text[++i] = 0;
            }
            text[total++] = x;
        }
        // pass 3: contractions " 's", " 'm", " 're", " 've"
        int total3 = total; total = total > 0 ? 1 : 0;
        for (int i = 1; i < total3; i++)
        {
            byte x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                byte x1 = text[i + 1];
                if (x1 is (byte)'s' or (byte)'m') total--;
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < total3)
                {
                    byte x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
                }
            }
            text[total++] = x;
        }
        return total;
    }
}
