namespace OpenWeights.Tests.Fuzz;

/// <summary>The committed seed corpus of the format fuzzers is what <see cref="FormatSeeds"/> writes.</summary>
public class FormatCorpusTests
{
    /// <summary>Rewrites Fuzz/corpus from the writers (set OPENWEIGHTS_WRITE_CORPUS=1 after changing a writer or a seed).</summary>
    [Fact]
    public void Write_corpus_when_asked()
    {
        if (Environment.GetEnvironmentVariable("OPENWEIGHTS_WRITE_CORPUS") != "1")
            Assert.Skip("set OPENWEIGHTS_WRITE_CORPUS=1 to rewrite tests/OpenWeights.Tests/Fuzz/corpus from FormatSeeds");
        FormatSeeds.WriteAll(FormatFuzz.CorpusDir());
    }

    [Fact]
    public void Corpus_is_small_and_complete()
    {
        string dir = FormatFuzz.CorpusDir();
        foreach (var sub in new[] { "gguf", "safetensors", "tokenizer", "checkpoint" })
            Assert.NotEmpty(Directory.GetFiles(Path.Combine(dir, sub)));
        long total = Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(total < 512 * 1024, $"the seed corpus is {total} bytes; keep it small");
    }
}
