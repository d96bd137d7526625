using System.Formats.Tar;
using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Formats;

namespace OpenWeights.Hub.Bundles;

public sealed record ExportOptions
{
    /// <summary>PEM private key (ECDSA) to sign manifest.json with; the signature goes to manifest.sig.</summary>
    public string? SignKeyFile { get; init; }
    /// <summary>Written into the manifest.</summary>
    public string? ToolVersion { get; init; }
}

public sealed record ExportResult(string Output, bool IsTar, BundleManifest Manifest, bool Signed, IReadOnlyList<string> Notes)
{
    public long TotalBytes => Manifest.Files.Sum(f => f.Size);
}

/// <summary>
/// <c>openweights export MODEL[+ADAPTER...]</c>: the model's files as the store holds them (one snapshot of one repository:
/// the chosen GGUF with its shards and the small files beside it, or a whole safetensors checkpoint), its adapters, the
/// catalog entry, the licence text and the acceptance record, and manifest.json (size and SHA-256 of every file), into a
/// folder or one .tar. Written under a temporary name and renamed when complete: a failure or Ctrl-C leaves nothing.
/// </summary>
public sealed class BundleExporter(HubSettings settings, ModelCatalog? catalog = null)
{
    private readonly ModelCatalog catalog = catalog ?? ModelCatalog.Default;
    public HubStore Store { get; } = new(settings.CacheDir);
    public IProgress<DownloadProgress>? Progress { get; init; }
    /// <summary>Files smaller than this are hashed without progress reports.</summary>
    public long ProgressMinBytes { get; init; } = 64L << 20;

    private sealed record Entry(string BundlePath, string? SourceFile, byte[]? Bytes);

    /// <summary>Splits MODEL+ADAPTER+...; a model spec that is itself an existing path is never split.</summary>
    public static (string Model, IReadOnlyList<string> Adapters) ParseSpec(string spec)
    {
        if (File.Exists(spec) || Directory.Exists(spec)) return (spec, []);
        var parts = spec.Split('+');
        if (parts.Any(p => p.Trim().Length == 0)) throw new OpenWeightsException($"empty part in {spec}: expected MODEL[+ADAPTER...]");
        return (parts[0], parts[1..]);
    }

