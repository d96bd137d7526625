namespace OpenWeights.Bench;

/// <summary>Small statistics the benchmarks share.</summary>
internal static class Stats
{
    /// <summary>The median (for an even count, the mean of the two middle values).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var s = values.Order().ToArray();
        if (s.Length == 0) throw new ArgumentException("no values");
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
