using OpenWeights.Catalog;

namespace OpenWeights.Hub;

/// <summary>
/// <c>ID[:QUANT]</c> for a catalog model, turned into the pull of one file of its GGUF repository: the file the catalog
/// lists for that quantization (default <see cref="GgufRepo.DefaultQuant"/>), by its exact name. A model without a GGUF
/// repository in the catalog, or a quantization the catalog does not list, is a one-line error that names what to pull
/// instead. Anything that is not a catalog id (org/name, paths) is left alone.
/// </summary>
public static class CatalogPullSpec
{
    /// <summary>The pull spec for a catalog id (or alias) with an optional quant; null when <paramref name="spec"/> is not a catalog id.</summary>
    public static PullSpec? Resolve(string spec, ModelCatalog catalog)
    {
        string s = spec.Trim();
        int colon = s.IndexOf(':');
        string id = colon >= 0 ? s[..colon] : s;
        string? quant = colon >= 0 ? s[(colon + 1)..] : null;
        if (id.Contains('/') || !catalog.TryGet(id, out var m)) return null;
        if (quant is { Length: 0 }) throw new OpenWeightsException($"invalid model '{spec}': nothing after ':'");
        string original = m.Hf.Instruct ?? m.Hf.Base ?? m.Hf.Other.FirstOrDefault() ?? "its original repository";
        if (m.Gguf is not { } g)
            throw new OpenWeightsException(
                $"the catalog has no GGUF repository for {m.Id}; pull the original weights with `openweights pull {original}` (or name a GGUF repository: org/name:QUANT)");
        string q = quant ?? GgufRepo.DefaultQuant;
        if (q.Contains('.') || q.Contains('/'))
            return new PullSpec(g.Repo, q, null); // a file name of the GGUF repository, as for org/name:FILE
        string? file = g.FileFor(q);
        if (file is null)
            throw new OpenWeightsException(
                $"the catalog lists no {q} file for {m.Id} ({g.Repo} has {string.Join(", ", g.Files.Keys)}); pick one of those, or name a file with `openweights pull {g.Repo}:FILE`");
        return new PullSpec(g.Repo, file, null);
    }
}
