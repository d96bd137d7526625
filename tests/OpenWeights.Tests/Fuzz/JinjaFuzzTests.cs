using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the Jinja lexer, parser and renderer with a structured mutation loop: templates from the committed seed
/// corpus (Fuzz/corpus/jinja, our own; plus ../shared/testdata/chat-templates when present) are cut into tokens and
/// mutated (tokens deleted, duplicated, swapped, inserted from a dictionary of Jinja syntax and hostile values,
/// fragments of other templates spliced in, fragments wrapped in loops, ifs, macros). Property: every input either
/// renders or throws <see cref="TemplateException"/> (a parse or render error, or a <see cref="TemplateLimitException"/>)
/// — never another exception, never a hang. Runs a few seconds in the normal test run, deterministically from a seed
/// (OPENWEIGHTS_FUZZ_SEED, OPENWEIGHTS_FUZZ_SECONDS to run longer). A failure prints the seed, the case number and the
/// input; save the input under Fuzz/corpus/jinja/crashes/ and it runs as a regression case from then on.
/// </summary>
public class JinjaFuzzTests(ITestOutputHelper output)
{
    private const int DefaultSeed = 20260;
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    private static string CorpusDir => Path.Combine(RepoRoot(), "tests", "OpenWeights.Tests", "Fuzz", "corpus", "jinja");

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
    }

    // tight budgets: a case costs milliseconds, and an unbounded one is a finding, not a slow test
    private static readonly TemplateLimits Limits = new() { MaxSteps = 200_000, MaxOutputLength = 1 << 20, MaxItems = 100_000, InputScale = 0 };

    private static IDictionary<string, object?> Context(Random rng)
    {
        var messages = new List<object?>
        {
            new Dictionary<string, object?> { ["role"] = "system", ["content"] = "Be brief." },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Hello <b>there</b> \u00e9\U0001F600" },
            new Dictionary<string, object?>
            {
                ["role"] = "assistant", ["content"] = "",
                ["tool_calls"] = new List<object?> { new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "get", ["arguments"] = new Dictionary<string, object?> { ["q"] = "x", ["n"] = 2 } } } },
            },
            new Dictionary<string, object?> { ["role"] = "tool", ["tool_call_id"] = "c1", ["content"] = "{\"ok\": true}" },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = new List<object?> { new Dictionary<string, object?> { ["type"] = "text", ["text"] = "part" }, new Dictionary<string, object?> { ["type"] = "image" } } },
        };
        if (rng.Next(4) == 0) messages.RemoveRange(rng.Next(messages.Count), 1);
        return new Dictionary<string, object?>
        {
            ["messages"] = rng.Next(10) == 0 ? new List<object?>() : messages,
            ["add_generation_prompt"] = rng.Next(2) == 0,
            ["bos_token"] = "<s>", ["eos_token"] = "</s>",
            ["tools"] = rng.Next(2) == 0 ? null : new List<object?> { new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "get", ["parameters"] = new Dictionary<string, object?> { ["type"] = "object" } } } },
            ["documents"] = null,
            ["enable_thinking"] = rng.Next(2) == 0,
        };
    }

    private static JinjaTemplateOptions Options(Random rng) => new()
    {
        TrimBlocks = rng.Next(4) != 0,
        LstripBlocks = rng.Next(4) != 0,
        KeepTrailingNewline = rng.Next(4) == 0,
        Sandboxed = rng.Next(8) != 0,
        Now = () => new DateTime(2026, 1, 2, 3, 4, 5),
        Limits = Limits,
    };

    private enum Outcome { Rendered, ParseError, RenderError, LimitHit, Problem }

    /// <summary>Runs one input; the problem is null when it behaved (rendered or threw a TemplateException).</summary>
    private static (Outcome Outcome, string? Problem) Check(string source, Random rng)
    {
        var options = Options(rng);
        var ctx = Context(rng);
        var task = Task.Run(() =>
        {
            JinjaTemplate t;
            try { t = JinjaTemplate.Parse(source, options); }
            catch (TemplateException) { return (Outcome.ParseError, (string?)null); }
            catch (Exception e) { return (Outcome.Problem, $"parse: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
            try
            {
                t.Render(ctx);
                return (Outcome.Rendered, null);
            }
            catch (TemplateLimitException) { return (Outcome.LimitHit, null); }
            catch (TemplateException) { return (Outcome.RenderError, null); }
            catch (Exception e) { return (Outcome.Problem, $"render: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
        });
        if (!task.Wait(CaseTimeout)) return (Outcome.Problem, $"no result within {CaseTimeout.TotalSeconds:F0} s (a hang)");
        return task.Result;
    }

    // ------------------------------------------------------------------ mutation

    private static readonly Regex TokenRe = new(
        @"\{\{-?|-?\}\}|\{%-?|-?%\}|\{#|#\}|""(?:[^""\\]|\\.)*""|'(?:[^'\\]|\\.)*'|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\*\*|//|==|!=|<=|>=|[-+*/%~|.,:;()\[\]{}<>=!]|\s+|.",
        RegexOptions.Singleline | RegexOptions.Compiled);

    private static List<string> Tokens(string s) => TokenRe.Matches(s).Select(m => m.Value).ToList();

    private static readonly string[] Dictionary =
    [
        "{{", "}}", "{%", "%}", "{{-", "-}}", "{%-", "-%}", "{#", "#}", "{% raw %}", "{% endraw %}",
        "for", "in", "endfor", "if", "elif", "else", "endif", "set", "endset", "macro", "endmacro", "call", "endcall",
        "filter", "endfilter", "with", "endwith", "block", "endblock", "break", "continue", "recursive", "is", "not", "and", "or",
        "loop", "loop.index", "loop(", "caller()", "namespace(", "range(", "dict(", "joiner(", "cycler(", "raise_exception(",
        "messages", "messages[0]", "tools", "ns", "ns.out", "varargs", "kwargs", "none", "true", "false", "None", "True",
        "|", "~", "+", "-", "*", "**", "/", "//", "%", "==", "!=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":", ".", "=", "[::-1]", "[1:]",
        "0", "1", "-1", "2", "10**9", "9223372036854775807", "-9223372036854775808", "1e308", "0.5", "100000",
        "''", "'x'", "\"\\u0000\"", "'%s'", "'{}'", "'\\n'", "'\ud800'", "\U0001F600", "\u00e9", "\n", " ", "\t", "\r\n",
        "tojson", "tojson(indent=4)", "join", "map", "select", "selectattr", "reject", "unique", "sort", "dictsort", "items",
        "length", "list", "first", "last", "trim", "upper", "replace", "indent", "center", "format", "batch(", "slice(",
        "default", "safe", "string", "int", "float", "round", "sum", "min", "max", "groupby", "wordwrap", "truncate",
        "defined", "undefined", "string", "mapping", "iterable", "sequence", "divisibleby", "equalto",
        ".split(", ".strip()", ".startswith(", ".endswith(", ".format(", ".join(", ".replace(", ".items()", ".get(", ".append(",
        ".upper()", ".zfill(", ".center(", ".ljust(", ".count(", ".find(",
    ];

    private static readonly string[] Wrappers =
    [
        "{{% for i in range(1000) %}}{0}{{% endfor %}}",
        "{{% for x in messages recursive %}}{0}{{{{ loop(messages) }}}}{{% endfor %}}",
        "{{% if messages %}}{0}{{% else %}}{0}{{% endif %}}",
        "{{% macro m(a, b=1) %}}{0}{{{{ m(a, b) }}}}{{% endmacro %}}{{{{ m(1) }}}}",
        "{{% set ns = namespace(out='') %}}{{% for i in range(300) %}}{{% set ns.out = ns.out ~ ({0}) %}}{{% endfor %}}{{{{ ns.out }}}}",
        "{{% set x %}}{0}{{% endset %}}{{{{ x ~ x }}}}",
        "{{% filter upper %}}{0}{{% endfilter %}}",
        "{{{{ ({0}) * 1000 }}}}",
        "{{{{ [{0}] * 100000 }}}}",
        "{{{{ ({0}) | tojson }}}}",
        "{{% call m() %}}{0}{{% endcall %}}",
    ];

    private static readonly string[] Atoms =
    [
        "0", "1", "-1", "3", "2.5", "10**9", "9223372036854775807", "-9223372036854775808", "1e308", "''", "'ab'", "'%s-%d'",
        "'{0}{x}'", "'\\n'", "'\u00e9'", "none", "true", "false", "[]", "[1, 'a', none]", "{}", "{'k': [1, {'j': 2}]}", "(1, 2)",
        "messages", "messages[0]", "messages[-1].content", "messages | map(attribute='role')", "tools", "range(5)", "range(100000)",
        "loop", "ns", "ns.out", "undefined_name", "namespace(out='x')", "dict(a=1)", "bos_token", "'x' * 1000",
    ];

    private static readonly string[] BinaryOps = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or", "is", "is not"];
    private static readonly string[] Filters =
    [
        "length", "list", "first", "last", "join", "join(', ')", "tojson", "tojson(indent=2)", "trim", "upper", "string", "int", "float",
        "sort", "unique", "reverse", "sum", "min", "max", "map('upper')", "map(attribute='role')", "select", "reject('none')",
        "selectattr('role')", "items", "dictsort", "batch(2)", "slice(3)", "default('d')", "replace('a', 'bb')", "indent(2)",
        "center(20)", "format(1, 2)", "round(1)", "abs", "safe", "escape", "wordcount", "title", "capitalize", "truncate(5)",
    ];
    private static readonly string[] Methods =
    [
        ".split()", ".split(',')", ".strip()", ".upper()", ".startswith('a')", ".endswith('')", ".replace('a', 'b')", ".format(1)",
        ".join(['x', 'y'])", ".items()", ".keys()", ".get('role')", ".get('x', 1)", ".count('a')", ".find('b')", ".zfill(5)",
        ".center(9)", ".append(1)", ".pop()", ".update({})", "[0]", "[1:]", "[::-1]", "[-1]", "['role']", ".role", ".content",
    ];

    /// <summary>A random expression from a small grammar: valid syntax, hostile values (so cases get past the parser).</summary>
    private static string Expr(Random rng, int depth)
    {
        if (depth <= 0 || rng.Next(3) == 0) return Atoms[rng.Next(Atoms.Length)];
        return rng.Next(7) switch
        {
            0 or 1 => $"({Expr(rng, depth - 1)} {BinaryOps[rng.Next(BinaryOps.Length)]} {Expr(rng, depth - 1)})",
            2 => $"({Expr(rng, depth - 1)} | {Filters[rng.Next(Filters.Length)]})",
            3 => $"({Expr(rng, depth - 1)}){Methods[rng.Next(Methods.Length)]}",
            4 => $"({Expr(rng, depth - 1)} if {Expr(rng, depth - 1)} else {Expr(rng, depth - 1)})",
            5 => $"[{Expr(rng, depth - 1)}, {Expr(rng, depth - 1)}]",
            _ => $"(not {Expr(rng, depth - 1)})",
        };
    }

    /// <summary>A random statement built from generated expressions.</summary>
    private static string Statement(Random rng) => rng.Next(6) switch
    {
        0 => $"{{{{ {Expr(rng, 4)} }}}}",
        1 => $"{{% set v = {Expr(rng, 3)} %}}{{{{ v }}}}",
        2 => $"{{% for x in {Expr(rng, 2)} %}}{{{{ {Expr(rng, 2)} }}}}{{{{ x }}}}{{% endfor %}}",
        3 => $"{{% if {Expr(rng, 3)} %}}{{{{ {Expr(rng, 3)} }}}}{{% endif %}}",
        4 => $"{{% set ns = namespace(out='', n=0) %}}{{% for i in range({rng.Next(1, 2000)}) %}}{{% set ns.out = ns.out ~ {Expr(rng, 2)} %}}{{% endfor %}}{{{{ ns.out | length }}}}",
        _ => $"{{% macro f(a, b=1) %}}{{{{ {Expr(rng, 3)} }}}}{{% endmacro %}}{{{{ f({Expr(rng, 2)}) }}}}",
    };

    private static string Mutate(string source, IReadOnlyList<string> pool, Random rng)
    {
        var toks = Tokens(source);
        var rounds = 1 + rng.Next(3);
        for (var r = 0; r < rounds; r++)
        {
            if (toks.Count == 0) toks.Add(Dictionary[rng.Next(Dictionary.Length)]);
            var at = rng.Next(toks.Count);
            if (rng.Next(3) == 0)
            {
                // a generated statement between two tags (keeps the template parseable more often than not)
                var boundaries = Enumerable.Range(0, toks.Count).Where(i => toks[i] is "}}" or "-}}" or "%}" or "-%}").ToList();
                var pos = boundaries.Count == 0 ? toks.Count : boundaries[rng.Next(boundaries.Count)] + 1;
                toks.InsertRange(pos, Tokens(Statement(rng)));
                continue;
            }
            switch (rng.Next(10))
            {
                case 0: toks.RemoveAt(at); break;
                case 1: toks.RemoveRange(at, Math.Min(toks.Count - at, 1 + rng.Next(8))); break;
                case 2: toks.Insert(at, toks[rng.Next(toks.Count)]); break;
                case 3: (toks[at], toks[rng.Next(toks.Count)]) = (toks[rng.Next(toks.Count)], toks[at]); break;
                case 4 or 5: toks.Insert(at, Dictionary[rng.Next(Dictionary.Length)]); break;
                case 6: toks[at] = Dictionary[rng.Next(Dictionary.Length)]; break;
                case 7:
                    {
                        // splice a fragment of another template
                        var other = Tokens(pool[rng.Next(pool.Count)]);
                        if (other.Count == 0) break;
                        var from = rng.Next(other.Count);
                        toks.InsertRange(at, other.GetRange(from, Math.Min(other.Count - from, 1 + rng.Next(40))));
                        break;
                    }
                case 8:
                    {
                        // wrap a fragment in a construct (random nesting)
                        var len = Math.Min(toks.Count - at, 1 + rng.Next(20));
                        var inner = string.Concat(toks.GetRange(at, len));
                        toks.RemoveRange(at, len);
                        toks.InsertRange(at, Tokens(string.Format(Wrappers[rng.Next(Wrappers.Length)], inner)));
                        break;
                    }
                default:
                    {
                        // a random character, surrogate halves included
                        var c = rng.Next(5) switch { 0 => (char)rng.Next(0xD800, 0xE000), 1 => (char)rng.Next(0, 32), _ => (char)rng.Next(32, 127) };
                        toks.Insert(at, c.ToString());
                        break;
                    }
            }
        }
        return string.Concat(toks);
    }

    // ------------------------------------------------------------------ tests

    private static List<string> OwnSeeds() =>
        Directory.GetFiles(CorpusDir, "*.jinja").Order(StringComparer.Ordinal).Select(File.ReadAllText).ToList();

    private static List<string> Seeds()
    {
        var seeds = OwnSeeds();
        Assert.NotEmpty(seeds);
        if (TestData.Root is { } root && Directory.Exists(Path.Combine(root, "chat-templates")))
            seeds.AddRange(Directory.GetFiles(Path.Combine(root, "chat-templates"), "*.jinja", SearchOption.AllDirectories)
                .Order(StringComparer.Ordinal).Select(File.ReadAllText));
        return seeds;
    }

    public static TheoryData<string> Crashes()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(CorpusDir, "crashes"), "*.jinja").Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(f));
        return data;
    }

    /// <summary>Every input a fuzz run found misbehaving, kept as a regression case.</summary>
    [Theory]
    [MemberData(nameof(Crashes))]
    public void CrashRegression(string file)
    {
        var source = File.ReadAllText(Path.Combine(CorpusDir, "crashes", file));
        for (var i = 0; i < 8; i++)
        {
            var (_, problem) = Check(source, new Random(i));
            Assert.True(problem is null, $"{file} (context variant {i}): {problem}");
        }
    }

    [Fact]
    public void SeedCorpusBehaves()
    {
        var own = OwnSeeds().Count;
        foreach (var (source, i) in Seeds().Select((s, i) => (s, i)))
        {
            var (outcome, problem) = Check(source, new Random(i));
            Assert.True(problem is null, $"seed template {i}: {problem}\n--- input ---\n{source}");
            if (i < own) Assert.NotEqual(Outcome.ParseError, outcome); // our seeds are valid templates (mutations start from working ones)
        }
    }

    [Fact]
    public void MutatedTemplatesRenderOrFailCleanly()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SEED"), out var s) ? s : DefaultSeed;
        var seconds = double.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var secs) ? secs : 3;
        var pool = Seeds();
        var sw = Stopwatch.StartNew();
        var cases = 0;
        var outcomes = new int[Enum.GetValues<Outcome>().Length];
        for (; sw.Elapsed.TotalSeconds < seconds || cases < 50; cases++)
        {
            // each case has its own generator, so "seed S, case N" reproduces it alone
            var rng = new Random(unchecked(seed * 1_000_003 + cases));
            var input = Mutate(pool[rng.Next(pool.Count)], pool, rng);
            var (outcome, problem) = Check(input, rng);
            outcomes[(int)outcome]++;
            if (problem is not null)
            {
                var saved = Path.Combine(Path.GetTempPath(), $"jinja-fuzz-{seed}-{cases}.jinja");
                File.WriteAllText(saved, input, new UTF8Encoding(false));
                Assert.Fail($"fuzz seed {seed}, case {cases}: {problem}\ninput saved to {saved} (copy it to Fuzz/corpus/jinja/crashes/)\n--- input ---\n{input}");
            }
        }
        output.WriteLine($"jinja fuzz: seed {seed}, {cases} cases in {sw.Elapsed.TotalSeconds:F1} s: " +
            string.Join(", ", Enum.GetValues<Outcome>().Select(o => $"{o} {outcomes[(int)o]}")));
    }
}
