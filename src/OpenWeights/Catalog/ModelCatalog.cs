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

    /// <summary>The model with this id or alias; throws a one-line user error otherwise (naming the closest id when one is close).</summary>
    public CatalogModel Get(string idOrAlias) =>
        TryGet(idOrAlias, out var m) ? m : throw new OpenWeightsException(UnknownModelMessage(idOrAlias));

    /// <summary>"unknown model 'llama3.2'; did you mean llama-3.2-1b-instruct?" (or a pointer to the list when nothing is close).</summary>
    public string UnknownModelMessage(string idOrAlias) =>
        Suggest(idOrAlias) is { } close
            ? $"unknown model '{idOrAlias}'; did you mean {close}?"
            : $"unknown model '{idOrAlias}' (try 'openweights models')";

    /// <summary>
    /// The catalog id closest to what was typed, or null when nothing is close. Ids and aliases are compared normalized
    /// (lower case, letters and digits only: "Llama3.2" and "llama-3.2" are both "llama32"). In order: an exact normalized
    /// match; an id that starts with the text (the shortest, then catalog order: "llama3.2" -> llama-3.2-1b-instruct); an id
    /// that contains it; the smallest edit distance, when at most a quarter of the text's length (at least 1, at most 3).
    /// Prefix and contains matches need 3 characters or more.
    /// </summary>
    public string? Suggest(string idOrAlias)
    {
        string q = Normalize(idOrAlias);
        if (q.Length == 0) return null;
        // every (normalized name, model) pair; ids first so an id wins over an alias of the same model
        var names = Models.SelectMany(m => new[] { m.Id }.Concat(m.Aliases).Select(n => (name: Normalize(n), model: m))).ToList();
        if (names.FirstOrDefault(n => n.name == q).model is { } exact) return exact.Id;
        if (q.Length >= 3)
        {
            var prefix = names.Where(n => n.name.StartsWith(q, StringComparison.Ordinal)).OrderBy(n => n.name.Length).FirstOrDefault();
            if (prefix.model is not null) return prefix.model.Id;
            var contains = names.Where(n => n.name.Contains(q, StringComparison.Ordinal)).OrderBy(n => n.name.Length).FirstOrDefault();
            if (contains.model is not null) return contains.model.Id;
        }
        int limit = Math.Clamp(q.Length / 4, 1, 3);
        var best = names.Select(n => (n.model, d: OpenWeights.EditDistance.Levenshtein(q, n.name))).Where(x => x.d <= limit).OrderBy(x => x.d).FirstOrDefault();
        return best.model?.Id;
    }

    private static string Normalize(string s) => new(s.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).ToArray());

    public bool TryGetLicense(string id, out LicenseTerms terms) => licenses.TryGetValue(id, out terms!);

    public LicenseTerms GetLicense(string id) =>
        TryGetLicense(id, out var l) ? l : throw new OpenWeightsException($"unknown licence '{id}'");
}
