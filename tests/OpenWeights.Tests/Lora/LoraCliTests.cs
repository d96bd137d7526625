using OpenWeights.Formats.Gguf;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Cli;

namespace OpenWeights.Tests.Lora;

public class LoraCliTests
{
    private static (string Base, string Lora, string Peft) Setup(TempDir dir)
    {
        var basePath = dir.File("base.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), basePath, threads: 2);
        var lora = dir.File("a.gguf");
        var peft = dir.File("peft");
        using var m = DecoderModel.Load(basePath);
        var a = LoraTestUtil.Random(m.Config, rank: 4, alpha: 8, amp: 0.5f);
        GgufLoraAdapter.Write(a, lora, m.Config);
        PeftAdapter.Write(a, peft, m.Config);
        return (basePath, lora, peft);
    }

    [Fact]
    public void RunWithLoraChangesTheGreedyOutputAndScaleZeroDoesNot()
    {
        using var dir = new TempDir();
        var (basePath, lora, peft) = Setup(dir);
        string[] common = ["run", basePath, "Hello world", "-n", "12", "--temp", "0", "-t", "2", "-c", "64"];
        var plain = CliTests.Run(common);
        Assert.True(plain.Code == 0, plain.Err);
        var withLora = CliTests.Run([.. common, "--lora", lora]);
        Assert.True(withLora.Code == 0, withLora.Err);
        var withPeft = CliTests.Run([.. common, "--lora", peft]);
        Assert.True(withPeft.Code == 0, withPeft.Err);
        var zero = CliTests.Run([.. common, "--lora", lora + ":0", "--lora", peft + ":0"]);
        Assert.True(zero.Code == 0, zero.Err);
        Assert.NotEqual(plain.Out, withLora.Out);
        Assert.Equal(withLora.Out, withPeft.Out);   // same adapter, two formats
        Assert.Equal(plain.Out, zero.Out);
    }

    [Fact]
    public void MergeWritesAModelThatGeneratesLikeBasePlusAdapter()
    {
        using var dir = new TempDir();
        var (basePath, lora, _) = Setup(dir);
        var merged = dir.File("merged.gguf");
        var r = CliTests.Run("merge", basePath, lora + ":0.5", "-o", merged, "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("\"merged_tensors\": 14", r.Out);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp-*"));
        string[] gen = ["Hello world", "-n", "12", "--temp", "0", "-t", "2", "-c", "64"];
        var a = CliTests.Run(["run", basePath, .. gen, "--lora", lora + ":0.5"]);
        var b = CliTests.Run(["run", merged, .. gen]);
        Assert.True(a.Code == 0 && b.Code == 0, a.Err + b.Err);
        Assert.Equal(a.Out, b.Out);

        var q = CliTests.Run("merge", basePath, lora, "-o", dir.File("q8.gguf"), "--type", "q8_0");
        Assert.True(q.Code == 0, q.Err);
        using var f = GgufFile.Open(dir.File("q8.gguf"));
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q8_0, f.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.F32, f.GetTensor("token_embd.weight").Type);
    }

    [Fact]
    public void BadAdaptersAreOneLineErrors()
    {
        using var dir = new TempDir();
        var (basePath, _, _) = Setup(dir);
        var junk = dir.File("junk.bin");
        File.WriteAllBytes(junk, [1, 2, 3, 4, 5, 6, 7, 8]);
        var qwen = dir.File("qwen.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f32"), qwen, threads: 2);
        var qwenLora = dir.File("qwen-lora.gguf");
        using (var m = DecoderModel.Load(qwen)) GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config), qwenLora, m.Config);
        // same architecture, wrong shapes: a llama LoRA for a model with another width
        var wrong = dir.File("wrong.gguf");
        var cfg = LoraFormatTests.Config();
        GgufLoraAdapter.Write(LoraTestUtil.Random(cfg), wrong, cfg);
        var wrongPeft = dir.File("wrong-peft");
        PeftAdapter.Write(LoraTestUtil.Random(cfg), wrongPeft);

        foreach (var (adapter, expected) in new[]
        {
            (junk, "not a LoRA adapter"),
            (dir.File("missing.gguf"), "not found"),
            (basePath, "is a model, not a LoRA adapter"),
            (qwenLora, "LoRA for a qwen2 model"),
            (wrong, "does not fit this model"),
            (wrongPeft, "does not fit this model"),
        })
        {
            foreach (var args in new[]
            {
                new[] { "run", basePath, "hi", "-n", "2", "--lora", adapter },
                new[] { "merge", basePath, adapter, "-o", dir.File("out.gguf") },
            })
            {
                var (code, _, err) = CliTests.Run(args);
                Assert.Equal(1, code);
                Assert.StartsWith("openweights: error: ", err);
                Assert.Contains(expected, err);
                Assert.Single(err.Trim().Split('\n'));
            }
        }
        Assert.False(File.Exists(dir.File("out.gguf")));
        var bad = CliTests.Run("merge", basePath, wrong, "-o", dir.File("o.gguf"), "--type", "q3_xx");
        Assert.Equal(1, bad.Code);
        Assert.Contains("-q/--quant: unknown merge type", bad.Err);
    }
}
