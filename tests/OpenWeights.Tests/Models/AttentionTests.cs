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
        foreach (var arr in new[] { cache.KLayer(0), cache.VLayer(0) }) for (int i = 0; i < arr.Length; i++) arr[i] = (float)(rng.NextDouble() * 2 - 1);
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
}
