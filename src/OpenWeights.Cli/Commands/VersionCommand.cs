using System.CommandLine;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights version`: the tool's version and runtime.</summary>
public static class VersionCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("version", "Print the OpenWeights version") { json };
        cmd.SetAction(pr =>
        {
            var v = typeof(VersionCommand).Assembly.GetName().Version?.ToString() ?? "0.0.0";
            var info = new { version = v, runtime = Environment.Version.ToString(), os = System.Runtime.InteropServices.RuntimeInformation.OSDescription };
            if (pr.GetValue(json)) CliJson.Write(pr.InvocationConfiguration.Output, info);
            else pr.InvocationConfiguration.Output.WriteLine($"openweights {info.version} (.NET {info.runtime}, {info.os})");
            return 0;
        });
        return cmd;
    }
}
