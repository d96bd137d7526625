using System.Text.Json;
using System.Text.Json.Serialization;

namespace OpenWeights.Catalog;

/// <summary>
/// The model catalog: data in catalog.json (embedded resource), loaded once. Look-ups by id or alias,
/// case-insensitive. Entries with <c>architecture_from</c> borrow the architecture of another entry.
/// </summary>
public sealed class ModelCatalog
{
    private static readonly Lazy<ModelCatalog> defaultCatalog = new(LoadEmbedded);

    /// <summary>Options that read catalog.json (snake_case keys).</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private readonly Dictionary<string, CatalogModel> byId = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, LicenseTerms> licenses = new(StringComparer.OrdinalIgnoreCase);

    public CatalogDocument Document { get; }
    public IReadOnlyList<CatalogModel> Models { get; }
    public IReadOnlyList<LicenseTerms> Licenses => Document.Licenses;

    /// <summary>The catalog shipped inside the assembly.</summary>
    public static ModelCatalog Default => defaultCatalog.Value;

    public ModelCatalog(CatalogDocument doc)
    {
        Document = doc;
        foreach (var l in doc.Licenses) licenses[l.Id] = l;
        foreach (var m in doc.Models)
        {
            if (!byId.TryAdd(m.Id, m)) throw new InvalidDataException($"catalog: duplicate model id '{m.Id}'");
        }
        // Resolve architecture_from (one level) after all ids are known.
        var resolved = new List<CatalogModel>(doc.Models.Count);
        foreach (var m in doc.Models)
        {
            var r = m;
            if (m.Architecture is null && m.ArchitectureFrom is { } from)
            {
                if (!byId.TryGetValue(from, out var src) || src.Architecture is null)
                    throw new InvalidDataException($"catalog: '{m.Id}' takes its architecture from unknown entry '{from}'");
                r = m with { Architecture = src.Architecture };
            }
            resolved.Add(r);
            byId[m.Id] = r;
        }
        foreach (var m in resolved)
            foreach (var a in m.Aliases)
                if (!byId.TryAdd(a, m) && !ReferenceEquals(byId[a], m))
                    throw new InvalidDataException($"catalog: alias '{a}' of '{m.Id}' is already taken");
        Models = resolved;
    }

    public static ModelCatalog Parse(string json) =>
        new(JsonSerializer.Deserialize<CatalogDocument>(json, JsonOptions) ?? throw new InvalidDataException("catalog: empty document"));

    private static ModelCatalog LoadEmbedded()
    {
        var asm = typeof(ModelCatalog).Assembly;
        var name = asm.GetManifestResourceNames().Single(n => n.EndsWith("catalog.json", StringComparison.Ordinal));
        using var s = asm.GetManifestResourceStream(name)!;
        using var r = new StreamReader(s);
        return Parse(r.ReadToEnd());
    }

    /// <summary>The raw embedded catalog.json text (for tests and `models --json` tooling).</summary>
    public static string EmbeddedJson()
    {
        var asm = typeof(ModelCatalog).Assembly;
        var name = asm.GetManifestResourceNames().Single(n => n.EndsWith("catalog.json", StringComparison.Ordinal));
        using var s = asm.GetManifestResourceStream(name)!;
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    public bool TryGet(string idOrAlias, out CatalogModel model) => byId.TryGetValue(idOrAlias, out model!);

    /// <summary>The model with this id or alias; throws a one-line user error otherwise.</summary>
    public CatalogModel Get(string idOrAlias) =>
        TryGet(idOrAlias, out var m) ? m : throw new OpenWeightsException($"unknown model '{idOrAlias}' (try 'openweights models')");

    public bool TryGetLicense(string id, out LicenseTerms terms) => licenses.TryGetValue(id, out terms!);

    public LicenseTerms GetLicense(string id) =>
        TryGetLicense(id, out var l) ? l : throw new OpenWeightsException($"unknown licence '{id}'");
}
