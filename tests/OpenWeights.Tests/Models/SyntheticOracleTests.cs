using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Random-weight models written by our own writer, in every tensor type, against llama.cpp on the same file.
/// llama.cpp multiplies quantized weights with activations quantized to 8 bits (Q8_0 / Q8_K) and F16/BF16
/// weights with activations rounded to F16/BF16. Our kernels do the same for Q8_0, Q4_0, Q5_0, Q4_K, Q6_K (8-bit
/// activations, ggml's quantizers) and F16 (activations rounded to F16), so those agree to float rounding where
/// llama.cpp takes the same path; the other types still use dequantized weights with F32 activations and their
/// tolerances are that activation rounding, measured, with margin.
/// </summary>
public class SyntheticOracleTests
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12, 13, 14, 99, 600];

    public static TheoryData<string, string, double, double> Cases() => new()
    {
        // preset, type, max |diff| / max |logit|, min cosine. Measured worst cases (16 positions), with the
        // quantized-activation kernels: f32 5e-7; f16 5.4e-4; bf16 4.8e-3; tiny-llama q8_0 2.4e-3, q4_0 1.0e-2,
        // q4_k_m 4.7e-3 (llama.cpp takes other paths for some of its shapes); pure-q5_0/q4_k/q6_k and every tiny-qwen2
        // case <= 5e-7; types still on the F32 path (q4_1, q5_1, q2_k, q3_k, q5_k) <= 2.1e-2 (cos >= 0.99984).
        { "tiny-llama", "f32", 1e-5, 0.999999 },
        { "tiny-qwen2", "f32", 1e-5, 0.999999 },
        { "tiny-llama", "f16", 2e-3, 0.99999 },
        { "tiny-llama", "bf16", 1.5e-2, 0.9999 },
        { "tiny-llama", "q8_0", 1e-2, 0.9999 },
        { "tiny-qwen2", "q8_0", 1e-5, 0.999999 },
        { "tiny-llama", "pure-q4_0", 3e-2, 0.9995 },
        { "tiny-llama", "pure-q4_1", 4e-2, 0.9995 },
        { "tiny-llama", "pure-q5_0", 1e-5, 0.999999 },
        { "tiny-llama", "pure-q5_1", 4e-2, 0.9995 },
        { "tiny-llama", "pure-q2_k", 5e-2, 0.999 },
        { "tiny-llama", "pure-q3_k", 5e-2, 0.999 },
        { "tiny-llama", "pure-q4_k", 1e-5, 0.999999 },
        { "tiny-llama", "pure-q5_k", 5e-2, 0.999 },
        { "tiny-llama", "pure-q6_k", 1e-5, 0.999999 },
        { "tiny-llama", "q4_k_m", 1.5e-2, 0.9999 },
        { "tiny-qwen2", "q4_k_m", 1e-5, 0.999999 },
        { "tiny-qwen2", "q4_0", 1e-5, 0.999999 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAgreeWithLlamaCpp(string preset, string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = dir.File($"{preset}-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse(type), path, threads: 2);
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(64);
        var state = model.CreateState(Prompt.Length, 64);
        int v = model.Config.VocabSize;
        var ours = new float[Prompt.Length * v];
        model.Forward(Prompt, cache, state, 2, ours);
        var theirs = LlamaCpp.Logits(path, Prompt);
        for (int t = 0; t < Prompt.Length; t++)
        {
            var (maxAbs, cos) = Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
            double scale = theirs[t].Max(Math.Abs);
            Assert.True(maxAbs / scale < relTol, $"{type} position {t}: max abs diff {maxAbs} vs scale {scale}");
            Assert.True(cos > minCos, $"{type} position {t}: cosine {cos}");
        }
    }
}
