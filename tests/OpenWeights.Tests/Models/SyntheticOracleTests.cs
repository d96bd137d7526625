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
        // quantized-activation kernels: f32 5e-7; f16 5.4e-4; bf16 4.8e-3; tiny-llama q8_0 1.4e-7, q4_0 0 (bit-identical),
        // q4_k_m 4.7e-3 at one position (8) and <= 3.6e-7 at the others; pure-q5_0/q4_k/q6_k and every tiny-qwen2 case
        // <= 5e-7; types still on the F32 path (q4_1, q5_1, q2_k, q3_k, q5_k) <= 2.1e-2 (cos >= 0.99984).
        // A quantized file can disagree by ~1e-2 at single positions although every product agrees: see
        // LlamaCppItselfIsNotBatchInvariantOnQuantizedFiles. That is why q4_k_m keeps a loose tolerance, and why a change
        // of float summation order (ours or llama.cpp's) can move one of the tight quantized cases below to ~1e-2.
        { "tiny-llama", "f32", 1e-5, 0.999999 },
        { "tiny-qwen2", "f32", 1e-5, 0.999999 },
        { "tiny-llama", "f16", 2e-3, 0.99999 },
        { "tiny-llama", "bf16", 1.5e-2, 0.9999 },
        { "tiny-llama", "q8_0", 1e-5, 0.999999 },
        { "tiny-qwen2", "q8_0", 1e-5, 0.999999 },
        { "tiny-llama", "pure-q4_0", 3e-2, 0.9995 },
        { "tiny-llama", "q4_0", 1e-5, 0.999999 },
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

    /// <summary>
    /// Why quantized files disagree with llama.cpp by ~1e-2 at a few positions while the rest agree to ~1e-7: not
    /// another llama.cpp path but the 8-bit activation quantization (Q8_0 / Q8_K, q = round(x·127/amax)) that both
    /// sides apply before every quantized product. An activation within ~1e-5 of a rounding tie (x·127/amax = k + ½)
    /// moves one quantization step when the float rounding upstream differs by 1e-7, which changes that product's
    /// row by ~1e-3; post-norms (OLMo 2, Gemma 2) carry it at full scale, and through K/V into later positions.
    /// Evidence (ggml eval-callback dumps, tiny-olmo2, tiny-gemma2, tiny-llama): every weight product of llama.cpp's
    /// graph, recomputed by our kernels from llama.cpp's own inputs, agrees to &lt;= 6.4e-7 at every row, Q4_K, Q6_K,
    /// Q8_0 and Q4_0 alike; our repacked and scalar kernels (same math, other summation order) disagree with each other
    /// the same way (tiny-gemma2 q8_0: 9.1e-3 at one position); and llama.cpp disagrees with itself: position 0 of a
    /// 16-token batch against the same token decoded alone. Its products round differently with the batch size (1-layer
    /// tiny-olmo2 in pure Q4_K: Qcur-0 row 0, from the identical embedding, differs by 1e-7; ffn_inp row 0 by 1.1e-7),
    /// and ffn_gate/ffn_up row 0 then differ by 9.9e-4: one activation moved one step.
    /// Ours is batch-invariant and equals llama.cpp's single-token result. This test pins that.
    /// </summary>
    [Fact]
    public void LlamaCppItselfIsNotBatchInvariantOnQuantizedFiles()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny-olmo2-q4_k_m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-olmo2"), SynthType.Parse("q4_k_m"), path, threads: 2);
        using var model = DecoderModel.Load(path);
        int v = model.Config.VocabSize;
        var ours = new float[Prompt.Length * v];
        model.Forward(Prompt, model.CreateCache(64), model.CreateState(Prompt.Length, 64), 2, ours);
        var batch = LlamaCpp.Logits(path, Prompt)[0];
        var alone = LlamaCpp.Logits(path, Prompt[..1])[0];
        double scale = alone.Max(Math.Abs);
        double selfGap = Compare.Logits(batch, alone).MaxAbs / scale;
        double oursGap = Compare.Logits(ours.AsSpan(0, v), alone).MaxAbs / scale;
        // measured: llama.cpp batch vs alone 2.1e-2; ours vs llama.cpp alone 0
        Assert.True(selfGap > 1e-3, $"llama.cpp position 0, 16-token batch vs alone: {selfGap:E2} (expected a rounding-tie jump)");
        Assert.True(oursGap < 1e-5, $"ours position 0 vs llama.cpp's token decoded alone: {oursGap:E2}");
    }
}
