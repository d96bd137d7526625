using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

public class TrainerTests
{
    private static List<PackedSequence> RandomSequences(int count, int len, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            var toks = Enumerable.Range(0, len + 1).Select(_ => r.Next(64)).ToArray();
            return new PackedSequence(toks[..len], toks[1..], Enumerable.Repeat(true, len).ToArray(), new int[len]);
        }).ToList();
    }

    private static float[][] Snapshot(LoraModel lm) => lm.Trainable.SelectMany(m => new[] { (float[])m.Lora!.A.Clone(), (float[])m.Lora.B.Clone() }).ToArray();

    [Fact]
    public void ResumeAfterCancellationContinuesBitExactly()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, "llama", GgmlType.Q8_0);
        using var model = DecoderModel.Load(path);
        var train = RandomSequences(8, 12, 1); var val = RandomSequences(2, 12, 2);
        var opts = new TrainOptions { Epochs = 2, LearningRate = 1e-2f, Batch = 2, GradAccum = 2, Seed = 5, WeightDecay = 0.01f, MaxGradNorm = 0.5 };
        var lora = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1f };

        var straight = new LoraTrainer(new LoraModel(model, lora, 5) { Threads = 2 }, opts, train, val);
        straight.Run(dir.File("a"));
        Assert.Equal(4, straight.TotalSteps);

        var cts = new CancellationTokenSource();
        var first = new LoraTrainer(new LoraModel(model, lora, 5) { Threads = 2 }, opts, train, val);
        Assert.Throws<OperationCanceledException>(() => first.Run(dir.File("b"), p => { if (p.Step == 2) cts.Cancel(); }, cts.Token));
        Assert.Equal(2, first.Step);

        var resumed = new LoraTrainer(new LoraModel(model, lora, 999) { Threads = 2 }, opts, train, val);
        Assert.True(resumed.TryResume(dir.File("b")));
        Assert.Equal(2, resumed.Step);
        resumed.Run(dir.File("b"));

        var a = Snapshot(straight.Model); var b = Snapshot(resumed.Model);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i]);
        Assert.NotEqual(0f, a.Max(x => x.Max(MathF.Abs)));
        var metrics = File.ReadAllLines(Path.Combine(dir.File("b"), LoraTrainer.MetricsFile));
        Assert.Equal(4, metrics.Length);
        Assert.Equal(File.ReadAllLines(Path.Combine(dir.File("a"), LoraTrainer.MetricsFile)).Select(StripSpeed), metrics.Select(StripSpeed));
    }

    [Fact]
    public void ACancelledStepLeavesAdapterAndOptimiserAsAfterThePreviousStep()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, "llama", GgmlType.Q4_0);
        using var model = DecoderModel.Load(path);
        var train = RandomSequences(6, 12, 3);
        var opts = new TrainOptions { Epochs = 1, LearningRate = 1e-2f, Batch = 2, Seed = 7 };
        var trainer = new LoraTrainer(new LoraModel(model, new LoraOptions { Rank = 4, Alpha = 8 }, 7) { Threads = 2 }, opts, train, []);
        trainer.TrainStep();
        var before = Snapshot(trainer.Model);
        var m = trainer.Optimizer.M.Select(x => (float[])x.Clone()).ToArray();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => trainer.TrainStep(cts.Token));
        Assert.Equal(1, trainer.Step);
        var after = Snapshot(trainer.Model);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
        for (int i = 0; i < m.Length; i++) Assert.Equal(m[i], trainer.Optimizer.M[i]);

        // Run on a cancelled token after a completed step checkpoints nothing new and leaves no partial file behind.
        Assert.Throws<OperationCanceledException>(() => trainer.Run(dir.File("out"), null, cts.Token));
        Assert.False(File.Exists(Path.Combine(dir.File("out"), LoraTrainer.CheckpointFile)));
        Assert.Empty(Directory.GetFiles(dir.File("out"), "*.tmp*"));
    }

    private static string StripSpeed(string line) => System.Text.RegularExpressions.Regex.Replace(line, "\"tokens(_per_s)?\":[0-9.]+,?", "");

    [Fact]
    public void LossFallsOnARepeatedPattern()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, "qwen2", GgmlType.F16);
        using var model = DecoderModel.Load(path);
        int[] pattern = [.. Enumerable.Range(0, 17).Select(i => (i * 7) % 64)];
        var seqs = Enumerable.Range(0, 4).Select(_ => new PackedSequence(pattern[..16], pattern[1..], Enumerable.Repeat(true, 16).ToArray(), new int[16])).ToList();
        var trainer = new LoraTrainer(new LoraModel(model, new LoraOptions { Rank = 4, Alpha = 8 }, 1) { Threads = 2 },
            new TrainOptions { Epochs = 10, LearningRate = 3e-2f, Seed = 1 }, seqs, seqs);
        double before = trainer.Evaluate()!.Value;
        trainer.Run(dir.File("out"));
        double after = trainer.Evaluate()!.Value;
        Assert.True(after < before * 0.5, $"validation loss {before:F3} -> {after:F3}");
    }

    [Fact]
    public void ScheduleWarmsUpThenDecays()
    {
        var s = new LrSchedule(1f, 10, 110, 0.1f);
        Assert.Equal(0.1f, s.At(0), 1e-6f);
        Assert.Equal(1f, s.At(9), 1e-6f);
        Assert.Equal(1f, s.At(10), 1e-6f);
        Assert.Equal(0.55f, s.At(60), 1e-5f);
        Assert.Equal(0.1f, s.At(110), 1e-6f);
    }

    [Fact]
    public void AdamWMatchesTorchOnOneParameter()
    {
        // torch.optim.AdamW(lr=0.1, weight_decay=0.01), p=1, grads 0.5 then -0.25: p = 0.899, then 0.85291006...
        var p = new float[] { 1f }; var g = new float[] { 0.5f };
        var opt = new AdamW([(p, g)]) { WeightDecay = 0.01f };
        opt.Step(0.1f);
        Assert.Equal(0.899f, p[0], 1e-6f);
        g[0] = -0.25f;
        opt.Step(0.1f);
        // step 2: p *= (1 - 0.001); m = 0.9*0.05 - 0.025 = 0.02; v = 0.999*2.5e-4 + 1e-3*0.0625 = 3.1225e-4
        double pp = 0.899 * (1 - 0.001);
        double mh = 0.02 / (1 - 0.81), vh = 3.1225e-4 / (1 - 0.998001);
        pp -= 0.1 * mh / (Math.Sqrt(vh) + 1e-8);
        Assert.Equal(pp, p[0], 5);
    }

    [Fact]
    public void ClippingBoundsTheGlobalNorm()
    {
        var g1 = new float[] { 3f }; var g2 = new float[] { 4f };
        var opt = new AdamW([(new float[1], g1), (new float[1], g2)]);
        Assert.Equal(5.0, opt.ClipGradNorm(1.0), 6);
        Assert.Equal(1.0, opt.GradNorm(), 4);
    }
}

