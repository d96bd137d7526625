using System.Text.Json;
using System.Text.Json.Serialization;
using OpenWeights.Formats;

namespace OpenWeights.Hub.Bundles;

/// <summary>
/// manifest.json of a model bundle: every other file of the bundle (except manifest.sig) with its size and SHA-256,
/// the store entries (repository, commit, refs, files and their blob names) the bundle installs, and its adapters.
/// </summary>
public sealed record BundleManifest
{
    public const string FormatName = "openweights-bundle";
    public const int CurrentVersion = 1;
    public const string FileName = "manifest.json";
    public const string SignatureFileName = "manifest.sig";

    public required string Format { get; init; }
    public required int FormatVersion { get; init; }
    public string? ToolVersion { get; init; }
    /// <summary>UTC, ISO 8601.</summary>
    public string? Created { get; init; }
    public IReadOnlyList<BundleModel> Models { get; init; } = [];
    public IReadOnlyList<BundleAdapter> Adapters { get; init; } = [];
    /// <summary>Every file of the bundle but manifest.json and manifest.sig.</summary>
    public required IReadOnlyList<BundleFile> Files { get; init; }

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
    };

    public byte[] ToBytes() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    /// <summary>Parses and checks a manifest: every path safe, every hash 64 hex digits, every reference to a listed file.</summary>
    public static BundleManifest Parse(ReadOnlySpan<byte> bytes)
    {
        BundleManifest? m;
        try { m = JsonSerializer.Deserialize<BundleManifest>(bytes, Json); }
        catch (JsonException e) { throw Malformed($"not valid JSON ({e.Message.Split('.')[0]})"); }
        if (m is null) throw Malformed("empty");
        if (m.Format != FormatName) throw Malformed($"format is {UntrustedText.Quote(m.Format ?? "")}, expected {FormatName}");
        if (m.FormatVersion != CurrentVersion) throw Malformed($"format version {m.FormatVersion} is not supported (this openweights reads {CurrentVersion})");
        if (m.Files is null) throw Malformed("no files list");
        var listed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in m.Files)
        {
            if (f is null || f.Path is null || f.Sha256 is null) throw Malformed("a file entry lacks path or sha256");
            CheckBundlePath(f.Path);
            if (f.Path is FileName or SignatureFileName) throw Malformed($"lists {f.Path} as a content file");
            if (f.Size < 0) throw Malformed($"negative size for {UntrustedText.Quote(f.Path)}");
            if (f.Sha256.Length != 64 || !f.Sha256.All(Uri.IsHexDigit)) throw Malformed($"bad sha256 for {UntrustedText.Quote(f.Path)}");
            if (!listed.Add(f.Path)) throw Malformed($"lists {UntrustedText.Quote(f.Path)} twice");
        }
        void Ref(string? p, string what)
        {
            if (p is null) return;
            if (!listed.Contains(p)) throw Malformed($"{what} {UntrustedText.Quote(p)} is not among the listed files");
        }
        foreach (var model in m.Models ?? [])
        {
            if (model?.Repo is null || model.Commit is null || model.Files is null) throw Malformed("a model entry lacks repo, commit or files");
            if (!HubStore.IsValidRepoId(model.Repo)) throw Malformed($"invalid repository id {UntrustedText.Quote(model.Repo)}");
            if (!HubStore.IsCommitHash(model.Commit)) throw Malformed($"invalid commit {UntrustedText.Quote(model.Commit)} for {model.Repo}");
            foreach (var r in model.Refs ?? []) { if (r is null) throw Malformed("null ref"); Guard(() => HubStore.CheckRepoPath(r)); }
            foreach (var f in model.Files)
            {
                if (f?.Path is null || f.BundlePath is null || f.Blob is null) throw Malformed($"a file of {model.Repo} lacks path, bundle_path or blob");
                Guard(() => HubStore.CheckRepoPath(f.Path));
                Guard(() => HubStore.CheckEtag(f.Blob));
                Ref(f.BundlePath, "model file");
            }
            Ref(model.CatalogEntry, "catalog entry");
            Ref(model.LicenseAcceptance, "licence acceptance");
            Ref(model.LicenseText, "licence text");
        }
        foreach (var a in m.Adapters ?? [])
        {
            if (a?.Name is null || a.Files is null || a.Files.Count == 0) throw Malformed("an adapter entry lacks name or files");
            if (a.Name.Length == 0 || a.Name is "." or ".." || a.Name.Contains('/') || a.Name.Contains('\\') || a.Name.Contains('\0')) throw Malformed($"bad adapter name {UntrustedText.Quote(a.Name)}");
            foreach (var f in a.Files) { if (f?.Path is null || f.BundlePath is null) throw Malformed($"a file of adapter {a.Name} lacks path"); Guard(() => HubStore.CheckRepoPath(f.Path)); Ref(f.BundlePath, "adapter file"); }
        }
        return m;
    }

    private static void Guard(Action check)
    {
        try { check(); }
        catch (OpenWeightsException e) { throw Malformed(e.Message); }
    }

    internal static BundleException Malformed(string why) => new($"malformed manifest ({FileName}): {why}");

    /// <summary>A relative, '/'-separated path with no empty, '.' or '..' segment, no backslash or NUL: cannot leave the bundle.</summary>
    public static void CheckBundlePath(string path)
    {
        if (!IsSafePath(path)) throw new BundleException($"unsafe path in bundle (absolute or with ..): {UntrustedText.Quote(path)}");
    }

    public static bool IsSafePath(string path) =>
        path.Length > 0 && path.Length <= 1024 && !path.StartsWith('/') && !path.Contains('\\') && !path.Contains('\0') && !(path.Length >= 2 && path[1] == ':')
        && !path.Split('/').Any(s => s is "" or "." or "..");
}

