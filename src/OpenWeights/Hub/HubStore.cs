using OpenWeights.Formats;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace OpenWeights.Hub;

/// <summary>A file in one snapshot of the store.</summary>
/// <param name="Path">Path inside the repository, '/'-separated.</param>
/// <param name="LocalPath">Path of the snapshot entry (a symlink into blobs/ on Linux).</param>
/// <param name="Size">Size of the blob, or -1 when the link is dangling.</param>
/// <param name="Blob">Blob file name (the ETag), or null when the entry is not a link.</param>
public sealed record StoredFile(string Path, string LocalPath, long Size, string? Blob);

/// <summary>One snapshot (commit) of a repository in the store, with the refs that point at it.</summary>
public sealed record StoredSnapshot(string Commit, IReadOnlyList<string> Refs, IReadOnlyList<StoredFile> Files, DateTime LastModifiedUtc);

/// <summary>A repository in the store. <paramref name="SizeOnDisk"/> counts complete blobs once.</summary>
public sealed record StoredRepo(string RepoId, string Folder, long SizeOnDisk, IReadOnlyList<StoredSnapshot> Snapshots);

/// <summary>What <see cref="HubStore.Remove"/> deleted.</summary>
public sealed record RemoveResult(string RepoId, int SnapshotEntriesRemoved, int BlobsRemoved, long BytesFreed, bool RepoRemoved);

/// <summary>A license accepted with <c>pull --accept-license</c>, kept in {store}/openweights/licenses/.</summary>
public sealed record LicenseRecord
{
    public required string Repo { get; init; }
    public string? License { get; init; }
    /// <summary>SHA-256 (hex) of the repository's LICENSE file, when it has one.</summary>
    public string? LicenseSha256 { get; init; }
    public string? LicenseFile { get; init; }
    public string? Commit { get; init; }
    /// <summary>UTC, ISO 8601.</summary>
    public required string AcceptedAt { get; init; }
}

/// <summary>
/// The local store, in huggingface_hub's cache layout so Python tools and OpenWeights share downloads:
/// <c>models--{org}--{name}/blobs/{etag}</c>, <c>snapshots/{commit}/{path}</c> (relative symlink to the blob),
/// <c>refs/{revision}</c> (the commit hash), and <c>.locks/models--{org}--{name}/{etag}.lock</c>.
/// </summary>
public sealed partial class HubStore
{
    public HubStore(string cacheDir) => CacheDir = Path.GetFullPath(cacheDir);

    public string CacheDir { get; }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")]
    private static partial Regex RepoIdRegex();

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitRegex();

    [GeneratedRegex("^[A-Za-z0-9_-]{1,128}$")]
    private static partial Regex EtagRegex();

    public static bool IsValidRepoId(string repoId) =>
        RepoIdRegex().IsMatch(repoId) && !repoId.Contains("--", StringComparison.Ordinal) && !repoId.Contains("..", StringComparison.Ordinal)
        && !repoId.EndsWith('.');

    public static bool IsCommitHash(string revision) => CommitRegex().IsMatch(revision);

    public static void CheckRepoId(string repoId)
    {
        if (!IsValidRepoId(repoId)) throw new OpenWeightsException($"invalid repository id {UntrustedText.Quote(repoId)}: expected org/name");
    }

    /// <summary>Checks that a path from the hub (or the user) stays inside a snapshot.</summary>
    public static void CheckRepoPath(string path)
    {
        if (path.Length == 0 || path.StartsWith('/') || path.Contains('\\') || path.Contains('\0')
            || path.Split('/').Any(s => s is "" or "." or ".."))
            throw new OpenWeightsException($"unsafe file path in repository: {UntrustedText.Quote(path)}");
    }

    /// <summary>ETags become blob file names; only plain tokens (hex hashes) are accepted.</summary>
    public static void CheckEtag(string etag)
    {
        if (!EtagRegex().IsMatch(etag)) throw new OpenWeightsException($"the hub sent an unexpected ETag {UntrustedText.Quote(etag)}");
    }

    public static string RepoFolderName(string repoId) => "models--" + repoId.Replace("/", "--", StringComparison.Ordinal);

