namespace OpenWeights.Hub;

/// <summary>
/// Turns what a user typed into a local path: an existing file or folder as is; <c>org/name</c>,
/// <c>org/name:QUANT</c> or <c>org/name:FILE</c> into a file of the store's snapshot (the first shard of a
/// sharded GGUF; the snapshot folder for a safetensors model). Never touches the network; only complete
/// (verified) files are visible because snapshot links are created after verification.
/// </summary>
public static class ModelResolver
{
    public static string Resolve(string spec) => Resolve(spec, HubSettings.FromEnvironment());

    public static string Resolve(string spec, HubSettings settings, string? revision = null)
    {
        if (File.Exists(spec) || Directory.Exists(spec)) return Path.GetFullPath(spec);
        if (!PullSpec.TryParse(spec, out var p, out _))
            throw new OpenWeightsException($"no such file, and not a model spec (org/name[:QUANT|:FILE]): {spec}");
        var store = new HubStore(settings.CacheDir);
        string hint = $"fetch it with `openweights pull {p}`";
        string? commit = store.ResolveCommit(p.RepoId, revision ?? "main");
        if (commit is null && revision is null && Directory.Exists(store.RepoDir(p.RepoId)))
            commit = store.Describe(p.RepoId).Snapshots.FirstOrDefault(s => store.SnapshotFiles(p.RepoId, s.Commit).Count > 0)?.Commit;
        if (commit is null) throw new OpenWeightsException($"{p.RepoId}{(revision is null ? "" : "@" + revision)} is not in the local store ({store.CacheDir}); {hint}");
        var files = store.SnapshotFiles(p.RepoId, commit);
        IReadOnlyList<string> selected;
        bool isGguf;
        try { selected = PullSelection.Select(p.RepoId, files.Select(f => f.Path).ToList(), p, out isGguf); }
        catch (OpenWeightsException e) when (e.Message.StartsWith("repository or file not found", StringComparison.Ordinal) || e.Message.Contains("no .gguf or .safetensors", StringComparison.Ordinal))
        {
            throw new OpenWeightsException($"{p} is not in the local store ({store.CacheDir}); {hint}");
        }
        var byPath = files.ToDictionary(f => f.Path, StringComparer.Ordinal);
        if (p.File is not null) return byPath[selected.First(s => string.Equals(s, p.File, StringComparison.OrdinalIgnoreCase))].LocalPath;
        if (isGguf)
        {
            var gguf = selected.Where(PullSelection.IsGguf).ToList();
            var choice = PullSelection.GgufChoices(gguf).First(c => !c.IsProjector || gguf.Count == 1);
            // every shard must be present, or the model is incomplete
            if (choice.Files.Count > 1)
            {
                var m = System.Text.RegularExpressions.Regex.Match(choice.Files[0], @"-of-(\d{5})\.gguf$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
                if (m.Success && int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) != choice.Files.Count)
                    throw new OpenWeightsException($"{p} is incomplete in the local store ({choice.Files.Count} of {m.Groups[1].Value} shards); {hint}");
            }
            return byPath[choice.Files[0]].LocalPath;
        }
        return store.SnapshotDir(p.RepoId, commit);
    }
}
