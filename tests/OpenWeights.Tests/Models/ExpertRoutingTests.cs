using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>The router's arithmetic (ExpertLayer.Route) and its top-k tie rule (ExpertLayer.TopK), as llama.cpp's
/// build_moe_ffn and ggml's CPU top_k compute them.</summary>
public class ExpertRoutingTests
{
    private static int[] TopK(float[] v, int k)
    {
        var ids = new int[k];
        ExpertLayer.TopK(v, ids, new int[v.Length]);
        return ids;
    }

    [Fact]
    public void TopKOfDistinctValuesIsTheKLargestLargestFirstWithTheFirstTwoSwapped()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = rng.Next(2, 130), k = rng.Next(1, Math.Min(n, 9) + 1);
            var v = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            var expected = Enumerable.Range(0, n).OrderByDescending(i => v[i]).Take(k).ToArray();
            if (k > 1) (expected[0], expected[1]) = (expected[1], expected[0]); // ggml: "the order is not important"
            Assert.Equal(expected, TopK(v, k));
        }
    }

    [Fact]
    public void TiesAreBrokenByTheHeapNotByTheLowestIndex()
    {
        // std::partial_sort's heap select, as ggml's top_k runs it: the first k indices form a heap whose root is the
        // smallest, and a later index enters only when strictly larger, evicting the root, which among equal values is not
        // always the highest index
        Assert.Equal([0, 2], TopK([1f, 1f, 2f, 1f], 2).Order());   // index 1 evicted, not 0
        Assert.Equal([0, 1], TopK([5f, 5f, 5f, 5f], 2).Order());   // nothing later is strictly larger
        Assert.Equal([0, 3], TopK([5f, 5f, 5f, 6f], 2).Order());
    }

    /// <summary>Values from {0, 1, 2} (ties everywhere) and what libstdc++'s std::partial_sort with comparator
    /// v[a] &gt; v[b] returns, first two swapped as ggml does: generated once with g++ 12.2 (Debian 12), mt19937 seed 7.</summary>
    public static TheoryData<float[], int[]> LibstdcxxCases() => new()
    {
        { [1f, 2f, 1f, 0f], [0, 1] },
        { [1f, 2f, 1f, 1f, 2f, 0f, 2f, 1f, 0f, 1f, 0f, 0f, 0f, 1f, 2f, 0f, 1f, 2f, 2f, 1f, 0f, 2f, 0f, 1f, 0f, 1f, 1f, 0f, 0f, 2f, 2f, 2f], [4, 1, 21, 18, 14, 29, 17, 6] },
        { [0f, 2f, 2f, 1f, 1f, 2f, 2f, 1f, 0f, 2f, 2f, 0f, 0f, 0f, 2f, 1f, 1f, 0f, 1f, 0f, 2f, 2f, 2f, 0f, 1f, 2f, 2f, 2f, 2f, 2f, 2f], [1, 6, 9, 10, 2, 5] },
        { [1f, 0f, 2f, 2f, 1f], [3, 2, 4, 0] },
        { [1f, 2f, 0f, 0f, 2f, 2f, 1f, 1f, 0f, 0f, 2f, 0f, 1f, 1f, 0f, 2f, 1f, 2f, 0f, 0f, 1f, 2f, 1f], [1, 4] },
        { [2f, 1f, 0f, 0f, 2f, 1f, 0f, 1f, 1f, 1f, 2f, 0f, 1f, 1f, 2f, 2f, 1f, 2f, 1f, 0f, 2f, 0f, 2f], [4, 10, 14, 0] },
        { [0f, 0f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 2f, 1f], [7, 9, 8] },
        { [2f, 2f, 2f, 1f, 1f, 1f, 0f, 1f, 2f, 1f, 0f, 1f, 2f, 2f, 2f, 2f, 2f, 0f, 1f, 0f, 1f], [1, 12, 14, 13, 0, 15, 8, 2] },
        { [2f, 2f, 1f, 0f, 1f, 2f, 0f, 2f, 0f, 2f, 1f, 0f, 2f, 0f, 0f, 1f, 0f, 0f, 2f, 0f, 2f, 1f, 0f, 0f, 1f, 2f, 0f, 0f, 1f], [7, 1, 12, 18, 5, 9, 0] },
        { [2f, 0f, 1f, 2f, 2f, 0f, 1f, 0f, 2f, 2f, 2f, 2f, 0f, 2f, 2f, 0f, 0f, 1f, 1f, 0f, 2f, 2f, 1f, 1f, 1f, 1f, 2f], [3, 0, 8, 4] },
        { [0f, 0f, 0f, 1f, 1f, 1f, 1f, 0f], [4, 3, 6, 5, 1] },
        { [2f, 2f, 1f, 1f, 1f, 1f, 1f, 2f, 0f, 2f, 1f, 0f, 0f, 2f, 0f, 1f, 0f, 0f, 2f], [1, 7, 18, 13, 9, 0, 3, 4] },
        { [0f, 0f, 0f, 0f, 1f, 2f, 2f, 0f, 0f, 0f, 1f], [5, 6, 10, 4] },
        { [0f, 1f, 0f, 1f, 1f, 1f, 1f, 0f, 0f, 1f], [1, 4, 3] },
        { [2f, 2f, 1f, 2f, 2f, 0f, 0f, 2f, 1f, 1f, 1f, 0f, 1f, 1f, 1f, 2f], [1, 0] },
        { [0f, 1f, 0f, 0f, 2f, 2f, 1f, 2f, 1f, 2f, 2f, 0f, 0f, 2f, 1f, 1f, 1f, 0f, 2f, 0f, 2f, 1f, 2f, 1f, 1f, 0f], [4, 7, 9, 10, 5] },
        { [2f, 1f, 1f, 1f, 1f, 2f, 0f, 0f, 2f, 2f, 1f, 2f, 0f, 0f, 0f, 2f, 0f, 2f, 0f, 2f, 1f, 1f], [8, 11, 17, 15, 5, 19, 9, 0] },
        { [2f, 1f, 2f, 0f, 1f, 2f, 2f, 1f, 2f, 0f, 0f, 2f], [0, 8, 11, 2, 5, 6, 7] },
        { [1f, 0f, 1f, 1f, 1f], [0, 3, 2] },
        { [2f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 2f, 1f, 2f, 2f, 2f, 2f, 1f, 0f, 1f, 0f, 1f, 1f], [8, 12, 13, 11, 10, 0, 7] },
        { [2f, 1f, 2f, 1f, 2f, 2f, 0f, 1f], [0, 2] },
        { [1f, 2f, 0f, 2f, 1f, 2f], [3, 1, 5, 4, 0] },
        { [2f, 1f, 2f, 2f, 0f], [0] },
        { [2f, 0f, 0f, 1f, 2f, 2f, 0f], [5, 4, 0, 3, 1] },
    };

    [Theory]
    [MemberData(nameof(LibstdcxxCases))]
    public void TopKMatchesLibstdcxxPartialSortOnTies(float[] v, int[] expected) => Assert.Equal(expected, TopK(v, expected.Length));

    [Fact]
    public void SoftmaxTopKRenormalisedWeightsSumToOneInSelectionOrder()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Softmax, NormalizeWeights: true), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal([3, 1], ids); // 1 then 3 by value, the first two swapped
        double e1 = Math.Exp(2), e3 = Math.Exp(1.5);
        Assert.Equal(e3 / (e1 + e3), w[0], 6);
        Assert.Equal(e1 / (e1 + e3), w[1], 6);
    }

    [Fact]
    public void SoftmaxWithoutRenormalisationKeepsTheProbabilitiesOfAllExperts()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Softmax, NormalizeWeights: false), logits.ToArray(), ids, w, new int[5]);
        double sum = logits.Sum(x => Math.Exp(x));
        Assert.Equal(Math.Exp(1.5) / sum, w[0], 6);
        Assert.Equal(Math.Exp(2) / sum, w[1], 6);
    }

    [Fact]
    public void SigmoidAndSoftmaxOverTheSelectedAndScale()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Sigmoid, NormalizeWeights: false, WeightScale: 2f), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal(2 / (1 + Math.Exp(-1.5)), w[0], 6);
        Assert.Equal(2 / (1 + Math.Exp(-2)), w[1], 6);
        // gpt-oss: top-k of the raw logits, softmax over the k
        ExpertLayer.Route(new ExpertRouting(ExpertGating.SoftmaxWeight, NormalizeWeights: false), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal(Math.Exp(1.5) / (Math.Exp(1.5) + Math.Exp(2)), w[0], 6);
    }
}
