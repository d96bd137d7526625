using System.Text.Json.Nodes;
using OpenWeights.Formats;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the tokenizer.json loader (tokenizer.json -> GGUF tokenizer metadata -> <see cref="Tokenizer"/>): JSON
/// mutations of the seeds in corpus/tokenizer, each loaded and, when it loads, used to encode and decode a text.
/// </summary>
public class TokenizerJsonFuzzTests(ITestOutputHelper output)
{
    private sealed class Metadata(string path) : IModelMetadata
    {
        public Dictionary<string, object> Values { get; } = new(StringComparer.Ordinal);
        public string Path => path;
        IReadOnlyDictionary<string, object> IModelMetadata.Metadata => Values;
    }

    /// <summary>Loads tokenizer.json (+ tokenizer_config.json when present) from a folder and runs the tokenizer.</summary>
    public static bool Load(string dir, int vocabSize)
    {
        var m = new Metadata(Path.Combine(dir, "tokenizer.json"));
        HfTokenizer.AddMetadata(dir, vocabSize, (k, v) => m.Values[k] = v);
        var tok = Tokenizer.FromGguf(m);
        var ids = tok.Encode("hello world <s> <|begin_of_text|> ab naïve", addSpecial: true, parseSpecial: true);
        _ = tok.Decode(ids);
        return true;
    }

    private static int VocabFor(string seed) => Path.GetFileName(seed).StartsWith("sentencepiece", StringComparison.Ordinal) ? 16 : FormatSeeds.Vocab;

    [Fact]
    public void Seeds_load()
    {
        using var dir = new TempDir();
        var seeds = FormatFuzz.Seeds("tokenizer");
        Assert.NotEmpty(seeds);
        foreach (var s in seeds)
        {
            File.Copy(s, dir.File("tokenizer.json"), overwrite: true);
            Assert.True(Load(dir.Path, VocabFor(s)), s);
        }
    }

    [Fact]
    public void Mutated_tokenizer_json_loads_or_fails_with_one_line()
    {
        using var dir = new TempDir();
        var seeds = FormatFuzz.Seeds("tokenizer").Select(s => (Json: JsonNode.Parse(File.ReadAllBytes(s))!, Vocab: VocabFor(s))).ToList();
        string path = dir.File("tokenizer.json");
        byte[]? last = null;
        FormatFuzz.Run("tokenizer.json", (r, _) =>
        {
            var (json, vocab) = seeds[r.Next(seeds.Count)];
            File.WriteAllBytes(path, last = FormatMutator.Json(json, r));
            return Load(dir.Path, vocab);
        }, iterations: 2000, seconds: 3, log: output, lastInput: () => last);
    }

    [Fact]
    public void Regression_inputs_fail_with_one_line()
    {
        using var dir = new TempDir();
        foreach (var file in FormatFuzz.Regressions("tokenizer"))
        {
            File.Copy(file, dir.File("tokenizer.json"), overwrite: true);
            var e = Record.Exception(() => Load(dir.Path, FormatSeeds.Vocab));
            Assert.True(e is null || FormatFuzz.IsUserError(e), $"{Path.GetFileName(file)}: {e}");
        }
    }
}
