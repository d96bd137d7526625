namespace OpenWeights.Tests.Oracle;

/// <summary>Agreement between two logit vectors.</summary>
public static class Compare
{
    public static (double MaxAbs, double Cosine) Logits(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0, dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
            dot += (double)a[i] * b[i]; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i];
        }
        return (max, dot / Math.Sqrt(na * nb + 1e-30));
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
