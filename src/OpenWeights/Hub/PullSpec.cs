using OpenWeights.Formats;
using System.Text.RegularExpressions;

namespace OpenWeights.Hub;

/// <summary>
/// <c>org/name</c>, <c>org/name:file.gguf</c> (a path in the repository) or <c>org/name:Q4_K_M</c> (a quant tag).
/// A selector with a '.' or '/' is a file; otherwise a quant tag. "hf.co/" and "https://huggingface.co/" prefixes are dropped.
/// </summary>
public sealed record PullSpec(string RepoId, string? File, string? Quant)
{
    public static PullSpec Parse(string spec)
    {
        if (!TryParse(spec, out var p, out var error)) throw new OpenWeightsException(error);
        return p;
    }

    public static bool TryParse(string spec, out PullSpec result, out string error)
    {
        result = null!;
        var s = spec.Trim();
        foreach (var prefix in new[] { "https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "https://hf.co/", "hf.co/", "hf://" })
            if (s.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) { s = s[prefix.Length..]; break; }
        string repo = s, sel = "";
        int colon = s.IndexOf(':');
        if (colon >= 0) { repo = s[..colon]; sel = s[(colon + 1)..]; }
        if (!HubStore.IsValidRepoId(repo))
        {
            error = $"invalid model '{spec}': expected org/name, org/name:FILE or org/name:QUANT";
            return false;
        }
        if (colon >= 0 && sel.Length == 0)
        {
            error = $"invalid model '{spec}': nothing after ':'";
            return false;
        }
        if (sel.Length == 0) result = new PullSpec(repo, null, null);
        else if (sel.Contains('.') || sel.Contains('/'))
        {
            try { HubStore.CheckRepoPath(sel); }
            catch (OpenWeightsException e) { error = e.Message; return false; }
            result = new PullSpec(repo, sel, null);
        }
        else result = new PullSpec(repo, null, sel);
        error = "";
        return true;
    }

    public override string ToString() => File is not null ? $"{RepoId}:{File}" : Quant is not null ? $"{RepoId}:{Quant}" : RepoId;
}

/// <summary>One GGUF choice in a repository: a single file or a set of shards (-00001-of-0000N.gguf).</summary>
/// <param name="Quant">The quant tag found in the name (Q4_K_M, IQ2_XXS, F16...), or null.</param>
/// <param name="Files">Repository paths, shards in order.</param>
public sealed record GgufChoice(string Name, string? Quant, IReadOnlyList<string> Files)
{
    public bool IsProjector => Files[0].Contains("mmproj", StringComparison.OrdinalIgnoreCase);
}

/// <summary>Which files of a repository a pull spec means.</summary>
public static partial class PullSelection
{
    [GeneratedRegex(@"^(?<prefix>.*)-(?<idx>\d{5})-of-(?<n>\d{5})\.gguf$", RegexOptions.IgnoreCase)]
    private static partial Regex ShardRegex();

    [GeneratedRegex(@"(?<![A-Za-z0-9])(I?Q\d_[A-Z0-9]+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|F16|F32|MXFP4)(?![A-Za-z0-9])", RegexOptions.IgnoreCase)]
    private static partial Regex QuantRegex();

    private static readonly HashSet<string> ModelSideFiles = new(StringComparer.OrdinalIgnoreCase)
    {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
        "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json",
        "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    };

    public static bool IsLicenseFile(string path) =>
        !path.Contains('/') && (path.StartsWith("LICENSE", StringComparison.OrdinalIgnoreCase) || path.StartsWith("LICENCE", StringComparison.OrdinalIgnoreCase));

    public static bool IsGguf(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);

    /// <summary>The quant tag in a file name, or null.</summary>
    public static string? QuantOf(string path)
    {
        var name = path[(path.LastIndexOf('/') + 1)..];
        if (ShardRegex().Match(name) is { Success: true } m) name = m.Groups["prefix"].Value + ".gguf";
        var all = QuantRegex().Matches(name);
        if (all.Count == 0 && path.Contains('/')) all = QuantRegex().Matches(path);
        return all.Count > 0 ? all[^1].Value.ToUpperInvariant() : null;
    }

    /// <summary>GGUF files grouped into choices (shards together), sorted by name.</summary>
    public static IReadOnlyList<GgufChoice> GgufChoices(IEnumerable<string> paths)
    {
        var groups = new Dictionary<string, List<(int idx, string path)>>(StringComparer.Ordinal);
        foreach (var p in paths.Where(IsGguf))
        {
            string key; int idx = 0;
            if (ShardRegex().Match(p) is { Success: true } m) { key = m.Groups["prefix"].Value + "-of-" + m.Groups["n"].Value; idx = int.Parse(m.Groups["idx"].Value, System.Globalization.CultureInfo.InvariantCulture); }
            else key = p;
            if (!groups.TryGetValue(key, out var list)) groups[key] = list = [];
            list.Add((idx, p));
        }
        return groups.Values
            .Select(g => g.OrderBy(x => x.idx).Select(x => x.path).ToList())
            .Select(files => new GgufChoice(files[0], QuantOf(files[0]), files))
            .OrderBy(c => c.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>Choices whose name carries the quant tag (bounded so Q4_K does not match Q4_K_M); projectors only when nothing else matches.</summary>
    public static IReadOnlyList<GgufChoice> MatchQuant(IReadOnlyList<GgufChoice> choices, string quant)
    {
        var bounded = new Regex("(?<![A-Za-z0-9])" + Regex.Escape(quant) + "(?![A-Za-z0-9_])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
        var hits = choices.Where(c => c.Files.Any(f => bounded.IsMatch(f))).ToList();
        if (hits.Count == 0) hits = choices.Where(c => c.Files.Any(f => f.Contains(quant, StringComparison.OrdinalIgnoreCase))).ToList();
        if (hits.Count > 1 && hits.Any(h => !h.IsProjector)) hits = hits.Where(h => !h.IsProjector).ToList();
        return hits;
    }

    public static string DescribeChoices(IEnumerable<GgufChoice> choices) =>
        string.Join(", ", choices.Select(c => (c.Quant ?? "?") + " (" + UntrustedText.Escape(c.Name) + (c.Files.Count > 1 ? $", {c.Files.Count} shards" : "") + ")"));

    /// <summary>
    /// The repository files a spec selects (LICENSE files always included). Throws an <see cref="OpenWeightsException"/>
    /// listing the choices when the spec is ambiguous or matches nothing.
    /// </summary>
    public static IReadOnlyList<string> Select(string repoId, IReadOnlyCollection<string> paths, PullSpec spec, out bool isGguf)
    {
        var licenses = paths.Where(IsLicenseFile).Order(StringComparer.Ordinal).ToList();
        var choices = GgufChoices(paths);
        List<string> picked;
        if (spec.File is { } file)
        {
            string? exact = paths.FirstOrDefault(p => p == file) ?? paths.FirstOrDefault(p => string.Equals(p, file, StringComparison.OrdinalIgnoreCase));
            if (exact is null) throw new OpenWeightsException($"repository or file not found: {file} in {repoId}");
            var shardSet = choices.FirstOrDefault(c => c.Files.Count > 1 && c.Files.Contains(exact));
            picked = shardSet is not null ? [.. shardSet.Files] : [exact];
            isGguf = IsGguf(exact);
        }
        else if (spec.Quant is { } quant)
        {
            if (choices.Count == 0) throw new OpenWeightsException($"{repoId} has no GGUF files, so ':{quant}' matches nothing; pull {repoId} without a quant");
            var hits = MatchQuant(choices, quant);
            if (hits.Count == 0) throw new OpenWeightsException($"no GGUF file of {repoId} matches '{quant}'; choices: {DescribeChoices(choices)}");
            if (hits.Count > 1) throw new OpenWeightsException($"'{quant}' matches several GGUF files of {repoId}; name one with {repoId}:FILE: {DescribeChoices(hits)}");
            picked = [.. hits[0].Files];
            isGguf = true;
        }
        else if (choices.Count > 0)
        {
            var models = choices.Where(c => !c.IsProjector).ToList();
            if (models.Count == 0) models = [.. choices];
            if (models.Count > 1)
                throw new OpenWeightsException($"{repoId} has {models.Count} GGUF files; pick one with {repoId}:QUANT, choices: {DescribeChoices(models)}");
            picked = [.. models[0].Files];
            isGguf = true;
        }
        else
        {
            var top = paths.Where(p => !p.Contains('/')).ToList();
            var weights = top.Where(p => p.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)).ToList();
            if (weights.Count == 0)
                throw new OpenWeightsException($"{repoId} has no .gguf or .safetensors weights; name a file with {repoId}:FILE");
            if (weights.Any(w => !w.StartsWith("consolidated", StringComparison.OrdinalIgnoreCase)))
                weights = weights.Where(w => !w.StartsWith("consolidated", StringComparison.OrdinalIgnoreCase)).ToList();
            picked = [.. top.Where(p => ModelSideFiles.Contains(p) || p.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase)), .. weights];
            isGguf = false;
        }
        return licenses.Concat(picked.Where(p => !licenses.Contains(p))).ToList();
    }
}
