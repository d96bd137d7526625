using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Llama;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Models;

/// <summary>
/// YaRN rotary scaling (`rope.scaling.type` = yarn) and the rotary magnitude (mscale) that LongRoPE also needs: the
/// angle table against the formula, the metadata llama.cpp's converter writes, and whole models against llama.cpp.
/// </summary>
public class YarnRopeTests(ITestOutputHelper output)
{
    /// <summary>
    /// n_rot 8, base 10000, factor s = 4 (freqScale 1/4), original context L = 64, beta_fast 32, beta_slow 1, ext_factor 1.
    /// corr(β) = n_rot · ln(L / (2πβ)) / (2 ln base): corr(32) = 8 ln(1/π) / 18.4207 = −0.497 → low = max(0, floor) = 0;
    /// corr(1) = 8 ln(64/2π) / 18.4207 = 1.0081 → high = ceil = 2. ramp_i = 1 − clamp((i − 0)/(2 − 0), 0, 1):
    /// pair 0: 1 (trained angle kept), pair 1: 0.5, pairs 2, 3: 0 (interpolated as linear scaling).
    /// θextrap_i = p · 10^(−i); θ_i = θextrap_i/4 · (1 − ramp_i) + θextrap_i · ramp_i; cos, sin scaled by mscale = 1 + 0.1 ln 4.
    /// </summary>
    [Fact]
    public void AnglesFollowTheYarnFormula()
    {
        var yarn = new RopeYarn(OriginalContext: 64);
        Assert.Equal((0f, 2f), yarn.CorrDims(8, 10000f));
        float mscale = RopeYarn.Mscale(4f);
        Assert.Equal(1 + 0.1 * Math.Log(4), mscale, 6);
        var rope = new Rope(8, RopeStyle.Neox, 10000f, 0.25f, yarn: yarn, mscale: mscale);
        double[] ramp = [1, 0.5, 0, 0];
        Span<float> cos = stackalloc float[4], sin = stackalloc float[4];
        foreach (int p in new[] { 0, 1, 37, 100 })
        {
            rope.Angles(p, cos, sin);
            for (int i = 0; i < 4; i++)
            {
                double extrap = p * Math.Pow(10, -i), theta = extrap / 4 * (1 - ramp[i]) + extrap * ramp[i];
                double m = 1 + 0.1 * Math.Log(4);
                Assert.True(Math.Abs(cos[i] - m * Math.Cos(theta)) < 3e-5, $"p {p} pair {i}: cos {cos[i]} vs {m * Math.Cos(theta)}");
                Assert.True(Math.Abs(sin[i] - m * Math.Sin(theta)) < 3e-5, $"p {p} pair {i}: sin {sin[i]} vs {m * Math.Sin(theta)}");
            }
        }
    }

