using System.Diagnostics;
using System.Text.Json;

namespace OpenWeights.Bench;

/// <summary>Runs this benchmark again as a child process (one engine per process) and reads the JSON line it prints last.</summary>
internal static class ChildRun
{
    /// <returns>the result, or null and the child's first line of error output</returns>
    public static (T?, string?) Json<T>(IEnumerable<string> args) where T : class
    {
        var self = typeof(ChildRun).Assembly.Location;
        var host = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (!Path.GetFileNameWithoutExtension(host).Equals(Path.GetFileNameWithoutExtension(self), StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(self); // running as `dotnet OpenWeights.Bench.dll`
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var errTask = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var stderr = errTask.Result;
        var line = stdout.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith('{'));
        if (p.ExitCode != 0 || line is null)
        {
            var msg = (stderr + stdout).Trim().Split('\n').FirstOrDefault(l => l.Trim().Length > 0) ?? $"exit code {p.ExitCode}";
            return (null, $"exit code {p.ExitCode}: {msg.Trim()}");
        }
        return (JsonSerializer.Deserialize<T>(line, OpenWeights.Bench.Json.Options), null);
    }
}
