using System.Formats.Tar;
using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Formats;

namespace OpenWeights.Hub.Bundles;

public sealed record ImportOptions
{
    /// <summary>PEM public key: the bundle must carry manifest.sig made with its private key.</summary>
    public string? TrustKeyFile { get; init; }
    /// <summary>The person importing accepts the licence of a model whose bundle carries no acceptance record.</summary>
    public bool AcceptLicense { get; init; }
}

/// <param name="FilesInstalled">Blobs moved into the store (0 when the store already held every file).</param>
public sealed record ImportedModel(string Repo, string Commit, int Files, int FilesInstalled, string? LicenseRecordPath);

public sealed record ImportResult(IReadOnlyList<ImportedModel> Models, IReadOnlyList<string> AdapterPaths, bool Signed, bool SignatureVerified, long Bytes);

/// <summary>
/// <c>openweights import BUNDLE</c>: copies every file of the bundle (folder or .tar) into a staging folder inside the store
/// while hashing it, then checks — before anything becomes visible — the signature (with a trust key), the manifest, every
/// size and SHA-256, that nothing is missing or unlisted, that no path leaves the bundle, that blob names match their content,
/// and that a licence which restricts use was accepted. Only then are blobs renamed into blobs/, snapshot links made and refs
/// written last, as <c>pull</c> does. A refusal is one <see cref="BundleException"/> line naming the cause and the file, and
/// leaves the store as it was.
/// </summary>
public sealed class BundleImporter(HubSettings settings, ModelCatalog? catalog = null)
{
    private readonly ModelCatalog catalog = catalog ?? ModelCatalog.Default;
    public HubStore Store { get; } = new(settings.CacheDir);
    public IProgress<DownloadProgress>? Progress { get; init; }
    /// <summary>Files smaller than this are hashed without progress reports.</summary>
    public long ProgressMinBytes { get; init; } = 64L << 20;

    /// <summary>manifest.json and manifest.sig are read into memory; larger ones are refused.</summary>
    public const int MaxManifestBytes = 64 << 20;

    public string AdaptersDir => Path.Combine(Store.CacheDir, "openweights", "adapters");

    private sealed record Staged(string File, long Size, string Sha256);