public class TrainingDataTests
{
    private static Tokenizer SynthTokenizer(TempDir dir)
    {
        var path = dir.File("tok.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f32"), path);
        return Tokenizer.FromGguf(path);
    }

    [Fact]
    public void ChatLossCoversAssistantTurnsOnly()
    {
        using var dir = new TempDir();
        var tok = SynthTokenizer(dir);
        var file = dir.File("chat.jsonl");
        File.WriteAllText(file, """
            {"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"},{"role":"assistant","content":"Hello friend"},{"role":"user","content":"Bye"},{"role":"assistant","content":"See you"}]}
            """);
        var ex = Assert.Single(TrainingData.Load(file, tok));
        string trained = string.Concat(ex.Tokens.Where((t, i) => ex.Loss[i]).Select(t => tok.TokenPiece(t)));
        string all = string.Concat(ex.Tokens.Select(t => tok.TokenPiece(t)));
        Assert.Contains("Hello", trained.Replace("Ġ", " "));
        Assert.Contains("See", trained.Replace("Ġ", " "));
        Assert.DoesNotContain("Hi", trained);
        Assert.DoesNotContain("Bye", trained);
        Assert.DoesNotContain("brief", trained);
        Assert.Contains("<|im_end|>", trained);   // the model learns to end its turn
        Assert.Contains("brief", all);
        // Same tokens as encoding the full render at once.
        var full = new OpenWeights.Inference.ChatTemplates.ChatTemplate(tok.ChatTemplate!).Render(
            [OpenWeights.Inference.ChatTemplates.ChatTemplate.Message("system", "Be brief."), OpenWeights.Inference.ChatTemplates.ChatTemplate.Message("user", "Hi there"),
             OpenWeights.Inference.ChatTemplates.ChatTemplate.Message("assistant", "Hello friend"), OpenWeights.Inference.ChatTemplates.ChatTemplate.Message("user", "Bye"),
             OpenWeights.Inference.ChatTemplates.ChatTemplate.Message("assistant", "See you")], addGenerationPrompt: false);
        Assert.Equal(tok.Encode(full, addSpecial: false, parseSpecial: true), ex.Tokens);
    }

    [Fact]
    public void PromptCompletionTrainsOnCompletionAndEos()
    {
        using var dir = new TempDir();
        var tok = SynthTokenizer(dir);
        var file = dir.File("pc.jsonl");
        File.WriteAllText(file, "{\"prompt\":\"Question: 2+2?\",\"completion\":\" 4\"}\n");
        var ex = Assert.Single(TrainingData.Load(file, tok));
        Assert.True(ex.Loss[^1]);
        Assert.Equal(tok.Eos, ex.Tokens[^1]);
        Assert.False(ex.Loss[0]);
        int firstTrained = Array.IndexOf(ex.Loss, true);
        Assert.Equal(tok.Encode("Question: 2+2?", addSpecial: false).Length, firstTrained);
    }

    [Fact]
    public void MalformedLinesAreListedAndTheRunRefused()
    {
        using var dir = new TempDir();
        var tok = SynthTokenizer(dir);
        var file = dir.File("bad.jsonl");
        File.WriteAllLines(file, [
            "{\"prompt\":\"a\",\"completion\":\"b\"}",
            "{\"prompt\":\"a\",",
            "{\"prompt\":\"a\",\"completion\":\"b\"}",
            "[1,2]",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        ]);
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(file, tok));
        Assert.Contains("3 malformed", e.Message);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("line 4", e.Message);
        Assert.Contains("line 5", e.Message);
        Assert.DoesNotContain("line 1:", e.Message);
    }

    [Fact]
    public void PackingKeepsDocumentsWholeAndIsolated()
    {
        var a = new TrainExample([1, 2, 3, 4], [false, true, true, true]);
        var b = new TrainExample([1, 5, 6], [false, true, true]);
        var c = new TrainExample([1, 7, 8, 9, 10, 11], [false, true, true, true, true, true]);
        var seqs = TrainingData.Pack([a, b, c], seqLen: 6);
        Assert.Equal(2, seqs.Count);
        Assert.Equal([1, 2, 3, 1, 5], seqs[0].Tokens);
        Assert.Equal([2, 3, 4, 5, 6], seqs[0].Targets);
        Assert.Equal([0, 0, 0, 3, 3], seqs[0].Start);
        Assert.Equal([1, 7, 8, 9, 10], seqs[1].Tokens);
        var both = PackedSequence.Concat(seqs);
        Assert.Equal(5, both.Start[5]);
    }
}

