using OpenWeights.Formats;
using OpenWeights.Models;
using OpenWeights.Models.PhiMoe;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Models.Architectures.Names;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// Phi-3.5-MoE (GGUF architecture phimoe) against llama.cpp on the same random-weight file: biases on the norms, Q/K/V/O
/// and the output head, RMS norm + bias (llama.cpp's arithmetic; the Hugging Face model's norms are LayerNorms), softmax
/// top-2 of 16 experts renormalised, LongRoPE tables chosen by the context size with the attn_factor on cos/sin.
/// tiny-phimoe's original context is 256: a context up to 256 takes the short table, beyond it the long one.
/// </summary>
public class PhiMoeTests(ITestOutputHelper output)
{
    private const string Tiny = "tiny-phimoe";

    // the oracle checks (logits in f32 / q8_0 / q4_k_m, 64-token greedy runs) are rows of MoeFamilyTests

    [Fact]
    public void LoadsAsPhiMoeWithExpertsAndTheNormAndHeadBiases()
    {
        using var dir = new TempDir();
        using var m = DecoderModel.Load(Write(dir, Tiny, "q4_k_m"));
        Assert.IsType<PhiMoeModel>(m);
        Assert.Equal((16, 2, 512), (m.Config.ExpertCount, m.Config.ExpertsUsed, m.Config.ExpertFfnDim));
        Assert.All(m.Layers, L => Assert.NotNull(L.Experts));
        Assert.All(m.Layers, L => Assert.NotNull(L.AttnNormBias));
        Assert.NotNull(m.OutputNormBias);
        Assert.NotNull(m.Output.Bias);
    }

    [Fact]
    public void LongRopeTableFollowsTheContextSizeAsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, Tiny, "f32");
        int[] prompt = [.. Enumerable.Range(0, 300).Select(i => (i * 37 + 11) % 1000 + 3)];  // positions past the original 256
        using var model = DecoderModel.Load(path);
        int v = model.Config.VocabSize;
        var cache = model.CreateCache(1024);
        var state = model.CreateState(prompt.Length, 1024);   // 1024 > 256: the long factors
        var ours = new float[prompt.Length * v];
        model.Forward(prompt, cache, state, 2, ours);
        var theirs = LlamaCpp.Logits(path, prompt, contextSize: 1024);
        double rel = 0;
        for (int t = 0; t < prompt.Length; t++)
            rel = Math.Max(rel, Compare.Logits(ours.AsSpan(t * v, v), theirs[t]).MaxAbs / theirs[t].Max(Math.Abs));
        output.WriteLine($"{Tiny} long table, 300 tokens: worst rel {rel:E2}");
        Assert.True(rel < 1e-5, $"long table: {rel:E2}");
        Assert.NotSame(model.Ropes(256)[0], model.Ropes(1024)[0]);
    }

    [Fact]
    public void RealShapeHas41Point9BParametersAnd6Point6BActive()
    {
        // microsoft/Phi-3.5-MoE-instruct: 32 layers, d 4096, 32 / 8 heads, 16 experts of 6400, top-2, vocab 32064, untied.
        // The model card: 41.9B total, 6.6B active. Counted from the planned tensors (the file is not written).
        var p = SynthPreset.Get("phi-3.5-moe");
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        static long Elements(SyntheticModel.PlannedTensor t) => t.Dims.Aggregate(1L, (a, d) => a * d);
        long total = plan.Sum(Elements);
        long experts = plan.Where(t => t.Name.EndsWith(FfnGateExps) || t.Name.EndsWith(FfnUpExps) || t.Name.EndsWith(FfnDownExps)).Sum(Elements);
        long active = total - experts + experts / p.ExpertCount * p.ExpertsUsed;
        output.WriteLine($"phi-3.5-moe: {total:N0} parameters, {active:N0} active");
        Assert.Equal(41.9, Math.Round(total / 1e9, 1));
        Assert.Equal(6.6, Math.Round(active / 1e9, 1));
        Assert.Equal((32, 4096, 32, 8, 32064), (p.Layers, p.Dim, p.Heads, p.KvHeads, p.VocabSize));
        Assert.Equal((16, 2, 6400), (p.ExpertCount, p.ExpertsUsed, p.EffectiveExpertFfnDim));
    }

    [Theory]
    [InlineData(OutputBias)]
    [InlineData(OutputNormBias)]
    public void FileWithoutAHeadBiasIsRefusedNamingIt(string tensor)
    {
        using var dir = new TempDir();
        var path = Without(dir, Write(dir, Tiny, "f32"), "no-bias.gguf", tensor: tensor);
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(path));
        Assert.Contains(tensor, e.Message);
    }

    [Fact]
    public void FileWithoutANormBiasIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        string tensor = Block(1, FfnNormBias);
        var path = Without(dir, Write(dir, Tiny, "f32"), "no-norm-bias.gguf", tensor: tensor);
        var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(path));
        Assert.Contains(tensor, e.Message);
    }

    [Fact]
    public void FileWithoutExpertsIsRefusedNamingTheKey()
    {
        using var dir = new TempDir();
        var path = Without(dir, Write(dir, Tiny, "f32"), "no-experts.gguf", key: "phimoe.expert_count");
        var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(path));
        Assert.Contains("phimoe.expert_count", e.Message);
    }
}
