using OpenWeights.Catalog;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;

namespace OpenWeights.Hub;

/// <summary>
/// What a user names as a model -> a local path the loaders open, the same for the CLI and the library: an existing
/// file as is; a folder holding config.json (a Hugging Face checkpoint); else a catalog id (its repositories looked up
/// in the local store), ID:QUANT (the catalog's GGUF file for that quant) or org/name[:QUANT|:FILE] through
/// <see cref="ModelResolver"/>. Never touches the network. Not found: one line naming what was tried.
/// </summary>
public static class ModelLocator
{
    public static string Resolve(string spec) => Resolve(spec, HubSettings.FromEnvironment());

    public static string Resolve(string spec, HubSettings settings, ModelCatalog? catalog = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        catalog ??= ModelCatalog.Default;
        if (spec.Trim().Length == 0) throw new OpenWeightsException("no model given (a GGUF file, a checkpoint folder, a catalog id or org/name)");
        if (File.Exists(spec)) return spec;
        if (Directory.Exists(spec))
            return HfCheckpoint.IsCheckpointDir(spec) ? spec
                : throw new OpenWeightsException($"{spec} is a directory without config.json (neither a GGUF file nor a Hugging Face checkpoint)");
        if (Path.IsPathRooted(spec) || spec.StartsWith('.') || (!spec.Contains(':') && spec.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)))
            throw new OpenWeightsException($"model file not found: {spec}");
        if (catalog.TryGet(spec, out var m))
        {
            var repos = new[] { m.Gguf?.Repo, m.Hf.Instruct, m.Hf.Base }.Concat(m.Hf.Other).OfType<string>().Distinct().ToList();
            foreach (var repo in repos)
            {
                try { return Checked(ModelResolver.Resolve(repo, settings)); }
                catch (OpenWeightsException) { }
            }
            throw new OpenWeightsException($"{m.Id} is not in the local store ({settings.CacheDir}); tried {string.Join(", ", repos)}; fetch it with `openweights pull {repos.FirstOrDefault() ?? m.Id}`");
        }
        // ID:QUANT of a catalog model: the file its GGUF repository lists for that quant
        if (CatalogPullSpec.Resolve(spec, catalog) is { } fromCatalog) return Checked(ModelResolver.Resolve(fromCatalog.ToString(), settings));
        if (PullSpec.TryParse(spec, out _, out _)) return Checked(ModelResolver.Resolve(spec, settings));
        string hint = catalog.Suggest(spec) is { } close ? $"; did you mean {close}?" : "";
        throw new OpenWeightsException($"model not found: '{spec}' is not a file, a folder with config.json, a catalog id, or org/name in the local store{hint}");
    }

    private static string Checked(string path) =>
        File.Exists(path) || HfCheckpoint.IsCheckpointDir(path) ? path
        : throw new OpenWeightsException($"{path} holds no GGUF file and no config.json");
}
