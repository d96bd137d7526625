using OpenWeights.Models;
using OpenWeights.Models.SmolLM3;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>SmolLM3 (every fourth layer without rotary embedding) against llama.cpp's smollm3 on the same files.</summary>
public class SmolLM3Tests(ITestOutputHelper output)
{
    public static TheoryData<string, double, double> Types() => new()
    {
        // type, max |diff| / max |logit|, min cosine. Measured worst of 16 positions: f32 4.2e-7; f16 4.9e-4 (cos 0.99999992); q8_0 1.7e-7; q4_k_m 4.3e-7.
        { "f32", 1e-5, 0.999999 },
        { "f16", 2e-3, 0.99999 },
        { "q8_0", 1e-5, 0.999999 },
        { "q4_k_m", 1e-5, 0.999999 },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void LogitsAgreeWithLlamaCpp(string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-smollm3", type);
        var (rel, cos) = AssertLogitsAgree(path, relTol, minCos);
        output.WriteLine($"tiny-smollm3 {type}: worst rel {rel:E2}, worst cos {cos:F9}");
    }

    [Fact]
    public void GreedyContinuationOf64TokensEqualsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-smollm3", "f32");
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46];
        var ours = OurGreedy(path, prompt, 64);
        var theirs = LlamaCpp.ArgmaxContinuation(path, prompt, 64);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }

    [Fact]
    public void EveryFourthLayerHasNoRotaryEmbedding()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-smollm3", "f32");
        using var model = DecoderModel.Load(path);
        Assert.IsType<SmolLM3Model>(model);
        Assert.Equal([0, 0, 0, -1], Enumerable.Range(0, 4).Select(l => model.AttentionOf(l).Rope));
        Assert.Null(model.RopeOf(model.AttentionOf(3), 64));
        // SmolLM3-3B's 36 layers: HF no_rope_layers has 0 at 3, 7, ..., 35
        Assert.Equal(Enumerable.Range(0, 9).Select(i => 4 * i + 3), Enumerable.Range(0, 36).Where(l => !SmolLM3Model.UsesRope(l)));
        // the NoPE layer keeps the scoring of the others (scale 1/sqrt(head_dim), no window)
        Assert.Equal(model.AttentionOf(0).Params, model.AttentionOf(3).Params);
    }

    [Fact]
    public void RotatingEveryLayerWouldDisagreeWithLlamaCpp()
    {
        // The same weights read as a llama file (rotary on every layer) give other logits than llama.cpp's smollm3:
        // the agreement above rests on the NoPE layer, not on a prompt where it happens not to matter.
        using var dir = new TempDir();
        var path = Write(dir, "tiny-smollm3", "f32");
        var asLlama = Edited(dir, path, "as-llama.gguf", w =>
        {
            using var f = OpenWeights.Formats.Gguf.GgufFile.Open(path);
            foreach (var k in f.MetadataKeys.Where(k => k.StartsWith("smollm3.", StringComparison.Ordinal)))
            {
                w.Set("llama." + k["smollm3.".Length..], f.Metadata[k]);
                w.Remove(k);
            }
            w.Set("general.architecture", "llama");
        });
        var roped = OurLogits(asLlama, Prompt);
        var theirs = LlamaCpp.Logits(path, Prompt);
        int v = theirs[0].Length, last = Prompt.Length - 1;
        double rel = Compare.Logits(roped.AsSpan(last * v, v), theirs[last]).MaxAbs / theirs[last].Max(Math.Abs);
        output.WriteLine($"rotary on every layer: rel diff {rel:E2} at the last position");
        Assert.True(rel > 1e-3, $"rotating layer 3 changed the logits by only {rel:E2}");
    }

    [Fact]
    public void FileMissingAFeedForwardTensorOrTheNormEpsilonIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-smollm3", "f32");
        var noGate = Without(dir, path, "no-gate.gguf", tensor: "blk.3.ffn_gate.weight");
        var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(noGate));
        Assert.Contains("blk.3.ffn_gate.weight", e.Message);
        var noEps = Without(dir, path, "no-eps.gguf", key: "smollm3.attention.layer_norm_rms_epsilon");
        e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(noEps));
        Assert.Contains("smollm3.attention.layer_norm_rms_epsilon is missing", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void DecodeStepsAllocateNothingOnTheCallingThread()
    {
        using var dir = new TempDir();
        Assert.Equal(0, DecodeAllocations(Write(dir, "tiny-smollm3", "q4_k_m")));
    }

    [Fact]
    public void RealShapePresetHasSmolLM3_3BParameterCount()
    {
        // SmolLM3-3B: 3.08B parameters with the 128256 x 2048 embedding tied; 36 layers of which 9 are NoPE
        var plan = SyntheticModel.Plan(SynthPreset.Get("smollm3-3b"), SynthType.Parse("f16"));
        long all = plan.Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
        Assert.InRange(all, 3_070_000_000, 3_090_000_000);
        Assert.DoesNotContain(plan, t => t.Name == "output.weight");
        Assert.Equal([2048L, 512L], plan.Single(t => t.Name == "blk.35.attn_k.weight").Dims);
    }
}
