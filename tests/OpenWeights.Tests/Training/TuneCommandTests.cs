using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Cli;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

public class TuneCommandTests
{
    /// <summary>Also the proof that the old spellings --out and --seq-len still parse (hidden aliases of -o/--output, -c/--ctx).</summary>
    [Fact]
    public void TunesCheckpointsResumesAndWritesMetrics()
    {
        using var dir = new TempDir();
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), model);
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 8).Select(i => $"{{\"prompt\":\"Question {i}:\",\"completion\":\" answer {i * 7}\"}}"));
        var outDir = dir.File("out");
        var (code, _, err) = CliTests.Run("tune", model, "--data", data, "--out", outDir, "--max-steps", "3", "--seq-len", "32",
            "--checkpoint-every", "2", "--val-split", "0.25", "--rank", "4", "--targets", "q_proj,v_proj", "--threads", "2", "--lr", "1e-3");
        Assert.True(code == 0, err);
        Assert.Contains("step 3/3", err);
        Assert.True(File.Exists(Path.Combine(outDir, LoraTrainer.CheckpointFile)));
        var metrics = File.ReadAllLines(Path.Combine(outDir, LoraTrainer.MetricsFile));
        Assert.Equal(3, metrics.Length);
        Assert.Contains("\"val_loss\"", metrics[^1]);

        (code, _, err) = CliTests.Run("tune", model, "--data", data, "--out", outDir, "--max-steps", "4", "--seq-len", "32",
            "--val-split", "0.25", "--rank", "4", "--targets", "q_proj,v_proj", "--threads", "2", "--lr", "1e-3", "--resume");
        Assert.True(code == 0, err);
        Assert.Contains("resuming at step 3", err);
        Assert.True(File.Exists(Path.Combine(outDir, OpenWeights.Lora.PeftAdapter.ConfigFile)));
        Assert.True(File.Exists(Path.Combine(outDir, OpenWeights.Lora.PeftAdapter.WeightsFile)));
        Assert.True(File.Exists(Path.Combine(outDir, LoraTrainer.GgufAdapterFile)));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(outDir, LoraTrainer.MetricsFile)).Length);

        // A different rank cannot resume that checkpoint.
        (code, _, err) = CliTests.Run("tune", model, "--data", data, "--out", outDir, "--rank", "8", "--resume", "--seq-len", "32");
        Assert.Equal(1, code);
        Assert.Contains("rank 4", err);
    }

    [Fact]
    public void BrokenDataFileIsRefusedWithLineNumbers()
    {
        using var dir = new TempDir();
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f16"), model);
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, ["{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}", "not json", "{\"foo\":1}"]);
        var (code, _, err) = CliTests.Run("tune", model, "--data", data, "--out", dir.File("out"));
        Assert.Equal(1, code);
        Assert.Contains("2 malformed lines", err);
        Assert.Contains("line 2", err);
        Assert.Contains("line 3", err);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Theory]
    [InlineData("tiny-gemma3", "q_proj")]
    [InlineData("tiny-phi3", "qkv_proj")]
    [InlineData("tiny-olmo2", "gate_proj")]
    public void TunesEveryDenseFamilyOnItsOwnProjections(string preset, string target)
    {
        using var dir = new TempDir();
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("q8_0"), model);
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 6).Select(i => $"{{\"prompt\":\"Question {i}:\",\"completion\":\" answer {i * 7}\"}}"));
        var outDir = dir.File("out");
        var (code, _, err) = CliTests.Run("tune", model, "--data", data, "-o", outDir, "--max-steps", "2", "-c", "32", "--val-split", "0",
            "--rank", "2", "--threads", "2", "--lr", "1e-3");
        Assert.True(code == 0, err);
        Assert.Contains("step 2/2", err);
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, OpenWeights.Lora.PeftAdapter.ConfigFile)))!;
        Assert.Contains(target, cfg["target_modules"]!.AsArray().Select(x => (string)x!));
        Assert.True(File.Exists(Path.Combine(outDir, LoraTrainer.GgufAdapterFile)));
    }

    [Theory]
    [InlineData("tiny-qwen3moe")]
    [InlineData("tiny-phimoe")]
    public void TunesMixtureOfExpertsModelsOnTheirAttention(string preset)
    {
        using var dir = new TempDir();
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("q8_0"), model);
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 6).Select(i => $"{{\"prompt\":\"Question {i}:\",\"completion\":\" answer {i * 7}\"}}"));
        var outDir = dir.File("out");
        var (code, _, err) = CliTests.Run("tune", model, "--data", data, "-o", outDir, "--max-steps", "2", "-c", "32", "--val-split", "0",
            "--rank", "2", "--threads", "2", "--lr", "1e-3");
        Assert.True(code == 0, err);
        Assert.Contains("step 2/2", err);
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, OpenWeights.Lora.PeftAdapter.ConfigFile)))!;
        Assert.Equal(["q_proj", "k_proj", "v_proj", "o_proj"], cfg["target_modules"]!.AsArray().Select(x => (string)x!));
        Assert.True(File.Exists(Path.Combine(outDir, LoraTrainer.GgufAdapterFile)));

        // an expert target: one line naming it
        (code, _, err) = CliTests.Run("tune", model, "--data", data, "-o", dir.File("out2"), "--max-steps", "1", "-c", "32", "--targets", "q_proj,gate_proj");
        Assert.Equal(1, code);
        Assert.Contains("'gate_proj'", err);
        Assert.Contains("mixture of experts", err);
    }
}
