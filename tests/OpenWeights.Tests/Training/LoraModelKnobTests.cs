using OpenWeights.Lora;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>
/// LoraModel on a synthetic family with each DecoderModel knob turned (<see cref="KnobModel"/>): its forward equals the
/// inference forward, and its LoRA gradients match finite differences, for the knob set of each dense family.
/// </summary>
public class LoraModelKnobTests(ITestOutputHelper output)
{
    public static readonly TheoryData<string> Families = new(["llama", "qwen2", "gemma2", "gemma3", "qwen3", "olmo2", "smollm3", "phi3"]);

    [Theory]
    [MemberData(nameof(Families))]
    public void ForwardEqualsInference(string family)
    {
        using var dir = new TempDir();
        using var model = KnobModel.Create(dir.File("m.gguf"), Knobs.Named(family), out var file);
        using var _ = file;
        // GELU by its formula on both sides (KnobModel's GeGLU; see there why not the F16 table)
        var lm = new LoraModel(model, new LoraOptions { Targets = LoraTargets.DefaultFor(model.Config.Architecture) }, seed: 1) { Threads = 2, Context = 64, GeluFormula = true };
        int[] prompt = [1, 5, 9, 33, 2, 7, 60, 12, 40, 41, 3];
        double Worst(out double effect)
        {
            double worst = 0; effect = 0;
            // every prefix length: the last token sees 1..11 keys, crossing the window of 4
            var all = new float[prompt.Length * model.Config.VocabSize];
            model.Forward(prompt, model.CreateCache(64), model.CreateState(prompt.Length, 64), 2, all);
            for (int len = 1; len <= prompt.Length; len++)
            {
                var ours = lm.LastLogits(prompt.AsSpan(0, len));
                var theirs = all.AsSpan((len - 1) * ours.Length, ours.Length);
                float scale = 0; foreach (var v in theirs) scale = Math.Max(scale, Math.Abs(v));
                for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]) / scale);
                if (len == prompt.Length) effect = scale;
            }
            return worst;
        }
        double plain = Worst(out double scale0);
        // the same with a non-zero adapter: trained by LoraModel, attached to the inference model (LoraLoader; Phi-3's fused
        // LoRA split over Q/K/V and gate/up)
        int seed = 9;
        foreach (var m in lm.Trainable) Random(m.Lora!.B.Length, seed++, 0.2f).CopyTo(m.Lora.B, 0);
        LoraLoader.Attach(model, lm.Adapter);
        double adapted = Worst(out double scale1);
        output.WriteLine($"{family}: LoraModel vs inference logits, max abs diff / max |logit| = {plain:E2}; with a LoRA on {lm.Trainable.Count} projections {adapted:E2}");
        Assert.True(plain < 1e-5, $"{family}: {plain}");
        Assert.True(adapted < 1e-5, $"{family} with adapter: {adapted}");
        Assert.NotEqual(scale0, scale1);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void LoraGradientsMatchFiniteDifferences(string family)
    {
        using var dir = new TempDir();
        using var model = KnobModel.Create(dir.File("m.gguf"), Knobs.Named(family), out var file);
        using var _ = file;
        var lm = new LoraModel(model, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.DefaultFor(model.Config.Architecture) }, seed: 7) { Threads = 2, Context = 64, GeluFormula = true };
        int s = 100;
        foreach (var m in lm.Trainable) Random(m.Lora!.B.Length, s++, 0.3f).CopyTo(m.Lora.B, 0);
        int n = 10;
        var rng = new Random(3);
        int[] tokens = Enumerable.Range(0, n).Select(_ => rng.Next(64)).ToArray();
        int[] targets = Enumerable.Range(0, n).Select(_ => rng.Next(64)).ToArray();
        bool[] mask = Enumerable.Range(0, n).Select(i => i != 2).ToArray();
        int[] start = [0, 0, 0, 0, 0, 0, 6, 6, 6, 6]; // two documents; the first longer than the window
        float norm = 1f / mask.Count(m => m);
        double Loss() => lm.Step(tokens, targets, mask, start, norm, 0, backward: false);

        lm.ZeroGrad();
        double loss = lm.Step(tokens, targets, mask, start, norm, 0);
        Assert.Equal(Loss(), loss, 12);
        double max = 0;
        var worst = new List<string>();
        int k = 0;
        foreach (var m in lm.Trainable)
        {
            double ea = RelError(Loss, m.Lora!.A, m.GradA, Sample(m.Lora.A.Length, 5, k++));
            double eb = RelError(Loss, m.Lora.B, m.GradB, Sample(m.Lora.B.Length, 5, k++));
            max = Math.Max(max, Math.Max(ea, eb));
            worst.Add($"{m.Lora.Target}: A {ea:E1} B {eb:E1}");
        }
        output.WriteLine($"{family}: loss {loss:F4}, worst relative gradient error {max:E2}");
        Assert.True(max < 2e-2, "relative errors: " + string.Join("; ", worst));

        // checkpointing changes memory, not results
        var gB = lm.Trainable.Select(m => (float[])m.GradB!.Clone()).ToArray();
        lm.Checkpointing = false; lm.ZeroGrad();
        Assert.Equal(loss, lm.Step(tokens, targets, mask, start, norm, 0), 12);
        for (int i = 0; i < gB.Length; i++) Assert.Equal(gB[i], lm.Trainable[i].GradB!);
    }

    [Theory]
    [InlineData("phi3", "self_attn.qkv_proj", "mlp.gate_up_proj")]
    [InlineData("gemma3", "self_attn.q_proj", "mlp.gate_proj")]
    public void PeftAdapterNamesAreTheFamilysModules(string family, string attn, string mlp)
    {
        using var dir = new TempDir();
        using var model = KnobModel.Create(dir.File("m.gguf"), Knobs.Named(family), out var file);
        using var _ = file;
        var c = model.Config;
        var lm = new LoraModel(model, new LoraOptions { Rank = 2, Targets = LoraTargets.DefaultFor(c.Architecture) }, seed: 1);
        int seed = 1;
        foreach (var m in lm.Trainable) Random(m.Lora!.B.Length, seed++, 0.2f).CopyTo(m.Lora.B, 0);
        var peft = dir.File("peft");
        PeftAdapter.Write(lm.Adapter, peft, c);
        using (var st = OpenWeights.Formats.Safetensors.SafetensorsFile.Open(Path.Combine(peft, PeftAdapter.WeightsFile)))
        {
            var names = st.Tensors.Select(t => t.Name).ToHashSet();
            Assert.Contains($"base_model.model.model.layers.1.{attn}.lora_A.weight", names);
            Assert.Contains($"base_model.model.model.layers.0.{mlp}.lora_B.weight", names);
            Assert.Equal(2 * lm.Trainable.Count, names.Count);
        }
        var back = PeftAdapter.Read(peft, c);
        Assert.Equal(lm.Adapter.Weights.Keys.Order(), back.Weights.Keys.Order());
        foreach (var (k, w) in lm.Adapter.Weights) { Assert.Equal(w.A, back.Weights[k].A); Assert.Equal(w.B, back.Weights[k].B); }
    }

    [Fact]
    public void TargetsOutsideTheFamilysTableAreRefusedInOneLine()
    {
        using var dir = new TempDir();
        using var model = KnobModel.Create(dir.File("m.gguf"), Knobs.Named("phi3"), out var file);
        using var _ = file;
        var e = Assert.Throws<OpenWeightsException>(() => new LoraModel(model, new LoraOptions(), seed: 1)); // llama's q_proj..down_proj
        Assert.Contains("'q_proj'", e.Message);
        Assert.Contains("qkv_proj", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        e = Assert.Throws<OpenWeightsException>(() => new LoraModel(model, new LoraOptions { Targets = ["o_proj", "lm_head"] }, seed: 1));
        Assert.Contains("'lm_head'", e.Message);
        Assert.Contains("down_proj", e.Message);
    }
}
