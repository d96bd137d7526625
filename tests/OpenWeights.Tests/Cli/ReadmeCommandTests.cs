using System.Diagnostics;
using System.Text.RegularExpressions;

namespace OpenWeights.Tests.Cli;

/// <summary>The README's first command works as written on a fresh clone with ../shared beside it (as CI has it).</summary>
public class ReadmeCommandTests
{
    /// <summary>The README's first command, as written (the built CLI in place of `dotnet run --project ...`), from the repository root.</summary>
    [Fact]
    public async Task ReadmeFirstCommandRunsOnAFreshClone()
    {
        string root = RunCommandTests.RepoRoot();
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var first = Regex.Match(readme, "```sh\\n(?:#.*\\n)*(dotnet run [^\\n]+)\\n").Groups[1].Value;
        const string prefix = "dotnet run --project src/OpenWeights.Cli -c Release -- ";
        Assert.StartsWith(prefix, first);
        var args = Regex.Matches(first[prefix.Length..], "\"([^\"]*)\"|(\\S+)").Select(x => x.Groups[1].Success ? x.Groups[1].Value : x.Groups[2].Value).ToList();
        Assert.Equal("run", args[0]);
        bool fromShared = args[1].StartsWith("../shared/", StringComparison.Ordinal);
        if (fromShared && TestData.Root is null) Assert.Skip($"../shared/testdata is absent: the README's first command runs {args[1]}");
        Assert.True(File.Exists(Path.Combine(root, args[1])), $"the README's model {args[1]} is neither in the repository nor in ../shared");
        var psi = new ProcessStartInfo(RunCommandTests.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false, WorkingDirectory = root };
        psi.ArgumentList.Add(typeof(OpenWeights.Cli.Cli).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--threads"); psi.ArgumentList.Add("1");
        using var proc = Process.Start(psi)!;
        proc.StandardInput.Close(); // as on CI: no input
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var stderr = proc.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await proc.WaitForExitAsync(limit.Token);
        string o = await stdout, e = await stderr;
        Assert.True(proc.ExitCode == 0, e);
        Assert.True(o.Trim().Length > 20, $"too little output: '{o}'");
        Assert.DoesNotContain("error", e);
    }

}