    public string RepoDir(string repoId) { CheckRepoId(repoId); return Path.Combine(CacheDir, RepoFolderName(repoId)); }
    public string BlobsDir(string repoId) => Path.Combine(RepoDir(repoId), "blobs");
    public string BlobPath(string repoId, string etag) { CheckEtag(etag); return Path.Combine(BlobsDir(repoId), etag); }
    public string IncompletePath(string repoId, string etag) => BlobPath(repoId, etag) + ".incomplete";
    public string LockPath(string repoId, string etag) { CheckEtag(etag); return Path.Combine(CacheDir, ".locks", RepoFolderName(repoId), etag + ".lock"); }
    public string SnapshotDir(string repoId, string commit)
    {
        if (!IsCommitHash(commit)) throw new OpenWeightsException($"invalid commit hash {UntrustedText.Quote(commit)}");
        return Path.Combine(RepoDir(repoId), "snapshots", commit);
    }
    public string SnapshotPath(string repoId, string commit, string path)
    {
        CheckRepoPath(path);
        return Path.Combine(SnapshotDir(repoId, commit), path.Replace('/', Path.DirectorySeparatorChar));
    }

    private string RefPath(string repoId, string revision)
    {
        CheckRepoPath(revision); // "refs/pr/1" nests like huggingface_hub does
        return Path.Combine(RepoDir(repoId), "refs", revision.Replace('/', Path.DirectorySeparatorChar));
    }

