namespace OpenWeights.Hub;

/// <summary>Progress of one file being downloaded.</summary>
/// <param name="Path">File path inside the repository.</param>
/// <param name="BytesDone">Bytes present locally (including bytes resumed from an earlier run).</param>
/// <param name="BytesTotal">Size of the file, or -1 when unknown.</param>
/// <param name="BytesPerSecond">Recent transfer speed.</param>
/// <param name="Eta">Estimated time left, when the size and speed are known.</param>
/// <param name="Completed">True on the last report for this file.</param>
public sealed record DownloadProgress(string Path, long BytesDone, long BytesTotal, double BytesPerSecond, TimeSpan? Eta, bool Completed)
{
    public double Fraction => BytesTotal > 0 ? Math.Clamp((double)BytesDone / BytesTotal, 0, 1) : 0;
}

/// <summary>Thread-safe byte counter that reports throttled progress with speed and ETA.</summary>
internal sealed class ProgressTracker
{
    private readonly string path;
    private readonly long total;
    private readonly IProgress<DownloadProgress>? sink;
    private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
    private readonly object gate = new();
    private long done;
    private long lastReportTicks = -1;
    // speed over a sliding window: (seconds, bytes) samples
    private readonly Queue<(double t, long bytes)> window = new();

    public ProgressTracker(string path, long total, long already, IProgress<DownloadProgress>? sink)
    {
        this.path = path; this.total = total; this.sink = sink; done = already;
        window.Enqueue((0, already));
    }

    public long Done => Interlocked.Read(ref done);

    public void Reset(long value) { lock (gate) { done = value; window.Clear(); window.Enqueue((clock.Elapsed.TotalSeconds, value)); } }

    public void Add(long n)
    {
        Interlocked.Add(ref done, n);
        if (sink is null) return;
        long now = clock.ElapsedMilliseconds;
        if (now - Interlocked.Read(ref lastReportTicks) < 100) return;
        Report(false);
    }

    public void Report(bool completed)
    {
        if (sink is null) return;
        DownloadProgress p;
        lock (gate)
        {
            long now = clock.ElapsedMilliseconds;
            if (!completed && now - lastReportTicks < 100) return;
            lastReportTicks = now;
            double t = now / 1000.0;
            long d = Done;
            window.Enqueue((t, d));
            while (window.Count > 2 && t - window.Peek().t > 5) window.Dequeue();
            var (t0, d0) = window.Peek();
            double speed = t - t0 > 0.05 ? (d - d0) / (t - t0) : 0;
            TimeSpan? eta = total > 0 && speed > 0 ? TimeSpan.FromSeconds(Math.Max(0, total - d) / speed) : null;
            p = new DownloadProgress(path, d, total, speed, completed ? TimeSpan.Zero : eta, completed);
        }
        sink.Report(p);
    }
}
