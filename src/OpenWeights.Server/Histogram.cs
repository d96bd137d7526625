using System.Globalization;
using System.Text;

namespace OpenWeights.Server;

/// <summary>A Prometheus histogram: counts per upper bound (seconds), their sum and count; rendered cumulatively.</summary>
public sealed class Histogram
{
    private readonly double[] bounds; // ascending upper bounds; +Inf is implicit
    private readonly long[] counts;   // per bucket, not cumulative; the last is (bounds[^1], +Inf)
    private double sum;
    private long count;

    public Histogram(params double[] upperBounds)
    {
        if (upperBounds.Length == 0 || upperBounds.Zip(upperBounds.Skip(1)).Any(p => p.First >= p.Second))
            throw new ArgumentException("bucket bounds must be ascending and non-empty", nameof(upperBounds));
        bounds = upperBounds;
        counts = new long[upperBounds.Length + 1];
    }

    /// <summary>Time to first token and request duration: 10 ms to 5 min.</summary>
    public static Histogram Latency() => new(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300);
    /// <summary>Time between two tokens of one generation: 1 ms to 5 s.</summary>
    public static Histogram InterToken() => new(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5);

    public void Observe(double seconds)
    {
        if (double.IsNaN(seconds)) return;
        int i = 0;
        while (i < bounds.Length && seconds > bounds[i]) i++; // le: a value equal to a bound falls in that bucket
        lock (counts) { counts[i]++; sum += seconds; count++; }
    }

    public long Count { get { lock (counts) return count; } }
    public double Sum { get { lock (counts) return sum; } }

    /// <summary>Appends name_bucket{labels,le=...}, name_sum{labels} and name_count{labels}; <paramref name="labels"/> is "" or already escaped `k="v"` pairs.</summary>
    public void Render(StringBuilder sb, string name, string labels)
    {
        long[] c; double s; long n;
        lock (counts) { c = (long[])counts.Clone(); s = sum; n = count; }
        string prefix = labels.Length > 0 ? labels + "," : "";
        long cumulative = 0;
        for (int i = 0; i <= bounds.Length; i++)
        {
            cumulative += c[i];
            string le = i < bounds.Length ? Number(bounds[i]) : "+Inf";
            sb.Append(name).Append("_bucket{").Append(prefix).Append("le=\"").Append(le).Append("\"} ").Append(cumulative).Append('\n');
        }
        string braces = labels.Length > 0 ? "{" + labels + "}" : "";
        sb.Append(name).Append("_sum").Append(braces).Append(' ').Append(Number(s)).Append('\n');
        sb.Append(name).Append("_count").Append(braces).Append(' ').Append(n).Append('\n');
    }

    internal static string Number(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
