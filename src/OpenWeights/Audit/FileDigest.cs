using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace OpenWeights.Audit;

/// <summary>
/// SHA-256 of the files a generation depends on (model weights, adapters), read as a stream (1 MiB at a time, never the
/// whole file in memory) and remembered per (full path, size, last write time) for the life of the process: a 10 GB model
/// is hashed once however many sessions or log lines name it, and again only when the file changes.
/// A folder (a Hugging Face checkpoint, a PEFT adapter) is hashed as a manifest: SHA-256 of the UTF-8 text
/// "SHA256 RELATIVE/PATH\n" over its files in ordinal order of their relative paths ('/' separators), the lines
/// `sha256sum` would print; so a changed, added or removed file changes the folder's hash.
/// </summary>
public static class FileDigest
{
    private readonly record struct Key(string Path, long Size, DateTime Modified);
    private static readonly ConcurrentDictionary<Key, Lazy<string>> Cache = new();

    private static readonly ConcurrentDictionary<string, int> Reads = new();

    /// <summary>How many times this process has read <paramref name="path"/> to hash it (tests check the cache).</summary>
    public static int TimesRead(string path) => Reads.GetValueOrDefault(System.IO.Path.GetFullPath(path));

    /// <summary>Lower-case hex SHA-256 of a file, or of a folder's manifest.</summary>
    public static string Sha256(string path)
    {
        if (Directory.Exists(path)) return FolderSha256(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"cannot hash {path}: no such file");
        var key = new Key(info.FullName, info.Length, info.LastWriteTimeUtc);
        return Cache.GetOrAdd(key, k => new Lazy<string>(() => HashFile(k.Path))).Value;
    }

    /// <summary>Lower-case hex SHA-256 of a string's UTF-8 bytes.</summary>
    public static string Sha256Text(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static string HashFile(string path)
    {
        Reads.AddOrUpdate(path, 1, (_, n) => n + 1);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static string FolderSha256(string dir)
    {
        var root = Path.GetFullPath(dir);
        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Select(f => (Full: f, Rel: Path.GetRelativePath(root, f).Replace('\\', '/')))
            .OrderBy(f => f.Rel, StringComparer.Ordinal);
        var sb = new StringBuilder();
        foreach (var (full, rel) in files) sb.Append(Sha256(full)).Append(' ').Append(rel).Append('\n');
        return Sha256Text(sb.ToString());
    }
}
