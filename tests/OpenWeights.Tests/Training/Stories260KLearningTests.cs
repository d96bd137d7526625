using System.Diagnostics;
using OpenWeights.Models;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

/// <summary>Proof that LoRA training learns: stories260K is taught a hero named Zorblax.</summary>
public class Stories260KLearningTests(ITestOutputHelper output)
{
    /// <summary>40 short stories whose hero is always Zorblax (deterministic).</summary>
    public static string Stories()
    {
        string[] adj = ["little", "happy", "small", "big", "kind"];
        string[] who = ["girl", "boy", "dog", "cat", "bird"];
        string[] like = ["play", "run", "sing", "jump", "read"];
        string[] place = ["park", "garden", "house", "forest", "sky"];
        string[] thing = ["ball", "toy", "flower", "box", "tree"];
        var r = new Random(7);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < 40; i++)
        {
            string P(string[] a) => a[r.Next(a.Length)];
            sb.Append($"Once upon a time, there was a {P(adj)} {P(who)} named Zorblax. Zorblax liked to {P(like)} in the {P(place)}. ");
            sb.Append($"One day, Zorblax found a {P(thing)}. Zorblax was very happy.\n\n");
        }
        return sb.ToString();
    }

    [Fact]
    public void FineTuningTeachesTheNewName()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var tok = Tokenizer.FromGguf(model.Source);
        var examples = TrainingData.LoadText(Stories(), tok);
        var (trainEx, valEx) = TrainingData.Split(examples, 0.1, 1);
        var train = TrainingData.Pack(trainEx, 256); var val = TrainingData.Pack(valEx, 256);
        var lm = new LoraModel(model, new LoraOptions { Rank = 8, Alpha = 16 }, 1) { Threads = 2 };
        var trainer = new LoraTrainer(lm, new TrainOptions { Epochs = 4, LearningRate = 2e-2f, Seed = 1, Batch = 1, WarmupSteps = 2 }, train, val);
        var prompt = tok.Encode("Once upon a time, there was a");
        string Continue() => tok.Decode(lm.Greedy(prompt, 12).Skip(prompt.Length).ToArray());

        string before = Continue();
        double valBefore = trainer.Evaluate()!.Value;
        using var dir = new TempDir();
        var sw = Stopwatch.StartNew();
        long tokens = 0;
        trainer.Run(dir.Path, p => tokens = p.Tokens);
        sw.Stop();
        double valAfter = trainer.Evaluate()!.Value;
        string after = Continue();
        output.WriteLine($"{train.Count} train / {val.Count} val sequences, {trainer.TotalSteps} steps, {tokens} tokens in {sw.Elapsed.TotalSeconds:F1}s = {tokens / sw.Elapsed.TotalSeconds:F0} tok/s");
        output.WriteLine($"val loss {valBefore:F3} -> {valAfter:F3}");
        output.WriteLine($"before: {before}");
        output.WriteLine($"after:  {after}");
        Assert.DoesNotContain("Zor", before);
        Assert.Contains("Zor", after);
        Assert.True(valAfter < valBefore * 0.7, $"validation loss {valBefore:F3} -> {valAfter:F3}");
    }
}
