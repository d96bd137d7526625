using OpenWeights.Models;
using OpenWeights.Tensors.Quant;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

/// <summary>Temporaries a kill during an atomic write leaves behind are removed when a run starts there, and only those (issue 19).</summary>
public class RunFolderTests
{
    [Theory]
    [InlineData("checkpoint.safetensors.tmp-1a2b3c4d", true)]          // SafetensorsWriter: 8 hex digits
    [InlineData("adapter.gguf.tmp-12345-0f0e0d0c", true)]              // GgufWriter: pid-hex
    [InlineData("adapter_config.json.tmp-4242", true)]                 // PEFT config: pid
    [InlineData("adapter_model.safetensors.tmp-deadbeef", true)]
    [InlineData("metrics.jsonl.tmp-77", true)]
    [InlineData("checkpoint.safetensors", false)]
    [InlineData("checkpoint.safetensors.tmp-1a2b.bak", false)]
    [InlineData("checkpoint.safetensors.tmp-", false)]
    [InlineData("model.safetensors.tmp-1a2b3c4d", false)]              // not a file a run writes
    [InlineData("notes.tmp-1", false)]
    [InlineData("checkpoint.safetensors.tmp-XYZ", false)]
    public void OnlyOurTemporaryNamesMatch(string name, bool ours) => Assert.Equal(ours, RunFolder.IsTemporary(name));

    [Fact]
    public void ARunRemovesStaleTemporariesAndNothingElse()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, "llama", GgmlType.Q8_0);
        using var model = DecoderModel.Load(path);
        var outDir = dir.File("out");
        Directory.CreateDirectory(outDir);
        string[] stale = ["checkpoint.safetensors.tmp-1a2b3c4d", "adapter.gguf.tmp-999-abcdef01", "metrics.jsonl.tmp-31337"];
        string[] others = ["notes.tmp-1", "checkpoint.safetensors.tmp-1a2b.bak", "model.safetensors.tmp-1a2b3c4d", "data.jsonl"];
        foreach (var f in stale.Concat(others)) File.WriteAllText(Path.Combine(outDir, f), "planted");
        Directory.CreateDirectory(Path.Combine(outDir, "sub"));
        File.WriteAllText(Path.Combine(outDir, "sub", "checkpoint.safetensors.tmp-1a2b3c4d"), "not this folder");

        var seq = new PackedSequence([1, 2, 3], [2, 3, 4], [true, true, true], [0, 0, 0]);
        var trainer = new LoraTrainer(new LoraModel(model, new LoraOptions { Rank = 2, Alpha = 4, Targets = ["q_proj"] }, 1) { Threads = 1 },
            new TrainOptions { Epochs = 1, Seed = 1 }, [seq], []);
        trainer.Run(outDir);
        trainer.ExportAdapter(outDir);

        foreach (var f in stale) Assert.False(File.Exists(Path.Combine(outDir, f)), f);
        foreach (var f in others) Assert.Equal("planted", File.ReadAllText(Path.Combine(outDir, f)));
        Assert.True(File.Exists(Path.Combine(outDir, "sub", "checkpoint.safetensors.tmp-1a2b3c4d")));
        // every write of the run went through a temporary and a rename: none is left
        Assert.DoesNotContain(Directory.GetFiles(outDir), f => RunFolder.IsTemporary(Path.GetFileName(f)));
        Assert.Equal("checkpoint.safetensors", RunFolder.ExistingRun(outDir));
    }

    [Fact]
    public void ClearRemovesOnlyTheRunFiles()
    {
        using var dir = new TempDir();
        foreach (var f in RunFolder.RunFiles) File.WriteAllText(dir.File(f), "x");
        File.WriteAllText(dir.File("train.jsonl"), "mine");
        RunFolder.Clear(dir.Path);
        Assert.Null(RunFolder.ExistingRun(dir.Path));
        Assert.Equal(["train.jsonl"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }
}
