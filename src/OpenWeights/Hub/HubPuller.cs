namespace OpenWeights.Hub;

public sealed record PullOptions
{
    /// <summary>Branch, tag or commit; "main" when null.</summary>
    public string? Revision { get; init; }
    /// <summary>Record in the store that the user accepted the repository's license.</summary>
    public bool AcceptLicense { get; init; }
}

/// <summary>A file in the store after a pull.</summary>
/// <param name="LocalPath">The snapshot path (what tools open).</param>
/// <param name="Downloaded">False when the blob was already in the store.</param>
public sealed record PulledFile(string Path, string LocalPath, long Size, bool Downloaded);

/// <param name="ModelPath">The first GGUF file (first shard) for GGUF pulls, else the snapshot folder.</param>
public sealed record PullResult(string RepoId, string Revision, string Commit, string SnapshotDir, string ModelPath,
    IReadOnlyList<PulledFile> Files, string? LicenseRecordPath, bool Offline);

/// <summary>
/// <c>openweights pull</c>: lists the repository, selects files from the spec, asks the gate, then downloads each
/// file into the store (blob first, snapshot link next, so an interrupted or corrupt download is never visible), and
/// writes the revision's ref only when every file is in place.
/// </summary>
public sealed class HubPuller(HubSettings settings, IPullGate? gate = null)
{
    private readonly IPullGate gate = gate ?? AllowAllPullGate.Instance;

    public HubStore Store { get; } = new(settings.CacheDir);

    public IProgress<DownloadProgress>? Progress { get; init; }

    public Task<PullResult> PullAsync(string spec, PullOptions? options = null, CancellationToken ct = default) =>
        PullAsync(PullSpec.Parse(spec), options ?? new PullOptions(), ct);

    public async Task<PullResult> PullAsync(PullSpec spec, PullOptions options, CancellationToken ct = default)
    {
        string revision = options.Revision ?? "main";
        if (settings.Offline) return PullOffline(spec, revision);

        using var client = new HubClient(settings);
        RepoInfo info;
        try { info = await client.GetRepoInfoAsync(spec.RepoId, revision, ct).ConfigureAwait(false); }
        catch (OpenWeightsException e) when (e.InnerException is not null && HubClient.IsNetworkError(e.InnerException, ct))
        {
            // The hub is unreachable: like huggingface_hub, fall back to what the store already holds.
            try { return PullOffline(spec, revision); }
            catch (OpenWeightsException) { throw e; }
        }
        var byPath = info.Files.ToDictionary(f => f.Path, StringComparer.Ordinal);
        var selected = PullSelection.Select(spec.RepoId, byPath.Keys, spec, out bool isGguf);
        gate.BeforePull(new PullContext(spec.RepoId, revision, info.Commit, info.License, info.Gated,
            selected.Select(p => byPath[p]).ToList(), options.AcceptLicense));

        var downloader = new BlobDownloader(client, Store, settings);
        var pulled = new List<PulledFile>();
        string? licenseRecord = null;
        bool licenseWritten = false;
        foreach (var path in selected)
        {
            if (options.AcceptLicense && !licenseWritten && !PullSelection.IsLicenseFile(path))
            {
                licenseRecord = WriteLicense(spec.RepoId, info, pulled);
                licenseWritten = true;
            }
            pulled.Add(await PullFileAsync(client, downloader, spec.RepoId, info.Commit, byPath[path], ct).ConfigureAwait(false));
        }
        if (options.AcceptLicense && !licenseWritten) licenseRecord = WriteLicense(spec.RepoId, info, pulled);
        // The ref last, once every selected file is verified and linked: a failed pull leaves the revision where it was.
        Store.WriteRef(spec.RepoId, revision, info.Commit);

        var snapshot = Store.SnapshotDir(spec.RepoId, info.Commit);
        return new PullResult(spec.RepoId, revision, info.Commit, snapshot, ModelPath(snapshot, pulled, isGguf), pulled, licenseRecord, false);
    }

    private string WriteLicense(string repoId, RepoInfo info, List<PulledFile> pulled)
    {
        var lic = pulled.FirstOrDefault(p => PullSelection.IsLicenseFile(p.Path));
        return Store.WriteLicense(repoId, info.License, info.Commit, lic?.Path, lic?.LocalPath);
    }

    private static string ModelPath(string snapshot, IReadOnlyList<PulledFile> files, bool isGguf) =>
        isGguf ? files.First(f => PullSelection.IsGguf(f.Path)).LocalPath : snapshot;

    private async Task<PulledFile> PullFileAsync(HubClient client, BlobDownloader downloader, string repoId, string commit, HubFile file, CancellationToken ct)
    {
        var meta = await client.GetFileMetadataAsync(repoId, commit, file.Path, ct).ConfigureAwait(false);
        if (meta.Commit != commit) throw new OpenWeightsException($"the hub resolved {repoId}/{file.Path} to commit {meta.Commit}, expected {commit}");
        if (meta.Size is null && file.Size is not null) meta = meta with { Size = file.Size };
        var (blob, downloaded) = await downloader.EnsureBlobAsync(repoId, commit, file.Path, meta, file.Sha256, Progress, ct).ConfigureAwait(false);
        var local = Store.LinkSnapshot(repoId, commit, file.Path, meta.Etag);
        return new PulledFile(file.Path, local, new FileInfo(blob).Length, downloaded);
    }

    private PullResult PullOffline(PullSpec spec, string revision)
    {
        var commit = Store.ResolveCommit(spec.RepoId, revision)
            ?? throw new OpenWeightsException($"HF_HUB_OFFLINE is set and {spec.RepoId}@{revision} is not in the store ({Store.CacheDir}); unset it to download");
        var files = Store.SnapshotFiles(spec.RepoId, commit);
        IReadOnlyList<string> selected;
        bool isGguf;
        try { selected = PullSelection.Select(spec.RepoId, files.Select(f => f.Path).ToList(), spec, out isGguf); }
        catch (OpenWeightsException e) { throw new OpenWeightsException($"HF_HUB_OFFLINE is set and the store cannot satisfy {spec}: {e.Message}"); }
        var byPath = files.ToDictionary(f => f.Path, StringComparer.Ordinal);
        var pulled = selected.Select(p => new PulledFile(p, byPath[p].LocalPath, byPath[p].Size, false)).ToList();
        var snapshot = Store.SnapshotDir(spec.RepoId, commit);
        return new PullResult(spec.RepoId, revision, commit, snapshot, ModelPath(snapshot, pulled, isGguf), pulled, null, true);
    }
}
