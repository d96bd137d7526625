using System.CommandLine;
using System.CommandLine.Invocation;
using System.Reflection;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights version` and `openweights --version`: the tool's one version string (Directory.Build.props).</summary>
public static class VersionCommand
{
    /// <summary>The informational version (Directory.Build.props' Version) without a "+commit" suffix; both spellings print it.</summary>
    public static string Text { get; } = Strip(typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(VersionCommand).Assembly.GetName().Version?.ToString(3) ?? "0.0.0");

    private static string Strip(string v) { int plus = v.IndexOf('+'); return plus < 0 ? v : v[..plus]; }

    public static Command Create()
    {
        var json = CommonOptions.Json();
        var cmd = new Command("version", "Print the OpenWeights version") { json };
        cmd.SetAction(pr =>
        {
            var info = new { version = Text, runtime = Environment.Version.ToString(), os = System.Runtime.InteropServices.RuntimeInformation.OSDescription };
            if (pr.GetValue(json)) CliJson.Write(pr.InvocationConfiguration.Output, info);
            else pr.InvocationConfiguration.Output.WriteLine($"openweights {info.version} (.NET {info.runtime}, {info.os})");
            return 0;
        });
        return cmd;
    }

    /// <summary>`--version` on the root: the same string as `version`, alone on a line (scripts read it).</summary>
    public sealed class PrintAction : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(Text);
            return 0;
        }
    }
}
