using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Chunked attention (Llama 4's RoPE layers: a query sees only the keys of its own chunk of positions) against a plain
/// per-(token, head) double-precision reference, and the query temperature and unweighted QK-norm of the same family.
/// </summary>
public class ChunkedAttentionTests
{
    [Theory]
    [InlineData(20, 3, 5, 4, 2, 64, 2)]    // blocks of 4 tokens straddle chunk boundaries (positions 3..22, chunk 5)
    [InlineData(1, 10, 5, 4, 2, 64, 2)]    // decode: the first query of a chunk sees one key
    [InlineData(1, 14, 5, 4, 2, 64, 2)]    // decode: the last query of a chunk
    [InlineData(150, 0, 64, 9, 3, 64, 2)]  // several key tiles per chunk, chunk = tile width
    [InlineData(150, 7, 100, 14, 2, 64, 1)] // a chunk longer than a key tile, not aligned to it
    [InlineData(13, 4, 3, 4, 4, 12, 2)]    // head dimension without the SIMD kernels
    public void Matches_the_reference(int n, int prior, int chunk, int heads, int kvHeads, int d, int threads)
    {
        var rng = new Random(n * 31 + heads + chunk);
        int kvDim = kvHeads * d, qDim = heads * d;
        var cache = new KvCache(1, prior + n + 3, kvDim);
        for (int which = 0; which < 2; which++) { var arr = which == 0 ? cache.KLayer(0) : cache.VLayer(0); for (int i = 0; i < arr.Length; i++) arr[i] = (float)(rng.NextDouble() * 2 - 1); }
        var q = new float[n * qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        var caches = Enumerable.Repeat<KvCache?>(cache, n).ToArray();
        var pos = Enumerable.Range(prior, n).ToArray();
        var att = new float[n * qDim];
        var p = AttentionParams.Default(d) with { Chunk = chunk };
        Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads, p);
        int g = heads / kvHeads;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
            {
                int len = pos[t] + 1, kvh = h / g, lo = pos[t] / chunk * chunk; // the query's chunk starts at lo
                Assert.Equal(lo, p.FirstKey(pos[t]));
                var s = new double[len - lo];
                for (int j = lo; j < len; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)q[t * qDim + h * d + c] * cache.KLayer(0)[j * kvDim + kvh * d + c];
                    s[j - lo] = dot / Math.Sqrt(d);
                }
                double max = s.Max(), sum = 0;
                for (int j = 0; j < s.Length; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int c = 0; c < d; c++)
                {
                    double o = 0;
                    for (int j = lo; j < len; j++) o += s[j - lo] / sum * cache.VLayer(0)[j * kvDim + kvh * d + c];
                    float got = att[t * qDim + h * d + c];
                    Assert.True(Math.Abs(got - o) <= 1e-5, $"t={t} h={h} c={c}: {got} vs {o}");
                }
            }
    }

    [Fact]
    public void ChunksDifferFromASlidingWindowOfTheSameSize()
    {
        // position 9 with chunk 5 attends to keys 5..9; a window of 5 would be the same keys, but position 11 attends to
        // 10..11 under chunks and to 7..11 under a window
        var chunked = new AttentionParams(1f, Chunk: 5);
        var window = new AttentionParams(1f, Window: 5);
        Assert.Equal(5, chunked.FirstKey(9));
        Assert.Equal(5, window.FirstKey(9));
        Assert.Equal(10, chunked.FirstKey(11));
        Assert.Equal(7, window.FirstKey(11));
        Assert.Equal(0, chunked.FirstKey(4));
        Assert.Equal(8192, new AttentionParams(1f, Chunk: 8192).FirstKey(8192));
        Assert.Equal(0, new AttentionParams(1f, Chunk: 8192).FirstKey(8191));
    }

    [Fact]
    public void QueryTemperatureIsOneBelowTheFloorScaleAndGrowsLogarithmically()
    {
        // Llama 4: log(floor((pos + 1) / 8192) + 1) · 0.1 + 1
        var t = new QueryTemperature(8192, 0.1f);
        Assert.Equal(1f, t.Factor(0));
        Assert.Equal(1f, t.Factor(8190));
        Assert.Equal((float)(Math.Log(2) * 0.1 + 1), t.Factor(8191)); // (8191 + 1) / 8192 = 1
        Assert.Equal((float)(Math.Log(2) * 0.1 + 1), t.Factor(16382));
        Assert.Equal((float)(Math.Log(3) * 0.1 + 1), t.Factor(16383));
        Assert.Equal((float)(Math.Log(1221) * 0.1 + 1), t.Factor(10_000_000)); // floor(10000001 / 8192) = 1220
    }

    [Fact]
    public void UnitRmsNormNormalisesEachHead()
    {
        var x = new float[] { 3, 4, 0, 0, 1, 1, 1, 1 };
        Blocks.UnitRmsNorm(x, 4, 0f);
        // head 0: mean square 25/4 -> x / 2.5; head 1: mean square 1 -> unchanged
        Assert.Equal([1.2f, 1.6f, 0, 0, 1, 1, 1, 1], x);
        var y = new float[] { 1e-4f, 0, 0, 0 };
        Blocks.UnitRmsNorm(y, 4, 1e-5f); // epsilon keeps a near-zero head small: 1e-4 / sqrt(2.5e-9 + 1e-5)
        Assert.InRange(y[0], 0.0316f, 0.0317f);
    }
}
