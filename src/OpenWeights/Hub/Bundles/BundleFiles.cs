using System.Security.Cryptography;

namespace OpenWeights.Hub.Bundles;

/// <summary>Streaming SHA-256 copies and hashes with progress (one report per 64 MiB and one at the end).</summary>
internal static class BundleFiles
{
    private const int Buffer = 1 << 20;

    /// <summary>SHA-256 (lower-case hex) and length of a file, read once.</summary>
    public static (string Sha256, long Size) Hash(string file, string label, IProgress<DownloadProgress>? progress, CancellationToken ct, long progressMinBytes = 0)
    {
        using var src = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, Buffer, FileOptions.SequentialScan);
        return CopyHashing(src, null, label, src.Length, progress, ct, progressMinBytes);
    }

    /// <summary>Copies <paramref name="src"/> into <paramref name="dst"/> (when given) while hashing it; progress only for files of at least <paramref name="progressMinBytes"/>.</summary>
    public static (string Sha256, long Size) CopyHashing(Stream src, Stream? dst, string label, long total, IProgress<DownloadProgress>? progress, CancellationToken ct, long progressMinBytes = 0)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var tracker = progress is null || total < progressMinBytes ? null : new ProgressTracker(label, total, 0, progress);
        var buf = new byte[Buffer];
        long size = 0, sinceReport = 0;
        int n;
        while ((n = src.Read(buf, 0, buf.Length)) > 0)
        {
            ct.ThrowIfCancellationRequested();
            sha.AppendData(buf, 0, n);
            dst?.Write(buf, 0, n);
            size += n; sinceReport += n;
            tracker?.Add(n);
            if (sinceReport >= 64 << 20) { tracker?.Report(false); sinceReport = 0; }
        }
        tracker?.Report(true);
        return (Convert.ToHexStringLower(sha.GetHashAndReset()), size);
    }

    /// <summary>The git blob id (SHA-1 of "blob {size}\0" + content), which is the hub's ETag of a file kept in git (not LFS).</summary>
    public static string GitBlobSha1(string file)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        using var src = File.OpenRead(file);
        sha.AppendData(System.Text.Encoding.ASCII.GetBytes($"blob {src.Length}\0"));
        var buf = new byte[Buffer];
        int n;
        while ((n = src.Read(buf, 0, buf.Length)) > 0) sha.AppendData(buf, 0, n);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Deletes a file or folder, ignoring what is already gone.</summary>
    public static void DeleteQuietly(string path)
    {
        try
        {
            if (Directory.Exists(path) && new DirectoryInfo(path).LinkTarget is null) Directory.Delete(path, recursive: true);
            else if (File.Exists(path) || new FileInfo(path).LinkTarget is not null) File.Delete(path);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
