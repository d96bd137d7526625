using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Formats;

namespace OpenWeights.Tests.Catalog;

/// <summary>`fit FILE|DIR` from the file's own shape and bytes; `fit --measure` with our engine.</summary>
public class FitFileAndMeasureTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void Fit_a_gguf_file_and_a_checkpoint_folder_uses_their_shape_and_bytes()
    {
        using var dir = new TempDir();
        string gguf = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("q8_0"), gguf, threads: 2);
        long bytes;
        using (var g = GgufFile.Open(gguf))
        {
            var shape = ModelShape.FromSource(g);
            bytes = g.Tensors.Sum(t => t.ByteSize);
            Assert.Equal("file", shape.Source);
            Assert.Equal(bytes, shape.WeightBytes);
            Assert.Equal(512, shape.FfnHidden);
            Assert.Equal("Q8_0", shape.WeightsQuant);
            Assert.Equal("qwen2", shape.Architecture);
        }
        var r = Run("fit", gguf, "--json");
        Assert.True(r.Code == 0, r.Err);
        using (var doc = JsonDocument.Parse(r.Out))
        {
            Assert.Equal("file", doc.RootElement.GetProperty("source").GetString());
            Assert.Equal(bytes, doc.RootElement.GetProperty("memory").GetProperty("weights_bytes").GetInt64());
        }

        string f32 = dir.File("f32.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), f32, threads: 2);
        HfFixture.Write(f32, hf, dtype: OpenWeights.Formats.Safetensors.SafetensorsDType.BF16);
        var h = Run("fit", hf);
        Assert.True(h.Code == 0, h.Err);
        Assert.Contains("BF16", h.Out);
    }

    [Fact]
    public void Measure_a_file_reports_speed_and_peak_memory()
    {
        using var dir = new TempDir();
        string gguf = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), gguf, threads: 2);
        var r = Run("fit", gguf, "--measure", "--measure-prompt", "8", "--measure-tokens", "2", "-t", "2", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var m = doc.RootElement.GetProperty("measurement");
        Assert.Equal("file", m.GetProperty("source").GetString());
        Assert.True(m.GetProperty("prefill_tokens_per_second").GetDouble() > 0);
        Assert.True(m.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.True(m.GetProperty("peak_rss_bytes").GetInt64() > 0);
    }

    [Fact]
    public void Measure_a_shape_writes_a_synthetic_model_and_deletes_it()
    {
        using var dir = new TempDir();
        var shape = new ModelShape
        {
            Name = "tiny", TotalParams = 3_000_000, ActiveParams = 3_000_000, Layers = 2, HiddenSize = 256, Heads = 4, KvHeads = 2,
            Vocab = 1024, ContextLength = 2048, FfnHidden = 512, Architecture = "llama", TiedEmbeddings = true,
        };
        var m = FitMeasure.MeasureSynthetic(shape, "q4_0", promptTokens: 8, decodeTokens: 2, threads: 2, tempRoot: dir.Path);
        Assert.Equal("synthetic", m.Source);
        Assert.True(m.FileBytes > 0 && m.DecodeTokensPerSecond > 0 && m.PrefillTokensPerSecond > 0);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Presets_from_catalog_shapes()
    {
        var qwen = ShapePreset.For(ModelShape.FromCatalog(ModelCatalog.Default.Get("qwen2.5-0.5b-instruct")));
        var known = SynthPreset.Get("qwen2.5-0.5b");
        Assert.Equal((known.Architecture, known.Dim, known.Layers, known.Heads, known.KvHeads, known.FfnDim, known.VocabSize, known.TiedEmbeddings),
            (qwen.Architecture, qwen.Dim, qwen.Layers, qwen.Heads, qwen.KvHeads, qwen.FfnDim, qwen.VocabSize, qwen.TiedEmbeddings));

        var notes = new List<string>();
        var llama = ShapePreset.For(ModelShape.FromCatalog(ModelCatalog.Default.Get("llama-3.1-8b-instruct")), notes);
        Assert.Equal("llama", llama.Architecture);
        Assert.Equal(0, llama.FfnDim % 256);
        Assert.InRange(llama.FfnDim, 12288, 16384); // the real model: 14336
        Assert.Contains(notes, n => n.Contains("feed-forward"));

        // an architecture the engine does not run cannot be measured: one line
        var v3 = ModelCatalog.Default.Get("deepseek-v3");
        var e = Assert.Throws<OpenWeightsException>(() => ShapePreset.For(ModelShape.FromCatalog(v3 with { Architecture = v3.Architecture! with { GgufArchitecture = "mamba" } })));
        Assert.Contains("cannot be measured", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // DeepSeek-V3's catalog shape (MLA ranks, no KV heads) is the exact-shape preset
        var ds = ShapePreset.For(ModelShape.FromCatalog(v3));
        Assert.Equal(("deepseek2", 61, 7168, 256), (ds.Architecture, ds.Layers, ds.Dim, ds.ExpertCount));
        Assert.Equal(512, ds.Mla!.KvLoraRank);
    }
}
