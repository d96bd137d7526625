using LLama;
using LLama.Common;
using LLama.Native;
using OpenWeights.Formats.Gguf;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using Xunit;

namespace OpenWeights.Tests.Lora;

/// <summary>Adapters on a whole model: ours with the adapter attached, merged, and llama.cpp with the same GGUF LoRA.</summary>
public class LoraModelTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12];

    private static float[] OurLogits(DecoderModel m)
    {
        int v = m.Config.VocabSize;
        var r = new float[Prompt.Length * v];
        m.Forward(Prompt, m.CreateCache(64), m.CreateState(Prompt.Length, 64), 2, r);
        return r;
    }

    private static string Base(TempDir dir, string preset = "tiny-llama", string type = "f32")
    {
        var p = dir.File($"{preset}-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse(type), p, threads: 2);
        return p;
    }

    private static double MaxAbs(float[] a, float[] b) { double m = 0; for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i])); return m; }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    [InlineData("tiny-gemma3")]
    [InlineData("tiny-phi3")]   // fused qkv_proj / gate_up_proj: attached as row slices of B, merged into the fused tensor
    [InlineData("tiny-olmo2")]
    public void MergedModelEqualsBasePlusAdapter(string preset)
    {
        using var dir = new TempDir();
        var basePath = Base(dir, preset);
        var lora = dir.File("a.gguf");
        float[] baseLogits, adapted;
        using (var m = DecoderModel.Load(basePath))
        {
            baseLogits = OurLogits(m);
            GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, rank: 4, alpha: 8), lora, m.Config);
            LoraLoader.Attach(m, [new LoraSpec(lora, 0.8f)]);
            adapted = OurLogits(m);
            LoraLoader.Detach(m);
            Assert.Equal(baseLogits, OurLogits(m));
        }
        double effect = MaxAbs(baseLogits, adapted);
        Assert.True(effect > 0.05, $"adapter changes logits by only {effect}");

        var merged = dir.File("merged.gguf");
        var r = LoraMerge.Merge(basePath, [new LoraSpec(lora, 0.8f)], merged, MergeType.Same);
        using (var m = DecoderModel.Load(basePath, repack: false)) Assert.Equal(m.Config.Layers * LoraTargets.DefaultFor(m.Config.Architecture).Count, r.MergedTensors);
        using (var mm = DecoderModel.Load(merged))
        {
            double d = MaxAbs(adapted, OurLogits(mm));
            output.WriteLine($"{preset}: adapter effect {effect:G3}, merged vs attached max abs diff {d:G3}");
            // Gemma: the F16 GELU table's steps (see GemmaTests) on gate inputs that differ by the merged weights' rounding
            Assert.True(d < (mm.FeedForwardActivation == OpenWeights.Models.Common.Activation.GeluTanh ? 1e-3 : 1e-4), $"merged vs attached: {d}");
        }
        // metadata and untouched tensors are copied exactly
        using var fb = GgufFile.Open(basePath);
        using var fm = GgufFile.Open(merged);
        Assert.Equal(fb.MetadataKeys, fm.MetadataKeys);
        foreach (var t in fb.Tensors)
        {
            var u = fm.GetTensor(t.Name);
            Assert.Equal(t.Type, u.Type);
            if (!t.Name.StartsWith("blk.", StringComparison.Ordinal) || t.Name.Contains("norm"))
                Assert.True(fb.TensorData(t).SequenceEqual(fm.TensorData(u)), t.Name);
        }
    }

    [Fact]
    public void MergeRequantizesToTheChosenType()
    {
        using var dir = new TempDir();
        var basePath = Base(dir, "tiny-llama", "q8_0");
        var lora = dir.File("a.gguf");
        using (var m = DecoderModel.Load(basePath)) GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, targets: ["q_proj", "down_proj"]), lora, m.Config);
        var merged = dir.File("m.gguf");
        LoraMerge.Merge(basePath, [new LoraSpec(lora)], merged, MergeType.Parse("q4_k_m"));
        using var f = GgufFile.Open(merged);
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q4_K, f.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q4_K, f.GetTensor("blk.0.ffn_down.weight").Type);
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q6_K, f.GetTensor("blk.1.ffn_down.weight").Type); // use_more_bits layer (i >= 7n/8)
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q8_0, f.GetTensor("blk.0.attn_k.weight").Type);  // not adapted: copied
    }

    /// <summary>llama.cpp logits with GGUF LoRA adapters applied through LLamaSharp's adapter API.</summary>
    public static float[] LlamaCppLogits(string path, int[] tokens, params (string Path, float Scale)[] loras) => LlamaCppLogits(path, tokens, 64, loras);

    /// <summary>As above in a context of <paramref name="context"/> tokens (at least the prompt's length).</summary>
    public static float[] LlamaCppLogits(string path, int[] tokens, int context, params (string Path, float Scale)[] loras)
    {
        LlamaCpp.Init();
        var p = new ModelParams(path)
        {
            ContextSize = (uint)context, BatchSize = (uint)context, UBatchSize = (uint)context, GpuLayerCount = 0, Threads = 2, BatchThreads = 2,
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        if (loras.Length > 0)
        {
            var list = loras.Select(l => (w.NativeHandle.LoadLoraFromFile(l.Path), l.Scale)).ToArray();
            ctx.NativeHandle.SetLoraAdapters(list);
        }
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, true);
        var r = ctx.Decode(batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
        var result = new List<float>();
        for (int i = 0; i < tokens.Length; i++) result.AddRange(ctx.NativeHandle.GetLogitsIth(i).ToArray());
        return [.. result];
    }

    [Theory]
    [InlineData("tiny-llama", "f32", false)]
    [InlineData("tiny-llama", "f32", true)]
    [InlineData("tiny-qwen2", "f32", false)]
    [InlineData("tiny-llama", "q8_0", false)]
    [InlineData("tiny-qwen3", "f32", true)]
    [InlineData("tiny-gemma3", "f32", false)]
    [InlineData("tiny-phi3", "f32", true)]
    [InlineData("tiny-smollm3", "f32", false)]
    public void GgufLoraMatchesLlamaCpp(string preset, string type, bool fromPeft)
    {
        using var dir = new TempDir();
        var basePath = Base(dir, preset, type);
        var lora = dir.File("a.gguf");
        var lora2 = dir.File("b.gguf");
        float[] ours, baseOurs;
        bool geglu;
        using (var m = DecoderModel.Load(basePath))
        {
            baseOurs = OurLogits(m);
            if (fromPeft)
            {
                // A PEFT adapter (HF row order) attached to our llama GGUF model, and the same adapter converted to GGUF for llama.cpp.
                var peft = dir.File("peft");
                PeftAdapter.Write(LoraTestUtil.Random(m.Config, rank: 8, alpha: 16, rs: true, seed: 9), peft, architecture: m.Config.Architecture);
                LoraLoader.Attach(m, [new LoraSpec(peft, 0.7f)]);
                GgufLoraAdapter.Write(PeftAdapter.Read(peft, m.Config), lora, m.Config);
            }
            else
            {
                GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, rank: 4, alpha: 8, seed: 2), lora, m.Config);
                LoraLoader.Attach(m, [new LoraSpec(lora, 0.7f)]);
            }
            // a second adapter stacked on part of the projections
            GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, rank: 2, alpha: 2, seed: 3, targets: [.. LoraTargets.DefaultFor(m.Config.Architecture).Skip(2).Take(2)]), lora2, m.Config);
            geglu = m.FeedForwardActivation == OpenWeights.Models.Common.Activation.GeluTanh;
            LoraLoader.Attach(m, [new LoraSpec(lora2, 1.3f)]);
            ours = OurLogits(m);
        }
        var theirs = LlamaCppLogits(basePath, Prompt, (lora, 0.7f), (lora2, 1.3f));
        var theirsBase = LlamaCppLogits(basePath, Prompt);
        double d = MaxAbs(ours, theirs), effect = MaxAbs(baseOurs, ours), baseDiff = MaxAbs(baseOurs, theirsBase);
        double scale = theirs.Max(Math.Abs);
        output.WriteLine($"{preset} {type}{(fromPeft ? " (from PEFT)" : "")}: ours vs llama.cpp with adapters max abs diff {d:G3} (max |logit| {scale:G3}, adapter effect {effect:G3}, base diff {baseDiff:G3})");
        Assert.True(effect > 0.05, $"adapter changes logits by only {effect}");
        // F32 base: tight (Gemma: the F16 GELU table's steps, see GemmaTests). Quantized base: llama.cpp rounds activations
        // to 8 bits for the base matmul (see SyntheticOracleTests).
        double tol = type == "f32" ? geglu ? 1e-3 : 1e-5 : 4e-2;
        Assert.True(d / scale < tol, $"ours vs llama.cpp with adapter: max abs diff {d} vs scale {scale}");
    }

    [Fact]
    public void MergedModelEqualsBasePlusAdapterInLlamaCpp()
    {
        using var dir = new TempDir();
        var basePath = Base(dir);
        var lora = dir.File("a.gguf");
        using (var m = DecoderModel.Load(basePath)) GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, rank: 4, alpha: 8, seed: 4), lora, m.Config);
        var merged = dir.File("merged.gguf");
        LoraMerge.Merge(basePath, [new LoraSpec(lora, 0.5f)], merged, MergeType.Same);
        var withAdapter = LlamaCppLogits(basePath, Prompt, (lora, 0.5f));
        var fromMerged = LlamaCppLogits(merged, Prompt);
        double d = MaxAbs(withAdapter, fromMerged);
        output.WriteLine($"llama.cpp: merged vs base + adapter max abs diff {d:G3}");
        Assert.True(d / withAdapter.Max(Math.Abs) < 1e-5, $"llama.cpp merged vs adapter: {d}");
    }
}
