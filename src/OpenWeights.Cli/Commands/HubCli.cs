using System.Globalization;
using OpenWeights.Hub;

namespace OpenWeights.Cli.Commands;

/// <summary>Shared pieces of the hub commands (pull, list, rm): settings and progress output.</summary>
internal static class HubCli
{
    /// <summary>Tests set this (it flows with the async context) instead of mutating the process environment.</summary>
    internal static readonly AsyncLocal<HubSettings?> SettingsOverride = new();

    public static HubSettings Settings() => SettingsOverride.Value ?? HubSettings.FromEnvironment();

    public static string FormatBytes(long b)
    {
        if (b < 0) return "?";
        string[] units = ["B", "kB", "MB", "GB", "TB"];
        double v = b; int u = 0;
        while (v >= 1000 && u < units.Length - 1) { v /= 1000; u++; }
        return u == 0 ? $"{b} B" : v.ToString(v >= 100 ? "0" : v >= 10 ? "0.0" : "0.00", CultureInfo.InvariantCulture) + " " + units[u];
    }

    public static string FormatEta(TimeSpan? t)
    {
        if (t is not { } s) return "--";
        if (s.TotalHours >= 1) return $"{(int)s.TotalHours}h{s.Minutes:00}m";
        if (s.TotalMinutes >= 1) return $"{(int)s.TotalMinutes}m{s.Seconds:00}s";
        return $"{Math.Ceiling(s.TotalSeconds):0}s";
    }
}

/// <summary>
/// Download progress on stderr: a redrawn bar when stderr is a terminal, otherwise a line every 10 s (and at the end)
/// so logs stay readable.
/// </summary>
internal sealed class ProgressPrinter : IProgress<DownloadProgress>
{
    private readonly TextWriter err;
    private readonly bool interactive;
    private readonly object gate = new();
    private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
    private readonly Dictionary<string, long> lastLine = new(StringComparer.Ordinal);
    private int lastWidth;

    public ProgressPrinter(TextWriter err, bool interactive) { this.err = err; this.interactive = interactive; }

    public static ProgressPrinter For(TextWriter stderr)
    {
        bool tty = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        return new ProgressPrinter(stderr, tty);
    }

    public void Report(DownloadProgress p)
    {
        lock (gate)
        {
            string name = p.Path.Length > 40 ? "…" + p.Path[^39..] : p.Path;
            string sizes = p.BytesTotal >= 0 ? $"{HubCli.FormatBytes(p.BytesDone)}/{HubCli.FormatBytes(p.BytesTotal)}" : HubCli.FormatBytes(p.BytesDone);
            string speed = p.BytesPerSecond > 0 ? HubCli.FormatBytes((long)p.BytesPerSecond) + "/s" : "";
            if (interactive)
            {
                int width = 80;
                try { int w = Console.WindowWidth; if (w >= 20) width = w; } catch (IOException) { } // 0 when the size is unknown
                string pct = p.BytesTotal > 0 ? $"{p.Fraction * 100,3:0}%" : "";
                const int barWidth = 20;
                int filled = (int)(p.Fraction * barWidth);
                string bar = p.BytesTotal > 0 ? "[" + new string('#', filled) + new string('.', barWidth - filled) + "]" : "";
                string line = p.Completed ? $"{name} {sizes} done" : $"{name} {pct} {bar} {sizes} {speed} ETA {HubCli.FormatEta(p.Eta)}";
                if (line.Length > width - 1) line = line[..(width - 1)];
                err.Write("\r" + line.PadRight(Math.Max(lastWidth, line.Length)));
                lastWidth = line.Length;
                if (p.Completed) { err.WriteLine(); lastWidth = 0; }
                err.Flush();
            }
            else
            {
                long now = clock.ElapsedMilliseconds;
                bool first = !lastLine.TryGetValue(p.Path, out var last);
                if (!p.Completed && !first && now - last < 10_000) return;
                lastLine[p.Path] = now;
                if (p.Completed) err.WriteLine($"{p.Path}: done ({HubCli.FormatBytes(p.BytesDone)})");
                else if (p.BytesTotal > 0) err.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Path}: {p.Fraction * 100:0}% ({sizes}, {speed}, ETA {HubCli.FormatEta(p.Eta)})"));
                else err.WriteLine($"{p.Path}: {sizes} {speed}");
            }
        }
    }
}
