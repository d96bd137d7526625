using OpenWeights.Inference;

namespace OpenWeights.Tests.Inference;

public class SamplerTests
{
    private static float[] Logits(params float[] v) => v;

    private static Dictionary<int, int> Histogram(SamplingOptions o, float[] logits, int draws, int[]? history = null)
    {
        var s = new Sampler(o, logits.Length);
        var h = new Dictionary<int, int>();
        for (int i = 0; i < draws; i++)
        {
            int t = s.Sample((float[])logits.Clone(), history ?? []);
            h[t] = h.GetValueOrDefault(t) + 1;
        }
        return h;
    }

    [Fact]
    public void GreedyTakesTheMaximum()
    {
        var s = new Sampler(SamplingOptions.Greedy, 4);
        Assert.Equal(2, s.Sample(Logits(1, 2, 5, 3), []));
    }

    [Fact]
    public void TopKKeepsOnlyTheKBest()
    {
        var h = Histogram(new SamplingOptions { Temperature = 1, TopK = 2, TopP = 1, MinP = 0, Seed = 1 }, Logits(3, 3.1f, 0, 2.9f, 1), 2000);
        Assert.Equal([0, 1], h.Keys.Order());
    }

    [Fact]
    public void TopPKeepsTheSmallestSetReachingP()
    {
        // probabilities ~ 0.665, 0.245, 0.090: p=0.8 keeps the first two
        var h = Histogram(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.8f, MinP = 0, Seed = 2 }, Logits(2, 1, 0), 3000);
        Assert.Equal([0, 1], h.Keys.Order());
        Assert.InRange(h[0] / 3000.0, 0.68, 0.78); // renormalised 0.665/0.91 = 0.73
    }

    [Fact]
    public void MinPDropsUnlikelyTokens()
    {
        // p1/p0 = e^-1 = 0.37 >= 0.3 kept; p2/p0 = e^-3 = 0.05 < 0.3 dropped
        var h = Histogram(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.3f, Seed = 3 }, Logits(3, 2, 0), 2000);
        Assert.Equal([0, 1], h.Keys.Order());
    }

    [Fact]
    public void TemperatureSharpensAndFlattens()
    {
        var cold = Histogram(new SamplingOptions { Temperature = 0.2f, TopK = 0, TopP = 1, MinP = 0, Seed = 4 }, Logits(1, 0), 2000);
        var hot = Histogram(new SamplingOptions { Temperature = 5f, TopK = 0, TopP = 1, MinP = 0, Seed = 4 }, Logits(1, 0), 2000);
        Assert.True(cold.GetValueOrDefault(0) > 1950);      // e^5 : 1
        Assert.InRange(hot.GetValueOrDefault(0) / 2000.0, 0.5, 0.62); // e^0.2 : 1 = 0.55
    }

    [Fact]
    public void PenaltiesFollowLlamaCppAndOpenAi()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 0, RepeatPenalty = 2, PresencePenalty = 0.5f, FrequencyPenalty = 0.25f }, 3);
        var l = Logits(4, -1, 3);
        s.Sample(l, [0, 0, 1]);
        Assert.Equal(4f / 2 - 2 * 0.25f - 0.5f, l[0]);      // positive: divided, then frequency x2 and presence
        Assert.Equal(-1f * 2 - 0.25f - 0.5f, l[1]);         // negative: multiplied
        Assert.Equal(3f, l[2]);                             // unseen: untouched
    }

    [Fact]
    public void LogitBiasCanBanAndForce()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 0, LogitBias = new Dictionary<int, float> { [0] = float.NegativeInfinity, [2] = 10 } }, 3);
        Assert.Equal(2, s.Sample(Logits(5, 4, 0), []));
    }

    [Fact]
    public void SameSeedSameDraws()
    {
        var o = new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = 99 };
        var a = new Sampler(o, 5); var b = new Sampler(o, 5);
        for (int i = 0; i < 50; i++) Assert.Equal(a.Sample(Logits(1, 1, 1, 1, 1), []), b.Sample(Logits(1, 1, 1, 1, 1), []));
    }

    [Theory]
    [InlineData(-1f, 40, 0.9f, 0f)]
    [InlineData(0.5f, -1, 0.9f, 0f)]
    [InlineData(0.5f, 40, 0f, 0f)]
    [InlineData(0.5f, 40, 1.5f, 0f)]
    [InlineData(0.5f, 40, 0.9f, 2f)]
    [InlineData(float.NaN, 40, 0.9f, 0f)]
    public void InvalidOptionsAreRefused(float temp, int topK, float topP, float minP)
    {
        var o = new SamplingOptions { Temperature = temp, TopK = topK, TopP = topP, MinP = minP };
        Assert.Throws<OpenWeightsException>(() => new Sampler(o, 10));
    }
}

public class StopStringFilterTests
{
    [Fact]
    public void HoldsBackPartialMatchesAndCutsAtTheStop()
    {
        var f = new StopStringFilter(["<|end|>"]);
        Assert.Equal(("Hello ", false), f.Push("Hello <|"));
        Assert.Equal(("", false), f.Push("en"));
        Assert.Equal(("", true), f.Push("d|> more"));
    }

    [Fact]
    public void ReleasesHeldTextWhenItIsNotAStop()
    {
        var f = new StopStringFilter(["STOP"]);
        Assert.Equal(("a ", false), f.Push("a ST"));
        Assert.Equal(("STart", false), f.Push("art"));
        Assert.Equal("x", f.Flush("x"));
    }

    [Fact]
    public void EarliestOfSeveralStopsWins()
    {
        var f = new StopStringFilter(["bb", "a"]);
        Assert.Equal(("xx", true), f.Push("xxabb"));
    }
}
