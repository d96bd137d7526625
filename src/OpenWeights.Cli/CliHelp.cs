using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace OpenWeights.Cli;

/// <summary>
/// Help text and parse errors of the `openweights` command: hidden aliases (old spellings that still parse but are
/// not shown), default labels ("all cores" instead of the machine's core count), and parse errors as one short
/// error line (with the closest option) plus one usage line, instead of the whole help page.
/// </summary>
public static class CliHelp
{
    private sealed class Extra
    {
        public readonly List<string> HiddenAliases = [];
        public string? DefaultLabel;
    }

    private static readonly ConditionalWeakTable<Option, Extra> Extras = new();

    /// <summary>Adds an alias that parses but is not shown in help (an old spelling kept so scripts keep working).</summary>
    public static T HiddenAlias<T>(this T option, string alias) where T : Option
    {
        option.Aliases.Add(alias);
        Extras.GetOrCreateValue(option).HiddenAliases.Add(alias);
        return option;
    }

    /// <summary>Shows <paramref name="label"/> as the option's default in help (for defaults that depend on the machine).</summary>
    public static T DefaultLabel<T>(this T option, string label) where T : Option
    {
        Extras.GetOrCreateValue(option).DefaultLabel = label;
        return option;
    }

    /// <summary>The aliases an option shows in help: all of them but the hidden ones, short before long.</summary>
    public static IEnumerable<string> VisibleAliases(Option o)
    {
        if (o is HelpOption) return ["-h", "--help"]; // not /h, -?, /?
        var hidden = Extras.TryGetValue(o, out var x) ? x.HiddenAliases : [];
        return new[] { o.Name }.Concat(o.Aliases).Where(a => !hidden.Contains(a)).Distinct()
            .OrderBy(a => a.StartsWith("--", StringComparison.Ordinal) ? 1 : 0).ThenBy(a => a.Length);
    }

