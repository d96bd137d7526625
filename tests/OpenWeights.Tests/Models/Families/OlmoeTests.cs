using OpenWeights.Models;
using OpenWeights.Models.Olmoe;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>OLMoE against llama.cpp's olmoe on the same random-weight files (64 experts, top-8, not renormalised).</summary>
public class OlmoeTests(ITestOutputHelper output)
{
    // the oracle checks (logits per type, 64-token greedy runs, the tie rule on tied routers) are rows of MoeFamilyTests

    [Fact]
    public void WeightsAreTheSoftmaxOverAllExpertsNotRenormalised()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-olmoe", "f32");
        using var model = DecoderModel.Load(path);
        Assert.IsType<OlmoeModel>(model);
        var x = model.Layers[0].Experts!;
        Assert.False(x.Routing.NormalizeWeights);
        Assert.Equal((64, 8, 256), (x.Count, x.Used, x.FfnDim));
        Assert.Equal(256, model.Layers[0].QNorm!.Length); // whole projection, not per head (64)
        var cache = model.CreateCache(8);
        var state = model.CreateState(1, 8);
        model.Forward([5], cache, state, 2);
        float sum = state.Moe!.Weights.AsSpan(0, 8).ToArray().Sum();
        Assert.InRange(sum, 0.01f, 0.99f); // 8 of 64 probabilities: less than 1
    }

    [Fact]
    public void RealShapePresetHasOlmoe1B7BParameterCounts()
    {
        // OLMoE-1B-7B's model card: 6.9B total, 1.3B active parameters
        var p = SynthPreset.Get("olmoe-1b-7b");
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        long Elements(SyntheticModel.PlannedTensor t) => t.Dims.Aggregate(1L, (a, b) => a * b);
        long total = plan.Sum(Elements), experts = plan.Where(t => t.Name.Contains("_exps.", StringComparison.Ordinal)).Sum(Elements);
        long active = total - experts + experts / 64 * 8;
        long bytes = plan.Sum(t => t.Bytes);
        output.WriteLine($"total {total / 1e9:F2}B, active {active / 1e9:F2}B, q4_k_m file {bytes / 1e9:F2} GB");
        Assert.InRange(total, 6_850_000_000, 6_950_000_000);
        Assert.InRange(active, 1_250_000_000, 1_350_000_000);
        Assert.Equal([2048L, 1024L, 64L], plan.Single(t => t.Name == "blk.0.ffn_up_exps.weight").Dims);
        // about 4 GB at Q4_K_M: not written by the tests (the machine's memory is shared); the bench writes it
        Assert.InRange(bytes, 3_500_000_000, 4_500_000_000);
    }

    [Fact]
    public void FileWithoutOutputHeadOrExpertsIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-olmoe", "f32");
        var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(Without(dir, path, "no-out.gguf", tensor: "output.weight")));
        Assert.Contains("output.weight is missing", e.Message);
        e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(Without(dir, path, "no-exps.gguf", tensor: "blk.1.ffn_down_exps.weight")));
        Assert.Contains("blk.1.ffn_down_exps.weight", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
