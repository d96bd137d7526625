using OpenWeights.Formats;
using System.Net;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;

namespace OpenWeights.Hub;

/// <summary>A write into the store failed (disk full, permissions): never retried, partial data kept.</summary>
internal sealed class StoreWriteException(string file, IOException inner) : Exception(inner.Message, inner)
{
    public string File { get; } = file;
    public IOException IO { get; } = inner;

    public static bool IsDiskFull(IOException e) =>
        e.HResult == 28 /* ENOSPC */ || (e.HResult & 0xFFFF) is 112 or 39 /* ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL */
        || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("disk full", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("not enough space", StringComparison.OrdinalIgnoreCase);
}

/// <summary>The server ignored a Range request (answered 200): parallel ranges are impossible.</summary>
internal sealed class RangeNotSupportedException() : Exception("the server does not support byte ranges");

/// <summary>
/// Fetches one blob into blobs/{etag}: writes {etag}.incomplete (resumed from its length, so partial files
/// of huggingface_hub and ours are interchangeable), fetches large files over parallel ranges whose tails go
/// to {etag}.incomplete.part-{offset} files that are appended in order at the end, verifies SHA-256, fsyncs
/// and renames into place. Holds .locks/models--x/{etag}.lock (flock, like Python's filelock) meanwhile.
/// </summary>
internal sealed class BlobDownloader(HubClient client, HubStore store, HubSettings settings)
{
    private const int BufferSize = 256 * 1024;

