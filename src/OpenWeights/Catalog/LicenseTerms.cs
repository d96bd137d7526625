using System.Text.Json.Serialization;

namespace OpenWeights.Catalog;

/// <summary>What a licence lets you do and what it asks of you, as data (catalog.json "licenses").</summary>
public sealed record LicenseTerms
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public string? Spdx { get; init; }
    public string? Url { get; init; }
    public bool OsiApproved { get; init; }
    public bool CommercialUse { get; init; }
    /// <summary>Subset of "commercial", "research", "personal".</summary>
    public IReadOnlyList<string> AllowedUses { get; init; } = [];
    /// <summary>Monthly-active-user ceiling above which a separate licence is needed (Llama 700M, Qwen 100M); null = none.</summary>
    public long? MauLimit { get; init; }
    public string? MauClause { get; init; }
    public string? Attribution { get; init; }
    public string? NamingRule { get; init; }
    /// <summary>Derivative model names must start with this (Llama).</summary>
    public string? NamingPrefix { get; init; }
    public string? AcceptableUsePolicy { get; init; }
    public string? AcceptableUsePolicyUrl { get; init; }
    /// <summary>Whether the use restrictions must be passed on to anyone you distribute the model to; null = unknown.</summary>
    public bool? PassesRestrictionsDownstream { get; init; }
    public IReadOnlyList<RegionalRestriction> RegionalRestrictions { get; init; } = [];
    public string? GoverningLaw { get; init; }
    public string? Termination { get; init; }
    /// <summary>Plain-language summary.</summary>
    public required string Summary { get; init; }
    public IReadOnlyList<string> Obligations { get; init; } = [];
    public IReadOnlyList<string> Uncertain { get; init; } = [];
    public IReadOnlyList<string> Sources { get; init; } = [];
}

/// <summary>A licence grant withheld in a region, for all models or only multimodal ones (Llama 3.2 / 4 in the EU).</summary>
public sealed record RegionalRestriction
{
    /// <summary>Region code, e.g. "EU".</summary>
    public required string Region { get; init; }
    /// <summary>"all" or "multimodal".</summary>
    public required string AppliesTo { get; init; }
    public required string Clause { get; init; }

    public bool AppliesToModel(CatalogModel m) => AppliesTo != "multimodal" || m.IsMultimodal;
}

/// <summary>The intended use the licence gate checks.</summary>
public enum LicenseUse { Commercial, Research, Personal }

/// <summary>The gate's answer: allowed, or refused with the clause that refuses; plus what you must do when allowed.</summary>
public sealed record LicenseDecision
{
    public required bool Allowed { get; init; }
    public required string ModelId { get; init; }
    [JsonConverter(typeof(SnakeCaseEnumConverter<LicenseUse>))]
    public required LicenseUse Use { get; init; }
    /// <summary>The licence that refuses (null when allowed).</summary>
    public string? RefusedBy { get; init; }
    /// <summary>The refusing clause, quoted or paraphrased from the licence data.</summary>
    public string? Clause { get; init; }
    /// <summary>Obligations of every licence that governs the model (when allowed).</summary>
    public IReadOnlyList<string> Obligations { get; init; } = [];
    /// <summary>Conditions the gate could not decide (e.g. region unknown) and uncertain licence facts.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Checks a model's licence(s) against an intended use, the user's monthly active users and region.
/// Every licence that governs the model (its main licence and any additional ones) must allow the use.
/// </summary>
public static class LicenseGate
{
    public static LicenseDecision Check(CatalogModel model, LicenseUse use, long? mau = null, string? region = null, ModelCatalog? catalog = null)
    {
        catalog ??= ModelCatalog.Default;
        var warnings = new List<string>();
        var obligations = new List<string>();
        string useName = use.ToString().ToLowerInvariant();
        foreach (var id in new[] { model.License }.Concat(model.AdditionalLicenses))
        {
            var lic = catalog.GetLicense(id);
            LicenseDecision Refuse(string clause) => new()
            {
                Allowed = false, ModelId = model.Id, Use = use, RefusedBy = lic.Id, Clause = clause, Warnings = warnings,
            };

            if (use == LicenseUse.Commercial && !lic.CommercialUse)
                return Refuse($"{lic.Name}: no commercial use. {lic.Summary}");
            if (!lic.AllowedUses.Contains(useName))
                return Refuse($"{lic.Name}: {useName} use is not granted (allowed: {string.Join(", ", lic.AllowedUses)}). {lic.Summary}");
            if (lic.MauLimit is { } limit)
            {
                if (mau is { } m && m > limit)
                    return Refuse($"{lic.Name}: {lic.MauClause ?? $"more than {limit:N0} monthly active users needs a separate licence."}");
                if (mau is null && use == LicenseUse.Commercial)
                    warnings.Add($"{lic.Name}: allowed only below {limit:N0} monthly active users (give the number of monthly active users, mau, to check).");
            }
            foreach (var rr in lic.RegionalRestrictions.Where(r => r.AppliesToModel(model)))
            {
                if (region is not null && string.Equals(region, rr.Region, StringComparison.OrdinalIgnoreCase))
                    return Refuse($"{lic.Name}: {rr.Clause}");
                if (region is null)
                    warnings.Add($"{lic.Name}: not licensed to individuals or companies domiciled in {rr.Region} (end users of products are exempt).");
            }
            foreach (var f in lic.Uncertain) warnings.Add($"{lic.Name}: the '{f}' term is unverified.");
            obligations.AddRange(lic.Obligations);
        }
        if (model.Uncertain.Contains("license")) warnings.Add($"The licence of {model.Id} is unverified in the research; check the repository.");
        return new LicenseDecision
        {
            Allowed = true, ModelId = model.Id, Use = use, Obligations = obligations.Distinct().ToList(), Warnings = warnings,
        };
    }

    public static LicenseUse ParseUse(string s) => s.ToLowerInvariant() switch
    {
        "commercial" => LicenseUse.Commercial,
        "research" => LicenseUse.Research,
        "personal" => LicenseUse.Personal,
        _ => throw new OpenWeightsException($"unknown use '{s}' (expected commercial, research or personal)"),
    };
}
