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

    // Before the estimator counted the output projection / tied embedding at Q6_K, Qwen2.5-0.5B Q4_K_M was estimated
    // 23.6% low (300 vs 392 MB; the published Q4_K_M file is about 398 MB); now 16% low. What remains for Qwen2.5-0.5B is
    // the recipe's fallback for rows whose length (896) is not a multiple of 256 (Q4_K -> Q5_0, Q6_K -> Q8_0), which the
    // estimator does not model yet. Tolerances: the measured gaps with margin.
    [Theory]
    [InlineData("qwen2.5-0.5b-instruct", "f16", "F16", 0.02)]
    [InlineData("qwen2.5-0.5b-instruct", "q8_0", "Q8_0", 0.02)]
    [InlineData("qwen2.5-0.5b-instruct", "q4_0", "Q4_0", 0.13)]
    [InlineData("qwen2.5-0.5b-instruct", "q4_k_m", "Q4_K_M", 0.19)]
    [InlineData("llama-3.2-1b-instruct", "q8_0", "Q8_0", 0.02)]
    [InlineData("llama-3.2-1b-instruct", "q4_k_m", "Q4_K_M", 0.08)]
    [InlineData("smollm2-135m-instruct", "q8_0", "Q8_0", 0.02)]
    public void EstimateIsNearOurFileSize(string id, string synthType, string quant, double tolerance)
    {
        var shape = ModelShape.FromCatalog(ModelCatalog.Default.Get(id));
        var preset = SynthPreset.FromShape(shape);
        long fileBytes = SyntheticModel.Plan(preset, SynthType.Parse(synthType)).Sum(t => t.Bytes);
        var e = FitEstimator.Estimate(shape, HardwareInfo.Synthetic(1L << 40, 50), new FitOptions { Quant = Quantization.Parse(quant) });
        double gap = (double)e.Memory.WeightsBytes / fileBytes - 1;
        Assert.True(Math.Abs(gap) <= tolerance, $"{id} {quant}: estimate {e.Memory.WeightsBytes} vs file {fileBytes} ({gap:P1})");
    }
}