    /// <summary>
    /// `--help` for every command (System.CommandLine's own help builder is not public in 2.0, so hidden aliases and
    /// default labels need this): description, usage, arguments, options with their defaults, sub-commands.
    /// </summary>
    public sealed class HelpPrinter : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            Write(parseResult.CommandResult.Command, parseResult.InvocationConfiguration.Output);
            return 0;
        }
    }

    /// <summary>Writes the help page of <paramref name="cmd"/>.</summary>
    public static void Write(Command cmd, TextWriter o)
    {
        int width = 120;
        if (ReferenceEquals(o, Console.Out) && !Console.IsOutputRedirected)
            try { if (Console.WindowWidth >= 40) width = Console.WindowWidth; } catch (IOException) { }
        if (!string.IsNullOrEmpty(cmd.Description))
        {
            o.WriteLine("Description:");
            foreach (var line in Wrap(cmd.Description, width - 3)) o.WriteLine("  " + line);
            o.WriteLine();
        }
        o.WriteLine("Usage:");
        o.WriteLine("  " + Usage(cmd));
        var args = cmd.Arguments.Where(a => !a.Hidden).Select(a => ($"<{a.Name}>", a.Description ?? "")).ToList();
        var opts = OptionsInScope(cmd).Where(x => !x.Hidden).Select(x => (FirstColumn(x), SecondColumn(x))).ToList();
        var subs = cmd.Subcommands.Where(c => !c.Hidden).Select(c => (string.Join(", ", new[] { c.Name }.Concat(c.Aliases)), c.Description ?? "")).ToList();
        int col = new[] { args, opts, subs }.SelectMany(l => l).Select(r => r.Item1.Length).DefaultIfEmpty(0).Max() + 2;
        Section(o, "Arguments:", args, col, width);
        Section(o, "Options:", opts, col, width);
        Section(o, "Commands:", subs, col, width);
    }

    private static void Section(TextWriter o, string title, List<(string First, string Second)> rows, int col, int width)
    {
        if (rows.Count == 0) return;
        o.WriteLine();
        o.WriteLine(title);
        foreach (var (first, second) in rows)
        {
            var lines = Wrap(second, Math.Max(20, width - col - 3));
            o.WriteLine(("  " + first.PadRight(col) + lines[0]).TrimEnd());
            foreach (var more in lines.Skip(1)) o.WriteLine(new string(' ', col + 2) + more);
        }
    }

    private static List<string> Wrap(string text, int width)
    {
        var lines = new List<string>();
        var line = new System.Text.StringBuilder();
        foreach (var word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > width) { lines.Add(line.ToString()); line.Clear(); }
            if (line.Length > 0) line.Append(' ');
            line.Append(word);
        }
        lines.Add(line.ToString());
        return lines;
    }

    private static string FirstColumn(Option o)
    {
        string s = string.Join(", ", VisibleAliases(o));
        if (o.Arity.MaximumNumberOfValues > 0 && o.ValueType != typeof(bool)) s += $" <{o.HelpName ?? o.Name.TrimStart('-')}>";
        if (o.Required) s += " (REQUIRED)";
        return s;
    }

    private static string SecondColumn(Option o)
    {
        string d = o.Description ?? "";
        string? dflt = Extras.TryGetValue(o, out var x) && x.DefaultLabel is { } label ? label : DefaultText(o);
        return dflt is null ? d : (d.Length == 0 ? "" : d + " ") + $"[default: {dflt}]";
    }

    /// <summary>The default shown in help; none for flags that default to off and for empty or null defaults.</summary>
    private static string? DefaultText(Option o)
    {
        if (!o.HasDefaultValue || o.Required) return null;
        object? v = o.GetDefaultValue();
        return v switch
        {
            null or false => null,
            string str => str.Length == 0 ? null : str,
            System.Collections.IEnumerable e => e.Cast<object>().Any() ? string.Join(", ", e.Cast<object>().Select(Invariant)) : null,
            _ => Invariant(v),
        };
    }

    private static string Invariant(object v) => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "";

    private static IEnumerable<Command> AllCommands(Command c) => new[] { c }.Concat(c.Subcommands.SelectMany(AllCommands));

    /// <summary>"openweights run MODEL PROMPT [options]": the command path, its arguments and [options].</summary>
    public static string Usage(Command cmd)
    {
        var parts = new List<string> { CommandPath(cmd) };
        if (cmd.Subcommands.Count > 0) parts.Add(cmd.Action is null ? "COMMAND" : "[COMMAND]");
        foreach (var a in cmd.Arguments.Where(a => !a.Hidden))
        {
            string name = a.Name.ToUpperInvariant().Replace('-', '_');
            if (a.Arity.MaximumNumberOfValues > 1) name += "...";
            parts.Add(a.Arity.MinimumNumberOfValues == 0 ? $"[{name}]" : name);
        }
        if (OptionsInScope(cmd).Any(o => o is not HelpOption && !o.Hidden)) parts.Add("[options]");
        return string.Join(' ', parts);
    }

    /// <summary>"openweights run": the names from the root down.</summary>
    public static string CommandPath(Command cmd) => string.Join(' ', AncestorsOf(cmd).Reverse().Append(cmd).Select(c => c.Name));

    /// <summary>The options a command accepts: its own and its ancestors' recursive ones (--help).</summary>
    public static IEnumerable<Option> OptionsInScope(Command cmd)
    {
        foreach (var o in cmd.Options) yield return o;
        foreach (var p in AncestorsOf(cmd))
            foreach (var o in p.Options)
                if (o.Recursive) yield return o;
    }

    private static IEnumerable<Command> AncestorsOf(Command cmd)
    {
        for (var c = cmd.Parents.OfType<Command>().FirstOrDefault(); c is not null; c = c.Parents.OfType<Command>().FirstOrDefault()) yield return c;
    }

    /// <summary>
    /// Writes a parse error as `openweights: error: ...` (an unknown option or command names the closest known one)
    /// and one usage line, and returns 1, the exit code of every user error.
    /// </summary>
    public static int ReportParseErrors(ParseResult result, TextWriter stderr) =>
        Report(result, UnknownToken(result, result.CommandResult.Command, longOnly: false) ?? Describe(result, result.Errors[0]), stderr);

    /// <summary>
    /// A `--word` the command does not know that System.CommandLine took as an argument value (`run m.gguf --max-token`
    /// would otherwise run with the prompt "--max-token"): reported like a parse error, with its exit code 1; null when
    /// there is none. A value that really starts with "--" goes after a `--` separator.
    /// </summary>
    public static int? ReportUnknownLongOption(ParseResult result, TextWriter stderr) =>
        UnknownToken(result, result.CommandResult.Command, longOnly: true) is { } message ? Report(result, message, stderr) : null;

    private static int Report(ParseResult result, string message, TextWriter stderr)
    {
        var cmd = result.CommandResult.Command;
        stderr.WriteLine($"openweights: error: {message}");
        stderr.WriteLine($"usage: {Usage(cmd)}; see `{CommandPath(cmd)} --help`");
        return 1;
    }

    /// <summary>
    /// A validator that reads an option's value throws while parsing when the value did not convert (System.CommandLine
    /// 2.0 runs validators anyway); that becomes the same short error as any other type error. Null when
    /// <paramref name="e"/> is something else.
    /// </summary>
    public static int? ReportConversionFailure(Command root, IReadOnlyList<string> args, InvalidOperationException e, TextWriter stderr)
    {
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, "^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'");
        if (!m.Success) return null;
        var cmd = root;
        foreach (var a in args)
            if (cmd.Subcommands.FirstOrDefault(c => c.Name == a || c.Aliases.Contains(a)) is { } sub) cmd = sub;
        var option = OptionsInScope(cmd).FirstOrDefault(o => o.Name == m.Groups[2].Value || o.Aliases.Contains(m.Groups[2].Value));
        if (option is null) return null;
        stderr.WriteLine($"openweights: error: {LongName(option)} expects {Expected(option.ValueType)}, not '{m.Groups[1].Value}'");
        stderr.WriteLine($"usage: {Usage(cmd)}; see `{CommandPath(cmd)} --help`");
        return 1;
    }

    /// <summary>An option-like token the command does not know, or an unknown sub-command, with the closest known name.</summary>
    private static string? UnknownToken(ParseResult result, Command cmd, bool longOnly)
    {
        var scope = OptionsInScope(cmd).ToList();
        // tokens consumed as option values (`--stop -x`) are values, not unknown options
        var values = new HashSet<Token>(scope.SelectMany(o => result.GetResult(o)?.Tokens ?? []), ReferenceEqualityComparer.Instance);
        foreach (var t in result.Tokens)
        {
            if (t.Type == TokenType.DoubleDash) break;
            if (t.Type != TokenType.Argument || values.Contains(t)) continue;
            string v = t.Value;
            bool optionLike = longOnly ? v.Length > 2 && v.StartsWith("--", StringComparison.Ordinal) && char.IsLetter(v[2])
                : v.Length > 1 && v[0] == '-' && !double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out _);
            if (optionLike)
            {
                string name = v.Split('=', 2)[0];
                var known = scope.Where(o => !o.Hidden).Select(o => (Alias: o.Name, o)).Concat(scope.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Select(a => (Alias: a, o))));
                var best = Closest(name, known.Select(k => (k.Alias, Canonical: LongName(k.o))));
                return $"unknown option {name}" + (best is null ? "" : $" (did you mean {best}?)");
            }
        }
        if (!longOnly && cmd.Subcommands.Count > 0 && cmd.Arguments.Count == 0 && result.UnmatchedTokens.Count > 0)
        {
            string word = result.UnmatchedTokens[0];
            var best = Closest(word, cmd.Subcommands.Where(c => !c.Hidden).SelectMany(c => new[] { c.Name }.Concat(c.Aliases).Select(a => (a, c.Name))));
            return $"unknown command '{word}'" + (best is null ? "" : $" (did you mean {best}?)");
        }
        return null;
    }

    private static string LongName(Option o) => VisibleAliases(o).LastOrDefault() ?? o.Name;

    /// <summary>The canonical name of the closest candidate within an edit distance of about a third of the word; null if none is close.</summary>
    public static string? Closest(string word, IEnumerable<(string Alias, string Canonical)> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var (alias, canonical) in candidates)
        {
            int d = OpenWeights.EditDistance.Levenshtein(word.ToLowerInvariant(), alias.ToLowerInvariant());
            if (d < bestDistance) { bestDistance = d; best = canonical; }
        }
        int limit = Math.Max(2, word.TrimStart('-').Length / 3);
        return bestDistance <= limit ? best : null;
    }

    /// <summary>A parse error in words: type errors name what the option expects, missing arguments are named.</summary>
    private static string Describe(ParseResult result, ParseError e)
    {
        string m = e.Message;
        var option = e.SymbolResult switch { OptionResult r => r.Option, ArgumentResult { Parent: OptionResult r } => r.Option, _ => null };
        if (m.StartsWith("Cannot parse argument", StringComparison.Ordinal))
        {
            var tokens = e.SymbolResult?.Tokens ?? [];
            string got = tokens.Count > 0 ? $", not '{tokens[^1].Value}'" : "";
            if (option is not null) return $"{LongName(option)} expects {Expected(option.ValueType)}{got}";
            if (e.SymbolResult is ArgumentResult ar) return $"{ar.Argument.Name.ToUpperInvariant()} expects {Expected(ar.Argument.ValueType)}{got}";
        }
        if (option is not null && (m.StartsWith("Required option", StringComparison.Ordinal) || m.EndsWith("is required.", StringComparison.Ordinal)))
            return $"missing required option {LongName(option)}";
        if (m.StartsWith("Required argument missing for option", StringComparison.Ordinal) && option is not null)
            return $"{LongName(option)} needs a value ({Expected(option.ValueType)})";
        var cmd = result.CommandResult.Command;
        if (m.StartsWith("Required argument missing", StringComparison.Ordinal) && cmd.Arguments.Any(a => Missing(result, a)))
            return "missing " + string.Join(" and ", cmd.Arguments.Where(a => Missing(result, a)).Select(a => a.Name.ToUpperInvariant()));
        // one line: System.CommandLine lists the allowed values of an enum-like option on lines of their own
        return System.Text.RegularExpressions.Regex.Replace(m, @"\s*\n\s*", " ").Replace("Must be one of: ", "must be one of ").TrimEnd('.');
    }

    private static bool Missing(ParseResult result, Argument a) =>
        a.Arity.MinimumNumberOfValues > 0 && (result.GetResult(a)?.Tokens.Count ?? 0) < a.Arity.MinimumNumberOfValues;

    /// <summary>"a number", "a whole number", "true or false", "one of a, b": what a value of <paramref name="t"/> looks like.</summary>
    public static string Expected(Type t)
    {
        if (t.IsArray) t = t.GetElementType()!;
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t == typeof(float) || t == typeof(double) || t == typeof(decimal)) return "a number";
        if (t == typeof(int) || t == typeof(long) || t == typeof(short) || t == typeof(byte)) return "a whole number";
        if (t == typeof(uint) || t == typeof(ulong) || t == typeof(ushort)) return "a whole number (0 or more)";
        if (t == typeof(bool)) return "true or false";
        if (t.IsEnum) return "one of " + string.Join(", ", Enum.GetNames(t).Select(n => n.ToLowerInvariant()));
        if (t == typeof(string)) return "a text value";
        return "a " + t.Name.ToLowerInvariant();
    }
}
