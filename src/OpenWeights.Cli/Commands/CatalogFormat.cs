using System.Globalization;
using OpenWeights.Catalog;

namespace OpenWeights.Cli.Commands;

/// <summary>Human-readable numbers for the catalog, fit and hardware commands.</summary>
internal static class CatalogFormat
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Decimal gigabytes, as Hugging Face and llama.cpp file listings show sizes.</summary>
    public static string Bytes(long b)
    {
        double a = Math.Abs((double)b);
        string sign = b < 0 ? "-" : "";
        if (a >= 1e12) return sign + (a / 1e12).ToString("0.##", Inv) + " TB";
        if (a >= 1e9) return sign + (a / 1e9).ToString("0.##", Inv) + " GB";
        if (a >= 1e6) return sign + (a / 1e6).ToString("0.#", Inv) + " MB";
        if (a >= 1e3) return sign + (a / 1e3).ToString("0.#", Inv) + " KB";
        return sign + a.ToString("0", Inv) + " B";
    }

    public static string Params(double? billions)
    {
        if (billions is not { } b) return "?";
        return b >= 1 ? b.ToString("0.##", Inv) + "B" : (b * 1000).ToString("0.#", Inv) + "M";
    }

    public static string Context(int? tokens)
    {
        if (tokens is not { } t) return "?";
        if (t >= 1 << 20 && t % (1 << 20) == 0) return (t >> 20) + "M";
        if (t >= 1024 && t % 1024 == 0) return (t >> 10) + "K";
        return t.ToString(Inv);
    }

    public static string Commercial(CatalogModel m, ModelCatalog cat)
    {
        var lics = new[] { m.License }.Concat(m.AdditionalLicenses).Select(cat.GetLicense).ToList();
        if (lics.Any(l => !l.CommercialUse)) return "no";
        var limit = lics.Where(l => l.MauLimit is not null).Select(l => l.MauLimit!.Value).DefaultIfEmpty(0).Min();
        return limit > 0 ? $"<{Mau(limit)} MAU" : "yes";
    }

    public static string Mau(long n) => n >= 1_000_000 ? (n / 1_000_000).ToString(Inv) + "M" : n.ToString("N0", Inv);

    public static string Languages(CatalogModel m, int maxListed = 5)
    {
        var parts = new List<string>();
        var listed = m.Languages.Take(maxListed).ToList();
        parts.Add(string.Join(",", listed));
        if (m.Languages.Count > maxListed) parts[0] += $",+{m.Languages.Count - maxListed}";
        if (m.LanguageCount is { } c && c > m.Languages.Count) parts.Add($"{c}+ claimed");
        var s = string.Join(" ", parts.Where(p => p.Length > 0));
        return s.Length == 0 ? "?" : s;
    }

    public static string Number(double v, string format = "0.#") => v.ToString(format, Inv);

    /// <summary>Left-aligned table with two spaces between columns.</summary>
    public static void Table(TextWriter w, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = new List<IReadOnlyList<string>> { header };
        all.AddRange(rows);
        var widths = Enumerable.Range(0, header.Count).Select(i => all.Max(r => r[i].Length)).ToArray();
        foreach (var r in all)
            w.WriteLine(string.Join("  ", r.Select((c, i) => i == r.Count - 1 ? c : c.PadRight(widths[i]))).TrimEnd());
    }
}