/// <param name="Path">Path inside the bundle, '/'-separated.</param>
/// <param name="Sha256">Lower-case hex.</param>
public sealed record BundleFile(string Path, long Size, string Sha256);

/// <summary>A store entry: the files of one snapshot of a repository.</summary>
public sealed record BundleModel
{
    public required string Repo { get; init; }
    public required string Commit { get; init; }
    public IReadOnlyList<string> Refs { get; init; } = [];
    public required IReadOnlyList<BundleModelFile> Files { get; init; }
    /// <summary>The catalog model this repository belongs to, when it does.</summary>
    public string? CatalogId { get; init; }
    /// <summary>Licence id (catalog or hub).</summary>
    public string? License { get; init; }
    public string? LicenseName { get; init; }
    public string? LicenseUrl { get; init; }
    /// <summary>Whether the licence restricts use (not OSI-approved), so installing needs an accepted licence.</summary>
    public bool LicenseRestricts { get; init; }
    /// <summary>Bundle paths of the catalog entry (JSON), the acceptance record and the licence text (LICENSE file or the catalog's terms).</summary>
    public string? CatalogEntry { get; init; }
    public string? LicenseAcceptance { get; init; }
    public string? LicenseText { get; init; }
}

/// <param name="Path">Path inside the repository snapshot.</param>
/// <param name="BundlePath">Path of the bytes inside the bundle.</param>
/// <param name="Blob">Blob name in the store (the hub's ETag: SHA-256 for LFS files).</param>
public sealed record BundleModelFile(string Path, string BundlePath, string Blob);

/// <summary>An adapter (a GGUF LoRA file or a PEFT folder), installed under {store}/openweights/adapters/{Name}.</summary>
public sealed record BundleAdapter
{
    public required string Name { get; init; }
    /// <summary>"gguf" or "peft".</summary>
    public required string Kind { get; init; }
    public required IReadOnlyList<BundleAdapterFile> Files { get; init; }
}

public sealed record BundleAdapterFile(string Path, string BundlePath);

/// <summary>A bundle refused or not written: one line naming the cause and the file.</summary>
public class BundleException(string message) : OpenWeightsException(message);

/// <summary>
/// A bundle refused because the model's licence restricts use and nobody accepted it (no record in the bundle or the
/// store): set <see cref="ImportOptions.AcceptLicense"/> after reading it. The fields let a front end phrase its own advice.
/// </summary>
public sealed class BundleLicenseNotAcceptedException(string repoId, string? modelId, string license, string? licenseUrl)
    : BundleException($"{ProblemText(repoId, license)}; read it{ReadWhere(modelId, licenseUrl)} and accept it (ImportOptions.AcceptLicense)")
{
    public string RepoId { get; } = repoId;
    public string? ModelId { get; } = modelId;
    public string License { get; } = license;
    public string? LicenseUrl { get; } = licenseUrl;
    public string Problem => ProblemText(RepoId, License);

    private static string ProblemText(string repoId, string license) =>
        $"licence not accepted: {repoId} is licensed under {license}, which restricts use, and the bundle carries no acceptance record";
    private static string ReadWhere(string? modelId, string? url) =>
        modelId is null && url is null ? "" : $" ({string.Join(", ", new[] { modelId is null ? null : "catalog model " + modelId, url }.OfType<string>())})";
}