    /// <summary>Returns the blob path and whether this call downloaded it.</summary>
    public async Task<(string Blob, bool Downloaded)> EnsureBlobAsync(string repoId, string commit, string path, FileMetadata meta, string? expectedSha256,
        IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var blob = store.BlobPath(repoId, meta.Etag);
        if (File.Exists(blob))
        {
            new ProgressTracker(path, meta.Size ?? new FileInfo(blob).Length, new FileInfo(blob).Length, progress).Report(true);
            return (blob, false);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        using var fileLock = await FileLock.AcquireAsync(store.LockPath(repoId, meta.Etag), settings.LockTimeout, ct).ConfigureAwait(false);
        if (File.Exists(blob))
        {
            new ProgressTracker(path, meta.Size ?? new FileInfo(blob).Length, new FileInfo(blob).Length, progress).Report(true);
            return (blob, false);
        }

        var inc = blob + ".incomplete";
        expectedSha256 ??= meta.IsLfs && meta.Etag.Length == 64 ? meta.Etag.ToLowerInvariant() : null;
        var job = new Job(repoId, commit, path, inc, meta.Size);
        string hash;
        try
        {
            bool parallel = meta.Size is { } size && settings.Connections > 1 && (size >= settings.ParallelThreshold || PartFiles(inc).Count > 0);
            if (parallel)
            {
                try { hash = await DownloadParallelAsync(job, progress, ct).ConfigureAwait(false); }
                catch (RangeNotSupportedException)
                {
                    foreach (var (_, f) in PartFiles(inc)) File.Delete(f);
                    hash = await DownloadSequentialAsync(job, progress, ct).ConfigureAwait(false);
                }
            }
            else hash = await DownloadSequentialAsync(job, progress, ct).ConfigureAwait(false);
        }
        catch (StoreWriteException e)
        {
            long have = File.Exists(inc) ? new FileInfo(inc).Length + PartFiles(inc).Sum(p => new FileInfo(p.File).Length) : 0;
            if (StoreWriteException.IsDiskFull(e.IO))
                throw new OpenWeightsException($"disk full writing {path} into {store.CacheDir}: free some space and pull again to resume ({have} bytes kept)", e.IO);
            throw new OpenWeightsException($"cannot write {e.File}: {e.IO.Message}", e.IO);
        }

        long actual = new FileInfo(inc).Length;
        if (meta.Size is { } expectedSize && actual != expectedSize)
        {
            Discard(inc);
            throw new OpenWeightsException($"download of {repoId}/{path} is corrupt: got {actual} bytes, expected {expectedSize}; the partial file was deleted, pull again");
        }
        if (expectedSha256 is not null && !string.Equals(hash, expectedSha256, StringComparison.OrdinalIgnoreCase))
        {
            Discard(inc);
            throw new OpenWeightsException($"checksum mismatch for {repoId}/{path}: SHA-256 {hash}, expected {UntrustedText.Quote(expectedSha256)}; the download was deleted, pull again");
        }
        File.Move(inc, blob, overwrite: true);
        return (blob, true);
    }

    private static void Discard(string inc)
    {
        foreach (var (_, f) in PartFiles(inc)) File.Delete(f);
        File.Delete(inc);
    }

    private sealed record Job(string RepoId, string Commit, string Path, string Incomplete, long? Size);

    private sealed class Cursor(long pos) { public long Pos = pos; }

    /// <summary>Part files of a parallel download, by absolute start offset.</summary>
    private static List<(long Start, string File)> PartFiles(string inc)
    {
        var dir = Path.GetDirectoryName(inc)!;
        var prefix = Path.GetFileName(inc) + ".part-";
        var list = new List<(long, string)>();
        if (!Directory.Exists(dir)) return list;
        foreach (var f in Directory.EnumerateFiles(dir, prefix + "*"))
            if (long.TryParse(Path.GetFileName(f)[prefix.Length..], out var s) && s >= 0) list.Add((s, f));
        list.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return list;
    }

    private static string PartPath(string inc, long start) => inc + ".part-" + start.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private FileStream OpenForAppend(string file, out Stream writer)
    {
        FileStream fs;
        try { fs = new FileStream(file, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous); }
        catch (IOException e) { throw new StoreWriteException(file, e); }
        fs.Seek(0, SeekOrigin.End);
        writer = settings.WriteStreamWrapper?.Invoke(fs) ?? fs;
        return fs;
    }

    // ---- sequential ----

    private async Task<string> DownloadSequentialAsync(Job job, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var fs = OpenForAppend(job.Incomplete, out var writer);
        try
        {
            if (job.Size is { } size && fs.Length > size) { fs.SetLength(0); fs.Seek(0, SeekOrigin.Begin); }
            var hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            if (fs.Length > 0) await HashFileAsync(job.Incomplete, fs.Length, hasher, ct).ConfigureAwait(false);
            var cursor = new Cursor(fs.Length);
            var tracker = new ProgressTracker(job.Path, job.Size ?? -1, cursor.Pos, progress);
            await DownloadRangeAsync(job, fs, writer, cursor, job.Size, sequential: true, () => { hasher.Dispose(); hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256); return hasher; },
                hasher, tracker, ct).ConfigureAwait(false);
            Sync(job.Incomplete, fs);
            tracker.Report(true);
            var hash = Convert.ToHexStringLower(hasher.GetHashAndReset());
            hasher.Dispose();
            return hash;
        }
        finally
        {
            if (!ReferenceEquals(writer, fs)) await writer.DisposeAsync().ConfigureAwait(false);
            await fs.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static void Sync(string file, FileStream fs)
    {
        try { fs.Flush(flushToDisk: true); }
        catch (IOException e) { throw new StoreWriteException(file, e); }
    }

    /// <summary>
    /// Downloads blob bytes [cursor, end) into fs (positioned at its end) with retries. Sequential mode accepts
    /// a 200 answer to a Range request by starting over (via resetHasher); parallel mode throws
    /// <see cref="RangeNotSupportedException"/>.
    /// </summary>
    private async Task DownloadRangeAsync(Job job, FileStream fs, Stream writer, Cursor cursor, long? end, bool sequential,
        Func<IncrementalHash>? resetHasher, IncrementalHash? hasher, ProgressTracker tracker, CancellationToken ct)
    {
        int failures = 0;
        var buffer = new byte[BufferSize];
        while (end is null || cursor.Pos < end)
        {
            long startPos = cursor.Pos;
            try
            {
                using var resp = await client.GetFileAsync(job.RepoId, job.Commit, job.Path, cursor.Pos, end is { } e0 && !sequential ? e0 - 1 : null, ct).ConfigureAwait(false);
                if (resp.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
                {
                    if (end is null && cursor.Pos > 0) break; // we already have all of a file of unknown size
                    if (!sequential) throw new RangeNotSupportedException();
                    Restart();
                    continue;
                }
                if (resp.StatusCode == HttpStatusCode.OK)
                {
                    if (!sequential) throw new RangeNotSupportedException();
                    if (cursor.Pos > 0) Restart();
                }
                else if (resp.Content.Headers.ContentRange is { From: { } from } && from != cursor.Pos)
                {
                    if (!sequential) throw new RangeNotSupportedException();
                    Restart();
                    continue;
                }
                await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await CopyAsync(body, writer, fs.Name, buffer, cursor, end, hasher, tracker, ct).ConfigureAwait(false);
                if (end is null) break;
                if (cursor.Pos < end) throw new IOException($"connection closed after {cursor.Pos - startPos} bytes");
            }
            catch (Exception e) when (HubClient.IsNetworkError(e, ct))
            {
                if (cursor.Pos > startPos) failures = 0;
                if (++failures > settings.MaxRetries)
                    throw new OpenWeightsException($"download of {job.RepoId}/{job.Path} failed after {settings.MaxRetries} retries ({e.Message}); pull again to resume", e);
                await Task.Delay(HubClient.Backoff(settings.RetryBaseDelay, failures - 1), ct).ConfigureAwait(false);
            }
        }

        void Restart()
        {
            try { fs.SetLength(0); fs.Seek(0, SeekOrigin.Begin); }
            catch (IOException e) { throw new StoreWriteException(fs.Name, e); }
            cursor.Pos = 0;
            hasher = resetHasher?.Invoke();
            tracker.Reset(0);
        }
    }

    private async Task CopyAsync(Stream body, Stream writer, string file, byte[] buffer, Cursor cursor, long? end,
        IncrementalHash? hasher, ProgressTracker tracker, CancellationToken ct)
    {
        while (end is null || cursor.Pos < end)
        {
            int n;
            using (var readCts = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                readCts.CancelAfter(settings.ReadTimeout);
                try { n = await body.ReadAsync(buffer, readCts.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested) { throw new TimeoutException($"no data for {settings.ReadTimeout.TotalSeconds:0} s"); }
            }
            if (n == 0) return;
            if (end is { } e && cursor.Pos + n > e) n = (int)(e - cursor.Pos);
            try { await writer.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false); }
            catch (IOException ex) { throw new StoreWriteException(file, ex); }
            hasher?.AppendData(buffer, 0, n);
            cursor.Pos += n;
            tracker.Add(n);
        }
    }

    private static async Task HashFileAsync(string file, long length, IncrementalHash hasher, CancellationToken ct)
    {
        await using var rs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, BufferSize, FileOptions.Asynchronous | FileOptions.SequentialScan);
        var buf = new byte[BufferSize];
        long left = length;
        while (left > 0)
        {
            int n = await rs.ReadAsync(buf.AsMemory(0, (int)Math.Min(buf.Length, left)), ct).ConfigureAwait(false);
            if (n == 0) break;
            hasher.AppendData(buf, 0, n);
            left -= n;
        }
    }

    // ---- parallel ----

    private async Task<string> DownloadParallelAsync(Job job, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        long size = job.Size!.Value;
        var inc = job.Incomplete;
        if (File.Exists(inc) && new FileInfo(inc).Length > size) File.Delete(inc);
        Merge(inc, size);
        long head = File.Exists(inc) ? new FileInfo(inc).Length : 0;

        // Layout: [head, s1) appends to .incomplete; [s_k, s_k+1) to part files. Existing part files fix the layout.
        var starts = PartFiles(inc).Select(p => p.Start).Where(s => s > head && s < size).ToList();
        if (starts.Count == 0 && size - head >= 2 * BufferSize)
        {
            int n = settings.Connections;
            long chunk = (size - head) / n;
            if (chunk >= BufferSize) for (int k = 1; k < n; k++) starts.Add(head + k * chunk);
        }
        var ranges = new List<(string File, long FileStart, long End)>();
        var bounds = starts.Append(size).ToList();
        ranges.Add((inc, 0, bounds[0]));
        for (int k = 0; k < starts.Count; k++) ranges.Add((PartPath(inc, starts[k]), starts[k], bounds[k + 1]));

        long already = head + ranges.Skip(1).Sum(r => File.Exists(r.File) ? Math.Min(new FileInfo(r.File).Length, r.End - r.FileStart) : 0);
        var tracker = new ProgressTracker(job.Path, size, already, progress);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var tasks = ranges.Select(r => Task.Run(async () =>
        {
            try
            {
                var fs = OpenForAppend(r.File, out var writer);
                try
                {
                    if (r.FileStart + fs.Length > r.End) { fs.SetLength(r.End - r.FileStart); fs.Seek(0, SeekOrigin.End); }
                    var cursor = new Cursor(r.FileStart + fs.Length);
                    await DownloadRangeAsync(job, fs, writer, cursor, r.End, sequential: false, null, null, tracker, cts.Token).ConfigureAwait(false);
                    Sync(r.File, fs);
                }
                finally
                {
                    if (!ReferenceEquals(writer, fs)) await writer.DisposeAsync().ConfigureAwait(false);
                    await fs.DisposeAsync().ConfigureAwait(false);
                }
            }
            catch
            {
                cts.Cancel();
                throw;
            }
        }, CancellationToken.None)).ToArray();
        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch
        {
            ct.ThrowIfCancellationRequested();
            var errors = tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).ToList();
            var primary = errors.FirstOrDefault(e => e is not OperationCanceledException) ?? errors[0];
            ExceptionDispatchInfo.Throw(primary);
        }

        Merge(inc, size);
        if (PartFiles(inc).Count > 0) throw new IOException($"parallel download of {job.Path} left unmerged parts");
        tracker.Report(true);
        using var hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await HashFileAsync(inc, new FileInfo(inc).Length, hasher, ct).ConfigureAwait(false);
        return Convert.ToHexStringLower(hasher.GetHashAndReset());
    }

    /// <summary>
    /// Appends part files that continue .incomplete, in order; bytes at every offset are the blob's bytes, so a
    /// part that overlaps what .incomplete already has contributes only its tail. Safe to interrupt and rerun.
    /// </summary>
    private void Merge(string inc, long size)
    {
        foreach (var (start, file) in PartFiles(inc))
        {
            long head = File.Exists(inc) ? new FileInfo(inc).Length : 0;
            if (start > head) break;
            long len = new FileInfo(file).Length;
            if (start + len > head)
            {
                var fs = OpenForAppend(inc, out var writer);
                try
                {
                    using var rs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, BufferSize, FileOptions.SequentialScan);
                    rs.Seek(head - start, SeekOrigin.Begin);
                    var buf = new byte[BufferSize];
                    int n;
                    while ((n = rs.Read(buf, 0, buf.Length)) > 0)
                    {
                        try { writer.Write(buf, 0, n); }
                        catch (IOException e) { throw new StoreWriteException(inc, e); }
                    }
                    Sync(inc, fs);
                }
                finally
                {
                    if (!ReferenceEquals(writer, fs)) writer.Dispose();
                    fs.Dispose();
                }
            }
            File.Delete(file);
        }
        _ = size;
    }
}

/// <summary>An exclusive lock file (flock on Unix, like Python's filelock), polled until a timeout.</summary>
internal sealed class FileLock : IDisposable
{
    private readonly FileStream stream;
    private FileLock(FileStream s) => stream = s;

    public static async Task<FileLock> AcquireAsync(string path, TimeSpan timeout, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try { return new FileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)); }
            catch (IOException e) when (!File.Exists(path) || StoreWriteException.IsDiskFull(e))
            {
                throw new OpenWeightsException($"cannot create lock file {path}: {e.Message}", e);
            }
            catch (IOException) when (sw.Elapsed < timeout)
            {
                await Task.Delay(100, ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new OpenWeightsException($"another download holds {path} (waited {timeout.TotalSeconds:0} s): {e.Message}");
            }
        }
    }

    public void Dispose() => stream.Dispose();
}
