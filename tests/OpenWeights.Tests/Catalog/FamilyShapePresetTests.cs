using System.Globalization;
using OpenWeights.Catalog;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Catalog;

/// <summary>`fit MODEL --measure` builds a preset of a catalog model's shape: for the new families it is the real checkpoint's.</summary>
public class FamilyShapePresetTests
{
    private static string Keys(IReadOnlyDictionary<string, object> d) =>
        string.Join("; ", d.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key + "=" + Convert.ToString(kv.Value, CultureInfo.InvariantCulture)));

    [Theory]
    [InlineData("gemma-3-1b-it", "gemma-3-1b")]
    [InlineData("gemma-3-270m-it", "gemma-3-270m")]
    [InlineData("gemma-2-2b-it", "gemma-2-2b")]
    [InlineData("qwen3-0.6b", "qwen3-0.6b")]
    [InlineData("smollm3-3b", "smollm3-3b")]
    [InlineData("olmo-2-0425-1b", "olmo-2-0425-1b")]
    public void CatalogShapeGivesTheRealPreset(string catalogId, string presetName)
    {
        var p = ShapePreset.For(ModelShape.FromCatalog(ModelCatalog.Default.Get(catalogId)));
        var k = SynthPreset.Get(presetName);
        Assert.Equal(
            (k.Architecture, k.Dim, k.Layers, k.Heads, k.KvHeads, k.HeadDim, k.FfnDim, k.VocabSize, k.TiedEmbeddings, k.ContextLength),
            (p.Architecture, p.Dim, p.Layers, p.Heads, p.KvHeads, p.HeadDim, p.FfnDim, p.VocabSize, p.TiedEmbeddings, p.ContextLength));
        Assert.Equal((k.RopeBase, k.RmsEps, k.RopeDims, k.Llama3RopeScaling), (p.RopeBase, p.RmsEps, p.RopeDims, p.Llama3RopeScaling));
        Assert.Equal(Keys(k.Extra), Keys(p.Extra)); // sliding window, soft-caps, local rotary base
        Assert.Equal(k.ChatTemplate, p.ChatTemplate);
        Assert.Equal(k.TokenizerPre, p.TokenizerPre);
    }

    /// <summary>Every catalog model the engine runs and `fit --measure` accepts gets a file the engine would load.</summary>
    [Fact]
    public void EveryMeasurableCatalogShapeIsConsistent()
    {
        int checkedModels = 0;
        foreach (var m in ModelCatalog.Default.Models)
        {
            var shape = ModelShape.FromCatalog(m);
            if (shape.Architecture is null || shape.Moe is not null) continue;
            SynthPreset p;
            try { p = ShapePreset.For(shape); }
            catch (OpenWeightsException) { continue; } // refused with one line (e.g. an unknown dimension)
            checkedModels++;
            int rotated = p.RopeDims ?? p.HeadDim;
            Assert.True(rotated <= p.HeadDim && rotated % 2 == 0, $"{m.Id}: rotary dims {rotated} with head dim {p.HeadDim}");
            foreach (var (name, values) in p.ExtraTensors)
                Assert.True(values.Length == rotated / 2, $"{m.Id}: {name} has {values.Length} factors for {rotated} rotated dims");
            if (shape.LocalAttention is { Kind: "sliding", Window: > 0 } la && p.Extra.ContainsKey("attention.sliding_window"))
                Assert.True(la.Window == Convert.ToInt32(p.Extra["attention.sliding_window"], CultureInfo.InvariantCulture),
                    $"{m.Id}: window {p.Extra["attention.sliding_window"]}, the catalog says {la.Window}");
        }
        Assert.True(checkedModels >= 10, $"only {checkedModels} catalog models checked");
    }

    [Fact]
    public void Phi35MiniRotatesItsWholeHead()
    {
        // microsoft/Phi-3.5-mini-instruct: head_dim 96 and no partial_rotary_factor (Phi-4-mini's 0.75 is its own)
        var p = ShapePreset.For(ModelShape.FromCatalog(ModelCatalog.Default.Get("phi-3.5-mini-instruct")));
        Assert.Equal("phi3", p.Architecture);
        Assert.Equal(96, p.HeadDim);
        Assert.Equal(96, p.RopeDims ?? p.HeadDim);
        Assert.All(p.ExtraTensors.Values, v => Assert.Equal(48, v.Length));
    }

    [Fact]
    public void MeasureSyntheticOfATinyGemma3Shape()
    {
        using var dir = new TempDir();
        var shape = new ModelShape
        {
            Name = "tiny-gemma3-shape", TotalParams = 3_000_000, ActiveParams = 3_000_000, Layers = 6, HiddenSize = 256, Heads = 4, KvHeads = 1,
            HeadDim = 128, Vocab = 1024, ContextLength = 4096, FfnHidden = 512, Architecture = "gemma3", TiedEmbeddings = true,
        };
        var m = FitMeasure.MeasureSynthetic(shape, "q8_0", promptTokens: 8, decodeTokens: 2, threads: 2, tempRoot: dir.Path);
        Assert.Equal("synthetic", m.Source);
        Assert.True(m.FileBytes > 0 && m.DecodeTokensPerSecond > 0 && m.PrefillTokensPerSecond > 0);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }
}
