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
    // the oracle checks (logits per type, the f32 64-token greedy run) are rows of MoeFamilyTests; their comment says
    // why this file's Q8_0 and Q4_K_M logits differ from llama.cpp's by the size of the 8-bit activation rounding

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_k_m")]
    public void QuantizedLogitsAreAsCloseToTheF32ActivationLogitsAsLlamaCpps(string type)
    {
        // Where the engines part on activation rounding steps, neither is "right": both should stand as far from the
        // logits of the same weights run with F32 activations (the file's weights dequantized to F32). A real error on
        // our side (a wrong scale, a lost block) would put ours much farther from them than llama.cpp.
        using var dir = new TempDir();
        var path = Write(dir, "tiny-mixtral", type);
        var exact = OurLogits(MoeOracle.DequantizedCopy(dir, path, "f32-weights.gguf"), Prompt);
        var ours = OurLogits(path, Prompt);
        var theirs = LlamaCpp.Logits(path, Prompt);
        int v = theirs[0].Length;
        double oursWorst = 0, theirsWorst = 0, oursSum = 0, theirsSum = 0;
        for (int t = 0; t < Prompt.Length; t++)
        {
            var reference = exact.AsSpan(t * v, v);
            double scale = theirs[t].Max(Math.Abs);
            double o = Compare.Logits(ours.AsSpan(t * v, v), reference).MaxAbs / scale;
            double l = Compare.Logits(theirs[t], reference).MaxAbs / scale;
            oursWorst = Math.Max(oursWorst, o); theirsWorst = Math.Max(theirsWorst, l);
            oursSum += o; theirsSum += l;
        }
        output.WriteLine($"tiny-mixtral {type} vs F32 activations: ours worst {oursWorst:E2} mean {oursSum / Prompt.Length:E2}; " +
                         $"llama.cpp worst {theirsWorst:E2} mean {theirsSum / Prompt.Length:E2}");
        // the 8-bit rounding does move the logits (else this test would say nothing) ...
        Assert.True(theirsSum / Prompt.Length > 1e-3, $"llama.cpp's {type} logits are within {theirsSum / Prompt.Length:E2} of the F32-activation ones");
        // ... and ours by no more than llama.cpp's (measured, ours / llama.cpp: q8_0 worst 0.243 / 0.243, mean 3.38e-2 / 3.35e-2;
        // q4_k_m worst 9.65e-2 / 9.65e-2, mean 1.87e-2 / 1.85e-2)
        Assert.True(oursWorst <= 1.25 * theirsWorst, $"worst: ours {oursWorst:E2}, llama.cpp {theirsWorst:E2}");
        Assert.True(oursSum <= 1.25 * theirsSum, $"mean: ours {oursSum / Prompt.Length:E2}, llama.cpp {theirsSum / Prompt.Length:E2}");
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