    /// <summary>ext_factor 0 is plain linear interpolation (ggml skips the ramp); the magnitude still applies.</summary>
    [Fact]
    public void ZeroExtFactorIsLinearScalingTimesMscale()
    {
        var rope = new Rope(8, RopeStyle.Norm, 10000f, 0.25f, yarn: new RopeYarn(64, ExtFactor: 0f), mscale: 1.5f);
        var plain = new Rope(8, RopeStyle.Norm, 10000f, 0.25f);
        Span<float> c = stackalloc float[4], s = stackalloc float[4], pc = stackalloc float[4], ps = stackalloc float[4];
        rope.Angles(37, c, s);
        plain.Angles(37, pc, ps);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(1.5f * pc[i], c[i], 6);
            Assert.Equal(1.5f * ps[i], s[i], 6);
        }
    }

    [Fact]
    public void ConfigReadsYarnAsTheConverterWritesIt()
    {
        using var dir = new TempDir();
        string path = dir.File("yarn.gguf");
        var preset = SynthPreset.Get("tiny-qwen2") with { RopeScaling = new SynthRopeScaling("yarn", 4f, 256) };
        SyntheticModel.Write(preset, SynthType.Parse("f32"), path, threads: 2);
        using (var f = GgufFile.Open(path))
        {
            var c = ModelConfig.FromGguf(f);
            Assert.Equal("yarn", c.RopeScalingType);
            Assert.Equal(0.25f, c.RopeFreqScale);
            Assert.Equal(new RopeYarn(256, 1f, 32f, 1f), c.RopeYarn);
            Assert.Equal(1 + 0.1 * Math.Log(4), c.RopeMscale, 6);
        }
        // without original_context_length the ramp spans the context length, as llama.cpp's n_ctx_orig_yarn
        string noOrig = dir.File("yarn-no-orig.gguf");
        SyntheticModel.Write(preset with { RopeScaling = new SynthRopeScaling("yarn", 4f) }, SynthType.Parse("f32"), noOrig, threads: 2);
        using (var f = GgufFile.Open(noOrig)) Assert.Equal(preset.ContextLength, ModelConfig.FromGguf(f).RopeYarn!.OriginalContext);
        // a factor that is not positive is one line naming the key
        string bad = dir.File("yarn-bad.gguf");
        SyntheticModel.Write(preset with { RopeScaling = new SynthRopeScaling("yarn", -2f, 256) }, SynthType.Parse("f32"), bad, threads: 2);
        using (var f = GgufFile.Open(bad))
        {
            var e = Assert.Throws<InvalidModelFileException>(() => ModelConfig.FromGguf(f));
            Assert.Contains("qwen2.rope.scaling.factor", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    // 320 tokens: past the original context (256), so the positions where interpolation differs most from the trained
    // angles are covered; deterministic pseudo-random ids below the tiny vocabulary (1024).
    private static readonly int[] LongPrompt = Enumerable.Range(0, 320).Select(i => (int)((i * 2654435761L + 12345) % 1000) + 3).ToArray();

    public static TheoryData<string, string, float, int, float, bool> OracleCases() => new()
    {
        // preset, scaling type, factor, original context, attn_factor, keep the llama3 rope_freqs tensor
        { "tiny-llama", "yarn", 4f, 256, 1f, false },
        { "tiny-qwen2", "yarn", 4f, 256, 1f, false },
        { "tiny-qwen2", "yarn", 8f, 64, 1.1f, false },
        // LongRoPE's arithmetic (Phi-3): per-frequency divisors (here the llama3 rope_freqs tensor; llama.cpp's llama
        // architecture loads rope_factors_long/short only for type longrope, which our llama model does not read) and an
        // attention factor on cos/sin, no ramp (ext_factor 0 outside yarn); with and without linear scaling
        { "tiny-llama", "none", 1f, 0, 1.19f, true },
        { "tiny-llama", "linear", 2f, 0, 1.19f, true },
    };

    /// <summary>
    /// Our model and llama.cpp on the same F32 file with YaRN metadata, every position of a 320-token prompt. Measured
    /// worst max |diff| / max |logit| over all positions: 4.2e-7 .. 6.7e-7, cosine 1.000000000 (F32 rounding, as
    /// SyntheticOracleTests' f32 cases); without mscale or without the ramp 3.5e-2 / 5.6e-2 (next test).
    /// </summary>
    [Theory]
    [MemberData(nameof(OracleCases))]
    public void LogitsAgreeWithLlamaCpp(string preset, string type, float factor, int orig, float attn, bool llama3Freqs)
    {
        using var dir = new TempDir();
        var p = SynthPreset.Get(preset) with { Llama3RopeScaling = llama3Freqs, RopeScaling = new SynthRopeScaling(type, factor, orig, attn) };
        string path = dir.File($"{preset}-{type}.gguf");
        SyntheticModel.Write(p, SynthType.Parse("f32"), path, threads: 2);
        var (worstRel, worstCos) = Compare(path, LlamaCpp.Logits(path, LongPrompt), LongPrompt);
        output.WriteLine($"YaRN oracle {preset} {type} factor {factor} orig {orig} attn {attn}: rel {worstRel:E2}, cos {worstCos:F9}");
        Assert.True(worstRel < 1e-5, $"{preset} {type}: max abs diff / max |logit| {worstRel:E2}");
        Assert.True(worstCos > 0.999999, $"{preset} {type}: cosine {worstCos}");
    }

    /// <summary>
    /// The oracle comparison can fail: llama.cpp reads the YaRN file; we read the same weights with metadata that leaves
    /// out YaRN's magnitude (attn_factor 1/(1 + 0.1 ln 4) cancels it), or the ramp (linear scaling by 4 with YaRN's
    /// magnitude as attn_factor). Both disagree with llama.cpp far beyond the tolerance.
    /// </summary>
    [Fact]
    public void OracleSeesAMissingMscaleOrRamp()
    {
        using var dir = new TempDir();
        var p = SynthPreset.Get("tiny-qwen2") with { RopeScaling = new SynthRopeScaling("yarn", 4f, 256) };
        string path = dir.File("yarn.gguf"), noMscale = dir.File("no-mscale.gguf"), noRamp = dir.File("no-ramp.gguf");
        SyntheticModel.Write(p, SynthType.Parse("f32"), path, threads: 2);
        float m = RopeYarn.Mscale(4f);
        SyntheticModel.Write(p with { RopeScaling = new SynthRopeScaling("yarn", 4f, 256, 1f / m) }, SynthType.Parse("f32"), noMscale, threads: 2);
        SyntheticModel.Write(p with { RopeScaling = new SynthRopeScaling("linear", 4f, 0, m) }, SynthType.Parse("f32"), noRamp, threads: 2);
        var theirs = LlamaCpp.Logits(path, LongPrompt);
        var (relNoMscale, _) = Compare(noMscale, theirs, LongPrompt);
        var (relNoRamp, _) = Compare(noRamp, theirs, LongPrompt);
        output.WriteLine($"YaRN oracle, ours without mscale: rel {relNoMscale:E2}; without the ramp: rel {relNoRamp:E2}");
        Assert.True(relNoMscale > 1e-3, $"without mscale: {relNoMscale:E2}");
        Assert.True(relNoRamp > 1e-3, $"without the ramp: {relNoRamp:E2}");
    }

    /// <summary>
    /// A Hugging Face checkpoint whose config.json has rope_scaling {rope_type: yarn, factor 4, original_max_position_embeddings
    /// 256} reads as the GGUF llama.cpp's converter would write, and gives the logits of that GGUF (itself checked against
    /// llama.cpp above); attention_factor and beta_fast / beta_slow become the yarn_* keys; DeepSeek's mscale is refused.
    /// </summary>
    [Fact]
    public void HuggingFaceYarnConfigBecomesTheSameModel()
    {
        using var dir = new TempDir();
        string gguf = dir.File("yarn.gguf"), hf = dir.File("hf");
        var p = SynthPreset.Get("tiny-qwen2") with { RopeScaling = new SynthRopeScaling("yarn", 4f, 256) };
        SyntheticModel.Write(p, SynthType.Parse("f32"), gguf, threads: 2);
        OpenWeights.Tests.Formats.HfFixture.Write(gguf, hf);
        var prompt = LongPrompt[..300];
        float[] Logits(OpenWeights.Formats.ITensorSource src)
        {
            using var m = LlamaModel.Load(src);
            var r = new float[prompt.Length * m.Config.VocabSize];
            m.Forward(prompt, m.CreateCache(prompt.Length), m.CreateState(prompt.Length, prompt.Length), 2, r);
            return r;
        }
        float[] reference;
        using (var g = GgufFile.Open(gguf)) reference = Logits(g);
        using (var h = OpenWeights.Formats.HuggingFace.HfCheckpoint.Open(hf))
        {
            Assert.Equal("yarn", h.GetString("qwen2.rope.scaling.type"));
            Assert.Equal(4.0, h.GetNumber("qwen2.rope.scaling.factor"));
            Assert.Equal(256, h.GetInteger("qwen2.rope.scaling.original_context_length"));
            var ours = Logits(h);
            double worst = 0;
            for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - reference[i]));
            Assert.True(worst < 1e-5, $"HF vs GGUF max abs diff {worst}");
        }
        string cfg = Path.Combine(hf, "config.json"), good = File.ReadAllText(cfg);
        File.WriteAllText(cfg, good.Replace("\"original_max_position_embeddings\": 256", "\"original_max_position_embeddings\": 256, \"attention_factor\": 1.5, \"beta_fast\": 16, \"beta_slow\": 2"));
        using (var h = OpenWeights.Formats.HuggingFace.HfCheckpoint.Open(hf))
        {
            Assert.Equal(1.5, h.GetNumber("qwen2.rope.scaling.yarn_attn_factor"));
            using var m = LlamaModel.Load(h);
            Assert.Equal(new RopeYarn(256, 1f, 16f, 2f), m.Config.RopeYarn);
            Assert.Equal(1.5f, m.Config.RopeMscale);
        }
        File.WriteAllText(cfg, good.Replace("\"original_max_position_embeddings\": 256", "\"original_max_position_embeddings\": 256, \"mscale\": 1, \"mscale_all_dim\": 1"));
        var e = Assert.Throws<OpenWeightsException>(() => OpenWeights.Formats.HuggingFace.HfCheckpoint.Open(hf).Dispose());
        Assert.Contains("mscale", e.Message);
    }

    /// <summary>Worst max-abs-diff / max-|logit| and worst cosine over every position, ours on <paramref name="path"/>
    /// against <paramref name="theirs"/>.</summary>
    private static (double Rel, double Cos) Compare(string path, float[][] theirs, int[] prompt)
    {
        using var model = LlamaModel.Load(path);
        int n = prompt.Length, v = model.Config.VocabSize;
        var ours = new float[n * v];
        model.Forward(prompt, model.CreateCache(n), model.CreateState(n, n), 2, ours);
        double worstRel = 0, worstCos = 1;
        for (int t = 0; t < n; t++)
        {
            var (maxAbs, cos) = Oracle.Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
            worstRel = Math.Max(worstRel, maxAbs / theirs[t].Max(Math.Abs));
            worstCos = Math.Min(worstCos, cos);
        }
        return (worstRel, worstCos);
    }
}
