using OpenWeights.Models;
using OpenWeights.Models.Qwen3;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>Qwen 3 (dense) against llama.cpp's qwen3 on the same random-weight files.</summary>
public class Qwen3Tests(ITestOutputHelper output)
{
    public static TheoryData<string, double, double> Types() => new()
    {
        // type, max |diff| / max |logit|, min cosine. Measured worst of 16 positions: f32 7.5e-7; f16 5.9e-4 (cos 0.99999987); q8_0 2.1e-7; q4_k_m 4.4e-7.
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
        var path = Write(dir, "tiny-qwen3", type);
        var (rel, cos) = AssertLogitsAgree(path, relTol, minCos);
        output.WriteLine($"tiny-qwen3 {type}: worst rel {rel:E2}, worst cos {cos:F9}");
    }

    [Fact]
    public void GreedyContinuationOf64TokensEqualsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-qwen3", "f32");
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46];
        var ours = OurGreedy(path, prompt, 64);
        var theirs = LlamaCpp.ArgmaxContinuation(path, prompt, 64);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }

    [Fact]
    public void HeadDimensionIsTheKeyLengthNotDimOverHeads()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-qwen3", "f32");
        using var model = DecoderModel.Load(path);
        Assert.IsType<Qwen3Model>(model);
        // dim 256 over 4 heads would be 64; the file says 128, so the query projection is 512 wide
        Assert.Equal((256, 128, 512, 256), (model.Config.Dim, model.Config.HeadDim, model.Config.QDim, model.Config.KvDim));
        Assert.Equal(128, model.Layers[0].QNorm!.Length);
        Assert.Equal(128, model.Layers[0].KNorm!.Length);
        Assert.Null(model.Layers[0].Wq.Bias);
    }

    [Fact]
    public void RealShapePresetHasQwen3_0_6BParameterCount()
    {
        // Qwen3-0.6B's model card: 0.6B parameters, 0.44B of them outside the (tied) embedding
        var plan = SyntheticModel.Plan(SynthPreset.Get("qwen3-0.6b"), SynthType.Parse("f16"));
        long Elements(SyntheticModel.PlannedTensor t) => t.Dims.Aggregate(1L, (a, b) => a * b);
        long all = plan.Sum(Elements), embedding = Elements(plan.Single(t => t.Name == "token_embd.weight"));
        Assert.InRange(all - embedding, 435_000_000, 445_000_000);
        Assert.InRange(all, 590_000_000, 600_000_000);
        Assert.DoesNotContain(plan, t => t.Name == "output.weight");
        Assert.Equal([128L], plan.Single(t => t.Name == "blk.0.attn_q_norm.weight").Dims);
        Assert.Equal([1024L, 2048L], plan.Single(t => t.Name == "blk.0.attn_q.weight").Dims);
    }

    [Fact]
    public void FileMissingTheQueryNormOrTheNormEpsilonIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-qwen3", "f32");
        var noNorm = Without(dir, path, "no-qnorm.gguf", tensor: "blk.1.attn_q_norm.weight");
        var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(noNorm));
        Assert.Contains("blk.1.attn_q_norm.weight", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        var noEps = Without(dir, path, "no-eps.gguf", key: "qwen3.attention.layer_norm_rms_epsilon");
        e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(noEps));
        Assert.Contains("qwen3.attention.layer_norm_rms_epsilon is missing", e.Message);
    }

    [Fact]
    public void DecodeStepsAllocateNothingOnTheCallingThread()
    {
        using var dir = new TempDir();
        Assert.Equal(0, DecodeAllocations(Write(dir, "tiny-qwen3", "q8_0")));
    }
}
