using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using OpenWeights.Hub;
using OpenWeights.Hub.Bundles;

namespace OpenWeights.Tests.Hub;

/// <summary>
/// export -> import between two stores (huggingface_hub layout) on real files: byte-identical round trips in folder and
/// tar form, and every refusal (flipped byte in any file, missing, unlisted, malformed manifest, path traversal, wrong or
/// missing signature, unaccepted licence) as one line naming the cause and the file, with the target store unchanged.
/// </summary>
public class BundleTests : IDisposable
{
    private readonly TempDir dir = new();
    private readonly HubSettings src, dst;
    private const string Repo = "acme/tiny-model";
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";

    public BundleTests()
    {
        src = new HubSettings { CacheDir = dir.File("src-hub") };
        dst = new HubSettings { CacheDir = dir.File("dst-hub") };
        var rng = new Random(7);
        var weights = new byte[300_000]; rng.NextBytes(weights);
        AddRepo(new HubStore(src.CacheDir), Repo, Commit, new()
        {
            ["model-Q8_0.gguf"] = weights,
            ["tokenizer.json"] = Encoding.UTF8.GetBytes("{\"model\":{\"type\":\"BPE\"}}"),
            ["chat_template.jinja"] = Encoding.UTF8.GetBytes("{{ messages }}"),
            ["LICENSE"] = Encoding.UTF8.GetBytes("MIT License\n"),
        });
        // the target store already holds another model, so "unchanged" is checked against something
        AddRepo(new HubStore(dst.CacheDir), "other/thing", "fedcba9876543210fedcba9876543210fedcba98", new() { ["x.gguf"] = [1, 2, 3] });
    }

    public void Dispose() { dir.Dispose(); GC.SuppressFinalize(this); }

    /// <summary>Puts files into a store as pull would leave them: .gguf as LFS blobs (named by SHA-256), others as git blobs (SHA-1), ref main.</summary>
    internal static void AddRepo(HubStore store, string repo, string commit, Dictionary<string, byte[]> files)
    {
        foreach (var (path, bytes) in files)
        {
            string etag = path.EndsWith(".gguf", StringComparison.Ordinal) ? Convert.ToHexStringLower(SHA256.HashData(bytes))
                : Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {bytes.Length}\0"), .. bytes]));
            var blob = store.BlobPath(repo, etag);
            Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
            File.WriteAllBytes(blob, bytes);
            store.LinkSnapshot(repo, commit, path, etag);
        }
        store.WriteRef(repo, "main", commit);
    }

