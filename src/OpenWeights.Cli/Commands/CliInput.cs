namespace OpenWeights.Cli.Commands;

/// <summary>Standard input for commands that read it (run's prompt, chat's lines); tests replace it in-process.</summary>
internal static class CliInput
{
    /// <summary>Tests set this (it flows with the async context): the reader stands for a redirected stdin.</summary>
    internal static readonly AsyncLocal<TextReader?> Override = new();

    public static TextReader Reader => Override.Value ?? Console.In;

    /// <summary>True when stdin is a file or a pipe rather than a terminal (always true for a test's reader).</summary>
    public static bool IsRedirected => Override.Value is not null || Console.IsInputRedirected;

    /// <summary>Reads all of stdin, without the final line break.</summary>
    public static string ReadAll() => TrimFinalNewline(Reader.ReadToEnd());

    public static string TrimFinalNewline(string s) => s.EndsWith("\r\n", StringComparison.Ordinal) ? s[..^2] : s.EndsWith('\n') ? s[..^1] : s;
}
