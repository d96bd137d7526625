using LLama.Native;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// Our logits with the KV cache in F16 / Q8_0 against llama.cpp's with the same type_k / type_v (LLamaSharp
/// ModelParams.TypeK / TypeV), on a random-weight llama-family GGUF in F32 weights (so that the cache is the only
/// rounding the two runs are asked to share), at every position of a prompt; and one prompt past 4,096 positions.
/// </summary>
/// <remarks>
/// llama.cpp runs with flash attention (its CPU default, and what a Q8_0 V needs) and without its Hadamard rotation of
/// quantized caches (<see cref="LlamaCpp.KvRotationDisabled"/>), so both engines store the same values: F16 rounded to
/// nearest even, Q8_0 as ggml's quantize_row_q8_0. They read them with other arithmetic: ours decodes a tile of keys /
/// values to F32 and keeps the query, scores, probabilities and output in F32; llama.cpp's flash attention rounds the query
/// to the K type's dot type (F16, or Q8_0 for a Q8_0 K: ~2^-8 relative per element) and, for an F16 V, accumulates the
/// output in F16. Measured on this file (worst max |diff| / max |logit| over 100 positions): F16/F16 5.5e-6; Q8_0/Q8_0
/// 1.1e-3, the query's 8-bit rounding; K Q8_0 with V F16 ~6e-4. Our F32 cache against the same llama.cpp runs: 3.1e-4,
/// 9.4e-3 and ~7e-4. The tolerances are ~4× the measured worst; and where the cache type moves the logits by much more
/// than llama.cpp's own rounding (all but a Q8_0 K alone), our typed cache must be at least 3× closer to llama.cpp's than
/// our F32 cache is, so that the comparison sees the type at all. With the rotation on, a Q8_0 V cache differs from ours
/// by ~1e-2: as much as from an F32 cache (the rounding errors land elsewhere), not a bug.
/// </remarks>
public class KvCacheTypeLogitsTests
{
    private static readonly int[] Prompt = Enumerable.Range(0, 100).Select(i => (i * 389 + 7) % 1000 + 5).ToArray();

    private static string Write(TempDir dir, SynthPreset p)
    {
        var path = dir.File($"{p.Name}-kv.gguf");
        SyntheticModel.Write(p, SynthType.Parse("f32"), path, threads: 2);
        return path;
    }

    private static float[] Ours(string path, int[] prompt, KvCacheTypes types)
    {
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(prompt.Length + 8, types);
        var state = model.CreateState(prompt.Length, prompt.Length + 8);
        var all = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, cache, state, 2, all);
        return all;
    }

    private static GGMLType Ggml(GgmlType t) => t switch
    {
        GgmlType.F32 => GGMLType.GGML_TYPE_F32, GgmlType.F16 => GGMLType.GGML_TYPE_F16, _ => GGMLType.GGML_TYPE_Q8_0,
    };

    /// <summary>Worst max |diff| / max |logit| and lowest cosine over positions from <paramref name="from"/>.</summary>
    private static (double Rel, double Cos) Worst(float[] ours, float[][] theirs, int from = 0)
    {
        int v = theirs[0].Length;
        double rel = 0, cos = 1;
        for (int t = from; t < theirs.Length; t++)
        {
            var (maxAbs, c) = Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
            rel = Math.Max(rel, maxAbs / theirs[t].Max(Math.Abs)); cos = Math.Min(cos, c);
        }
        return (rel, cos);
    }

    [Theory]
    [InlineData("f16", "f16", 3e-5, true)]
    [InlineData("q8_0", "q8_0", 5e-3, true)]
    [InlineData("q8_0", "f16", 3e-3, false)]  // a Q8_0 K moves the logits about as much as llama.cpp's 8-bit query does
    [InlineData("f16", "q8_0", 5e-3, true)]
    public void Logits_agree_with_llama_cpp_using_the_same_cache_types(string k, string v, double relTol, bool typeVisible)
    {
        LlamaCpp.Init();
        if ((k == "q8_0" || v == "q8_0") && !LlamaCpp.KvRotationDisabled) Assert.Skip("llama.cpp's rotation of quantized KV caches could not be turned off (setenv)");
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get("tiny-llama"));
        var types = new KvCacheTypes(KvCacheTypes.Parse(k), KvCacheTypes.Parse(v));
        var theirs = LlamaCpp.Logits(path, Prompt, Ggml(types.K), Ggml(types.V), flashAttention: true);
        var (rel, cos) = Worst(Ours(path, Prompt, types), theirs);
        var (relF32, _) = Worst(Ours(path, Prompt, KvCacheTypes.F32), theirs);
        TestContext.Current.SendDiagnosticMessage($"K {k} V {v}: worst rel {rel:E2}, cosine {cos:F8}; ours with an F32 cache: rel {relF32:E2}");
        Assert.True(rel < relTol, $"K {k}, V {v}: max abs diff / max |logit| = {rel:E2} (tolerance {relTol:E1})");
        Assert.True(cos > 0.9999, $"K {k}, V {v}: cosine {cos:F8}");
        if (typeVisible) Assert.True(3 * rel < relF32, $"K {k}, V {v}: our F32 cache ({relF32:E2}) is nearly as close to llama.cpp's {types} cache as ours ({rel:E2})");
    }

    /// <summary>
    /// Positions past 4,096 (one layer, a context of 8,192): an F16 and a Q8_0 cache against llama.cpp's, the logits of
    /// the last 130 positions (4,100 ..) and of every 97th before.
    /// </summary>
    [Theory]
    [InlineData("f16", "f16", 3e-5)]
    [InlineData("q8_0", "q8_0", 5e-3)]
    public void Long_prompt_logits_agree_past_4096_positions(string k, string v, double relTol)
    {
        LlamaCpp.Init();
        if (k == "q8_0" && !LlamaCpp.KvRotationDisabled) Assert.Skip("llama.cpp's rotation of quantized KV caches could not be turned off (setenv)");
        using var dir = new TempDir();
        var preset = SynthPreset.Get("tiny-llama") with { Name = "tiny-llama-long", Layers = 1, ContextLength = 8192 };
        var path = Write(dir, preset);
        int n = 4230;
        var prompt = Enumerable.Range(0, n).Select(i => (int)((i * 2654435761L + 11) % 1000) + 5).ToArray();
        var types = new KvCacheTypes(KvCacheTypes.Parse(k), KvCacheTypes.Parse(v));
        var theirs = LlamaCpp.Logits(path, prompt, Ggml(types.K), Ggml(types.V), flashAttention: true, contextSize: n + 8);
        var ours = Ours(path, prompt, types);
        int vocab = theirs[0].Length;
        var checkedPositions = Enumerable.Range(0, n).Where(t => t >= 4100 || t % 97 == 0).ToArray();
        double worst = 0, worstCos = 1;
        foreach (int t in checkedPositions)
        {
            var (maxAbs, cos) = Compare.Logits(ours.AsSpan(t * vocab, vocab), theirs[t]);
            double rel = maxAbs / theirs[t].Max(Math.Abs);
            worst = Math.Max(worst, rel); worstCos = Math.Min(worstCos, cos);
            Assert.True(rel < relTol, $"position {t}: max abs diff / max |logit| = {rel:E2} (tolerance {relTol:E1})");
            Assert.True(cos > 0.9999, $"position {t}: cosine {cos:F8}");
        }
        TestContext.Current.SendDiagnosticMessage($"long K {k} V {v}: {checkedPositions.Length} positions, worst rel {worst:E2}, cosine {worstCos:F8}");
    }
}
