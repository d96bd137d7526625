using LLama.Native;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// Whole models with Q5_K weights against llama.cpp on the same file. llama.cpp multiplies Q5_K rows with activations
/// quantized to Q8_K (ggml_vec_dot_q5_K_q8_K); so do we (QuantDot.DotQ5_KAvx2), so the logits agree at the tolerance
/// of the other K-quants (before the Q5_K kernel we decoded Q5_K to F32 and differed by ~1.5e-2).
/// </summary>
public class Q5KLogitsTests(ITestOutputHelper output)
{
    /// <summary>Every 2-D weight Q5_K (our quantizer: bytes as llama.cpp's quantize_row_q5_K_ref).</summary>
    [Fact]
    public void PureQ5_KLogitsAgreeWithLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-llama", "pure-q5_k");
        // measured worst of 16 positions 4.9e-7 (cosine 1 to 9 digits); the tolerance is the one of q4_k_m in the family tests
        var (rel, cos) = AssertLogitsAgree(path, 1e-5, 0.999999);
        output.WriteLine($"tiny-llama pure-q5_k: worst rel {rel:E2}, worst cos {cos:F9}");
    }

    /// <summary>A Q5_K_M file written by llama.cpp's quantizer (Q5_K with Q6_K for output and some attn_v / ffn_down).</summary>
    [Fact]
    public void Q5_K_MFileQuantizedByLlamaCppAgrees()
    {
        using var dir = new TempDir();
        var f32 = Write(dir, "tiny-llama", "f32");
        var theirs = dir.File("llama-q5_k_m.gguf");
        LlamaCpp.Init();
        Assert.True(LLama.LLamaQuantizer.Quantize(f32, theirs, LLamaFtype.MOSTLY_Q5_K_M, 2, allowRequantize: true, quantizeOutputTensor: true), "llama.cpp quantization failed");
        // measured worst 4.1e-7
        var ours = OurLogits(theirs, Prompt);
        var reference = LlamaCpp.Logits(theirs, Prompt);
        int v = reference[0].Length;
        double worst = 0;
        for (int t = 0; t < Prompt.Length; t++)
            worst = Math.Max(worst, Compare.Logits(ours.AsSpan(t * v, v), reference[t]).MaxAbs / reference[t].Max(Math.Abs));
        output.WriteLine($"tiny-llama Q5_K_M by llama.cpp: worst rel {worst:E2}");
        Assert.True(worst < 1e-5, $"Q5_K_M: ours vs llama.cpp, worst {worst:E2}");
    }

    [Fact]
    public void GreedyContinuationOf64TokensEqualsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-llama", "pure-q5_k");
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46];
        var ours = OurGreedy(path, prompt, 64);
        var theirs = LlamaCpp.ArgmaxContinuation(path, prompt, 64);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }

    /// <summary>
    /// llama.cpp repacks Q5_K rows 8 at a time (its q5_K 8x8 kernels, another float order); with repacking off on both
    /// sides both run the row kernels, whose float order ours keeps (bit-exact in GgmlOracleTests), so the logits must
    /// agree at least as well. Measured worst 4.9e-7, the same as with repacking: the rest is the non-matmul part of the
    /// graph (F32 files of the dense families differ from llama.cpp by ~4e-7 too).
    /// </summary>
    [Fact]
    public void RowKernelsAgreeWithLlamaCppWithoutWeightRepacking()
    {
        using var dir = new TempDir();
        var path = Write(dir, "tiny-llama", "pure-q5_k");
        float[] ours;
        using (var model = OpenWeights.Models.DecoderModel.Load(path, repack: false))
        {
            ours = new float[Prompt.Length * model.Config.VocabSize];
            model.Forward(Prompt, model.CreateCache(Prompt.Length + 8), model.CreateState(Prompt.Length, Prompt.Length + 8), 2, ours);
        }
        var theirs = NonLinearQuantLogitsTests.LogitsWithoutRepack(path, Prompt);
        int v = theirs[0].Length;
        double worst = 0;
        for (int t = 0; t < Prompt.Length; t++)
            worst = Math.Max(worst, Compare.Logits(ours.AsSpan(t * v, v), theirs[t]).MaxAbs / theirs[t].Max(Math.Abs));
        output.WriteLine($"pure-q5_k: ours vs llama.cpp, both without repacking, worst {worst:E2}");
        Assert.True(worst < 1e-5, $"ours vs llama.cpp without repacking: worst {worst:E2}");
    }
}
