using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Lora;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>
/// Fine-tuning on every dense family's tiny preset (random weights in the family's real layout, F32): LoraModel's forward
/// equals the family's inference forward at every position, its LoRA gradients match finite differences, and the adapter
/// it trains, written as a GGUF LoRA and applied by llama.cpp, gives LoraModel's logits.
/// </summary>
public class FamilyTrainingTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12];

    public static readonly TheoryData<string> Presets = new(["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-olmo2"]);

    private static string Write(TempDir dir, string preset)
    {
        var p = dir.File($"{preset}.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), p, threads: 2);
        return p;
    }

    /// <summary>LoraModel over the family model with B random (so the adapter changes the logits), rank 4.</summary>
    private static LoraModel Lora(DecoderModel m, float bScale = 0.05f)
    {
        var lm = new LoraModel(m, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.DefaultFor(m.Config.Architecture) }, seed: 3) { Threads = 2, Context = 64 };
        int s = 50;
        foreach (var t in lm.Trainable) Random(t.Lora!.B.Length, s++, bScale).CopyTo(t.Lora.B, 0);
        return lm;
    }

    private static double RelMaxDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double d = 0, scale = 0;
        for (int i = 0; i < a.Length; i++) { d = Math.Max(d, Math.Abs(a[i] - b[i])); scale = Math.Max(scale, Math.Abs(b[i])); }
        return d / scale;
    }

    /// <summary>LoraModel's logits at every position of the prompt: (n, vocab).</summary>
    private static float[] EveryPosition(LoraModel lm, int[] tokens)
    {
        int v = lm.Config.VocabSize;
        var r = new float[tokens.Length * v];
        for (int len = 1; len <= tokens.Length; len++) lm.LastLogits(tokens.AsSpan(0, len)).CopyTo(r, (len - 1) * v);
        return r;
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void ForwardEqualsInference(string preset)
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, preset), repack: false);
        var lm = new LoraModel(m, new LoraOptions { Targets = LoraTargets.DefaultFor(m.Config.Architecture) }, seed: 1) { Threads = 2, Context = 64 };
        int v = m.Config.VocabSize;
        var theirs = new float[Prompt.Length * v];
        m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, theirs);
        double d = RelMaxDiff(EveryPosition(lm, Prompt), theirs);
        output.WriteLine($"{preset}: LoraModel vs inference, every position: max abs diff / max |logit| = {d:E2}");
        Assert.True(d < 1e-5, $"{preset}: {d}");
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void LoraGradientsMatchFiniteDifferences(string preset)
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, preset), repack: false);
        var lm = Lora(m, 0.3f);
        lm.GeluFormula = true; // GeGLU families: finite differences of ggml's F16 GELU table would be steps
        int n = 10;
        var rng = new Random(5);
        int[] tokens = Enumerable.Range(0, n).Select(_ => rng.Next(m.Config.VocabSize)).ToArray();
        int[] targets = Enumerable.Range(0, n).Select(_ => rng.Next(m.Config.VocabSize)).ToArray();
        bool[] mask = Enumerable.Range(0, n).Select(i => i != 1).ToArray();
        int[] start = [0, 0, 0, 0, 0, 5, 5, 5, 5, 5];
        float norm = 1f / mask.Count(x => x);
        double Loss() => lm.Step(tokens, targets, mask, start, norm, 0, backward: false);
        lm.ZeroGrad();
        double loss = lm.Step(tokens, targets, mask, start, norm, 0);
        Assert.Equal(Loss(), loss, 12);
        double max = 0; int k = 0;
        var all = new List<string>();
        foreach (var t in lm.Trainable)
        {
            double ea = RelError(Loss, t.Lora!.A, t.GradA, Largest(t.GradA, 32, 4, k++));
            double eb = RelError(Loss, t.Lora.B, t.GradB, Largest(t.GradB, 32, 4, k++));
            max = Math.Max(max, Math.Max(ea, eb));
            all.Add($"{t.Lora.Target}: A {ea:E1} B {eb:E1}");
        }
        output.WriteLine($"{preset}: {lm.Trainable.Count} adapted projections, worst relative gradient error {max:E2}");
        Assert.True(max < 2e-2, string.Join("; ", all));
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void AdapterAppliedByLlamaCppGivesOurLogits(string preset)
    {
        using var dir = new TempDir();
        var path = Write(dir, preset);
        var lora = dir.File("adapter.gguf");
        float[] ours, baseOurs;
        using (var m = DecoderModel.Load(path, repack: false))
        {
            var lm = Lora(m);
            GgufLoraAdapter.Write(lm.Adapter, lora, m.Config);
            ours = EveryPosition(lm, Prompt);
            int v = m.Config.VocabSize;
            baseOurs = new float[Prompt.Length * v];
            m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, baseOurs);
        }
        var theirs = LoraModelTests.LlamaCppLogits(path, Prompt, (lora, 1f));
        double d = RelMaxDiff(ours, theirs), effect = RelMaxDiff(baseOurs, ours);
        output.WriteLine($"{preset}: LoraModel vs llama.cpp with our GGUF LoRA, every position: max abs diff / max |logit| = {d:E2} (adapter effect {effect:E2})");
        Assert.True(effect > 1e-2, $"the adapter changes logits by only {effect}");
        Assert.True(d < 1e-5, $"{preset}: {d}");
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void TrainingLowersTheLossAndWritesAdaptersTheModelLoads(string preset)
    {
        using var dir = new TempDir();
        var path = Write(dir, preset);
        using var m = DecoderModel.Load(path, repack: false);
        int[] pattern = [.. Enumerable.Range(0, 17).Select(i => (i * 37 + 5) % m.Config.VocabSize)];
        var seqs = Enumerable.Range(0, 2).Select(_ => new PackedSequence(pattern[..16], pattern[1..], Enumerable.Repeat(true, 16).ToArray(), new int[16])).ToList();
        var lm = new LoraModel(m, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.DefaultFor(m.Config.Architecture) }, 1) { Threads = 2 };
        var trainer = new LoraTrainer(lm, new TrainOptions { Epochs = 25, LearningRate = 3e-2f, Seed = 1 }, seqs, seqs);
        double before = trainer.Evaluate()!.Value;
        var outDir = dir.File("out");
        trainer.Run(outDir);
        double after = trainer.Evaluate()!.Value;
        output.WriteLine($"{preset}: validation loss {before:F3} -> {after:F3} after {trainer.Step} steps");
        Assert.True(after < before - 1.0, $"validation loss {before:F3} -> {after:F3}");
        // both adapter files (PEFT and GGUF, as tune exports them) load against the base (names and shapes of this family)
        // and equal what was trained
        trainer.ExportAdapter(outDir);
        foreach (var f in new[] { Path.Combine(outDir, LoraTrainer.GgufAdapterFile), outDir })
        {
            var a = LoraLoader.Load(f, m.Source, m.Config);
            Assert.Equal(lm.Adapter.Weights.Keys.Order(), a.Weights.Keys.Order());
            foreach (var (k, w) in lm.Adapter.Weights) Assert.Equal(w.B, a.Weights[k].B);
        }
    }
}
