using System.Text.Json;

namespace OpenWeights.Formats.HuggingFace;

/// <summary>
/// Reading the JSON files of a checkpoint (config.json, tokenizer.json, ...) so that anything wrong in them is a one-line
/// <see cref="InvalidModelFileException"/>: invalid UTF-8 and malformed JSON at parse, and a value of an unexpected JSON
/// kind (or a lone-surrogate escape) wherever the reader meets it, which System.Text.Json reports as
/// <see cref="InvalidOperationException"/> or <see cref="FormatException"/>.
/// </summary>
internal static class HfJson
{
    /// <summary>Parses a file; <paramref name="display"/> names it in messages (e.g. "tokenizer.json").</summary>
    public static JsonDocument Parse(string path, string display) => Parse(File.ReadAllBytes(path), display);

    public static JsonDocument Parse(byte[] bytes, string display)
    {
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new InvalidModelFileException($"{display} is not valid UTF-8");
        try { return JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new InvalidModelFileException($"{display} is not valid JSON ({FirstLine(e.Message)})"); }
    }

    /// <summary>Runs a reader over parsed JSON, turning System.Text.Json's type errors into one-line file errors.</summary>
    public static T Read<T>(string display, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException)
        {
            throw new InvalidModelFileException($"{display} holds a value of an unexpected type ({FirstLine(e.Message)})");
        }
    }

    public static void Read(string display, Action read) => Read(display, () => { read(); return 0; });

    private static string FirstLine(string s) { int i = s.IndexOfAny(['\r', '\n']); return i < 0 ? s : s[..i]; }
}
