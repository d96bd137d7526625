namespace OpenWeights.Tokenizers;

/// <summary>What a byte-level BPE vocabulary's <c>tokenizer.ggml.pre</c> selects (llama.cpp llama-vocab.cpp).</summary>
internal sealed record PreTokenizerSpec(string[] Regexes, bool CleanSpaces = true, bool IgnoreMerges = false, bool AddBos = false, bool AddSep = false);

/// <summary>
/// The regex lists llama.cpp uses per pre-tokenizer type, written for .NET:
/// <list type="bullet">
/// <item>llama.cpp runs the GPT-2 and Llama-3 patterns through hand-written splitters that also take a trailing
/// <c>\s+</c>; the GPT-2 pattern here ends in <c>|\s+</c> to do the same.</item>
/// <item><c>$</c> (end of input in std::regex ECMAScript) is written <c>\z</c> (.NET's <c>$</c> also matches before a final newline).</item>
/// </list>
/// </summary>
internal static class PreTokenizers
{
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    public const string Llama3 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen35 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Tekken = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Gpt4o = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    /// <summary>
    /// o200k (gpt-oss's tokenizer.json) as Hugging Face runs it, letter subcategories and marks included; llama.cpp's
    /// <see cref="Gpt4o"/> approximates the subcategories by ASCII case and leaves marks out, so it splits Devanagari,
    /// Khmer, Thai and combining accents differently from the real tokenizer.
    /// </summary>
    public const string O200k = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string SeedCoder = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Bailing = @"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
    public const string Poro = " ?[^(\\s|.,!?…。，、।۔،)]+";
    public const string DeepseekV3Main = @"[!""#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly string[] DeepseekLlm =
    [
        "[\r\n]",
        // letters of the DeepSeek tokenizer.json pattern; the Greek/letterlike part is escaped because those code points
        // (U+1F7D, U+1FBE, U+2126, U+212A, ...) change under NFC and editors normalise them
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛ\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212Dℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+\\z",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    ];

    private static readonly string[] DeepseekCoder = ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"];

    /// <summary>The pre-tokenizer names this implementation knows, for documentation and tests.</summary>
    public static IReadOnlyCollection<string> Known => Table.Keys;

    private static readonly Dictionary<string, PreTokenizerSpec> Table = Build();

    private static Dictionary<string, PreTokenizerSpec> Build()
    {
        var t = new Dictionary<string, PreTokenizerSpec>(StringComparer.Ordinal);
        void Add(PreTokenizerSpec s, params string[] names) { foreach (var n in names) t[n] = s; }

        Add(new(["[\\p{P}\\$\\+<=>\\^~\\|]+", Gpt2, "\\p{N}+", "[0-9][0-9][0-9]"]), "default");
        Add(new([Llama3], IgnoreMerges: true, AddBos: true), "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano");
        Add(new([Llama3]), "dbrx", "smaug-bpe");
        Add(new(DeepseekLlm, CleanSpaces: false), "deepseek-llm");
        Add(new(DeepseekCoder, CleanSpaces: false), "deepseek-coder");
        Add(new(["\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DeepseekV3Main], CleanSpaces: false), "deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4");
        Add(new(["[\\p{P}\\$\\+<=>\\^~\\|`]+", Gpt2, "[0-9][0-9][0-9]"]), "falcon");
        Add(new([Gpt2]), "mpt", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "olmo", "jais", "exaone4");
        Add(new([Gpt2], CleanSpaces: false), "trillion", "granite-docling");
        Add(new([Gpt2], AddSep: true), "jina-v1-en", "jina-v2-code", "roberta-bpe");
        Add(new(["\\p{N}", Gpt2]), "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2");
        Add(new(["\\p{N}", Gpt2], CleanSpaces: false), "command-r", "smollm");
        Add(new([Qwen2], CleanSpaces: false), "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open");
        Add(new([Qwen2]), "stablelm2", "megrez");
        Add(new([Qwen35], CleanSpaces: false), "qwen35");
        Add(new([Poro], CleanSpaces: false), "poro-chat");
        Add(new([Poro]), "bloom", "gpt3-finnish");
        Add(new([Poro, "\\p{N}"], CleanSpaces: false), "viking");
        Add(new([Tekken], CleanSpaces: false, IgnoreMerges: true, AddBos: true), "tekken");
        Add(new([O200k], CleanSpaces: false), "gpt-4o"); // gpt-oss: the real tokenizer's regex (see O200k)
        Add(new([Gpt4o], CleanSpaces: false), "llama4", "kanana2", "talkie", "minimax-m2");
        Add(new([SeedCoder], CleanSpaces: false), "seed-coder");
        Add(new([Bailing], CleanSpaces: false), "bailingmoe", "bailingmoe2", "llada-moe");
        Add(new([Qwen2], CleanSpaces: false), "grok-2");
        return t;
    }

    /// <summary>The spec for a <c>tokenizer.ggml.pre</c> value (null or absent: llama.cpp's "default").</summary>
    public static PreTokenizerSpec? For(string? pre) => Table.GetValueOrDefault(string.IsNullOrEmpty(pre) ? "default" : pre);
}
