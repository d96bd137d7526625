using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Attention's online softmax over chunks of <see cref="Attention.SoftmaxChunk"/> keys at fixed boundaries: with chunks
/// small enough that a prompt spans several, a row's bits do not depend on how the step was batched (one prefill, prefill
/// in pieces, token-by-token decode, split decode, other TokenBlock / MaxRows / DirectRows / thread counts), and the merged
/// chunks agree with the double-precision definition of softmax attention (soft-cap, sinks, windows and Llama 4's position
/// chunks included). The settings are process-wide: these tests run alone (their collection is not parallel) and put them back.
/// </summary>
[Collection(nameof(AttentionSettingsCollection))]
public class OnlineSoftmaxTests
{
    /// <summary>Runs <paramref name="check"/>, then restores every setting the tests change.</summary>
    private static void Restoring(Action check)
    {
        int chunk = Attention.SoftmaxChunk, split = Attention.SplitKeys, block = Attention.TokenBlock, direct = Attention.DirectRows;
        int maxRows = AttentionKernels.MaxRows;
        try { check(); }
        finally
        {
            Attention.SoftmaxChunk = chunk; Attention.SplitKeys = split; Attention.TokenBlock = block; Attention.DirectRows = direct;
            AttentionKernels.MaxRows = maxRows;
        }
    }

