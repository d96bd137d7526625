using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>Blocked causal attention against a plain per-(token, head) double-precision reference.</summary>
public class AttentionTests
{
    [Theory]
    [InlineData(9, 4, 2, 64, 2)]    // decode-like split (few blocks): rows shared out per item
    [InlineData(1, 9, 3, 64, 2)]
    [InlineData(70, 9, 3, 64, 2)]   // several key tiles, blocks of 4 tokens
    [InlineData(70, 14, 2, 64, 1)]
    [InlineData(13, 4, 4, 12, 2)]   // head dimension without the SIMD kernels
    public void Matches_the_reference(int n, int heads, int kvHeads, int d, int threads)
    {
        var rng = new Random(n * 31 + heads);
        int kvDim = kvHeads * d, qDim = heads * d, prior = 5;
        var cache = new KvCache(1, prior + n + 3, kvDim);
        for (int which = 0; which < 2; which++) { var arr = which == 0 ? cache.KLayer(0) : cache.VLayer(0); for (int i = 0; i < arr.Length; i++) arr[i] = (float)(rng.NextDouble() * 2 - 1); }
        var q = new float[n * qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        var caches = Enumerable.Repeat<KvCache?>(cache, n).ToArray();
        var pos = Enumerable.Range(prior, n).ToArray();
        var att = new float[n * qDim];
        Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads);
        int g = heads / kvHeads;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
            {
                int len = pos[t] + 1, kvh = h / g;
                var s = new double[len];
                for (int j = 0; j < len; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q[t * qDim + h * d + c] * cache.KLayer(0)[j * kvDim + kvh * d + c];
                    s[j] = dot / Math.Sqrt(d);
                }
                double max = s.Max(), sum = 0;
                for (int j = 0; j < len; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int c = 0; c < d; c++)
                {
                    double o = 0;
                    for (int j = 0; j < len; j++) o += s[j] / sum * cache.VLayer(0)[j * kvDim + kvh * d + c];
                    float got = att[t * qDim + h * d + c];
                    Assert.True(Math.Abs(got - o) <= 1e-5, $"t={t} h={h} c={c}: {got} vs {o}");
                }
            }
    }

    /// <summary>
    /// gpt-oss's attention: a learned sink logit per query head in the softmax denominator (p_j = e^(s_j) / (Σ e^(s_k) +
    /// e^(sink_h))), alone and with a sliding window, on both the SIMD path (d 64) and the reference path (d 12), against
    /// the definition in double. Measured worst difference ~2e-7; tolerance 1e-5 as above.
    /// </summary>
    [Theory]
    [InlineData(9, 4, 2, 64, 2, 0)]     // decode-like split
    [InlineData(70, 8, 2, 64, 2, 0)]    // several key tiles
    [InlineData(70, 8, 2, 64, 2, 16)]   // sinks with a 16-key window
    [InlineData(1, 8, 2, 64, 1, 4)]     // one decode token, windowed
    [InlineData(13, 4, 4, 12, 2, 5)]    // head dimension without the SIMD kernels
    public void Sinks_match_the_reference(int n, int heads, int kvHeads, int d, int threads, int window)
    {
        var rng = new Random(n * 17 + heads + window);
        int kvDim = kvHeads * d, qDim = heads * d, prior = 5;
        var cache = new KvCache(1, prior + n + 3, kvDim);
        for (int which = 0; which < 2; which++) { var arr = which == 0 ? cache.KLayer(0) : cache.VLayer(0); for (int i = 0; i < arr.Length; i++) arr[i] = (float)(rng.NextDouble() * 2 - 1); }
        var q = new float[n * qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        // sinks from well below to well above the scores, so that some heads give the sink most of their weight
        var sinks = Enumerable.Range(0, heads).Select(h => -4f + 8f * h / Math.Max(1, heads - 1)).ToArray();
        var caches = Enumerable.Repeat<KvCache?>(cache, n).ToArray();
        var pos = Enumerable.Range(prior, n).ToArray();
        var att = new float[n * qDim];
        float scale = 1f / MathF.Sqrt(d);
        Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads, new AttentionParams(scale, window, Sinks: sinks));
        int g = heads / kvHeads;
        double worstSinkShare = 0;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
            {
                int len = pos[t] + 1, lo = window > 0 ? Math.Max(0, pos[t] - window + 1) : 0, kvh = h / g;
                var s = new double[len];
                for (int j = lo; j < len; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q[t * qDim + h * d + c] * cache.KLayer(0)[j * kvDim + kvh * d + c];
                    s[j] = dot * scale;
                }
                double max = Math.Max(sinks[h], s.Skip(lo).Max()), sum = Math.Exp(sinks[h] - max);
                for (int j = lo; j < len; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                worstSinkShare = Math.Max(worstSinkShare, Math.Exp(sinks[h] - max) / sum);
                for (int c = 0; c < d; c++)
                {
                    double o = 0;
                    for (int j = lo; j < len; j++) o += s[j] / sum * cache.VLayer(0)[j * kvDim + kvh * d + c];
                    float got = att[t * qDim + h * d + c];
                    Assert.True(Math.Abs(got - o) <= 1e-5, $"t={t} h={h} c={c}: {got} vs {o}");
                }
            }
        Assert.True(worstSinkShare > 0.5, $"no head gave its sink most of the weight ({worstSinkShare:F3}): the test would not see a missing sink");
    }
}
