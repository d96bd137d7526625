using OpenWeights.Models;
using OpenWeights.Tensors.Quant;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>Whole-model gradient check of the LoRA parameters on tiny llama and qwen2 models (dim 32, 2 layers).</summary>
public class LoraModelGradientTests
{
    private static LoraModel Build(string path, string arch, GgmlType type, float dropout)
    {
        WriteTinyModel(path, arch, type);
        var model = DecoderModel.Load(path);
        var lm = new LoraModel(model, new LoraOptions { Rank = 4, Alpha = 8, Dropout = dropout }, seed: 7) { Threads = 2 };
        // B starts at zero (PEFT); give it values so that every gradient path is exercised.
        int s = 100;
        foreach (var m in lm.Trainable) Random(m.Lora!.B.Length, s++, 0.3f).CopyTo(m.Lora.B, 0);
        return lm;
    }

    [Theory]
    [InlineData("llama", GgmlType.F32, 0f)]
    [InlineData("qwen2", GgmlType.Q8_0, 0f)]
    [InlineData("llama", GgmlType.F16, 0.2f)]
    public void LoraGradientsMatchFiniteDifferences(string arch, GgmlType type, float dropout)
    {
        using var dir = new TempDir();
        var lm = Build(dir.File("tiny.gguf"), arch, type, dropout);
        int n = 10;
        var rng = new Random(3);
        int[] tokens = Enumerable.Range(0, n).Select(_ => rng.Next(64)).ToArray();
        int[] targets = Enumerable.Range(0, n).Select(_ => rng.Next(64)).ToArray();
        bool[] mask = Enumerable.Range(0, n).Select(i => i != 2).ToArray();
        int[] start = [0, 0, 0, 0, 4, 4, 4, 4, 4, 4];
        float norm = 1f / mask.Count(m => m);
        const ulong seed = 99;
        double Loss() => lm.Step(tokens, targets, mask, start, norm, seed, backward: false);

        lm.ZeroGrad();
        double loss = lm.Step(tokens, targets, mask, start, norm, seed);
        Assert.Equal(Loss(), loss, 12);
        var worst = new List<string>();
        double max = 0;
        int k = 0;
        foreach (var m in lm.Trainable)
        {
            double ea = RelError(Loss, m.Lora!.A, m.GradA, Sample(m.Lora.A.Length, 6, k++));
            double eb = RelError(Loss, m.Lora.B, m.GradB, Sample(m.Lora.B.Length, 6, k++));
            max = Math.Max(max, Math.Max(ea, eb));
            worst.Add($"{m.Lora.Target}: A {ea:E1} B {eb:E1}");
        }
        Assert.True(max < 2e-2, "relative errors: " + string.Join("; ", worst));

        // Activation checkpointing changes memory, not results.
        var gA = lm.Trainable.Select(m => (float[])m.GradA!.Clone()).ToArray();
        lm.Checkpointing = false; lm.ZeroGrad();
        Assert.Equal(loss, lm.Step(tokens, targets, mask, start, norm, seed), 12);
        for (int i = 0; i < gA.Length; i++) Assert.Equal(gA[i], lm.Trainable[i].GradA!);
    }

    [Fact]
    public void ForwardMatchesTheInferenceEngineWhenBIsZero()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        WriteTinyModel(path, "qwen2", GgmlType.F32);
        using var model = DecoderModel.Load(path);
        var lm = new LoraModel(model, new LoraOptions(), seed: 1) { Threads = 1 };
        int[] tokens = [1, 5, 9, 33, 2, 7];
        var ours = lm.LastLogits(tokens);
        var session = new OpenWeights.Inference.InferenceSession(model, 16, threads: 1, cacheTypes: OpenWeights.Models.Common.KvCacheTypes.F32); // the training forward keeps F32 keys and values
        var theirs = session.EvaluatePrompt(tokens).ToArray();
        for (int i = 0; i < ours.Length; i++) Assert.Equal(theirs[i], ours[i], 1e-4f);
    }
}
