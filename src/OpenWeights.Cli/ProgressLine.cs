using System.Diagnostics;
using System.Globalization;
using OpenWeights.Formats.Gguf;

namespace OpenWeights.Cli;

/// <summary>
/// Progress of a long job on stderr (stdout stays the machine-readable result). On a terminal one line redrawn in place
/// with \r (at most ~10 times a second) and erased at the end; otherwise (a log, a pipe, a test) a line at the start,
/// at each further 10% and at least every 5 s while something moves, and one at the end.
/// </summary>
public sealed class ProgressLine : IProgress<GgufWriteProgress>
{
    private readonly TextWriter err;
    private readonly bool interactive;
    private readonly string label;
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private long lastDrawMs = -1;
    private int lastTenth = -1, lastWidth;
    private bool finished;

    /// <param name="label">What is being done, e.g. "writing model.gguf".</param>
    public ProgressLine(TextWriter err, bool interactive, string label)
    {
        this.err = err;
        this.interactive = interactive;
        this.label = label;
    }

    /// <summary>A progress line on <paramref name="stderr"/>, redrawn in place when that is the console and a terminal; null when <paramref name="quiet"/>.</summary>
    public static ProgressLine? For(TextWriter stderr, string label, bool quiet = false) =>
        quiet ? null : new ProgressLine(stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected, label);

    /// <summary>"writing x.gguf: tensor 12/147, 340/1200 MB, 28%".</summary>
    public void Report(GgufWriteProgress p) =>
        Show(p.Fraction, p.Completed
            ? string.Create(CultureInfo.InvariantCulture, $"{p.Tensors} tensors, {Mb(p.BytesTotal)} MB")
            : string.Create(CultureInfo.InvariantCulture, $"tensor {p.Tensor + 1}/{p.Tensors}, {Mb(p.BytesWritten)}/{Mb(p.BytesTotal)} MB"),
            p.Completed);

    private static string Mb(long b) => (b / 1e6).ToString(b < 10_000_000 ? "0.0" : "0", CultureInfo.InvariantCulture);

    /// <summary>Shows <paramref name="fraction"/> done with a detail text; <paramref name="done"/> ends the line.</summary>
    public void Show(double fraction, string detail, bool done = false)
    {
        lock (err)
        {
            if (finished) return;
            long now = clock.ElapsedMilliseconds;
            int pct = (int)Math.Floor(Math.Clamp(fraction, 0, 1) * 100);
            string line = $"{label}: {detail}, {pct}%";
            if (interactive)
            {
                if (!done && lastDrawMs >= 0 && now - lastDrawMs < 100) return;
                lastDrawMs = now;
                if (done)
                {
                    err.Write("\r" + new string(' ', lastWidth) + "\r"); // the result line follows on stdout
                    finished = true;
                }
                else
                {
                    err.Write("\r" + line.PadRight(lastWidth));
                    lastWidth = line.Length;
                }
                err.Flush();
                return;
            }
            int tenth = pct / 10;
            if (!done && lastDrawMs >= 0 && tenth == lastTenth && now - lastDrawMs < 5000) return;
            lastDrawMs = now;
            lastTenth = tenth;
            if (done) finished = true;
            err.WriteLine(line);
            err.Flush();
        }
    }
}
