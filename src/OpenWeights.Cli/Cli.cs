using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using OpenWeights.Cli.Commands;

namespace OpenWeights.Cli;

/// <summary>
/// The `openweights` command. Each sub-command lives in Commands/ as a static class with
/// <c>Create()</c>; this file only registers them and turns errors into one-line messages.
/// </summary>
public static class Cli
{
    /// <summary>
    /// The root is a plain command named `openweights` (a RootCommand is named after the executable, OpenWeights.Cli,
    /// which help and usage lines would show); it carries --help (inherited by every sub-command) and --version.
    /// </summary>
    public static Command BuildRoot()
    {
        var root = new Command("openweights", "OpenWeights: run, serve, fine-tune and choose open-weight language models locally.")
        {
            new HelpOption { Action = new CliHelp.HelpPrinter() },
            new VersionOption { Action = new VersionCommand.PrintAction() },
        };
        // Register sub-commands here, one line each.
        root.Subcommands.Add(RunCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(SynthCommand.Create());
        root.Subcommands.Add(VersionCommand.Create());
        root.Subcommands.Add(ModelsCommand.Create());
        root.Subcommands.Add(FitCommand.Create());
        root.Subcommands.Add(HardwareCommand.Create());
        root.Subcommands.Add(PullCommand.Create(new OpenWeights.Hub.CatalogPullGate()));
        root.Subcommands.Add(ListCommand.Create());
        root.Subcommands.Add(RmCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(ImportCommand.Create());
        root.Subcommands.Add(KeygenCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(TuneCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(AuditCommand.Create());
        root.Subcommands.Add(ReplayCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        return root;
    }

    public static int Start(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the CLI with the given writers (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = BuildRoot();
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = stdout, Error = stderr };
        try
        {
            ParseResult result;
            try { result = root.Parse(args); }
            catch (InvalidOperationException e) when (CliHelp.ReportConversionFailure(root, args, e, stderr) is { } code) { return code; }
            // no command at all: the list of commands (what a newcomer typing `openweights` wants)
            if (args.Length == 0) return root.Parse(["--help"]).Invoke(config);
            // parse errors: the error first and short, not the whole help page
            if (result.Errors.Count > 0 && result.Action is ParseErrorAction) return CliHelp.ReportParseErrors(result, stderr);
            if (result.Action is not CliHelp.HelpPrinter && CliHelp.ReportUnknownLongOption(result, stderr) is { } unknown) return unknown;
            return result.Invoke(config);
        }
        catch (Exception e)
        {
            return ReportError(e, stderr);
        }
    }

    /// <summary>One line for user errors; type + message for bugs; stack trace only with OPENWEIGHTS_DEBUG=1.</summary>
    public static int ReportError(Exception e, TextWriter stderr)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } ae) e = ae.InnerException!;
        if (e is OperationCanceledException) { stderr.WriteLine("openweights: cancelled"); return 130; }
        bool debug = Environment.GetEnvironmentVariable("OPENWEIGHTS_DEBUG") == "1";
        string msg = e switch
        {
            OpenWeightsException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
                or IOException or InvalidDataException or NotSupportedException or ArgumentException => e.Message,
            _ => $"internal error ({e.GetType().Name}): {e.Message} (set OPENWEIGHTS_DEBUG=1 for details)",
        };
        stderr.WriteLine($"openweights: error: {TerminalSafe(FirstLine(msg))}");
        if (debug) stderr.WriteLine(e.ToString());
        return 1;
    }

    private static string FirstLine(string s) { int i = s.IndexOfAny(['\r', '\n']); return i < 0 ? s : s[..i]; }

    /// <summary>
    /// Last line of defence for a message that may carry bytes from a file or request: control characters (ESC and the
    /// other C0/C1 codes) become \xNN so they cannot drive the terminal, and the line is capped at 1,000 characters.
    /// </summary>
    internal static string TerminalSafe(string s)
    {
        const int Max = 1000;
        var sb = new System.Text.StringBuilder(Math.Min(s.Length, Max) + 16);
        for (int i = 0; i < s.Length && i < Max; i++)
        {
            char c = s[i];
            if (c < 0x20 || c is >= '\x7F' and <= '\x9F') sb.Append($"\\x{(int)c:X2}");
            else sb.Append(c);
        }
        if (s.Length > Max) sb.Append($"…({s.Length - Max} more)");
        return sb.ToString();
    }
}
