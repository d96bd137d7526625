using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>The router's arithmetic (ExpertLayer.Route) and its top-k tie rule (ExpertLayer.TopK), as llama.cpp's
/// build_moe_ffn and ggml's CPU argsort compute them.</summary>
public class ExpertRoutingTests
{
    private static int[] TopK(float[] v, int k)
    {
        var ids = new int[k];
        ExpertLayer.TopK(v, ids, new int[v.Length]);
        return ids;
    }

    [Fact]
    public void TopKOfDistinctValuesIsTheKLargestLargestFirst()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = rng.Next(2, 130), k = rng.Next(1, Math.Min(n, 9) + 1);
            var v = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            Assert.Equal(Enumerable.Range(0, n).OrderByDescending(i => v[i]).Take(k).ToArray(), TopK(v, k));
        }
    }

    [Fact]
    public void UpToSixteenExpertsTiesKeepTheLowerIndexAboveThatThePartitionsDecide()
    {
        // std::sort of 16 or fewer elements is an insertion sort: stable
        Assert.Equal([2, 0], TopK([1f, 1f, 2f, 1f], 2));
        Assert.Equal([3, 0, 1], TopK([5f, 5f, 5f, 6f], 3));
        // all equal above 16: the median-of-three partitions put the middle index first, then the last ones (g++ 12.2)
        Assert.Equal([8, 16, 15], TopK(Enumerable.Repeat(1f, 17).ToArray(), 3));
        Assert.Equal([80, 95, 94, 93, 92, 91, 90, 89], TopK(Enumerable.Repeat(1f, 128).ToArray(), 8));
    }

    /// <summary>Values with many ties and the first k of what libstdc++'s std::sort of the indices with comparator
    /// v[a] &gt; v[b] returns (ggml_argsort_top_k on the CPU, which llama.cpp's build_moe_ffn calls): generated once with
    /// g++ 12.2 (Debian 12), mt19937 seed 7, n from 4 to 128.</summary>
    public static TheoryData<float[], int[]> LibstdcxxCases() => new()
    {
        { [1f, 0f, 1f, 1f], [0, 2, 3, 1] },
        { [3f, 1f, 3f, 1f, 3f, 2f, 2f, 0f, 1f], [0, 2, 4, 5, 6, 1, 3, 8] },
        { [3f, 1f, 0f, 0f, 1f, 3f, 3f, 3f, 2f, 0f, 3f, 1f, 0f, 1f, 3f, 0f], [0] },
        { [1f, 1f, 0f, 1f, 1f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 1f], [8] },
        { [0f, 0f, 2f, 2f, 0f, 2f, 3f, 2f, 0f, 0f, 3f, 4f, 2f, 4f, 1f, 2f, 1f, 0f, 2f, 2f, 0f, 1f, 3f, 3f], [13] },
        { [1f, 2f, 0f, 0f, 2f, 2f, 1f, 1f, 0f, 0f, 2f, 0f, 1f, 1f, 0f, 2f, 1f, 2f, 0f, 0f, 1f, 2f, 1f, 0f, 2f, 2f, 1f, 0f, 0f, 2f, 1f, 0f], [1, 29, 4, 5] },
        { [1f, 2f, 0f, 1f, 1f, 2f, 2f, 1f, 2f, 1f, 0f, 2f, 0f, 2f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 2f, 1f, 2f, 0f, 2f, 2f, 2f, 1f], [1, 13] },
        { [1f, 0f, 3f, 3f, 1f, 2f, 3f, 1f, 0f, 0f, 1f, 1f, 1f, 2f, 0f, 0f, 2f, 2f, 2f, 0f, 2f, 0f, 2f, 3f, 2f, 2f, 0f, 1f, 1f, 2f, 2f, 1f, 1f, 3f, 1f, 2f, 0f, 1f, 0f, 0f, 2f, 3f, 1f, 1f, 3f, 1f, 0f, 3f], [47, 2, 3, 44, 41, 6] },
        { [1f, 2f, 2f, 0f, 1f, 0f, 2f, 2f, 2f, 2f, 0f, 2f, 2f, 0f, 0f, 1f, 1f, 0f, 2f, 2f, 1f, 1f, 1f, 1f, 2f, 0f, 2f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 0f, 1f, 0f, 2f, 2f, 1f, 1f, 1f, 1f, 1f, 2f, 0f, 2f, 1f, 0f, 0f, 2f, 0f, 1f, 0f, 0f, 2f, 1f, 0f, 0f, 0f, 0f, 0f, 1f, 2f], [1, 63, 55, 50, 46] },
        { [1f, 1f, 3f, 3f, 2f, 0f, 1f, 2f, 2f, 2f, 0f, 2f, 3f, 0f, 0f, 3f, 1f, 0f, 1f, 0f, 2f, 3f, 2f, 2f, 0f, 3f, 1f, 3f, 0f, 2f, 3f, 0f, 0f, 0f, 0f, 1f, 2f, 0f, 2f, 0f, 3f, 3f, 1f, 1f, 0f, 1f, 3f, 2f, 0f, 0f, 0f, 1f, 0f, 3f, 1f, 1f, 1f, 2f, 2f, 0f, 0f, 3f, 3f, 0f], [62, 21] },
        { [2f, 0f, 2f, 3f, 2f, 2f, 1f, 3f, 1f, 1f, 0f, 3f, 3f, 1f, 2f, 0f, 1f, 3f, 3f, 0f, 2f, 3f, 1f, 3f, 1f, 1f, 2f, 2f, 0f, 3f, 0f, 0f, 1f, 2f, 2f, 0f, 0f, 3f, 1f, 0f, 0f, 2f, 1f, 3f, 2f, 0f, 1f, 2f, 0f, 0f, 0f, 3f, 0f, 3f, 1f, 2f, 0f, 1f, 2f, 1f, 2f, 2f, 1f, 3f, 3f, 1f, 1f, 2f, 3f, 1f, 0f, 2f, 2f, 2f, 0f, 2f, 2f, 1f, 2f, 0f, 2f, 0f, 1f, 3f, 3f, 3f, 0f, 2f, 0f, 1f, 0f, 1f, 1f, 0f, 3f, 3f, 2f, 2f, 2f, 2f], [68, 53, 85, 84, 23, 95, 21, 29] },
        { [1f, 2f, 1f, 3f, 3f, 0f, 0f, 3f, 1f, 2f, 0f, 0f, 0f, 1f, 1f, 2f, 3f, 3f, 3f, 0f, 0f, 1f, 3f, 1f, 3f, 1f, 3f, 1f, 2f, 3f, 3f, 2f, 1f, 2f, 3f, 2f, 1f, 1f, 0f, 0f, 3f, 2f, 2f, 3f, 3f, 1f, 2f, 3f, 0f, 0f, 1f, 0f, 0f, 1f, 2f, 3f, 0f, 0f, 2f, 1f, 3f, 1f, 1f, 1f, 2f, 0f, 1f, 3f, 3f, 3f, 2f, 0f, 2f, 3f, 0f, 2f, 2f, 0f, 1f, 3f, 0f, 2f, 0f, 2f, 2f, 1f, 2f, 2f, 0f, 3f, 1f, 0f, 1f, 3f, 0f, 1f, 2f, 1f, 1f, 1f, 0f, 0f, 0f, 2f, 0f, 2f, 1f, 3f, 3f, 3f, 1f, 2f, 2f, 2f, 2f, 0f, 3f, 2f, 0f, 1f, 1f, 2f, 3f, 1f, 0f, 3f, 2f, 1f], [93, 17, 18, 107, 68, 69] },
        { [1f, 1f, 0f, 1f, 0f, 0f, 0f, 1f, 0f, 0f, 1f, 0f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 1f, 0f, 0f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 1f, 0f, 1f, 0f, 0f, 0f, 0f, 1f, 1f, 0f, 0f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f, 1f, 0f, 1f, 1f, 0f, 1f, 1f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 0f, 0f, 0f, 0f, 0f, 0f, 1f, 0f, 1f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 0f, 1f, 0f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 1f, 1f, 0f, 0f, 1f, 1f, 0f, 1f, 0f, 1f, 1f, 1f, 0f, 1f, 1f, 0f, 0f, 1f, 0f, 1f, 0f, 1f, 1f, 0f, 0f, 1f, 0f, 0f], [61, 84, 81] },
        { [2f, 2f, 1f, 3f, 1f, 2f, 3f, 0f, 0f, 0f, 3f, 0f, 2f, 1f, 2f, 1f, 2f, 2f, 2f, 2f, 3f, 0f, 1f, 0f, 1f, 2f, 3f, 2f, 0f, 3f, 3f, 0f, 0f, 3f, 1f, 3f, 1f, 1f, 0f, 1f, 0f, 3f, 2f, 0f, 2f, 3f, 2f, 3f, 1f, 0f, 0f, 3f, 2f, 3f, 1f, 3f, 3f, 2f, 2f, 0f, 1f, 1f, 1f, 3f, 1f, 2f, 2f, 2f, 0f, 1f, 2f, 1f, 3f, 2f, 1f, 0f, 3f, 0f, 2f, 3f, 2f, 2f, 2f, 3f, 1f, 1f, 0f, 1f, 0f, 1f, 1f, 3f, 1f, 2f, 3f, 2f, 3f, 2f, 1f, 1f, 0f, 3f, 2f, 0f, 2f, 0f, 0f, 3f, 0f, 1f, 0f, 0f, 1f, 0f, 0f, 3f, 2f, 0f, 2f, 3f, 3f, 1f, 0f, 3f, 2f, 0f, 3f, 2f], [35, 20, 94, 91, 83, 29, 30, 79] },
        { [0f, 3f, 0f, 2f], [1, 3, 0, 2] },
        { [3f, 1f, 2f, 3f, 2f, 3f, 1f, 3f, 2f], [0, 3, 5] },
        { [0f, 0f, 1f, 1f, 1f, 0f, 1f, 0f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f], [2, 3, 4, 6, 8, 9] },
        { [3f, 1f, 2f, 0f, 3f, 2f, 1f, 1f, 1f, 0f, 0f, 3f, 3f, 0f, 1f, 0f, 0f], [0, 4, 12, 11, 2, 5] },
        { [2f, 2f, 1f, 2f, 1f, 1f, 1f, 1f, 2f, 0f, 1f, 1f, 1f, 2f, 1f, 0f, 0f, 2f, 1f, 2f, 1f, 1f, 0f, 2f], [1] },
        { [4f, 1f, 4f, 1f, 4f, 4f, 1f, 3f, 3f, 1f, 1f, 0f, 0f, 2f, 1f, 1f, 4f, 2f, 1f, 0f, 0f, 0f, 4f, 1f, 1f, 3f, 1f, 3f, 0f, 1f, 2f, 0f], [0, 2, 16, 4, 5, 22, 27] },
        { [2f, 0f, 0f, 2f, 0f, 0f, 0f, 2f, 1f, 0f, 2f, 2f, 1f, 0f, 2f, 1f, 0f, 1f, 2f, 2f, 0f, 2f, 1f, 2f, 2f, 1f, 1f, 1f, 0f, 1f, 2f, 1f, 2f], [32, 24, 23, 21] },
        { [3f, 2f, 4f, 2f, 0f, 3f, 2f, 4f, 0f, 2f, 3f, 2f, 1f, 0f, 0f, 2f, 1f, 2f, 4f, 2f, 4f, 3f, 2f, 4f, 1f, 1f, 2f, 0f, 3f, 4f, 4f, 3f, 4f, 4f, 3f, 1f, 4f, 2f, 3f, 4f, 1f, 3f, 0f, 3f, 3f, 1f, 1f, 0f], [18, 36, 33, 32, 30, 29, 39, 23] },
        { [0f, 0f, 1f, 1f, 3f, 0f, 0f, 0f, 2f, 2f, 0f, 2f, 1f, 3f, 3f, 0f, 0f, 1f, 2f, 2f, 0f, 1f, 0f, 3f, 3f, 3f, 2f, 3f, 2f, 0f, 2f, 1f, 0f, 1f, 0f, 1f, 1f, 0f, 2f, 3f, 0f, 2f, 3f, 2f, 2f, 0f, 3f, 2f, 3f, 1f, 0f, 3f, 1f, 0f, 0f, 0f, 3f, 0f, 2f, 1f, 2f, 3f, 2f, 3f], [24, 48] },
        { [1f, 2f, 1f, 0f, 1f, 0f, 2f, 1f, 2f, 1f, 0f, 0f, 0f, 2f, 0f, 2f, 0f, 2f, 1f, 2f, 1f, 2f, 2f, 2f, 2f, 0f, 2f, 2f, 2f, 1f, 1f, 0f, 1f, 1f, 2f, 2f, 1f, 0f, 1f, 0f, 1f, 0f, 2f, 1f, 2f, 2f, 0f, 2f, 2f, 2f, 0f, 1f, 1f, 1f, 0f, 1f, 2f, 2f, 0f, 2f, 0f, 1f, 0f, 1f], [47, 35, 34, 42] },
        { [0f, 1f, 3f, 3f, 2f, 1f, 3f, 1f, 1f, 3f, 2f, 0f, 2f, 1f, 2f, 0f, 3f, 3f, 0f, 3f, 0f, 3f, 2f, 3f, 3f, 2f, 0f, 0f, 0f, 3f, 0f, 2f, 2f, 2f, 2f, 0f, 1f, 1f, 1f, 2f, 0f, 0f, 1f, 2f, 3f, 0f, 1f, 3f, 2f, 2f, 3f, 3f, 2f, 0f, 1f, 3f, 1f, 3f, 2f, 3f, 0f, 0f, 1f, 1f, 2f, 1f, 1f, 1f, 0f, 0f, 1f, 1f, 0f, 0f, 3f, 2f, 2f, 2f, 1f, 3f, 2f, 3f, 1f, 1f, 2f, 0f, 0f, 2f, 3f, 3f, 2f, 3f, 0f, 1f, 3f, 3f, 1f, 2f, 2f, 3f], [59, 21, 23, 24, 29] },
        { [2f, 2f, 1f, 2f, 2f, 2f, 1f, 2f, 1f, 2f, 2f, 3f, 3f, 1f, 2f, 2f, 1f, 0f, 0f, 0f, 0f, 0f, 1f, 3f, 1f, 2f, 0f, 2f, 1f, 3f, 3f, 2f, 1f, 2f, 3f, 2f, 0f, 3f, 0f, 1f, 1f, 3f, 0f, 2f, 3f, 0f, 1f, 0f, 3f, 3f, 0f, 0f, 2f, 0f, 1f, 3f, 2f, 0f, 0f, 3f, 3f, 0f, 2f, 1f, 1f, 1f, 0f, 1f, 2f, 0f, 1f, 0f, 3f, 0f, 2f, 1f, 1f, 3f, 0f, 1f, 0f, 2f, 1f, 3f, 3f, 2f, 3f, 1f, 2f, 2f, 1f, 3f, 2f, 3f, 1f, 1f, 1f, 3f, 2f, 0f, 1f, 0f, 0f, 3f, 3f, 0f, 3f, 2f, 0f, 3f, 0f, 0f, 2f, 3f, 1f, 1f, 0f, 2f, 1f, 1f, 3f, 2f, 3f, 2f, 1f, 0f, 1f, 2f], [34, 91, 86, 84] },
        { [3f, 2f, 2f, 1f, 3f, 4f, 2f, 1f, 1f, 4f, 2f, 3f, 1f, 2f, 3f, 1f, 3f, 3f, 2f, 0f, 1f, 2f, 2f, 4f, 0f, 0f, 0f, 3f, 3f, 2f, 0f, 4f, 3f, 0f, 4f, 3f, 4f, 2f, 0f, 4f, 2f, 2f, 1f, 1f, 4f, 2f, 1f, 2f, 3f, 3f, 4f, 0f, 4f, 2f, 3f, 1f, 3f, 3f, 4f, 3f, 3f, 2f, 3f, 1f, 1f, 4f, 3f, 1f, 1f, 2f, 2f, 2f, 3f, 4f, 4f, 2f, 1f, 1f, 2f, 2f, 2f, 3f, 2f, 1f, 4f, 1f, 4f, 3f, 2f, 1f, 0f, 2f, 4f, 3f, 0f, 4f, 1f, 3f, 3f, 1f, 4f, 1f, 0f, 1f, 3f, 0f, 2f, 4f, 4f, 4f, 1f, 4f, 2f, 0f, 4f, 0f, 3f, 2f, 3f, 3f, 3f, 3f, 3f, 2f, 2f, 4f, 1f, 1f], [44, 84, 23, 31] },
        { [1f, 0f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 0f, 0f, 1f, 1f, 0f, 1f, 1f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 1f, 0f, 0f, 1f, 0f, 1f, 1f, 1f, 1f, 1f, 0f, 1f, 1f, 0f, 0f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 0f, 1f, 1f, 1f, 1f, 1f, 1f, 0f, 1f, 1f, 1f, 0f, 0f, 0f, 1f, 1f, 0f, 0f, 1f, 1f, 0f, 1f, 0f, 0f, 1f, 1f, 1f, 1f, 1f, 0f, 1f, 1f, 0f, 1f, 0f, 1f, 1f, 1f, 0f, 0f, 1f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 0f, 1f, 1f, 0f, 0f, 0f, 1f, 0f, 0f, 0f, 1f, 0f, 1f, 0f, 1f, 0f, 1f, 1f, 1f, 0f, 1f, 0f, 0f, 1f], [65, 84, 83, 82, 81, 80, 77, 75] },
    };

    [Theory]
    [MemberData(nameof(LibstdcxxCases))]
    public void TopKMatchesLibstdcxxSortOnTies(float[] v, int[] expected) => Assert.Equal(expected, TopK(v, expected.Length));

    [Fact]
    public void SoftmaxTopKRenormalisedWeightsSumToOneInSelectionOrder()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Softmax, NormalizeWeights: true), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal([1, 3], ids); // largest first
        double e1 = Math.Exp(2), e3 = Math.Exp(1.5);
        Assert.Equal(e1 / (e1 + e3), w[0], 6);
        Assert.Equal(e3 / (e1 + e3), w[1], 6);
    }

    [Fact]
    public void SoftmaxWithoutRenormalisationKeepsTheProbabilitiesOfAllExperts()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Softmax, NormalizeWeights: false), logits.ToArray(), ids, w, new int[5]);
        double sum = logits.Sum(x => Math.Exp(x));
        Assert.Equal(Math.Exp(2) / sum, w[0], 6);
        Assert.Equal(Math.Exp(1.5) / sum, w[1], 6);
    }

    [Fact]
    public void SigmoidAndSoftmaxOverTheSelectedAndScale()
    {
        float[] logits = [0.5f, 2f, -1f, 1.5f, 0f];
        var ids = new int[2]; var w = new float[2];
        ExpertLayer.Route(new ExpertRouting(ExpertGating.Sigmoid, NormalizeWeights: false, WeightScale: 2f), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal(2 / (1 + Math.Exp(-2)), w[0], 6);
        Assert.Equal(2 / (1 + Math.Exp(-1.5)), w[1], 6);
        // gpt-oss: top-k of the raw logits, softmax over the k
        ExpertLayer.Route(new ExpertRouting(ExpertGating.SoftmaxWeight, NormalizeWeights: false), logits.ToArray(), ids, w, new int[5]);
        Assert.Equal(Math.Exp(2) / (Math.Exp(1.5) + Math.Exp(2)), w[0], 6);
    }
}
