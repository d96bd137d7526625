using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// Our tokenizers against llama.cpp (LLamaSharp 0.30.0) on the same vocab-only GGUFs, including the two vocabularies
/// llama.cpp ships without test vectors (gpt-neox, baichuan): llama.cpp's own test inputs, War and Peace chunks and
/// special-token text, with add_special and parse_special on and off; plus the end-of-generation set.
/// </summary>
public sealed class TokenizerOracleTests(ITestOutputHelper output)
{
    public static TheoryData<string> Files => new(
        "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-phi-3.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-baichuan.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-neox.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-mpt.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-falcon.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-starcoder.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-refact.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-bert-bge.gguf",
        "models/stories260K.gguf");

    internal static List<string> Texts(Tokenizer tok)
    {
        var texts = new List<string>();
        var inp = TestData.Root is null ? null : Path.Combine(TestData.Root, "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf.inp");
        if (inp is not null && File.Exists(inp))
            texts.AddRange(Encoding.UTF8.GetString(File.ReadAllBytes(inp)).Split("\n__ggml_vocab_test__\n"));
        var wp = TestData.Root is null ? null : Path.Combine(TestData.Root, "corpus/war-and-peace.txt");
        if (wp is not null && File.Exists(wp))
        {
            var all = File.ReadAllText(wp);
            for (int i = 0; i < 6; i++) texts.Add(all.Substring(i * 500_000, 4000));
        }
        texts.Add("emoji 🦙🚀😶‍🌫️ CJK 我想在apple工作 한국어 العربية ελληνικά Ὗ ΐ K Ω  \t\n\r\n  \u00A0nbsp \u3000ideographic 𝐀𝐁 𐐀 ١٢٣");
        // special tokens written in text (parse_special matters)
        string Specials(int n) => string.Concat(Enumerable.Range(0, tok.VocabSize).Where(tok.IsControl).Take(n).Select(i => tok.TokenPiece(i) + " x"));
        texts.Add("Hello " + Specials(8) + " world</s><s>  <|endoftext|>\n<|user|>\nHi<|end|>\n<|assistant|>");
        return texts;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Encode_matches_llama_cpp(string relative)
    {
        string path = TestData.Require(relative);
        var tok = Tokenizer.FromGguf(path);
        Init();
        using var w = LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
        int compared = 0;
        var failures = new List<string>();
        foreach (var text in Texts(tok))
        {
            foreach (var (addSpecial, parseSpecial) in new[] { (false, false), (true, false), (true, true) })
            {
                var expected = w.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();
                var got = tok.Encode(text, addSpecial, parseSpecial);
                compared++;
                if (!got.AsSpan().SequenceEqual(expected))
                    failures.Add($"add={addSpecial} parse={parseSpecial} '{LlamaCppVocabTests.Escape(text[..Math.Min(80, text.Length)])}': expected [{string.Join(' ', expected.Take(40))}] got [{string.Join(' ', got.Take(40))}]");
            }
        }
        // end of generation, BOS/EOS
        var vocab = w.NativeHandle.Vocab;
        var eog = Enumerable.Range(0, tok.VocabSize).Where(i => ((LLamaToken)i).IsEndOfGeneration(vocab)).ToHashSet();
        if (!eog.SetEquals(tok.EndOfGeneration)) failures.Add($"EOG: expected {{{string.Join(",", eog)}}} got {{{string.Join(",", tok.EndOfGeneration)}}}");
        if ((vocab.BOS is { } b ? (int)b : -1) != tok.Bos) failures.Add($"BOS: expected {vocab.BOS} got {tok.Bos}");
        if ((vocab.EOS is { } e ? (int)e : -1) != tok.Eos) failures.Add($"EOS: expected {vocab.EOS} got {tok.Eos}");
        if (vocab.ShouldAddBOS != tok.AddBos) failures.Add($"add_bos: expected {vocab.ShouldAddBOS} got {tok.AddBos}");
        output.WriteLine($"{Path.GetFileName(path)}: {compared - failures.Count}/{compared} encodings identical to llama.cpp");
        foreach (var f in failures) output.WriteLine("  FAIL " + f);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(8)));
    }

    private static void Init() => Oracle.LlamaCpp.Init();
}