public class LoraInitTests
{
    [Theory]
    [InlineData(false, 16f / 8)]
    [InlineData(true, 16f / 2.828427f)]
    public void PeftInitAndScaling(bool rslora, float scale)
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, "llama", OpenWeights.Tensors.Quant.GgmlType.F32);
        using var model = OpenWeights.Models.DecoderModel.Load(path);
        var lm = new LoraModel(model, new LoraOptions { Rank = 8, Alpha = 16, UseRsLora = rslora, Targets = ["q_proj", "down_proj"] }, 3);
        Assert.Equal(4, lm.Trainable.Count);                       // 2 layers x 2 targets
        Assert.Equal(scale, lm.Trainable[0].Scale, 1e-5f);
        Assert.Equal(["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"], lm.Trainable.Select(m => m.Lora!.Target));
        foreach (var m in lm.Trainable)
        {
            float bound = 1f / MathF.Sqrt(m.In);                   // kaiming_uniform_(a=sqrt(5))
            Assert.All(m.Lora!.A, a => Assert.InRange(a, -bound, bound));
            Assert.True(m.Lora.A.Max() > bound * 0.8f && m.Lora.A.Min() < -bound * 0.8f);
            Assert.All(m.Lora.B, b => Assert.Equal(0f, b));
        }
        Assert.Equal(lm.Adapter.Weights.Count, lm.Trainable.Count);
        Assert.Throws<OpenWeightsException>(() => new LoraModel(model, new LoraOptions { Targets = ["qq_proj"] }, 1));
    }
}

public class AdapterExportTests
{
    /// <summary>The exported adapters, loaded by the inference side (PEFT and GGUF readers, attached to the model), give the training forward's logits.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void ExportedAdaptersReproduceTheTrainingForward(string arch)
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        GradCheck.WriteTinyModel(path, arch, OpenWeights.Tensors.Quant.GgmlType.F32);
        using var model = OpenWeights.Models.DecoderModel.Load(path);
        var lm = new LoraModel(model, new LoraOptions { Rank = 4, Alpha = 8 }, 3) { Threads = 1 };
        int s = 50;
        foreach (var m in lm.Trainable) GradCheck.Random(m.Lora!.B.Length, s++, 0.3f).CopyTo(m.Lora.B, 0);
        var trainer = new LoraTrainer(lm, new TrainOptions(), [new PackedSequence([1, 2], [2, 3], [true, true], [0, 0])], []);
        var outDir = dir.File("adapter");
        trainer.ExportAdapter(outDir);
        int[] tokens = [1, 5, 9, 33, 2, 7];
        var ours = lm.LastLogits(tokens);
        foreach (var file in new[] { outDir, Path.Combine(outDir, LoraTrainer.GgufAdapterFile) })
        {
            var adapter = OpenWeights.Lora.LoraLoader.Load(file, model.Source, model.Config);
            OpenWeights.Lora.LoraLoader.Attach(model, adapter);
            try
            {
                var session = new OpenWeights.Inference.InferenceSession(model, 16, threads: 1, cacheTypes: OpenWeights.Models.Common.KvCacheTypes.F32); // the training forward keeps F32 keys and values
                var theirs = session.EvaluatePrompt(tokens).ToArray();
                for (int i = 0; i < ours.Length; i++) Assert.Equal(ours[i], theirs[i], 1e-3f);
            }
            finally { OpenWeights.Lora.LoraLoader.Detach(model); }
        }
    }
}