    /// <summary>A cache of <paramref name="length"/> random rows of the given type (keys scaled by <paramref name="keyScale"/> of the position).</summary>
    private static KvCache RandomCache(Random rng, string type, int length, int kvDim, Func<int, float> keyScale)
    {
        var t = KvCacheTypes.Parse(type);
        var cache = new KvCache(1, length, kvDim, new KvCacheTypes(t, t));
        var row = new float[kvDim];
        for (int j = 0; j < length; j++)
        {
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1) * keyScale(j);
            cache.StoreK(0, j, row);
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            cache.StoreV(0, j, row);
        }
        return cache;
    }

    /// <summary>Attention of tokens first .. first+count-1 (positions = indices) of q in one call, into att.</summary>
    private static void Run(float[] q, KvCache cache, float[] att, int first, int count, int heads, int kvHeads, int d, int threads, AttentionParams p)
    {
        int qDim = heads * d;
        var part = new float[count * qDim];
        Attention.Causal(q[(first * qDim)..((first + count) * qDim)], Enumerable.Repeat<KvCache?>(cache, count).ToArray(),
            Enumerable.Range(first, count).ToArray(), 0, part, count, heads, kvHeads, d, threads, p);
        part.CopyTo(att, first * qDim);
    }

    /// <summary>
    /// A 300-token prompt over chunks of 64 or 128 keys (up to 5 chunks a row, windows and position chunks that start
    /// mid-chunk): one prefill call is the reference; prefill in pieces of 37 tokens, token by token on one thread, token by
    /// token on 2 threads through the split step (SplitKeys lowered to 128, so steps past position 127 split), and prefill
    /// with TokenBlock 5, one row per kernel pass and tiles read in place or always decoded, each give the same bits. The
    /// same prompt with the default 2,048-key chunks (one chunk a row) gives other bits: the chunks are in use. d = 12 takes
    /// the scalar reference path (never split), which must be batch-invariant too.
    /// </summary>
    [Theory]
    [InlineData("f32", 8, 2, 64, 0, 0, 0f, false, 64)]
    [InlineData("f16", 9, 3, 64, 0, 0, 0f, true, 128)]     // SmolLM2's grouping, sinks
    [InlineData("q8_0", 4, 1, 64, 100, 0, 0f, false, 64)]  // a 100-key window: rows start mid-chunk
    [InlineData("f16", 4, 2, 64, 0, 150, 30f, false, 64)]  // Llama 4's position chunks of 150, soft-cap
    [InlineData("q8_0", 8, 2, 64, 70, 0, 0f, true, 64)]    // sinks with a window
    [InlineData("f32", 4, 4, 12, 70, 0, 0f, true, 64)]     // head dimension without the SIMD kernels
    public void Chunked_rows_are_batch_invariant(string type, int heads, int kvHeads, int d, int window, int chunk, float softcap, bool sinks, int softmaxChunk) =>
        Restoring(() =>
        {
            var rng = new Random(heads * 13 + d + window + chunk + softmaxChunk);
            int n = 300, kvDim = kvHeads * d, qDim = heads * d;
            var cache = RandomCache(rng, type, n, kvDim, _ => 1f);
            var q = new float[n * qDim];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
            var sinkLogits = sinks ? Enumerable.Range(0, heads).Select(h => -1f + h * 0.5f).ToArray() : null;
            var p = new AttentionParams(1f / MathF.Sqrt(d), window, softcap, chunk, sinkLogits);
            Assert.True(n > 2 * softmaxChunk, "the prompt must span three softmax chunks or more");

            Attention.SoftmaxChunk = softmaxChunk;
            var prefill = new float[n * qDim];
            Run(q, cache, prefill, 0, n, heads, kvHeads, d, 2, p);
            Assert.DoesNotContain(prefill, float.IsNaN);

            float[] Other(Action<float[]> fill)
            {
                var att = new float[n * qDim];
                Array.Fill(att, float.NaN); // every output is written
                fill(att);
                return att;
            }
            var pieces = Other(att => { for (int t = 0; t < n; t += 37) Run(q, cache, att, t, Math.Min(37, n - t), heads, kvHeads, d, 2, p); });
            Assert.Equal(prefill, pieces);
            var decode = Other(att => { for (int t = 0; t < n; t++) Run(q, cache, att, t, 1, heads, kvHeads, d, 1, p); });
            Assert.Equal(prefill, decode);
            Attention.SplitKeys = 128;
            Assert.True(kvHeads < 4 * 2, "one decode block must be few items on 2 threads, so that long steps split");
            var split = Other(att => { for (int t = 0; t < n; t++) Run(q, cache, att, t, 1, heads, kvHeads, d, 2, p); });
            Assert.Equal(prefill, split);
            Attention.TokenBlock = 5; AttentionKernels.MaxRows = 1; Attention.DirectRows = 1000;
            var inPlace = Other(att => Run(q, cache, att, 0, n, heads, kvHeads, d, 3, p));
            Assert.Equal(prefill, inPlace);
            AttentionKernels.MaxRows = 3; Attention.DirectRows = 0;
            var decoded = Other(att => Run(q, cache, att, 0, n, heads, kvHeads, d, 2, p));
            Assert.Equal(prefill, decoded);

            Attention.SoftmaxChunk = 2048;
            var oneChunk = Other(att => Run(q, cache, att, 0, n, heads, kvHeads, d, 2, p));
            Assert.NotEqual(prefill, oneChunk);
        });

    /// <summary>
    /// Rows spanning several softmax chunks against the definition in double (scores, soft-cap, one max and one sum over all
    /// the row's keys and the sink): each output within 1e-5 of Σ_j p_j·|v_j| (the size of the terms it sums; measured
    /// 8e-7 to 1.2e-6 times it on the SIMD kernels, 2.7e-6 on the reference path's unfused multiply-adds). Keys scaled by
    /// 1 + 3·sin²(j/40), so that the chunks' maxima rise and fall and the merges rescale both ways.
    /// Prefill over chunks of 64 keys, decode steps at positions past 4,096 with the default 2,048-key chunks (split on 2
    /// threads), and the scalar reference path (d = 12).
    /// </summary>
    [Theory]
    [InlineData(300, 0, 64, 8, 2, 64, 0, 0, 0f, false)]
    [InlineData(300, 0, 64, 8, 2, 64, 0, 0, 0f, true)]       // sinks
    [InlineData(300, 0, 64, 4, 2, 64, 0, 0, 20f, false)]     // soft-cap
    [InlineData(300, 0, 64, 8, 2, 64, 150, 0, 0f, true)]     // a window starting mid-chunk, sinks
    [InlineData(300, 0, 64, 4, 2, 64, 0, 200, 30f, false)]   // Llama 4's position chunks, soft-cap
    [InlineData(3, 4400, 2048, 8, 2, 64, 0, 0, 0f, true)]    // decode-like steps over 3 default chunks, sinks
    [InlineData(150, 0, 64, 4, 4, 12, 0, 0, 20f, true)]      // head dimension without the SIMD kernels
    public void Chunks_merge_to_the_definition(int n, int prior, int softmaxChunk, int heads, int kvHeads, int d, int window, int chunk, float softcap, bool sinks) =>
        Restoring(() =>
        {
            var rng = new Random(n + prior + heads * 7 + d + window + chunk);
            int kvDim = kvHeads * d, qDim = heads * d, g = heads / kvHeads, length = prior + n;
            var cache = RandomCache(rng, "f32", length, kvDim, j => 1f + 3f * MathF.Pow(MathF.Sin(j / 40f), 2));
            var q = new float[n * qDim];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
            var sinkLogits = sinks ? Enumerable.Range(0, heads).Select(h => -2f + 6f * h / Math.Max(1, heads - 1)).ToArray() : null;
            var p = new AttentionParams(1f / MathF.Sqrt(d), window, softcap, chunk, sinkLogits);
            var pos = Enumerable.Range(prior, n).ToArray();
            Attention.SoftmaxChunk = softmaxChunk;
            var att = new float[n * qDim];
            Attention.Causal(q, Enumerable.Repeat<KvCache?>(cache, n).ToArray(), pos, 0, att, n, heads, kvHeads, d, 2, p);

            var kf = cache.KLayer(0); var vf = cache.VLayer(0);
            double worst = 0;
            int mostChunks = 0;
            for (int t = 0; t < n; t++)
                for (int h = 0; h < heads; h++)
                {
                    int len = pos[t] + 1, kvh = h / g;
                    var (s, lo) = AttentionDefinition.Row(q, kf, pos, t, h, heads, kvHeads, d, p, softcap, sinkLogits);
                    mostChunks = Math.Max(mostChunks, (len - 1) / softmaxChunk - lo / softmaxChunk + 1);
                    for (int c = 0; c < d; c++)
                    {
                        double o = 0, size = 0;
                        for (int j = lo; j < len; j++)
                        {
                            double v = vf[j * kvDim + kvh * d + c];
                            o += s[j - lo] * v;
                            size += s[j - lo] * Math.Abs(v);
                        }
                        double err = Math.Abs(att[t * qDim + h * d + c] - o) / size;
                        Assert.True(err <= 1e-5, $"t={t} h={h} c={c}: {att[t * qDim + h * d + c]} vs {o} (relative {err:E2})");
                        worst = Math.Max(worst, err);
                    }
                }
            GC.KeepAlive(cache); // kf, vf point into its native memory
            Assert.True(mostChunks >= 3, $"rows span at most {mostChunks} softmax chunks: the merges would go untested");
            Assert.True(worst > 0, "the outputs equal the definition exactly: the comparison would not see a wrong merge");
        });

    /// <summary>
    /// A row whose keys lie within one softmax chunk gets exactly the two-pass softmax: scores, Ops.Softmax (or
    /// Ops.SoftmaxWithSink), then each output element's FMA chain over the keys in order (WeightedSumScalar), bit for bit
    /// (the operations of ggml's soft_max and V product). Position 200 with the default chunks, and keys 151..200 of a
    /// 50-key window inside the chunk 128..255.
    /// </summary>
    [Theory]
    [InlineData(2048, 0, false)]
    [InlineData(2048, 0, true)]
    [InlineData(128, 50, true)]
    public void A_row_within_one_chunk_is_the_two_pass_softmax(int softmaxChunk, int window, bool sinks) =>
        Restoring(() =>
        {
            if (!AttentionKernels.Supported(64)) Assert.Skip("no SIMD attention kernels here (the reference path has its own dot products)");
            var rng = new Random(softmaxChunk + window);
            int heads = 4, kvHeads = 2, d = 64, g = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d, pos = 200, len = pos + 1;
            var cache = RandomCache(rng, "f32", len, kvDim, _ => 1f);
            var q = new float[qDim];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
            var sinkLogits = sinks ? new[] { -1f, 0f, 1f, 2f } : null;
            var p = new AttentionParams(1f / MathF.Sqrt(d), window, Sinks: sinkLogits);
            int lo = p.FirstKey(pos);
            Assert.Equal(lo / softmaxChunk, pos / softmaxChunk);
            Attention.SoftmaxChunk = softmaxChunk;
            var att = new float[qDim];
            Attention.Causal(q, [cache], [pos], 0, att, 1, heads, kvHeads, d, 1, p);

            var k = cache.KLayer(0); var v = cache.VLayer(0);
            var expect = new float[qDim];
            var s = new float[len - lo];
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / g;
                AttentionKernels.Scores(q.AsSpan(h * d, d), k[(lo * kvDim + kvh * d)..], kvDim, s.Length, p.Scale, s);
                if (sinks) Ops.SoftmaxWithSink(s, sinkLogits![h]);
                else Ops.Softmax(s);
                AttentionKernels.WeightedSumScalar(s, v[(lo * kvDim + kvh * d)..], kvDim, expect.AsSpan(h * d, d));
            }
            GC.KeepAlive(cache); // k, v point into its native memory
            Assert.Equal(expect, att);
        });

    /// <summary>SoftmaxChunk must be a positive multiple of the key tile: other values are refused, not silently used.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void A_chunk_that_is_not_whole_tiles_is_refused(int softmaxChunk) =>
        Restoring(() =>
        {
            var cache = new KvCache(1, 4, 64);
            Attention.SoftmaxChunk = softmaxChunk;
            Assert.Throws<InvalidOperationException>(() =>
                Attention.Causal(new float[64], [cache], [0], 0, new float[64], 1, 1, 1, 64, 1));
        });
}

[CollectionDefinition(nameof(AttentionSettingsCollection), DisableParallelization = true)]
public sealed class AttentionSettingsCollection;