    /// <summary>Every entry under a folder with its content hash or link target: equal digests mean an unchanged tree.</summary>
    internal static string Tree(string root)
    {
        if (!Directory.Exists(root)) return "";
        var sb = new StringBuilder();
        foreach (var f in Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Order(StringComparer.Ordinal))
        {
            var fi = new FileInfo(f);
            sb.Append(Path.GetRelativePath(root, f)).Append(' ');
            if (fi.LinkTarget is not null) sb.Append("-> ").Append(fi.LinkTarget);
            else if (Directory.Exists(f)) sb.Append("dir");
            else sb.Append(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private string Export(string name, string spec = Repo, ExportOptions? o = null) => new BundleExporter(src).Export(spec, dir.File(name), o).Output;

    private BundleException Refused(string bundle, ImportOptions? o = null)
    {
        string before = Tree(dst.CacheDir);
        var e = Assert.ThrowsAny<BundleException>(() => new BundleImporter(dst).Import(bundle, o));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(before, Tree(dst.CacheDir));
        return e;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RoundTripGivesByteIdenticalFilesAndIsIdempotent(bool tar)
    {
        var bundle = Export(tar ? "b.tar" : "b");
        Assert.Equal(tar, File.Exists(bundle));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(dir.Path), p => p.Contains(".tmp-"));
        var r = new BundleImporter(dst).Import(bundle);
        Assert.Equal(4, r.Models[0].FilesInstalled);
        var a = new HubStore(src.CacheDir); var b = new HubStore(dst.CacheDir);
        Assert.Equal(Commit, b.ReadRef(Repo, "main"));
        var srcFiles = a.SnapshotFiles(Repo, Commit); var dstFiles = b.SnapshotFiles(Repo, Commit);
        Assert.Equal(srcFiles.Select(f => (f.Path, f.Blob)), dstFiles.Select(f => (f.Path, f.Blob)));
        foreach (var (s, d) in srcFiles.Zip(dstFiles)) Assert.Equal(File.ReadAllBytes(s.LocalPath), File.ReadAllBytes(d.LocalPath));
        // run/list find it: the resolver gives the GGUF in the target store
        Assert.Equal(dstFiles.First(f => f.Path == "model-Q8_0.gguf").LocalPath, ModelResolver.Resolve(Repo, dst));
        Assert.Contains(b.List(), x => x.RepoId == Repo);
        // no staging folder left; a second import changes nothing
        string after = Tree(dst.CacheDir);
        Assert.DoesNotContain(".openweights-import-", after);
        var again = new BundleImporter(dst).Import(bundle);
        Assert.Equal(0, again.Models[0].FilesInstalled);
        Assert.Equal(after, Tree(dst.CacheDir));
    }

    [Fact]
    public void ManifestListsEveryFileWithSizeAndSha256()
    {
        var bundle = Export("b");
        var m = BundleManifest.Parse(File.ReadAllBytes(Path.Combine(bundle, "manifest.json")));
        Assert.Equal(BundleManifest.CurrentVersion, m.FormatVersion);
        Assert.NotNull(m.Created);
        var onDisk = Directory.EnumerateFiles(bundle, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(bundle, f).Replace('\\', '/'))
            .Where(p => p != "manifest.json").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(onDisk, m.Files.Select(f => f.Path).Order(StringComparer.Ordinal).ToList());
        foreach (var f in m.Files)
        {
            var bytes = File.ReadAllBytes(Path.Combine(bundle, f.Path));
            Assert.Equal(bytes.Length, f.Size);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), f.Sha256);
        }
        Assert.Equal("models/acme--tiny-model/LICENSE", m.Models[0].LicenseText);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AByteFlippedInAnyFileIsRefusedNamingTheFile(bool tar)
    {
        var folder = Export("b");
        var m = BundleManifest.Parse(File.ReadAllBytes(Path.Combine(folder, "manifest.json")));
        Assert.True(m.Files.Count >= 4);
        foreach (var f in m.Files)
        {
            string p = Path.Combine(folder, f.Path);
            var original = File.ReadAllBytes(p);
            var flipped = (byte[])original.Clone();
            flipped[flipped.Length / 2] ^= 0x01;
            File.WriteAllBytes(p, flipped);
            string bundle = tar ? TarOf(folder, dir.File($"flip-{Guid.NewGuid():N}.tar")) : folder;
            var e = Refused(bundle);
            Assert.StartsWith("SHA-256 mismatch", e.Message);
            Assert.Contains(f.Path, e.Message);
            File.WriteAllBytes(p, original);
        }
    }

    [Fact]
    public void MissingAndUnlistedFilesAreRefused()
    {
        var folder = Export("b");
        string gguf = Path.Combine(folder, "models", "acme--tiny-model", "model-Q8_0.gguf");
        var keep = File.ReadAllBytes(gguf);
        File.Delete(gguf);
        var e = Refused(folder);
        Assert.StartsWith("missing file", e.Message);
        Assert.Contains("model-Q8_0.gguf", e.Message);
        Assert.Contains("missing file", Refused(TarOf(folder, dir.File("missing.tar"))).Message);
        File.WriteAllBytes(gguf, keep);

        File.WriteAllText(Path.Combine(folder, "models", "acme--tiny-model", "extra.py"), "print('hi')");
        e = Refused(folder);
        Assert.StartsWith("unlisted file", e.Message);
        Assert.Contains("extra.py", e.Message);
    }

    [Fact]
    public void MalformedManifestAndPathTraversalInTheManifestAreRefused()
    {
        var folder = Export("b");
        string mp = Path.Combine(folder, "manifest.json");
        string good = File.ReadAllText(mp);
        File.WriteAllText(mp, good[..(good.Length / 2)]);
        var e = Refused(folder);
        Assert.StartsWith("malformed manifest (manifest.json)", e.Message);

        File.WriteAllText(mp, good.Replace("\"format_version\": 1", "\"format_version\": 99"));
        Assert.Contains("format version 99", Refused(folder).Message);

        // a listed file that climbs out of the bundle, or is absolute
        foreach (var evil in new[] { "../outside.gguf", "/etc/passwd" })
        {
            File.WriteAllText(mp, good.Replace("models/acme--tiny-model/tokenizer.json", evil));
            e = Refused(folder);
            Assert.Contains("unsafe path", e.Message);
            Assert.Contains(evil, e.Message);
        }
        // a snapshot path that climbs out of the store's snapshot
        File.WriteAllText(mp, good.Replace("\"path\": \"tokenizer.json\"", "\"path\": \"../../refs/main\""));
        e = Refused(folder);
        Assert.StartsWith("malformed manifest", e.Message);
        Assert.Contains("../../refs/main", e.Message);
        File.WriteAllText(mp, good);
        Assert.Equal(4, new BundleImporter(dst).Import(folder).Models[0].FilesInstalled);
    }

    [Theory]
    [InlineData("../escape.txt")]
    [InlineData("/tmp/absolute.txt")]
    [InlineData("models/../../escape.txt")]
    public void TarEntriesThatLeaveTheBundleAreRefused(string evil)
    {
        var good = Export("b.tar");
        string bad = dir.File("evil.tar");
        using (var input = File.OpenRead(good))
        using (var reader = new TarReader(input))
        using (var output = File.Create(bad))
        using (var w = new TarWriter(output, TarEntryFormat.Pax))
        {
            w.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, evil) { DataStream = new MemoryStream("x"u8.ToArray()) });
            while (reader.GetNextEntry(copyData: true) is { } entry) w.WriteEntry(entry);
        }
        var e = Refused(bad);
        Assert.Contains("unsafe path", e.Message);
        Assert.Contains(evil, e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, "escape.txt")));
        Assert.False(File.Exists("/tmp/absolute.txt"));
    }

    [Fact]
    public void TarLinksAreRefused()
    {
        var good = Export("b.tar");
        string bad = dir.File("link.tar");
        using (var input = File.OpenRead(good))
        using (var reader = new TarReader(input))
        using (var output = File.Create(bad))
        using (var w = new TarWriter(output, TarEntryFormat.Pax))
        {
            while (reader.GetNextEntry(copyData: true) is { } entry) w.WriteEntry(entry);
            w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "models/acme--tiny-model/evil") { LinkName = "/etc/passwd" });
        }
        var e = Refused(bad);
        Assert.Contains("SymbolicLink", e.Message);
        Assert.Contains("models/acme--tiny-model/evil", e.Message);
    }

    [Fact]
    public void SignedBundlesVerifyAndWrongOrMissingSignaturesAreRefused()
    {
        var (priv, pub) = BundleSigning.Generate(dir.File("owner.pem"));
        var (_, otherPub) = BundleSigning.Generate(dir.File("other.pem"));
        var signedDir = Export("signed", o: new ExportOptions { SignKeyFile = priv });
        var signedTar = Export("signed.tar", o: new ExportOptions { SignKeyFile = priv });
        var unsigned = Export("unsigned");

        var e = Refused(signedDir, new ImportOptions { TrustKeyFile = otherPub });
        Assert.StartsWith("wrong signature", e.Message);
        Assert.Contains("manifest.sig", e.Message);
        Assert.StartsWith("wrong signature", Refused(signedTar, new ImportOptions { TrustKeyFile = otherPub }).Message);
        e = Refused(unsigned, new ImportOptions { TrustKeyFile = pub });
        Assert.StartsWith("unsigned bundle", e.Message);
        Assert.Contains("manifest.sig", e.Message);

        // a manifest edited after signing (hashes kept consistent would not help): the signature no longer matches
        string mp = Path.Combine(signedDir, "manifest.json");
        string good = File.ReadAllText(mp);
        File.WriteAllText(mp, good.Replace("\"refs\": [", "\"refs\": [\"attacker\", "));
        Assert.StartsWith("wrong signature", Refused(signedDir, new ImportOptions { TrustKeyFile = pub }).Message);
        File.WriteAllText(mp, good);

        var r = new BundleImporter(dst).Import(signedTar, new ImportOptions { TrustKeyFile = pub });
        Assert.True(r.SignatureVerified);
        Assert.Equal(4, r.Models[0].FilesInstalled);
    }

    [Fact]
    public void ARestrictedLicenceNeedsAnAcceptanceRecordOrAcceptLicense()
    {
        const string llama = "meta-llama/Llama-3.2-1B-Instruct";
        const string commit = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        var store = new HubStore(src.CacheDir);
        AddRepo(store, llama, commit, new() { ["model.gguf"] = [9, 8, 7, 6], ["tokenizer.json"] = "{}"u8.ToArray() });
        var exporter = new BundleExporter(src);
        var noRecord = exporter.Export(llama, dir.File("llama-no-record"));
        Assert.Contains(noRecord.Notes, n => n.Contains("must accept the licence when importing"));
        Assert.Contains(noRecord.Manifest.Files, f => f.Path.StartsWith("catalog/", StringComparison.Ordinal));
        var e = Assert.IsType<BundleLicenseNotAcceptedException>(Refused(noRecord.Output));
        Assert.StartsWith("licence not accepted", e.Message);
        Assert.Contains(llama, e.Message);
        Assert.Contains("ImportOptions.AcceptLicense", e.Message);
        Assert.DoesNotMatch(@"(^|[\s(])--?[a-z]", e.Message); // the library names its option, not a flag
        Assert.Contains("pass --accept-license", OpenWeights.Cli.Commands.ImportCommand.AcceptAdvice(e));
        Assert.Contains("openweights models show llama-3.2-1b-instruct", OpenWeights.Cli.Commands.ImportCommand.AcceptAdvice(e));

        // accepted on the receiving side
        var r = new BundleImporter(dst).Import(noRecord.Output, new ImportOptions { AcceptLicense = true });
        Assert.Equal(2, r.Models[0].FilesInstalled);

        // accepted on the sending side: the record travels with the bundle and lands in the target store
        store.WriteLicense(llama, "llama3.2", commit, null, null);
        var withRecord = exporter.Export(llama, dir.File("llama-record.tar"));
        Assert.NotNull(withRecord.Manifest.Models[0].LicenseAcceptance);
        var fresh = new HubSettings { CacheDir = dir.File("fresh-hub") };
        var imported = new BundleImporter(fresh).Import(withRecord.Output);
        Assert.NotNull(imported.Models[0].LicenseRecordPath);
        Assert.Equal(File.ReadAllBytes(store.LicensePath(llama)), File.ReadAllBytes(new HubStore(fresh.CacheDir).LicensePath(llama)));
    }

    [Fact]
    public void AdaptersTravelWithTheModel()
    {
        var lora = dir.File("style.gguf");
        File.WriteAllBytes(lora, [1, 2, 3, 4, 5]);
        var peft = Directory.CreateDirectory(dir.File("peft-adapter")).FullName;
        File.WriteAllText(Path.Combine(peft, "adapter_config.json"), "{\"r\":4}");
        File.WriteAllBytes(Path.Combine(peft, "adapter_model.safetensors"), [7, 7, 7]);
        var bundle = Export("with-adapters.tar", $"{Repo}+{lora}+{peft}");
        var r = new BundleImporter(dst).Import(bundle);
        Assert.Equal(2, r.AdapterPaths.Count);
        Assert.Equal(File.ReadAllBytes(lora), File.ReadAllBytes(r.AdapterPaths[0]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(peft, "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(r.AdapterPaths[1], "adapter_model.safetensors")));
        string after = Tree(dst.CacheDir);
        new BundleImporter(dst).Import(bundle); // idempotent
        Assert.Equal(after, Tree(dst.CacheDir));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ACancelledExportLeavesNothing(bool tar)
    {
        using var cts = new CancellationTokenSource();
        var exporter = new BundleExporter(src) { ProgressMinBytes = 0, Progress = new Sync(p => { if (p.Completed && p.Path.EndsWith("tokenizer.json", StringComparison.Ordinal)) cts.Cancel(); }) };
        string output = dir.File(tar ? "cancelled.tar" : "cancelled");
        Assert.ThrowsAny<OperationCanceledException>(() => exporter.Export(Repo, output, null, cts.Token));
        Assert.False(File.Exists(output) || Directory.Exists(output));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(dir.Path), p => p.Contains(".tmp-"));
    }

    [Fact]
    public void AFileOutsideTheStoreIsExportedAsALocalRepository()
    {
        var file = dir.File("my-finetune.gguf");
        File.WriteAllBytes(file, [5, 4, 3, 2, 1]);
        var r = new BundleExporter(src).Export(file, dir.File("local.tar"));
        Assert.Equal("local/my-finetune", r.Manifest.Models[0].Repo);
        new BundleImporter(dst).Import(r.Output);
        Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(ModelResolver.Resolve("local/my-finetune", dst)));
    }

    private sealed class Sync(Action<DownloadProgress> a) : IProgress<DownloadProgress> { public void Report(DownloadProgress p) => a(p); }

    /// <summary>A tar of a bundle folder (entries in ordinal order).</summary>
    private static string TarOf(string folder, string tar)
    {
        using var fs = File.Create(tar);
        using var w = new TarWriter(fs, TarEntryFormat.Pax);
        foreach (var f in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            w.WriteEntry(f, Path.GetRelativePath(folder, f).Replace('\\', '/'));
        return tar;
    }
}
