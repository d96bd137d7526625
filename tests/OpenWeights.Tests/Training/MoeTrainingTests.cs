using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Lora;
using OpenWeights.Training;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>
/// LoRA fine-tuning on every mixture-of-experts family's tiny preset (every tiny preset whose file has routers: qwen3moe,
/// olmoe, Mixtral's llama, phimoe, and those of families merged later), F32: attention targets (the experts and router
/// stay frozen; the MoE feed-forward is differentiated with the choice of experts fixed, <see cref="ExpertFeedForward"/>).
/// LoraModel's forward equals inference, its LoRA gradients match finite differences, the adapter it trains, written as
/// a GGUF LoRA (directly, and through a PEFT folder) and applied by llama.cpp, gives its logits, and a short run lowers the loss.
/// </summary>
public class MoeTrainingTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12];

    private static IEnumerable<string> MoePresetNames() =>
        SynthPreset.All.Where(p => p.Name.StartsWith("tiny-", StringComparison.Ordinal)
            && Architectures.Supported.Any(a => a.Name == p.Architecture && a.Experts)
            && p.Mla is null // LoRA training of latent attention (deepseek2) is not built: LoraModel refuses it (DeepSeek2Tests)
            && SyntheticModel.Plan(p, SynthType.Parse("f32")).Any(t => t.Name.EndsWith("." + Architectures.Names.FfnGateInp, StringComparison.Ordinal)))
        .Select(p => p.Name);

    /// <summary>Every tiny preset with experts.</summary>
    public static TheoryData<string> Presets() => new(MoePresetNames());

    [Fact]
    public void EveryMoeFamilyOfTheTableHasATinyPresetWithExperts()
    {
        var names = MoePresetNames().ToList();
        output.WriteLine(string.Join(", ", names));
        Assert.Contains("tiny-qwen3moe", names);
        Assert.Contains("tiny-phimoe", names);
        // every family whose layers are all MoE (its table names no dense feed-forward); llama's Mixtral comes with the moe branch's preset
        foreach (var a in Architectures.Supported.Where(a => a.Experts && !a.Block.Any(t => t.IsDenseFfn)))
            Assert.Contains(names, n => SynthPreset.Get(n).Architecture == a.Name);
    }

    private static string Write(TempDir dir, string preset)
    {
        var p = dir.File($"{preset}.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), p, threads: 2);
        return p;
    }

    /// <summary>LoraModel on the model's default targets (attention on MoE layers) with B random, rank 4.</summary>
    private static LoraModel Lora(DecoderModel m, float bScale = 0.05f)
    {
        var lm = new LoraModel(m, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.DefaultFor(m.Config) }, seed: 3) { Threads = 2, Context = 64 };
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

    [Theory]
    [MemberData(nameof(Presets))]
    public void DefaultTargetsAreTheAttentionAndExpertTargetsAreRefused(string preset)
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, preset), repack: false);
        var targets = LoraTargets.DefaultFor(m.Config);
        output.WriteLine($"{preset}: {string.Join(", ", targets)}");
        Assert.Contains("o_proj", targets);
        if (m.Layers.Any(L => L.WDown is not null))
        {
            // dense layers beside the MoE ones (Llama 4's interleave): their feed-forward is adapted, the MoE layers' is not
            Assert.Contains("down_proj", targets);
            var lm = new LoraModel(m, new LoraOptions { Targets = targets }, seed: 1);
            for (int l = 0; l < m.Config.Layers; l++)
                Assert.Equal(m.Layers[l].Experts is null, lm.Adapter.Weights.ContainsKey(LoraTargets.GgufWeight("down_proj", l, m.Config.Architecture)));
            return;
        }
        Assert.DoesNotContain(targets, t => t is "gate_proj" or "up_proj" or "down_proj" or "gate_up_proj");
        var e = Assert.Throws<OpenWeightsException>(() => new LoraModel(m, new LoraOptions { Targets = ["q_proj", "down_proj"] }, seed: 1));
        Assert.Contains("'down_proj'", e.Message);
        Assert.Contains("experts", e.Message);
    }

    [Theory]
    [InlineData("base_model.model.model.layers.0.mlp.experts.3.gate_proj")]       // qwen3moe / olmoe experts
    [InlineData("base_model.model.model.layers.0.block_sparse_moe.experts.3.w1")]  // Mixtral / Phi-3.5-MoE experts
    [InlineData("base_model.model.model.layers.0.block_sparse_moe.gate")]          // a router
    public void PeftAdapterOnExpertsIsRefusedNamingTheTensor(string module)
    {
        using var dir = new TempDir();
        var st = new OpenWeights.Formats.Safetensors.SafetensorsWriter();
        var a = new float[2 * 256]; var b = new float[256 * 2];
        st.Add(module + ".lora_A.weight", OpenWeights.Formats.Safetensors.SafetensorsDType.F32, [2, 256], System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()).ToArray());
        st.Add(module + ".lora_B.weight", OpenWeights.Formats.Safetensors.SafetensorsDType.F32, [256, 2], System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()).ToArray());
        st.Write(dir.File(PeftAdapter.WeightsFile));
        File.WriteAllText(dir.File(PeftAdapter.ConfigFile), """{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none"}""");
        var e = Assert.Throws<OpenWeightsException>(() => PeftAdapter.Read(dir.Path, Architectures.Get("qwen3moe")));
        Assert.Contains(module, e.Message);
        Assert.Contains("experts is not supported", e.Message);
    }

    [Fact]
    public void GgufAdapterOnExpertsIsRefusedNamingTheTensor()
    {
        var e = Assert.Throws<OpenWeightsException>(() => LoraNames.ParseGguf("blk.1.ffn_down_exps.weight", Architectures.Get("phimoe")));
        Assert.Contains("blk.1.ffn_down_exps.weight", e.Message);
        Assert.Contains("experts is not supported", e.Message);
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void ForwardEqualsInference(string preset)
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, preset), repack: false);
        var lm = new LoraModel(m, new LoraOptions { Targets = LoraTargets.DefaultFor(m.Config) }, seed: 1) { Threads = 2, Context = 64 };
        int v = m.Config.VocabSize;
        var theirs = new float[Prompt.Length * v];
        m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, theirs);
        double d = 0;
        for (int len = 1; len <= Prompt.Length; len++) d = Math.Max(d, RelMaxDiff(lm.LastLogits(Prompt.AsSpan(0, len)), theirs.AsSpan((len - 1) * v, v)));
        output.WriteLine($"{preset}: LoraModel vs inference: max abs diff / max |logit| = {d:E2}");
        Assert.True(d < 1e-5, $"{preset}: {d}");
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void LoraGradientsMatchFiniteDifferences(string preset)
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, preset), repack: false);
        var lm = Lora(m, 0.3f);
        lm.GeluFormula = true;
        int n = 10;
        var rng = new Random(5);
        int[] tokens = Enumerable.Range(0, n).Select(_ => rng.Next(m.Config.VocabSize)).ToArray();
        int[] targets = Enumerable.Range(0, n).Select(_ => rng.Next(m.Config.VocabSize)).ToArray();
        bool[] mask = Enumerable.Range(0, n).Select(i => i != 1).ToArray();
        int[] start = [0, 0, 0, 0, 0, 5, 5, 5, 5, 5];
        float norm = 1f / mask.Count(x => x);
        lm.ZeroGrad();
        double loss = lm.Step(tokens, targets, mask, start, norm, 0);
        Assert.Equal(lm.Step(tokens, targets, mask, start, norm, 0, backward: false), loss, 12);
        ulong routing = lm.RoutingSignature;   // of a forward-only step (a backward step recomputes the layers)
        // central differences of the loss; a step that changes some token's choice of experts jumps (top-k is piecewise
        // constant), so an entry whose ± step changes the routing is left out and counted
        int skipped = 0, checkedEntries = 0;
        // h = 2e-3 (not GradCheck's 1e-2): fewer steps cross a routing boundary; the F32 rounding of the quotient stays
        // below 1e-3 of the largest gradient entries checked
        double RelErrorSameRouting(float[] p, ReadOnlySpan<float> analytic, IEnumerable<int> indices, float h = 2e-3f)
        {
            double num2 = 0, diff2 = 0;
            foreach (int i in indices)
            {
                float keep = p[i];
                p[i] = keep + h; double lp = lm.Step(tokens, targets, mask, start, norm, 0, backward: false); bool same = lm.RoutingSignature == routing;
                p[i] = keep - h; double lm2 = lm.Step(tokens, targets, mask, start, norm, 0, backward: false); same &= lm.RoutingSignature == routing;
                p[i] = keep;
                if (!same) { skipped++; continue; }
                checkedEntries++;
                double numeric = (lp - lm2) / (2.0 * h);
                num2 += numeric * numeric; diff2 += (numeric - analytic[i]) * (numeric - analytic[i]);
            }
            return Math.Sqrt(diff2) / Math.Max(Math.Sqrt(num2), 1e-12);
        }
        double max = 0; int k = 0;
        var all = new List<string>();
        foreach (var t in lm.Trainable)
        {
            double ea = RelErrorSameRouting(t.Lora!.A, t.GradA, Largest(t.GradA, 32, 4, k++));
            double eb = RelErrorSameRouting(t.Lora.B, t.GradB, Largest(t.GradB, 32, 4, k++));
            max = Math.Max(max, Math.Max(ea, eb));
            all.Add($"{t.Lora.Target}: A {ea:E1} B {eb:E1}");
        }
        output.WriteLine($"{preset}: {lm.Trainable.Count} adapted projections, worst relative gradient error {max:E2} ({checkedEntries} entries, {skipped} left out: their step changed the routing)");
        Assert.True(checkedEntries >= (checkedEntries + skipped) / 2, $"{skipped} of {checkedEntries + skipped} steps changed the routing");
        Assert.True(max < 2e-2, string.Join("; ", all));
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void AdapterAppliedByLlamaCppGivesOurLogits(string preset)
    {
        using var dir = new TempDir();
        var path = Write(dir, preset);
        var lora = dir.File("adapter.gguf");
        var viaPeft = dir.File("via-peft.gguf");
        var ours = new List<float[]>();
        float[] baseOurs;
        int v;
        using (var m = DecoderModel.Load(path, repack: false))
        {
            v = m.Config.VocabSize;
            var lm = Lora(m);
            GgufLoraAdapter.Write(lm.Adapter, lora, m.Config);
            // the PEFT folder tune exports, read back and converted: the same adapter for llama.cpp (Q/K rows reordered
            // to the GGUF's pairing where the family permutes them)
            var peft = dir.File("peft");
            PeftAdapter.Write(lm.Adapter, peft, m.Config);
            GgufLoraAdapter.Write(PeftAdapter.Read(peft, m.Config), viaPeft, m.Config);
            for (int len = 1; len <= Prompt.Length; len++) ours.Add(lm.LastLogits(Prompt.AsSpan(0, len)));
            baseOurs = new float[Prompt.Length * v];
            m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, baseOurs);
        }
        foreach (var file in new[] { lora, viaPeft })
        {
            var theirs = LoraModelTests.LlamaCppLogits(path, Prompt, 64, (file, 1f));
            double d = 0, effect = 0;
            for (int i = 0; i < Prompt.Length; i++)
            {
                d = Math.Max(d, RelMaxDiff(ours[i], theirs.AsSpan(i * v, v)));
                effect = Math.Max(effect, RelMaxDiff(ours[i], baseOurs.AsSpan(i * v, v)));
            }
            output.WriteLine($"{preset} ({Path.GetFileName(file)}): LoraModel vs llama.cpp with the LoRA: max abs diff / max |logit| = {d:E2} (adapter effect {effect:E2})");
            Assert.True(effect > 1e-2, $"the adapter changes logits by only {effect}");
            Assert.True(d < 1e-5, $"{preset} {Path.GetFileName(file)}: {d}");
        }
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void AdapterAttachedForInferenceAndMergedGiveTheTrainedLogits(string preset)
    {
        // the trained adapter on the inference model (LoraLoader: attention projections wrapped, experts untouched) and
        // merged into a copy of the file (`openweights merge`: the 3-D expert tensors copied as they are)
        using var dir = new TempDir();
        var path = Write(dir, preset);
        var lora = dir.File("a.gguf");
        var merged = dir.File("merged.gguf");
        float[] trained;
        int v;
        using (var m = DecoderModel.Load(path, repack: false))
        {
            v = m.Config.VocabSize;
            var lm = Lora(m);
            GgufLoraAdapter.Write(lm.Adapter, lora, m.Config);
            trained = lm.LastLogits(Prompt);
        }
        float[] Last(DecoderModel m)
        {
            var all = new float[Prompt.Length * v];
            m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, all);
            return all[((Prompt.Length - 1) * v)..];
        }
        using (var m = DecoderModel.Load(path))
        {
            LoraLoader.Attach(m, [new LoraSpec(lora, 1f)]);
            double d = RelMaxDiff(Last(m), trained);
            output.WriteLine($"{preset}: attached vs trained {d:E2}");
            Assert.True(d < 1e-5, $"attached: {d}");
        }
        LoraMerge.Merge(path, [new LoraSpec(lora, 1f)], merged, MergeType.Same);
        using (var m = DecoderModel.Load(merged))
        {
            double d = RelMaxDiff(Last(m), trained);
            output.WriteLine($"{preset}: merged vs trained {d:E2}");
            Assert.True(d < 1e-4, $"merged: {d}");
        }
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
        var lm = new LoraModel(m, new LoraOptions { Rank = 4, Alpha = 8, Targets = LoraTargets.DefaultFor(m.Config) }, 1) { Threads = 2 };
        var trainer = new LoraTrainer(lm, new TrainOptions { Epochs = 25, LearningRate = 3e-2f, Seed = 1 }, seqs, seqs);
        double before = trainer.Evaluate()!.Value;
        var outDir = dir.File("out");
        trainer.Run(outDir);
        double after = trainer.Evaluate()!.Value;
        output.WriteLine($"{preset}: validation loss {before:F3} -> {after:F3} after {trainer.Step} steps");
        // measured drops: qwen3moe 3.0, phimoe 2.4, llama4 2.5, gpt-oss 0.5 (attention-only LoRA; gpt-oss's sinks and
        // 128-window layers learn this pattern more slowly in 50 steps)
        Assert.True(after < before - 0.3, $"validation loss {before:F3} -> {after:F3}");
        trainer.ExportAdapter(outDir);
        foreach (var f in new[] { Path.Combine(outDir, LoraTrainer.GgufAdapterFile), outDir })
        {
            var a = LoraLoader.Load(f, m.Source, m.Config);
            Assert.Equal(lm.Adapter.Weights.Keys.Order(), a.Weights.Keys.Order());
            foreach (var (k, w) in lm.Adapter.Weights) Assert.Equal(w.B, a.Weights[k].B);
        }
    }
}