    public ImportResult Import(string bundle, ImportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new ImportOptions();
        bool createdCache = !Directory.Exists(Store.CacheDir);
        string staging = Path.Combine(Store.CacheDir, ".openweights-import-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(staging);
        try
        {
            var staged = new Dictionary<string, Staged>(StringComparer.Ordinal);
            byte[]? manifestBytes = null, sig = null;
            void Special(string name, Func<Stream> open, long length)
            {
                if (length > MaxManifestBytes) throw new BundleException($"{name} is {length} bytes, more than {MaxManifestBytes}");
                using var s = open();
                var ms = new MemoryStream();
                s.CopyTo(ms);
                if (name == BundleManifest.FileName) manifestBytes = ms.ToArray(); else sig = ms.ToArray();
            }
            void Stage(string name, Stream src, long length)
            {
                BundleManifest.CheckBundlePath(name);
                if (staged.ContainsKey(name) || (name == BundleManifest.FileName && manifestBytes is not null) || (name == BundleManifest.SignatureFileName && sig is not null))
                    throw new BundleException($"the bundle holds {UntrustedText.Quote(name)} twice");
                if (name is BundleManifest.FileName or BundleManifest.SignatureFileName) { Special(name, () => src, length); return; }
                string dst = Path.Combine(staging, "f", name.Replace('/', Path.DirectorySeparatorChar));
                Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
                using var o = new FileStream(dst, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                var (sha, size) = BundleFiles.CopyHashing(src, o, name, length, Progress, ct, ProgressMinBytes);
                staged[name] = new Staged(dst, size, sha);
            }

            if (Directory.Exists(bundle)) ReadDir(bundle, Stage);
            else if (File.Exists(bundle)) ReadTar(bundle, Stage);
            else throw new BundleException($"bundle not found: {bundle}");

            if (manifestBytes is null) throw new BundleException($"no {BundleManifest.FileName} in {bundle}: not an openweights bundle");
            bool verified = false;
            if (options.TrustKeyFile is { } trust)
            {
                if (sig is null) throw new BundleException($"unsigned bundle: no {BundleManifest.SignatureFileName} in {bundle}, and the trust key {trust} requires a signature");
                if (!BundleSigning.Verify(manifestBytes, sig, trust))
                    throw new BundleException($"wrong signature: {BundleManifest.SignatureFileName} does not verify {BundleManifest.FileName} with {trust}");
                verified = true;
            }
            var manifest = BundleManifest.Parse(manifestBytes);
            CheckContents(manifest, staged);
            foreach (var m in manifest.Models) CheckBlobNames(m, staged);
            var licenceRecords = manifest.Models.ToDictionary(m => m.Repo, m => CheckLicense(m, staged, options));
            CheckAdapters(manifest, staged);

            // ---- everything is verified: install (blobs, then links, then licence records, then refs) ----
            var imported = new List<ImportedModel>();
            foreach (var m in manifest.Models) imported.Add(Install(m, staged, licenceRecords[m.Repo], ct));
            var adapters = manifest.Adapters.Select(a => InstallAdapter(a, staged)).ToList();
            return new ImportResult(imported, adapters, sig is not null, verified, manifest.Files.Sum(f => f.Size));
        }
        finally
        {
            BundleFiles.DeleteQuietly(staging);
            if (createdCache && Directory.Exists(Store.CacheDir) && !Directory.EnumerateFileSystemEntries(Store.CacheDir).Any())
                BundleFiles.DeleteQuietly(Store.CacheDir);
        }
    }

    // ---- reading ----

    private static void ReadDir(string dir, Action<string, Stream, long> stage)
    {
        foreach (var f in Directory.EnumerateFileSystemEntries(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Order(StringComparer.Ordinal))
        {
            var fi = new FileInfo(f);
            string rel = Path.GetRelativePath(dir, f).Replace(Path.DirectorySeparatorChar, '/');
            if (fi.LinkTarget is not null) throw new BundleException($"link in bundle: {UntrustedText.Quote(rel)} (a bundle holds plain files only)");
            if (Directory.Exists(f)) continue;
            using var s = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            stage(rel, s, s.Length);
        }
    }

    private static void ReadTar(string file, Action<string, Stream, long> stage)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        TarReader reader;
        try { reader = new TarReader(fs); } catch (Exception e) when (e is InvalidDataException or FormatException) { throw new BundleException($"{file} is not a tar archive: {e.Message}"); }
        using (reader)
        {
            while (true)
            {
                TarEntry? e;
                try { e = reader.GetNextEntry(copyData: false); }
                catch (Exception ex) when (ex is InvalidDataException or FormatException or EndOfStreamException or ArgumentException)
                { throw new BundleException($"{file} is not a valid tar archive: {ex.Message}"); }
                if (e is null) break;
                string name = e.Name.StartsWith("./", StringComparison.Ordinal) ? e.Name[2..] : e.Name;
                if (e.EntryType == TarEntryType.Directory)
                {
                    if (name.TrimEnd('/').Length > 0) BundleManifest.CheckBundlePath(name.TrimEnd('/'));
                    continue;
                }
                if (e.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile))
                {
                    BundleManifest.CheckBundlePath(name);
                    throw new BundleException($"tar entry {UntrustedText.Quote(name)} is a {e.EntryType}, not a plain file");
                }
                BundleManifest.CheckBundlePath(name);
                stage(name, e.DataStream ?? Stream.Null, e.Length);
            }
        }
    }

    // ---- checks (nothing written to the store yet) ----

    private static void CheckContents(BundleManifest manifest, Dictionary<string, Staged> staged)
    {
        foreach (var f in manifest.Files)
        {
            if (!staged.TryGetValue(f.Path, out var s)) throw new BundleException($"missing file: {UntrustedText.Quote(f.Path)} is listed in {BundleManifest.FileName} but not in the bundle");
            if (s.Size != f.Size) throw new BundleException($"size mismatch: {UntrustedText.Quote(f.Path)} is {s.Size} bytes, the manifest says {f.Size}");
            if (!string.Equals(s.Sha256, f.Sha256, StringComparison.OrdinalIgnoreCase))
                throw new BundleException($"SHA-256 mismatch: {UntrustedText.Quote(f.Path)} has {s.Sha256}, the manifest says {f.Sha256.ToLowerInvariant()} (altered or corrupt)");
        }
        var listed = manifest.Files.Select(f => f.Path).ToHashSet(StringComparer.Ordinal);
        if (staged.Keys.Order(StringComparer.Ordinal).FirstOrDefault(k => !listed.Contains(k)) is { } extra)
            throw new BundleException($"unlisted file: {UntrustedText.Quote(extra)} is in the bundle but not in {BundleManifest.FileName}");
    }

    /// <summary>A blob named by a hash must hold the bytes of that hash: an LFS ETag is the SHA-256, a git ETag the git blob SHA-1.</summary>
    private void CheckBlobNames(BundleModel m, Dictionary<string, Staged> staged)
    {
        foreach (var f in m.Files)
        {
            var s = staged[f.BundlePath];
            bool ok = f.Blob.Length switch
            {
                64 => string.Equals(f.Blob, s.Sha256, StringComparison.OrdinalIgnoreCase),
                40 => string.Equals(f.Blob, BundleFiles.GitBlobSha1(s.File), StringComparison.OrdinalIgnoreCase),
                _ => true,
            };
            if (!ok) throw new BundleException($"blob name {UntrustedText.Quote(f.Blob)} does not match the content of {UntrustedText.Quote(f.BundlePath)}");
            var existing = Store.BlobPath(m.Repo, f.Blob);
            if (File.Exists(existing) && new FileInfo(existing).Length != s.Size)
                throw new BundleException($"the store already holds blob {f.Blob} of {m.Repo} with another size than {UntrustedText.Quote(f.BundlePath)}; remove {m.Repo} from the store first");
        }
    }

    /// <summary>The licence that governs the repository: the program's catalog decides, the bundle's claim can only add a restriction.</summary>
    private LicenseRecord? CheckLicense(BundleModel m, Dictionary<string, Staged> staged, ImportOptions options)
    {
        LicenseRecord? carried = null;
        if (m.LicenseAcceptance is { } p)
        {
            try { carried = JsonSerializer.Deserialize<LicenseRecord>(File.ReadAllBytes(staged[p].File), BundleManifest.Json); }
            catch (JsonException) { }
            if (carried is null || !string.Equals(carried.Repo, m.Repo, StringComparison.Ordinal))
                throw new BundleException($"licence acceptance {UntrustedText.Quote(p)} is not a record for {m.Repo}");
        }
        var cm = new CatalogPullGate { Catalog = catalog }.FindModel(m.Repo);
        var restrictive = cm is null ? null : new[] { cm.License }.Concat(cm.AdditionalLicenses).Select(catalog.GetLicense).FirstOrDefault(t => !t.OsiApproved);
        bool restricts = restrictive is not null || m.LicenseRestricts;
        if (!restricts || carried is not null || options.AcceptLicense || File.Exists(Store.LicensePath(m.Repo))) return carried;
        string name = restrictive?.Name ?? m.LicenseName ?? m.License ?? "its licence";
        string? url = restrictive?.Url ?? m.LicenseUrl;
                throw new BundleLicenseNotAcceptedException(m.Repo, cm?.Id, name, url);
    }

    private void CheckAdapters(BundleManifest manifest, Dictionary<string, Staged> staged)
    {
        foreach (var a in manifest.Adapters)
        {
            string target = Path.Combine(AdaptersDir, a.Name);
            if (!Directory.Exists(target)) continue;
            bool same = Directory.EnumerateFiles(target, "*", SearchOption.AllDirectories).Count() == a.Files.Count
                && a.Files.All(f => File.Exists(Path.Combine(target, f.Path)) && BundleFiles.Hash(Path.Combine(target, f.Path), f.Path, null, default).Sha256 == staged[f.BundlePath].Sha256);
            if (!same) throw new BundleException($"adapter {UntrustedText.Quote(a.Name)} already exists in {AdaptersDir} with other contents; remove it first");
        }
    }

    // ---- installing ----

    private ImportedModel Install(BundleModel m, Dictionary<string, Staged> staged, LicenseRecord? carried, CancellationToken ct)
    {
        int installed = 0;
        foreach (var f in m.Files)
        {
            ct.ThrowIfCancellationRequested();
            var blob = Store.BlobPath(m.Repo, f.Blob);
            var s = staged[f.BundlePath];
            if (!File.Exists(blob) && File.Exists(s.File))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                using (var h = new FileStream(s.File, FileMode.Open, FileAccess.ReadWrite)) h.Flush(flushToDisk: true);
                File.Move(s.File, blob);
                installed++;
            }
        }
        foreach (var f in m.Files) Store.LinkSnapshot(m.Repo, m.Commit, f.Path, f.Blob);
        string? recordPath = null;
        if (carried is not null && !File.Exists(Store.LicensePath(m.Repo)))
        {
            recordPath = Store.LicensePath(m.Repo);
            Directory.CreateDirectory(Path.GetDirectoryName(recordPath)!);
            var tmp = recordPath + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
            File.Copy(staged[m.LicenseAcceptance!].File, tmp);
            File.Move(tmp, recordPath);
        }
        // the refs last: a failure before this point leaves the revisions where they were
        foreach (var r in m.Refs) Store.WriteRef(m.Repo, r, m.Commit);
        return new ImportedModel(m.Repo, m.Commit, m.Files.Count, installed, recordPath);
    }

    private string InstallAdapter(BundleAdapter a, Dictionary<string, Staged> staged)
    {
        string target = Path.Combine(AdaptersDir, a.Name);
        string path = a.Kind == "gguf" && a.Files.Count == 1 ? Path.Combine(target, a.Files[0].Path) : target;
        if (Directory.Exists(target)) return path; // identical (checked above)
        Directory.CreateDirectory(AdaptersDir);
        string tmp = Path.Combine(AdaptersDir, "." + a.Name + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            foreach (var f in a.Files)
            {
                string dst = Path.Combine(tmp, f.Path.Replace('/', Path.DirectorySeparatorChar));
                Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
                File.Move(staged[f.BundlePath].File, dst);
            }
            Directory.Move(tmp, target);
        }
        finally { BundleFiles.DeleteQuietly(tmp); }
        return path;
    }
}
