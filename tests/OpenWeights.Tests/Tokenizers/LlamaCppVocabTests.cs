using System.Text;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.inp/.out, read as test-tokenizer-0 reads them):
/// every case must give exactly the expected ids with add_special = false, parse_special = false.
/// </summary>
public sealed class LlamaCppVocabTests(ITestOutputHelper output)
{
    private const string Dir = "tokenizers/llama.cpp-vocab";

    /// <summary>Every vocabulary llama.cpp ships test vectors for; the .gguf of some is too large to be in testdata.</summary>
    public static TheoryData<string> Vocabs => new(
        "llama-spm", "phi-3", "gpt-2", "llama-bpe", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder", "falcon",
        "mpt", "starcoder", "refact", "command-r", "bert-bge", "gemma-4");

    /// <summary>Vocabularies we do not tokenize, with the reason. Their tests fail loudly rather than skip.</summary>
    public static readonly IReadOnlyDictionary<string, string> Unsupported = new Dictionary<string, string>
    {
        ["gemma-4"] = "tokenizer.ggml.model 'gemma4' (SentencePiece-style BPE over raw UTF-8) is not implemented",
    };

    internal static (string Text, int[] Ids)[] ReadCases(string inpPath, string outPath)
    {
        string raw = Encoding.UTF8.GetString(File.ReadAllBytes(inpPath));
        const string sep = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        int pos = 0;
        while (pos < raw.Length)
        {
            int next = raw.IndexOf(sep, pos, StringComparison.Ordinal);
            if (next < 0) { inputs.Add(raw[pos..]); break; }
            inputs.Add(raw[pos..next]);
            pos = next + sep.Length;
        }
        var outputs = Encoding.UTF8.GetString(File.ReadAllBytes(outPath)).Split('\n');
        if (outputs.Length > 0 && outputs[^1].Length == 0) outputs = outputs[..^1]; // getline: no line after the final newline
        Assert.Equal(inputs.Count, outputs.Length);
        return inputs.Select((s, i) => (s, outputs[i].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToArray();
    }

    [Theory]
    [MemberData(nameof(Vocabs))]
    public void Vocab_test_vectors_match_llama_cpp(string vocab)
    {
        string inp = TestData.Require($"{Dir}/ggml-vocab-{vocab}.gguf.inp");
        string outp = TestData.Require($"{Dir}/ggml-vocab-{vocab}.gguf.out");
        var gguf = Path.Combine(Path.GetDirectoryName(inp)!, $"ggml-vocab-{vocab}.gguf");
        if (!File.Exists(gguf))
            Assert.Skip($"ggml-vocab-{vocab}.gguf is not in testdata (over 4 MiB); its .inp/.out cases cannot be run");
        if (Unsupported.TryGetValue(vocab, out var why))
            Assert.Fail($"ggml-vocab-{vocab}.gguf: unsupported vocabulary: {why}");

        using var f = GgufFile.Open(gguf);
        var tok = Tokenizer.FromGguf(f);
        var cases = ReadCases(inp, outp);
        var failures = new List<string>();
        foreach (var (text, expected) in cases)
        {
            var got = tok.Encode(text, addSpecial: false, parseSpecial: false);
            if (!got.AsSpan().SequenceEqual(expected))
                failures.Add($"'{Escape(text)}': expected [{string.Join(' ', expected)}] got [{string.Join(' ', got)}]");
        }
        output.WriteLine($"ggml-vocab-{vocab}: {cases.Length - failures.Count}/{cases.Length} cases pass ({tok.Model}, pre={tok.PreTokenizerName ?? "(none)"})");
        foreach (var s in failures) output.WriteLine("  FAIL " + s);
        Assert.True(failures.Count == 0, $"ggml-vocab-{vocab}: {failures.Count} of {cases.Length} cases differ from llama.cpp:\n" + string.Join("\n", failures.Take(10)));
    }

    internal static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\t", "\\t").Replace("\r", "\\r");
}