    public ExportResult Export(string spec, string output, ExportOptions? options = null, CancellationToken ct = default)
    {
        options ??= new ExportOptions();
        var (modelSpec, adapterSpecs) = ParseSpec(spec);
        bool tar = output.EndsWith(".tar", StringComparison.OrdinalIgnoreCase);
        output = Path.GetFullPath(output);
        if (File.Exists(output) || Directory.Exists(output)) throw new OpenWeightsException($"{output} exists; export writes a new bundle (remove it or choose another name)");
        var notes = new List<string>();
        var entries = new List<Entry>();

        var model = DescribeModel(modelSpec, entries, notes, ct);
        var adapters = adapterSpecs.Select(a => DescribeAdapter(a, entries)).ToList();
        if (adapters.Select(a => a.Name).Distinct(StringComparer.Ordinal).Count() != adapters.Count)
            throw new OpenWeightsException("two adapters share a name; rename one");

        // pass 1: hashes (the manifest comes first in the bundle)
        var files = new List<BundleFile>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            if (!seen.Add(e.BundlePath)) throw new OpenWeightsException($"two files map to {e.BundlePath} in the bundle");
            var (sha, size) = e.Bytes is { } b ? (Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b)), (long)b.Length)
                : BundleFiles.Hash(e.SourceFile!, e.BundlePath, Progress, ct, ProgressMinBytes);
            files.Add(new BundleFile(e.BundlePath, size, sha));
        }
        string ShaOf(string bundlePath) => files.First(x => x.Path == bundlePath).Sha256;
        // snapshot entries that are copies rather than links, and files outside the store: the blob is named by the content's SHA-256
        model = model with { Files = model.Files.Select(f => f.Blob.Length > 0 ? f : f with { Blob = ShaOf(f.BundlePath) }).ToList() };
        // a model outside the store gets a commit derived from its content: the same files give the same commit
        if (model.Commit.Length == 0)
            model = model with
            {
                Commit = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(
                    string.Join("\n", model.Files.Select(f => f.Path + " " + ShaOf(f.BundlePath))))))[..40],
            };
        var manifest = new BundleManifest
        {
            Format = BundleManifest.FormatName, FormatVersion = BundleManifest.CurrentVersion, ToolVersion = options.ToolVersion,
            Created = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
            Models = [model], Adapters = adapters, Files = files,
        };
        byte[] manifestBytes = manifest.ToBytes();
        byte[]? sig = options.SignKeyFile is { } key ? BundleSigning.Sign(manifestBytes, key) : null;

        // pass 2: write under a temporary name, rename when complete
        string tmp = Path.Combine(Path.GetDirectoryName(output)!, "." + Path.GetFileName(output) + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            if (tar) WriteTar(tmp, manifestBytes, sig, entries, ct);
            else WriteDir(tmp, manifestBytes, sig, entries, ct);
            if (tar) File.Move(tmp, output); else Directory.Move(tmp, output);
        }
        finally { BundleFiles.DeleteQuietly(tmp); }
        return new ExportResult(output, tar, manifest, sig is not null, notes);
    }

    private static void WriteDir(string dir, byte[] manifest, byte[]? sig, List<Entry> entries, CancellationToken ct)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, BundleManifest.FileName), manifest);
        if (sig is not null) File.WriteAllBytes(Path.Combine(dir, BundleManifest.SignatureFileName), sig);
        foreach (var e in entries)
        {
            ct.ThrowIfCancellationRequested();
            var dst = Path.Combine(dir, e.BundlePath.Replace('/', Path.DirectorySeparatorChar));
            Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
            if (e.Bytes is { } b) File.WriteAllBytes(dst, b);
            else
            {
                using var src = new FileStream(e.SourceFile!, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
                using var o = new FileStream(dst, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                BundleFiles.CopyHashing(src, o, e.BundlePath, src.Length, null, ct);
            }
        }
    }

    private static void WriteTar(string file, byte[] manifest, byte[]? sig, List<Entry> entries, CancellationToken ct)
    {
        using var fs = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        using (var w = new TarWriter(fs, TarEntryFormat.Pax, leaveOpen: true))
        {
            void Add(string name, Stream data)
            {
                ct.ThrowIfCancellationRequested();
                w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = data, ModificationTime = DateTimeOffset.UnixEpoch });
            }
            Add(BundleManifest.FileName, new MemoryStream(manifest));
            if (sig is not null) Add(BundleManifest.SignatureFileName, new MemoryStream(sig));
            foreach (var e in entries)
            {
                using Stream s = e.Bytes is { } b ? new MemoryStream(b) : new FileStream(e.SourceFile!, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
                Add(e.BundlePath, s);
            }
        }
        fs.Flush(flushToDisk: true);
    }

    // ---- what goes in ----

    private BundleModel DescribeModel(string spec, List<Entry> entries, List<string> notes, CancellationToken ct)
    {
        string resolved = Path.GetFullPath(ModelLocator.Resolve(spec, settings, catalog));
        string root = Store.CacheDir.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        string repo, commit;
        IReadOnlyList<string> refs;
        List<(string RepoPath, string Local, string Blob)> files;
        if (resolved.StartsWith(root, StringComparison.Ordinal)
            && Path.GetRelativePath(Store.CacheDir, resolved).Split(Path.DirectorySeparatorChar) is { Length: >= 3 } parts
            && parts[0].StartsWith("models--", StringComparison.Ordinal) && parts[1] == "snapshots" && HubStore.IsCommitHash(parts[2]))
        {
            var names = parts[0]["models--".Length..].Split("--");
            repo = names.Length == 2 ? names[0] + "/" + names[1] : throw new OpenWeightsException($"cannot read the repository of {resolved}");
            commit = parts[2];
            var snapshot = Store.SnapshotFiles(repo, commit);
            var chosen = parts.Length == 3 ? snapshot : SelectGguf(snapshot, string.Join('/', parts[3..]));
            files = chosen.Select(f => (f.Path, f.LocalPath, f.Blob ?? "")).ToList();
            refs = Store.Describe(repo).Snapshots.FirstOrDefault(s => s.Commit == commit)?.Refs ?? [];
        }
        else
        {
            // a file or checkpoint folder outside the store: a "local/NAME" repository whose commit is derived from the content
            string name = new string(Path.GetFileNameWithoutExtension(resolved.TrimEnd(Path.DirectorySeparatorChar))
                .Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '-').ToArray()).Trim('-', '.');
            repo = "local/" + (name.Length == 0 ? "model" : name.Length > 90 ? name[..90] : name);
            commit = "";
            refs = ["main"];
            files = File.Exists(resolved) ? [(Path.GetFileName(resolved), resolved, "")]
                : Directory.EnumerateFiles(resolved, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
                    .Select(f => (Path.GetRelativePath(resolved, f).Replace(Path.DirectorySeparatorChar, '/'), f, "")).ToList();
            notes.Add($"{spec} is not in the store; it is exported as {repo}");
        }
        if (files.Count == 0) throw new OpenWeightsException($"{spec}: no files to export");
        string folder = "models/" + repo.Replace("/", "--", StringComparison.Ordinal) + "/";
        var modelFiles = new List<BundleModelFile>();
        foreach (var (path, local, blob) in files)
        {
            HubStore.CheckRepoPath(path);
            entries.Add(new Entry(folder + path, local, null));
            modelFiles.Add(new BundleModelFile(path, folder + path, blob));
        }
        // blob names for snapshot entries that are copies rather than links: the content's SHA-256 (filled after hashing)
        var result = new BundleModel { Repo = repo, Commit = commit, Refs = refs, Files = modelFiles };

        var gate = new CatalogPullGate { Catalog = catalog };
        var cm = gate.FindModel(repo);
        var record = Store.ReadLicense(repo);
        if (cm is not null)
        {
            var terms = new[] { cm.License }.Concat(cm.AdditionalLicenses).Select(catalog.GetLicense).ToList();
            string entryPath = $"catalog/{cm.Id}.json";
            entries.Add(new Entry(entryPath, null, JsonSerializer.SerializeToUtf8Bytes(new { model = cm, licenses = terms }, BundleManifest.Json)));
            var restrictive = terms.FirstOrDefault(t => !t.OsiApproved);
            result = result with
            {
                CatalogId = cm.Id, CatalogEntry = entryPath, License = terms[0].Id, LicenseName = (restrictive ?? terms[0]).Name,
                LicenseUrl = (restrictive ?? terms[0]).Url, LicenseRestricts = restrictive is not null,
            };
        }
        else if (record is not null) result = result with { License = record.License, LicenseRestricts = true };
        var licenseFile = files.FirstOrDefault(f => PullSelection.IsLicenseFile(f.RepoPath));
        if (licenseFile.RepoPath is not null) result = result with { LicenseText = folder + licenseFile.RepoPath };
        if (record is not null && commit.Length > 0)
        {
            string p = $"license/{repo.Replace("/", "--", StringComparison.Ordinal)}.acceptance.json";
            entries.Add(new Entry(p, Store.LicensePath(repo), null));
            result = result with { LicenseAcceptance = p };
        }
        else if (result.LicenseRestricts)
            notes.Add($"{repo} is licensed under {result.LicenseName ?? result.License}, which restricts use, and this store holds no acceptance; the receiving side must accept the licence when importing");
        ct.ThrowIfCancellationRequested();
        return result;
    }

    /// <summary>The GGUF file (and its sibling shards) plus every file of the snapshot that is not a GGUF.</summary>
    private static List<StoredFile> SelectGguf(IReadOnlyList<StoredFile> snapshot, string path)
    {
        if (!PullSelection.IsGguf(path)) return snapshot.Where(f => f.Path == path).ToList();
        var choice = PullSelection.GgufChoices(snapshot.Select(f => f.Path).Where(PullSelection.IsGguf).ToList()).FirstOrDefault(c => c.Files.Contains(path));
        var ggufs = choice?.Files.ToHashSet(StringComparer.Ordinal) ?? [path];
        return snapshot.Where(f => ggufs.Contains(f.Path) || !PullSelection.IsGguf(f.Path)).ToList();
    }

    private static BundleAdapter DescribeAdapter(string spec, List<Entry> entries)
    {
        string full = Path.GetFullPath(spec);
        string name = Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar));
        if (File.Exists(full))
        {
            entries.Add(new Entry($"adapters/{name}/{name}", full, null));
            return new BundleAdapter { Name = name, Kind = "gguf", Files = [new BundleAdapterFile(name, $"adapters/{name}/{name}")] };
        }
        if (Directory.Exists(full))
        {
            var files = Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(f =>
            {
                string rel = Path.GetRelativePath(full, f).Replace(Path.DirectorySeparatorChar, '/');
                entries.Add(new Entry($"adapters/{name}/{rel}", f, null));
                return new BundleAdapterFile(rel, $"adapters/{name}/{rel}");
            }).ToList();
            if (files.Count == 0) throw new OpenWeightsException($"adapter folder {spec} is empty");
            return new BundleAdapter { Name = name, Kind = "peft", Files = files };
        }
        throw new OpenWeightsException($"adapter not found: {UntrustedText.Quote(spec)} (a GGUF LoRA file or a PEFT adapter folder)");
    }
}
