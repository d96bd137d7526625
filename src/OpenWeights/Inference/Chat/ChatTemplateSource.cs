namespace OpenWeights.Inference.Chat;

/// <summary>
/// Where a chat template's Jinja text comes from: a file (<see cref="FromFile"/>), or text checked by <see cref="Check"/>
/// so a file path passed where the template text belongs is an error instead of a template that prints the path.
/// </summary>
public static class ChatTemplateSource
{
    /// <summary>Reads a Jinja chat template file.</summary>
    public static string FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new OpenWeightsException($"chat template file not found: {path}");
        string text = File.ReadAllText(path);
        if (text.Trim().Length == 0) throw new OpenWeightsException($"chat template file {path} is empty");
        return text;
    }

    /// <summary>
    /// Returns <paramref name="source"/> when it can be template text; throws when it is the path of an existing file and holds
    /// no Jinja markup (<c>{{</c> or <c>{%</c>): the caller meant the file's contents.
    /// </summary>
    public static string Check(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (LooksLikeFilePath(source))
            throw new OpenWeightsException($"the chat template given is a file path, not template text: {source.Trim()}; read the file (ChatTemplateSource.FromFile) or pass it as the template file");
        return source;
    }

    /// <summary>True when the text has no Jinja markup and names an existing file.</summary>
    public static bool LooksLikeFilePath(string source)
    {
        if (source.Contains("{{", StringComparison.Ordinal) || source.Contains("{%", StringComparison.Ordinal)) return false;
        string s = source.Trim();
        if (s.Length == 0 || s.Length > 4096 || s.Contains('\n')) return false;
        try { return File.Exists(s); }
        catch (ArgumentException) { return false; }
    }
}
