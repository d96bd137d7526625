using OpenWeights.Catalog;
using OpenWeights.Formats.Gguf;
using OpenWeights.Hardware;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Catalog;

/// <summary>
/// The fit estimator's weight sizes against our own files of the exact same shapes: the bytes a synthetic GGUF of a
/// catalog model holds (tensor by tensor, with llama.cpp's per-tensor recipe, checked byte-identical to llama.cpp's
/// quantizer in QuantizerOracleTests) compared with the estimate from parameters x bits per weight.
/// </summary>
public class FitVersusFilesTests
{
    [Fact]
    public void PlanEqualsTheWrittenFile()
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        var p = SynthPreset.Get("tiny-qwen2");
        SyntheticModel.Write(p, SynthType.Parse("q4_k_m"), path, threads: 2);
        using var f = GgufFile.Open(path);
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        Assert.Equal(plan.Select(t => (t.Name, t.Type, t.Bytes)), f.Tensors.Select(t => (t.Name, t.Type, t.ByteSize)));
    }

    // Gaps of the estimate from the catalog facts (parameter count, dimensions) against our file of the exact shape.
    // Before the estimator counted the output projection / tied embedding at Q6_K, Qwen2.5-0.5B Q4_K_M was 23.6% low;
    // with the Q6_K output it was 16.3% low (Q4_0 10.3% low, SmolLM2-135M Q4_K_M 20.4% low), because rows of 896 (576)
    // values are not a multiple of 256 and the quantizer falls back to Q5_0 / Q8_0 for them. Now the estimator sizes each
    // matrix with the quantizer's own QuantRecipe.TypeFor: every gap is under 1% (Qwen2.5-0.5B: -0.6 to -0.8%, which is
    // the catalog's rounding of 494M parameters to 0.49B; Llama 3.2 1B -0.4%; SmolLM2-135M +0.3 to +0.5%).
    [Theory]
    [InlineData("qwen2.5-0.5b-instruct", "f16", "F16", 0.01)]
    [InlineData("qwen2.5-0.5b-instruct", "q8_0", "Q8_0", 0.01)]
    [InlineData("qwen2.5-0.5b-instruct", "q4_0", "Q4_0", 0.01)]
    [InlineData("qwen2.5-0.5b-instruct", "q4_k_m", "Q4_K_M", 0.01)]
    [InlineData("llama-3.2-1b-instruct", "q8_0", "Q8_0", 0.01)]
    [InlineData("llama-3.2-1b-instruct", "q4_0", "Q4_0", 0.01)]
    [InlineData("llama-3.2-1b-instruct", "q4_k_m", "Q4_K_M", 0.01)]
    [InlineData("smollm2-135m-instruct", "q8_0", "Q8_0", 0.01)]
    [InlineData("smollm2-135m-instruct", "q4_0", "Q4_0", 0.01)]
    [InlineData("smollm2-135m-instruct", "q4_k_m", "Q4_K_M", 0.01)]
    public void EstimateIsNearOurFileSize(string id, string synthType, string quant, double tolerance)
    {
        var shape = ModelShape.FromCatalog(ModelCatalog.Default.Get(id));
        var preset = ShapePreset.For(shape);
        long fileBytes = SyntheticModel.Plan(preset, SynthType.Parse(synthType)).Sum(t => t.Bytes);
        var e = FitEstimator.Estimate(shape, HardwareInfo.Synthetic(1L << 40, 50), new FitOptions { Quant = Quantization.Parse(quant) });
        double gap = (double)e.Memory.WeightsBytes / fileBytes - 1;
        Assert.True(Math.Abs(gap) <= tolerance, $"{id} {quant}: estimate {e.Memory.WeightsBytes} vs file {fileBytes} ({gap:P1})");
    }

    // A file's own shape (exact parameter count, feed-forward size and tying) leaves nothing to estimate: the weight bytes
    // the estimator gives for a preset are the bytes our quantizer writes, to the byte. The shape has rows of 384 and
    // 1152 values (not multiples of 256), so the Q4_K -> Q5_0 and Q6_K -> Q8_0 fallbacks are exercised, and qwen2 biases.
    [Theory]
    [InlineData("q4_k_m", "Q4_K_M")]
    [InlineData("q4_0", "Q4_0")]
    [InlineData("q8_0", "Q8_0")]
    [InlineData("f16", "F16")]
    public void FileShapeEstimateEqualsTheFileTensorBytes(string synthType, string quant)
    {
        using var dir = new TempDir();
        var preset = new SynthPreset("odd-rows", "qwen2", 1024, 384, 3, 6, 2, 1152, 2048, 1000000f, 1e-6f, false, "qwen2", AddBos: false);
        string path = dir.File("odd.gguf");
        SyntheticModel.Write(preset, SynthType.Parse(synthType), path, threads: 2);
        using var f = GgufFile.Open(path);
        if (quant == "Q4_K_M") Assert.Contains(f.Tensors, t => t.Type == OpenWeights.Tensors.Quant.GgmlType.Q5_0); // the fallback happened
        var shape = ModelShape.FromSource(f);
        long fileBytes = f.Tensors.Sum(t => t.ByteSize);
        var e = FitEstimator.Estimate(shape, HardwareInfo.Synthetic(1L << 40, 50), new FitOptions { Quant = Quantization.Parse(quant) });
        Assert.Equal(fileBytes, e.Memory.WeightsBytes);
    }

    // The file sizes the GGUF sources' Hugging Face listings show (catalog sources G1-G16; decimal GB, three digits,
    // metadata and tokenizer included: a few MB, about 2% of a 0.5B model) against the estimate from the catalog facts.
    // Remaining gaps: the catalog's rounded parameter counts (Qwen2.5-1.5B "1.5" for 1.54B; Qwen2.5-32B: the card's
    // "32.5B", -1.1% now that the catalog gives its hidden size and the per-tensor layout is used) and Qwen2.5-3B's 5%.
    [Theory]
    [InlineData("qwen2.5-0.5b-instruct", "Q4_K_M", 0.398, 0.03)]
    [InlineData("qwen2.5-0.5b-instruct", "Q8_0", 0.531, 0.03)]
    [InlineData("qwen2.5-1.5b-instruct", "Q4_K_M", 0.986, 0.04)]
    [InlineData("qwen2.5-3b-instruct", "Q4_K_M", 1.93, 0.06)]
    [InlineData("qwen2.5-7b-instruct", "Q4_K_M", 4.68, 0.01)]
    [InlineData("qwen2.5-7b-instruct", "Q8_0", 8.1, 0.01)]
    [InlineData("qwen2.5-32b-instruct", "Q4_K_M", 19.9, 0.015)]
    [InlineData("llama-3.2-1b-instruct", "Q4_K_M", 0.808, 0.02)]
    [InlineData("llama-3.2-3b-instruct", "Q4_K_M", 2.02, 0.01)]
    [InlineData("llama-3.1-8b-instruct", "Q8_0", 8.54, 0.01)]
    [InlineData("llama-3.3-70b-instruct", "Q4_K_M", 42.5, 0.015)]
    [InlineData("mistral-7b-instruct-v0.3", "Q4_K_M", 4.37, 0.015)]
    [InlineData("tinyllama-1.1b-chat-v1.0", "Q4_0", 0.638, 0.01)]
    [InlineData("tinyllama-1.1b-chat-v1.0", "Q4_K_M", 0.669, 0.01)]
    [InlineData("deepseek-r1-distill-llama-8b", "Q4_K_M", 4.92, 0.01)]
    [InlineData("smollm2-1.7b-instruct", "Q4_K_M", 1.06, 0.02)]
    public void EstimateIsNearThePublishedGgufFileSize(string id, string quant, double listedGb, double tolerance)
    {
        var m = ModelCatalog.Default.Get(id);
        Assert.NotNull(m.Gguf?.FileFor(quant)); // the listing the size comes from is the catalog's source for this file
        var e = FitEstimator.Estimate(ModelShape.FromCatalog(m), HardwareInfo.Synthetic(1L << 40, 50), new FitOptions { Quant = Quantization.Parse(quant) });
        double gap = e.Memory.WeightsBytes / (listedGb * 1e9) - 1;
        Assert.True(Math.Abs(gap) <= tolerance, $"{id} {quant}: estimate {e.Memory.WeightsBytes / 1e9:F3} GB vs listed {listedGb} GB ({gap:P1})");
    }
}
