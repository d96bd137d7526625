using OpenWeights.Models.Common;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Decode over long key ranges with few KV heads splits over the keys and the head's dims when threads > 1
/// (Attention.SplitKeys): the result must be bit for bit the single-thread one (which never splits), for every cache type,
/// with and without grouping, windows, sinks and soft-caps, and for two sequences decoded in one step.
/// </summary>
public class AttentionSplitTests
{
    [Theory]
    [InlineData("f32", 1, 4, 1, 64, 0, 0f, false)]
    [InlineData("f16", 1, 4, 1, 64, 0, 0f, false)]
    [InlineData("q8_0", 1, 4, 1, 64, 0, 0f, false)]
    [InlineData("f16", 1, 2, 2, 128, 0, 0f, false)]   // no grouping: keys and values read in place
    [InlineData("q8_0", 1, 9, 3, 64, 0, 0f, true)]    // SmolLM2's grouping, sinks
    [InlineData("f16", 1, 8, 2, 40, 700, 0f, false)]  // a window inside the range, d not a multiple of 32: no dim slices
    [InlineData("f16", 2, 4, 1, 64, 0, 30f, false)]   // two sequences in one step, soft-cap
    [InlineData("q8_0", 3, 4, 2, 96, 0, 0f, false)]   // a block of 3 tokens of one sequence (few items still)
    public void Split_decode_equals_one_thread(string type, int n, int heads, int kvHeads, int d, int window, float softcap, bool sinks)
    {
        var rng = new Random(n * 7 + heads + d);
        var t = KvCacheTypes.Parse(type);
        int kvDim = kvHeads * d, qDim = heads * d, cap = 1500;
        var a = new KvCache(1, cap, kvDim, new KvCacheTypes(t, t));
        var b = new KvCache(1, cap, kvDim, new KvCacheTypes(t, t));
        var row = new float[kvDim];
        foreach (var c in new[] { a, b })
            for (int j = 0; j < cap; j++)
            {
                for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                c.StoreK(0, j, row);
                for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                c.StoreV(0, j, row);
            }
        // n = 2: two sequences at different lengths; otherwise n consecutive tokens of one
        KvCache?[] caches = n == 2 ? [a, b] : Enumerable.Repeat<KvCache?>(a, n).ToArray();
        int[] pos = n == 2 ? [1400, 1130] : Enumerable.Range(1300, n).ToArray();
        Assert.True(pos.Max() + 1 >= Attention.SplitKeys, "the test must reach the split");
        var q = new float[n * qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        var sinkLogits = sinks ? Enumerable.Range(0, heads).Select(h => -1f + h * 0.3f).ToArray() : null;
        var p = new AttentionParams(1f / MathF.Sqrt(d), window, softcap, 0, sinkLogits);
        var one = new float[n * qDim];
        Attention.Causal(q, caches, pos, 0, one, n, heads, kvHeads, d, 1, p);
        Assert.DoesNotContain(one, float.IsNaN);
        foreach (int threads in new[] { 2, 3 })
        {
            var att = new float[n * qDim];
            Array.Fill(att, float.NaN); // every output is written
            Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads, p);
            Assert.Equal(one, att);
        }
    }
}
