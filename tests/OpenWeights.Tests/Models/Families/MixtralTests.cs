using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Llama;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>A llama file with experts (Mixtral) against llama.cpp's llama builder (8 experts, top-2, renormalised).</summary>
public class MixtralTests(ITestOutputHelper output)
{
    public static TheoryData<string, double, double> Types() => new()
    {
        // type, max |diff| / max |logit|, min cosine. F32 measured 4.8e-7. The quantized files of this seed (42) differ
        // from llama.cpp: q8_0 7e-3..9e-3 at 14 of 16 positions, q4_k_m ~1e-1 at position 0, then ~1.5e-2. This is not a
        // MoE matter: with the seeds 1..5 the DENSE tiny-llama (1.1e-2, 8.9e-3 at seeds 1, 2) and tiny-qwen3 (4.9e-3,
        // 9.1e-3, 4.8e-3 at seeds 2, 4, 5) differ the same way in Q8_0, and tiny-mixtral agrees at 1.8e-7 with seeds 2
        // and 3 (tiny-qwen3moe: 3 of 5 seeds agree, tiny-olmoe: 4 of 5). Ruled out on our side: the expert views (each
        // expert's MatMul against its dequantized rows), prefill vs decode (bit-identical). The likely mechanism: hidden
        // states that agree to ~1e-7 round to different 8-bit activations now and then, which a quantized pipeline
        // amplifies. The tolerances below are the measured gaps (x1.5), not a claim of agreement.
        { "f32", 1e-5, 0.999999 },
        { "q8_0", 1.5e-2, 0.9999 },
        { "q4_k_m", 1.6e-1, 0.99 },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void LogitsAgreeWithLlamaCpp(string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-mixtral", type);
        var (rel, cos, margin) = MoeOracle.AssertAgrees(path, relTol, minCos);
        output.WriteLine($"tiny-mixtral {type}: worst rel {rel:E2}, worst cos {cos:F9}, routing margin {margin:E2}");
    }

    [Theory]
    [InlineData("f32")] // the quantized files differ from llama.cpp (see Types); their greedy runs part after ~40 tokens
    public void GreedyContinuationOf64TokensEqualsLlamaCpp(string type)
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-mixtral", type);
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46];
        var ours = OurGreedy(path, prompt, 64);
        var theirs = LlamaCpp.ArgmaxContinuation(path, prompt, 64);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }

    [Fact]
    public void ALlamaFileWithExpertsRunsTheLlamaBlockWithMoeLayers()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-mixtral", "q4_k_m");
        using var model = DecoderModel.Load(path);
        Assert.IsType<LlamaModel>(model);
        Assert.All(model.Layers, l => { Assert.NotNull(l.Experts); Assert.Null(l.WGate); });
        Assert.True(model.Layers[0].Experts!.Routing.NormalizeWeights);
        Assert.Equal((8, 2, 512), (model.Config.ExpertCount, model.Config.ExpertsUsed, model.Config.ExpertFfnDim));
        // llama.cpp's 8-expert recipe: attn_v and attn_k in Q8_0 whatever the preset
        using var f = GgufFile.Open(path);
        Assert.Equal(OpenWeights.Tensors.Quant.GgmlType.Q8_0, f.Tensors.Single(t => t.Name == "blk.0.attn_v.weight").Type);
    }

    [Fact]
    public unsafe void AnOldFileWithOneTensorPerExpertIsRefusedWithAClearMessage()
    {
        // GGUFs converted before llama.cpp stacked the experts hold blk.N.ffn_gate.E.weight (2-D) per expert
        using var dir = new TempDir();
        var src = Write(dir, "tiny-mixtral", "f32");
        var dst = dir.File("legacy.gguf");
        using (var f = GgufFile.Open(src))
        {
            var w = new GgufWriter().CopyMetadata(f);
            foreach (var t in f.Tensors)
            {
                var bytes = new ReadOnlySpan<byte>(f.TensorPointer(t), (int)t.ByteSize).ToArray();
                if (!t.Name.Contains("_exps.", StringComparison.Ordinal)) { w.AddTensor(t.Name, t.Type, t.Dimensions, bytes); continue; }
                // split [cols, rows, 8] into 8 tensors [cols, rows] named ffn_gate.E.weight
                int per = bytes.Length / 8;
                string part = t.Name[(t.Name.IndexOf('.', 4) + 1)..].Replace("_exps.weight", "", StringComparison.Ordinal);
                string blk = t.Name[..t.Name.IndexOf('.', 4)];
                for (int e = 0; e < 8; e++)
                    w.AddTensor($"{blk}.{part}.{e}.weight", t.Type, [t.Dimensions[0], t.Dimensions[1]], bytes.AsSpan(e * per, per).ToArray());
            }
            w.Write(dst);
        }
        var ex = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(dst));
        output.WriteLine(ex.Message);
        Assert.Contains("blk.0.ffn_gate.0.weight", ex.Message);
        Assert.Contains("old GGUF layout", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void RealShapePresetHasMixtral8x7BParameterCounts()
    {
        // Mixtral 8x7B: 46.7B total, 12.9B active parameters (Mistral AI's announcement)
        var p = SynthPreset.Get("mixtral-8x7b");
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        long Elements(SyntheticModel.PlannedTensor t) => t.Dims.Aggregate(1L, (a, b) => a * b);
        long total = plan.Sum(Elements), experts = plan.Where(t => t.Name.Contains("_exps.", StringComparison.Ordinal)).Sum(Elements);
        long active = total - experts + experts / 8 * 2;
        output.WriteLine($"total {total / 1e9:F2}B, active {active / 1e9:F2}B");
        Assert.InRange(total, 46_500_000_000, 46_900_000_000);
        Assert.InRange(active, 12_700_000_000, 13_100_000_000);
    }

    [Fact]
    public void ADenseLlamaFileStillLoadsItsDenseFeedForward()
    {
        using var dir = new TempDir();
        using var model = DecoderModel.Load(Write(dir, "tiny-llama", "q8_0"));
        Assert.Equal(0, model.Config.ExpertCount);
        Assert.All(model.Layers, l => { Assert.Null(l.Experts); Assert.NotNull(l.WGate); });
        Assert.Equal(0, model.ExpertBytesRead);
    }
}
