using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Attention on the portable 128-bit path (ARM64's), run here on x64 with <see cref="QuantDot.ForceVector128"/>: it takes the
/// 128-bit kernels (not the per-row reference), keeps the AVX2 path's guarantees (split decode = one thread, typed caches =
/// the decoded values, the double-precision definition) and, in a whole model past <see cref="Attention.SplitKeys"/> keys,
/// prefill blocks and decode steps agree bit for bit and the logits agree with the AVX2 run. The switch is process-wide:
/// these tests run alone (their collection is not parallel) and put it back.
/// </summary>
[Collection(nameof(ForcedVector128Collection))]
public class AttentionVector128Tests
{
    /// <summary>Runs <paramref name="check"/> with the 128-bit kernels forced, then restores the switch.</summary>
    private static void Forced(Action check)
    {
        if (!Vector128.IsHardwareAccelerated) Assert.Skip("128-bit SIMD is not accelerated on this machine");
        bool old = QuantDot.ForceVector128;
        QuantDot.ForceVector128 = true;
        try { check(); }
        finally { QuantDot.ForceVector128 = old; }
    }

    /// <summary>
    /// A decode step's attention (201 keys: one softmax chunk) equals, bit for bit, the 128-bit kernels composed by hand over the decoded cache:
    /// AttentionKernels.Scores, Ops.Softmax, then the FMA chain of WeightedSumScalar. The per-row reference path
    /// (TensorPrimitives.Dot, an unfused multiply-add) gives other bits, so this shows the kernels run. d = 36: a head size
    /// only the 128-bit path takes (a multiple of 4, not of 8).
    /// </summary>
    [Theory]
    [InlineData("f32", 64)]
    [InlineData("f16", 64)]
    [InlineData("q8_0", 64)]
    [InlineData("f16", 36)]
    public void A_decode_step_runs_the_128_bit_kernels(string type, int d) => Forced(() =>
    {
        Assert.True(AttentionKernels.Supported(d));
        Assert.True(201 <= Attention.SoftmaxChunk, "the composition below is that of one softmax chunk");
        var rng = new Random(d + type.Length);
        var t = KvCacheTypes.Parse(type);
        int heads = 4, kvHeads = 2, g = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d, pos = 200, len = pos + 1;
        var cache = new KvCache(1, len, kvDim, new KvCacheTypes(t, t));
        var k = new float[len * kvDim]; var v = new float[len * kvDim]; // the cache's values decoded
        var row = new float[kvDim];
        for (int j = 0; j < len; j++)
        {
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            cache.StoreK(0, j, row); cache.ReadK(0, j, k.AsSpan(j * kvDim, kvDim));
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            cache.StoreV(0, j, row); cache.ReadV(0, j, v.AsSpan(j * kvDim, kvDim));
        }
        var q = new float[qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        float scale = 1f / MathF.Sqrt(d);
        var att = new float[qDim];
        Attention.Causal(q, [cache], [pos], 0, att, 1, heads, kvHeads, d, 1);
        var expect = new float[qDim];
        var s = new float[len];
        for (int h = 0; h < heads; h++)
        {
            int kvh = h / g;
            AttentionKernels.Scores(q.AsSpan(h * d, d), k.AsSpan(kvh * d), kvDim, len, scale, s);
            Ops.Softmax(s);
            AttentionKernels.WeightedSumScalar(s, v.AsSpan(kvh * d), kvDim, expect.AsSpan(h * d, d));
        }
        Assert.Equal(expect, att);
    });

    /// <summary><see cref="AttentionSplitTests"/> on the 128-bit path: split decode steps equal one thread, bit for bit.</summary>
    [Theory]
    [InlineData("f32", 1, 4, 1, 64, 0, 0f, false)]
    [InlineData("f16", 1, 4, 1, 64, 0, 0f, false)]
    [InlineData("q8_0", 1, 9, 3, 64, 0, 0f, true)]
    [InlineData("f16", 1, 8, 2, 36, 700, 0f, false)]  // a window, d a multiple of 4 only: no dim slices
    [InlineData("f16", 2, 4, 1, 64, 0, 30f, false)]   // two sequences in one step, soft-cap
    [InlineData("q8_0", 3, 4, 2, 96, 0, 0f, false)]   // a block of 3 tokens
    public void Split_decode_equals_one_thread(string type, int n, int heads, int kvHeads, int d, int window, float softcap, bool sinks) =>
        Forced(() => new AttentionSplitTests().Split_decode_equals_one_thread(type, n, heads, kvHeads, d, window, softcap, sinks));

    /// <summary><see cref="KvCacheTypeTests"/> on the 128-bit path: typed caches read in place or through decoded tiles give the
    /// F32 cache's bits, within 1e-5 of the definition.</summary>
    [Theory]
    [InlineData("f16", "f16", 9, 4, 2, 64, 2, 0, 0, 0f, false)]
    [InlineData("f16", "f16", 70, 9, 3, 64, 2, 0, 0, 0f, false)]
    [InlineData("q8_0", "q8_0", 70, 8, 2, 64, 2, 0, 0, 0f, false)]
    [InlineData("q8_0", "f16", 70, 14, 2, 32, 1, 0, 0, 0f, false)]
    [InlineData("f16", "q8_0", 1, 8, 2, 64, 2, 0, 0, 0f, false)]
    [InlineData("q8_0", "q8_0", 150, 9, 3, 64, 2, 0, 100, 0f, false)]
    [InlineData("q8_0", "f16", 70, 8, 2, 64, 2, 16, 0, 0f, true)]
    [InlineData("f16", "q8_0", 70, 8, 4, 64, 2, 0, 0, 5f, false)]
    [InlineData("f16", "f16", 13, 4, 4, 12, 2, 5, 0, 0f, true)]    // d 12: SIMD on the 128-bit path
    public void Attention_reads_the_decoded_values(string kt, string vt, int n, int heads, int kvHeads, int d, int threads,
        int window, int chunk, float softcap, bool sinks) =>
        Forced(() => new KvCacheTypeTests().Attention_reads_the_decoded_values(kt, vt, n, heads, kvHeads, d, threads, window, chunk, softcap, sinks));

    /// <summary><see cref="AttentionTests"/> on the 128-bit path: the double-precision definition within 1e-5.</summary>
    [Theory]
    [InlineData(9, 4, 2, 64, 2)]
    [InlineData(70, 9, 3, 64, 2)]
    [InlineData(70, 14, 2, 64, 1)]
    [InlineData(13, 4, 4, 12, 2)]
    public void Matches_the_reference(int n, int heads, int kvHeads, int d, int threads) =>
        Forced(() => new AttentionTests().Matches_the_reference(n, heads, kvHeads, d, threads));

    /// <summary>
    /// tiny-llama (Q8_0 weights, F16 or Q8_0 cache) over a 1,100-token prompt on the 128-bit path: prefilled in blocks of 64,
    /// or 1,024 tokens in blocks and the rest one token at a time (decode steps past <see cref="Attention.SplitKeys"/>, split
    /// over 2 threads), the last prompt token's logits and 4 greedy steps after it are bit for bit the same. Against the AVX2
    /// run (other float orders in the matrix products, norms and attention, and so now and then another rounding of a Q8_0
    /// activation) the logits (largest ~1) agree to a cosine over 0.9999 and 0.05 (measured: 0.99994-0.99997, at most 0.012,
    /// the same as between the scalar references and the AVX2 run), and the greedy tokens are the same wherever the AVX2
    /// run's top two logits are 0.05 or more apart.
    /// </summary>
    [Theory]
    [InlineData("f16")]
    [InlineData("q8_0")]
    public void Long_context_prefill_blocks_equal_decode_steps(string cacheType)
    {
        using var dir = new TempDir();
        var path = dir.File("tiny-llama-q8_0.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), path, threads: 2);
        var types = new KvCacheTypes(KvCacheTypes.Parse(cacheType), KvCacheTypes.Parse(cacheType));
        int vocab = SynthPreset.Get("tiny-llama").VocabSize, promptLength = 1100, steps = 4;
        var rng = new Random(11);
        var prompt = Enumerable.Range(0, promptLength).Select(_ => rng.Next(3, vocab)).ToArray();
        Assert.True(promptLength > Attention.SplitKeys);

        // the last prompt token's logits, then `steps` logits of the tokens fed after it (greedy unless given)
        List<float[]> Run(DecoderModel model, int blocked, int[]? feed)
        {
            var cache = model.CreateCache(promptLength + steps + 1, types);
            var state = model.CreateState(64, promptLength + steps + 1);
            for (int t = 0; t < promptLength;)
            {
                int n = t < blocked ? Math.Min(64, blocked - t) : 1;
                model.Forward(prompt.AsSpan(t, n), cache, state, 2);
                t += n;
            }
            var logits = new List<float[]> { state.Logits.ToArray() };
            for (int i = 0; i < steps; i++)
            {
                int next = feed?[i] ?? Compare.ArgMax(logits[^1]);
                model.Forward([next], cache, state, 2);
                logits.Add(state.Logits.ToArray());
            }
            return logits;
        }

        List<float[]> blocks = null!, decode = null!;
        Forced(() =>
        {
            using var model = DecoderModel.Load(path); // loaded on the 128-bit path: weights laid out as on ARM64 (no repacking)
            blocks = Run(model, promptLength, null);
            decode = Run(model, 1024, null);
        });
        for (int i = 0; i <= steps; i++) Assert.True(blocks[i].AsSpan().SequenceEqual(decode[i]), $"step {i}: prefill blocks and decode steps differ");

        if (!(Avx2.IsSupported && Fma.IsSupported)) return;
        var greedy = blocks.Take(steps).Select(l => Compare.ArgMax(l)).ToArray();
        List<float[]> avx2;
        using (var model = DecoderModel.Load(path)) avx2 = Run(model, promptLength, greedy); // fed the 128-bit run's tokens, so the steps compare like with like
        for (int i = 0; i <= steps; i++)
        {
            var (maxAbs, cos) = Compare.Logits(avx2[i], blocks[i]);
            Assert.True(cos > 0.9999 && maxAbs < 0.05, $"step {i}: cosine {cos}, max abs {maxAbs}");
            var sorted = avx2[i].OrderByDescending(x => x).ToArray();
            if (sorted[0] - sorted[1] >= 0.05f) Assert.Equal(Compare.ArgMax(avx2[i]), Compare.ArgMax(blocks[i]));
        }
    }
}

[CollectionDefinition(nameof(ForcedVector128Collection), DisableParallelization = true)]
public sealed class ForcedVector128Collection;
