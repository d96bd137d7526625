using OpenWeights.Catalog;

namespace OpenWeights.Hub;

/// <summary>
/// The catalog's license gate for <c>pull</c>: a repository that belongs to a catalog model (its original, base or
/// GGUF repository, or a quantizer's copy named after one, such as <c>someone/Llama-3.2-1B-Instruct-GGUF</c>) is
/// checked against the licence terms in the catalog. A licence that is not OSI-approved restricts use, so pulling
/// needs <see cref="PullOptions.AcceptLicense"/> (recorded in the store) unless it was accepted before; with <see cref="Use"/>
/// (and <see cref="Mau"/>, <see cref="Region"/>) a model whose terms forbid that use is refused, naming the clause.
/// Repositories outside the catalog fall back to the hub's own signals: a gated repository needs accepting too.
/// A refusal for want of acceptance is a <see cref="LicenseNotAcceptedException"/>.
/// </summary>
public sealed record CatalogPullGate : IPullGate
{
    public ModelCatalog Catalog { get; init; } = ModelCatalog.Default;
    public LicenseUse? Use { get; init; }
    public long? Mau { get; init; }
    public string? Region { get; init; }
    /// <summary>Whether the store already holds an acceptance for a repository (then it need not be accepted again).</summary>
    public Func<string, bool>? AlreadyAccepted { get; init; }
    /// <summary>Notes for the user (warnings of the licence check); filled by <see cref="BeforePull"/>.</summary>
    public List<string> Notes { get; init; } = [];

    /// <summary>The catalog model a repository belongs to, or null.</summary>
    public CatalogModel? FindModel(string repoId)
    {
        static IEnumerable<string> Repos(CatalogModel m) => new[] { m.Hf.Instruct, m.Hf.Base, m.Gguf?.Repo }.Concat(m.Hf.Other).OfType<string>();
        var exact = Catalog.Models.FirstOrDefault(m => Repos(m).Any(r => string.Equals(r, repoId, StringComparison.OrdinalIgnoreCase)));
        if (exact is not null) return exact;
        // a quantizer's copy: org/NAME-GGUF (or NAME-gguf, NAME-GGUF-...) of a catalog repository NAME
        string name = repoId[(repoId.IndexOf('/') + 1)..];
        int g = name.IndexOf("-gguf", StringComparison.OrdinalIgnoreCase);
        if (g <= 0) return null;
        string stem = name[..g];
        return Catalog.Models.FirstOrDefault(m => Repos(m).Any(r => string.Equals(r[(r.IndexOf('/') + 1)..], stem, StringComparison.OrdinalIgnoreCase)));
    }

    public void BeforePull(PullContext ctx)
    {
        var model = FindModel(ctx.RepoId);
        bool accepted = ctx.AcceptLicense || (AlreadyAccepted?.Invoke(ctx.RepoId) ?? false);
        if (model is null)
        {
            if (Use is not null) Notes.Add($"{ctx.RepoId} is not in the catalog; its license ({ctx.License ?? "unknown"}) was not checked against the intended use");
            if (ctx.Gated is not null && !accepted)
                throw new LicenseNotAcceptedException(ctx.RepoId, null, ctx.License ?? "unknown", null);
            return;
        }
        var licenses = new[] { model.License }.Concat(model.AdditionalLicenses).Select(id => Catalog.GetLicense(id)).ToList();
        if (Use is { } use)
        {
            var d = LicenseGate.Check(model, use, Mau, Region, Catalog);
            if (!d.Allowed) throw new OpenWeightsException($"{ctx.RepoId} ({model.Id}) may not be used that way: {d.Clause}".ReplaceLineEndings(" "));
            Notes.AddRange(d.Warnings);
        }
        var restrictive = licenses.Where(l => !l.OsiApproved).ToList();
        if (restrictive.Count > 0 && !accepted)
        {
            var l = restrictive[0];
            throw new LicenseNotAcceptedException(ctx.RepoId, model.Id, l.Name, l.Url);
        }
    }
}

/// <summary>
/// A pull refused because the model's licence restricts use (or the hub gates the repository) and was not accepted:
/// set <see cref="PullOptions.AcceptLicense"/> after reading it. The fields let a front end phrase its own advice.
/// </summary>
public sealed class LicenseNotAcceptedException(string repoId, string? modelId, string license, string? licenseUrl)
    : OpenWeightsOptionException(ProblemText(repoId, modelId, license), "PullOptions.AcceptLicense",
        modelId is null ? "read its terms and accept them (PullOptions.AcceptLicense)"
            : $"read it{(licenseUrl is null ? "" : $" ({licenseUrl})")} and accept it (PullOptions.AcceptLicense)")
{
    public string RepoId { get; } = repoId;
    /// <summary>The catalog model the repository belongs to; null for a repository the hub gates.</summary>
    public string? ModelId { get; } = modelId;
    /// <summary>The licence's name (catalog) or id (hub).</summary>
    public string License { get; } = license;
    public string? LicenseUrl { get; } = licenseUrl;

    private static string ProblemText(string repoId, string? modelId, string license) => modelId is null
        ? $"{repoId} is gated on Hugging Face (license {license})"
        : $"{repoId} ({modelId}) is licensed under {license}, which restricts use";
}
