using LLama.Native;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// A whole model with IQ3_S projections, quantized by llama.cpp's own quantizer (llama_model_quantize from the F32 file),
/// against llama.cpp's logits on the same file at every prompt position. LLamaQuantizer passes no importance matrix, and
/// llama.cpp refuses the IQ3_XXS, IQ1_S and IQ1_M file types without one: those types are checked at the matrix level
/// (IQGridOracleTests, ggml's quantizer with an importance matrix).
/// </summary>
public class GridQuantLogitsTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_IQ3_S, GgmlType.IQ3_S)]
    public void FileQuantizedByLlamaCppRunsAndAgrees(LLamaFtype ftype, GgmlType type)
    {
        using var dir = new TempDir();
        var f32 = Write(dir, "tiny-llama", "f32");
        var theirs = dir.File($"llama-{ftype}.gguf");
        LlamaCpp.Init();
        Assert.True(LLama.LLamaQuantizer.Quantize(f32, theirs, ftype, 2, allowRequantize: true, quantizeOutputTensor: true), "llama.cpp quantization failed");
        int count;
        using (var g = GgufFile.Open(theirs)) count = g.Tensors.Count(t => t.Type == type);
        Assert.True(count > 0, $"llama.cpp wrote no {type} tensor");
        var ours = OurLogits(theirs, Prompt);
        var reference = LlamaCpp.Logits(theirs, Prompt);
        int v = reference[0].Length;
        double worst = 0, worstCos = 1;
        for (int t = 0; t < Prompt.Length; t++)
        {
            var c = Compare.Logits(ours.AsSpan(t * v, v), reference[t]);
            worst = Math.Max(worst, c.MaxAbs / reference[t].Max(Math.Abs));
            worstCos = Math.Min(worstCos, c.Cosine);
        }
        output.WriteLine($"tiny-llama {ftype} by llama.cpp ({count} {type} tensors): worst rel {worst:E2}, worst cos {worstCos:F9}");
        // measured: IQ3_S 3.7e-7 (15 IQ3_S tensors), cosine 1 to 9 digits
        Assert.True(worst < 1e-5, $"{ftype}: ours vs llama.cpp, worst {worst:E2}");
    }
}