    public string? ReadRef(string repoId, string revision)
    {
        var p = RefPath(repoId, revision);
        if (!File.Exists(p)) return null;
        var c = File.ReadAllText(p).Trim();
        return IsCommitHash(c) ? c : null;
    }

    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit) return;
        if (!IsCommitHash(commit)) throw new OpenWeightsException($"the hub sent an invalid commit hash {UntrustedText.Quote(commit)}");
        var p = RefPath(repoId, revision);
        if (ReadRef(repoId, revision) == commit) return;
        Directory.CreateDirectory(Path.GetDirectoryName(p)!);
        var tmp = p + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(tmp, commit);
        File.Move(tmp, p, overwrite: true);
    }

    /// <summary>The commit a revision (branch, tag or hash) points at locally, or null.</summary>
    public string? ResolveCommit(string repoId, string revision)
    {
        if (IsCommitHash(revision)) return Directory.Exists(SnapshotDir(repoId, revision)) ? revision : ReadRef(repoId, revision);
        return ReadRef(repoId, revision);
    }

    /// <summary>Points snapshots/{commit}/{path} at blobs/{etag}: a relative symlink, or a copy where links are not allowed.</summary>
    public string LinkSnapshot(string repoId, string commit, string path, string etag)
    {
        var blob = BlobPath(repoId, etag);
        var dst = SnapshotPath(repoId, commit, path);
        var dir = Path.GetDirectoryName(dst)!;
        Directory.CreateDirectory(dir);
        var rel = Path.GetRelativePath(dir, blob);
        var existing = new FileInfo(dst);
        if (existing.Exists || existing.LinkTarget is not null)
        {
            if (existing.LinkTarget == rel && File.Exists(blob)) return dst;
        }
        var tmp = Path.Combine(dir, "." + Path.GetFileName(dst) + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            File.CreateSymbolicLink(tmp, rel);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            File.Copy(blob, tmp, overwrite: true); // like huggingface_hub without symlink support
        }
        File.Move(tmp, dst, overwrite: true);
        return dst;
    }

    /// <summary>The files of a local snapshot; only entries whose blob exists when <paramref name="completeOnly"/>.</summary>
    public IReadOnlyList<StoredFile> SnapshotFiles(string repoId, string commit, bool completeOnly = true)
    {
        var dir = SnapshotDir(repoId, commit);
        var list = new List<StoredFile>();
        if (!Directory.Exists(dir)) return list;
        foreach (var f in Directory.EnumerateFileSystemEntries(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            var fi = new FileInfo(f);
            if (Directory.Exists(f) && fi.LinkTarget is null) continue;
            var name = Path.GetFileName(f);
            if (name.StartsWith('.') && name.Contains(".tmp-", StringComparison.Ordinal)) continue;
            string rel = Path.GetRelativePath(dir, f).Replace(Path.DirectorySeparatorChar, '/');
            long size = -1; string? blob = null;
            if (fi.LinkTarget is not null)
            {
                blob = Path.GetFileName(fi.LinkTarget);
                if (fi.ResolveLinkTarget(true) is FileInfo { Exists: true } t) size = t.Length;
            }
            else size = fi.Length;
            if (completeOnly && size < 0) continue;
            list.Add(new StoredFile(rel, f, size, blob));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        return list;
    }

    /// <summary>
    /// Every repository folder (models--*) in the store that holds at least one complete file; folders left by pulls that
    /// failed before any file was complete (partial blobs kept for resuming) are not models yet.
    /// </summary>
    public IReadOnlyList<StoredRepo> List()
    {
        var repos = new List<StoredRepo>();
        if (!Directory.Exists(CacheDir)) return repos;
        foreach (var dir in Directory.EnumerateDirectories(CacheDir, "models--*").Order(StringComparer.Ordinal))
        {
            var folder = Path.GetFileName(dir);
            var parts = folder["models--".Length..].Split("--");
            if (parts.Length != 2) continue;
            var repoId = parts[0] + "/" + parts[1];
            if (!IsValidRepoId(repoId)) continue;
            var repo = Describe(repoId);
            if (repo.Snapshots.Any(s => s.Files.Any(f => f.Size >= 0))) repos.Add(repo);
        }
        return repos;
    }

    /// <summary>One repository's snapshots, refs and size.</summary>
    public StoredRepo Describe(string repoId)
    {
        var dir = RepoDir(repoId);
        var refs = AllRefs(repoId);
        var snaps = new List<StoredSnapshot>();
        var snapRoot = Path.Combine(dir, "snapshots");
        if (Directory.Exists(snapRoot))
        {
            foreach (var s in Directory.EnumerateDirectories(snapRoot))
            {
                var commit = Path.GetFileName(s);
                if (!IsCommitHash(commit)) continue;
                snaps.Add(new StoredSnapshot(commit, refs.Where(r => r.Value == commit).Select(r => r.Key).Order(StringComparer.Ordinal).ToList(),
                    SnapshotFiles(repoId, commit, completeOnly: false), Directory.GetLastWriteTimeUtc(s)));
            }
        }
        snaps.Sort((a, b) => b.LastModifiedUtc.CompareTo(a.LastModifiedUtc));
        long size = 0;
        var blobs = Path.Combine(dir, "blobs");
        if (Directory.Exists(blobs))
            foreach (var b in new DirectoryInfo(blobs).EnumerateFiles())
                if (!b.Name.EndsWith(".incomplete", StringComparison.Ordinal)) size += b.Length;
        return new StoredRepo(repoId, dir, size, snaps);
    }

    private Dictionary<string, string> AllRefs(string repoId)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var refsDir = Path.Combine(RepoDir(repoId), "refs");
        if (!Directory.Exists(refsDir)) return result;
        foreach (var f in Directory.EnumerateFiles(refsDir, "*", SearchOption.AllDirectories))
        {
            if (Path.GetFileName(f).Contains(".tmp-", StringComparison.Ordinal)) continue;
            var name = Path.GetRelativePath(refsDir, f).Replace(Path.DirectorySeparatorChar, '/');
            var c = File.ReadAllText(f).Trim();
            if (IsCommitHash(c)) result[name] = c;
        }
        return result;
    }

    /// <summary>
    /// Removes a repository, or the given files from its snapshots (one revision, or all), then deletes
    /// blobs no snapshot points at, empty snapshots and refs to removed snapshots.
    /// </summary>
    public RemoveResult Remove(string repoId, IReadOnlyCollection<string>? paths = null, string? revision = null)
    {
        var dir = RepoDir(repoId);
        if (!Directory.Exists(dir)) throw new OpenWeightsException($"{repoId} is not in the store ({CacheDir})");
        var before = Describe(repoId);
        if (paths is null && revision is null)
        {
            Directory.Delete(dir, recursive: true);
            var locks = Path.Combine(CacheDir, ".locks", RepoFolderName(repoId));
            if (Directory.Exists(locks)) try { Directory.Delete(locks, true); } catch (IOException) { }
            return new RemoveResult(repoId, before.Snapshots.Sum(s => s.Files.Count), CountBlobs(dir, before), before.SizeOnDisk, true);
        }

        IEnumerable<StoredSnapshot> targets = before.Snapshots;
        if (revision is not null)
        {
            var commit = ResolveCommit(repoId, revision) ?? throw new OpenWeightsException($"revision '{revision}' of {repoId} is not in the store");
            targets = targets.Where(s => s.Commit == commit);
        }
        int removed = 0;
        foreach (var snap in targets)
        {
            foreach (var f in snap.Files)
            {
                if (paths is not null && !paths.Contains(f.Path)) continue;
                File.Delete(f.LocalPath);
                removed++;
            }
            var sdir = SnapshotDir(repoId, snap.Commit);
            DeleteEmptyDirs(sdir);
        }
        if (removed == 0) throw new OpenWeightsException($"no such file of {repoId} in the store: {string.Join(", ", paths ?? [])}");

        // Refs pointing at snapshots that are gone.
        foreach (var (name, commit) in AllRefs(repoId))
            if (!Directory.Exists(SnapshotDir(repoId, commit))) File.Delete(RefPath(repoId, name));
        DeleteEmptyDirs(Path.Combine(dir, "refs"), keepRoot: true);

        // Blobs no snapshot points at.
        var after = Describe(repoId);
        var referenced = after.Snapshots.SelectMany(s => s.Files).Select(f => f.Blob).Where(b => b is not null).ToHashSet(StringComparer.Ordinal);
        int blobs = 0; long freed = 0;
        var blobsDir = Path.Combine(dir, "blobs");
        if (Directory.Exists(blobsDir))
            foreach (var b in new DirectoryInfo(blobsDir).EnumerateFiles())
            {
                if (b.Name.EndsWith(".incomplete", StringComparison.Ordinal) || b.Name.Contains(".incomplete.", StringComparison.Ordinal)) continue;
                if (referenced.Contains(b.Name)) continue;
                freed += b.Length; blobs++;
                b.Delete();
            }
        bool repoGone = false;
        if (after.Snapshots.Count == 0)
        {
            Directory.Delete(dir, recursive: true);
            repoGone = true;
        }
        return new RemoveResult(repoId, removed, blobs, freed, repoGone);
    }

    private static int CountBlobs(string dir, StoredRepo r) =>
        r.Snapshots.SelectMany(s => s.Files).Select(f => f.Blob).Where(b => b is not null).Distinct().Count();

    private static void DeleteEmptyDirs(string dir, bool keepRoot = false)
    {
        if (!Directory.Exists(dir)) return;
        foreach (var sub in Directory.EnumerateDirectories(dir)) if (new DirectoryInfo(sub).LinkTarget is null) DeleteEmptyDirs(sub);
        if (!keepRoot && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }

    // ---- licenses ----

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string LicensePath(string repoId)
    {
        CheckRepoId(repoId);
        return Path.Combine(CacheDir, "openweights", "licenses", repoId.Replace("/", "--", StringComparison.Ordinal) + ".json");
    }

    public LicenseRecord? ReadLicense(string repoId)
    {
        var p = LicensePath(repoId);
        return File.Exists(p) ? JsonSerializer.Deserialize<LicenseRecord>(File.ReadAllText(p), JsonOptions) : null;
    }

    /// <summary>Records that the user accepted a repository's license; hashes its LICENSE file when given.</summary>
    public string WriteLicense(string repoId, string? licenseId, string? commit, string? licenseFileRepoPath, string? licenseFileLocalPath, DateTimeOffset? acceptedAt = null)
    {
        string? sha = null;
        if (licenseFileLocalPath is not null && File.Exists(licenseFileLocalPath))
        {
            using var s = File.OpenRead(licenseFileLocalPath);
            sha = Convert.ToHexStringLower(SHA256.HashData(s));
        }
        var rec = new LicenseRecord
        {
            Repo = repoId, License = licenseId, LicenseSha256 = sha, LicenseFile = sha is null ? null : licenseFileRepoPath, Commit = commit,
            AcceptedAt = (acceptedAt ?? DateTimeOffset.UtcNow).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        };
        var p = LicensePath(repoId);
        Directory.CreateDirectory(Path.GetDirectoryName(p)!);
        var tmp = p + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(rec, JsonOptions));
        File.Move(tmp, p, overwrite: true);
        return p;
    }
}
