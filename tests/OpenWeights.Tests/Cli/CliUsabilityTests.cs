using System.Reflection;
using System.Text.Json;
using OpenWeights.Cli;
using OpenWeights.Cli.Commands;
using OpenWeights.Formats.Gguf;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Formats;
using static OpenWeights.Tests.Cli.CliTests;

namespace OpenWeights.Tests.Cli;

/// <summary>Version and packaging: one version string, a licence, metadata from one place.</summary>
public class CliVersionTests
{
    [Fact]
    public void VersionCommandAndVersionOptionPrintTheSameInformationalVersion()
    {
        var (code, outp, err) = Run("version");
        Assert.True(code == 0, err);
        var (code2, outp2, err2) = Run("--version");
        Assert.True(code2 == 0, err2);

        string informational = typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        string expected = informational.Split('+')[0];
        Assert.Equal(expected, VersionCommand.Text);
        Assert.Equal(expected, outp2.Trim());
        Assert.StartsWith($"openweights {expected} (", outp);
        // the assembly version is the same string, not the SDK's 1.0.0.0
        Assert.Equal(expected, typeof(VersionCommand).Assembly.GetName().Version!.ToString(3));

        (code, outp, _) = Run("version", "--json");
        Assert.Equal(0, code);
        Assert.Equal(expected, JsonDocument.Parse(outp).RootElement.GetProperty("version").GetString());
    }

    [Fact]
    public void AssembliesCarryThePackageMetadataAndTheRepositoryHasTheLicence()
    {
        var cli = typeof(VersionCommand).Assembly;
        Assert.Equal("OpenWeights", cli.GetCustomAttribute<AssemblyCompanyAttribute>()!.Company);
        Assert.Contains("OpenWeights contributors", cli.GetCustomAttribute<AssemblyCopyrightAttribute>()!.Copyright);
        foreach (var a in new[] { cli, typeof(GgufWriter).Assembly, typeof(OpenWeights.Tensors.Quant.GgmlType).Assembly })
        {
            var d = a.GetCustomAttribute<AssemblyDescriptionAttribute>()?.Description;
            Assert.False(string.IsNullOrWhiteSpace(d), a.GetName().Name);
            Assert.NotEqual("Package Description", d);
            Assert.Equal(cli.GetName().Version, a.GetName().Version);
        }

        var root = RepoRoot();
        var licence = File.ReadAllText(Path.Combine(root, "LICENSE"));
        Assert.Contains("Apache License", licence);
        Assert.Contains("Version 2.0, January 2004", licence);
        Assert.Contains("END OF TERMS AND CONDITIONS", licence);
        Assert.Contains("Copyright 2026 OpenWeights contributors", licence);
        var props = File.ReadAllText(Path.Combine(root, "Directory.Build.props"));
        Assert.Contains("<PackageLicenseExpression>Apache-2.0</PackageLicenseExpression>", props);
        Assert.Contains("<PackageReadmeFile>README.md</PackageReadmeFile>", props);
    }

    internal static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx"))) return d.FullName;
        throw new InvalidOperationException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>Parse errors: the error first, the closest option, one usage line; no help page.</summary>
public class CliParseErrorTests
{
    private static string[] Lines(string s) => s.Trim().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();

    [Fact]
    public void AValueOutsideAnOptionsChoicesIsOneLine()
    {
        var (code, _, err) = Run("serve", "m.gguf", "--log-format", "xml");
        Assert.Equal(1, code);
        var lines = Lines(err);
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("openweights: error: Argument 'xml' not recognized. must be one of 'text'", lines[0]);
        Assert.StartsWith("usage: openweights serve", lines[1]);
    }

    [Fact]
    public void MistypedOptionSaysTheErrorTheClosestOptionAndOneUsageLine()
    {
        var (code, outp, err) = Run("run", "m.gguf", "--max-token", "5");
        Assert.Equal(1, code);
        Assert.Equal("", outp);
        var lines = Lines(err);
        Assert.Equal(2, lines.Length);
        Assert.Equal("openweights: error: unknown option --max-token (did you mean --max-tokens?)", lines[0]);
        Assert.Equal("usage: openweights run MODEL [PROMPT] [options]; see `openweights run --help`", lines[1]);
    }

    [Fact]
    public void AMistypedOptionIsNotTakenAsThePrompt()
    {
        // System.CommandLine alone binds "--max-token" to PROMPT here and would run the model on it
        var (code, outp, err) = Run("run", "m.gguf", "--max-token");
        Assert.Equal(1, code);
        Assert.Equal("", outp);
        Assert.Equal("openweights: error: unknown option --max-token (did you mean --max-tokens?)", Lines(err)[0]);
        // after `--` it is a value: the run goes on to the model (absent here)
        (code, _, err) = Run("run", "m.gguf", "--", "--max-token");
        Assert.Equal(1, code);
        Assert.Contains("model file not found", err);
    }

    [Fact]
    public void HiddenOldSpellingsCountForSuggestionsButTheCurrentNameIsSuggested()
    {
        var (code, _, err) = Run("info", "m.gguf", "--contxt", "5");
        Assert.Equal(1, code);
        Assert.Contains("unknown option --contxt (did you mean --ctx?)", err);
        (code, _, err) = Run("synth", "--preset", "tiny-llama", "-o", "x.gguf", "--quan", "q8_0");
        Assert.Equal(1, code);
        Assert.Contains("did you mean --quant?", err);
    }

    [Fact]
    public void FarFromAnyOptionSuggestsNothing()
    {
        var (code, _, err) = Run("info", "m.gguf", "--zzzzzzzz");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: unknown option --zzzzzzzz", Lines(err)[0]);
    }

    [Fact]
    public void UnknownCommandSuggestsTheClosest()
    {
        var (code, _, err) = Run("rn", "m.gguf");
        Assert.Equal(1, code);
        var lines = Lines(err);
        Assert.Equal("openweights: error: unknown command 'rn' (did you mean run?)", lines[0]);
        Assert.Equal("usage: openweights COMMAND [options]; see `openweights --help`", lines[1]);
    }

    [Theory]
    [InlineData("--temp expects a number, not 'abc'", "run", "m.gguf", "hi", "--temp", "abc")]
    [InlineData("--max-tokens expects a whole number, not '1.5'", "run", "m.gguf", "hi", "-n", "1.5")]
    [InlineData("--threads expects a whole number, not 'many'", "bench", "m.gguf", "--threads", "many")] // its validator reads the value
    [InlineData("--reps expects a whole number, not 'x'", "bench", "m.gguf", "--reps", "x")]
    [InlineData("--temp needs a value (a number)", "run", "m.gguf", "hi", "--temp")]
    public void TypeErrorsSayWhatTheOptionExpects(string expected, params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: " + expected, Lines(err)[0]);
        Assert.DoesNotContain("System.", err);
        Assert.Equal(2, Lines(err).Length);
    }

    [Fact]
    public void MissingArgumentsAndRequiredOptionsAreNamed()
    {
        var (code, _, err) = Run("tokenize", "m.gguf");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: missing TEXT", Lines(err)[0]);
        (code, _, err) = Run("synth", "--preset", "tiny-llama");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: missing required option --output", Lines(err)[0]);
        Assert.Equal("usage: openweights synth [options]; see `openweights synth --help`", Lines(err)[1]);
    }

    [Fact]
    public void LoraScaleThatIsNotANumberIsReportedAsTheScale()
    {
        var e = Assert.Throws<OpenWeightsException>(() => LoraSpec.Parse("adapter.gguf:abc"));
        Assert.Contains("scale 'abc' is not a number", e.Message);
        Assert.DoesNotContain("not found", e.Message);
        // still paths: Windows drive letters, and an existing file whose name holds a colon
        Assert.Equal(new LoraSpec("C:\\x\\a.gguf", 1f), LoraSpec.Parse("C:\\x\\a.gguf"));
        using var dir = new TempDir();
        var odd = dir.File("odd:name");
        File.WriteAllText(odd, "");
        Assert.Equal(new LoraSpec(odd, 1f), LoraSpec.Parse(odd));

        var model = dir.File("m.gguf");
        File.WriteAllText(model, "");
        var (code, _, err) = Run("merge", model, dir.File("adapter.gguf") + ":abc", "-o", dir.File("out.gguf"));
        Assert.Equal(1, code);
        Assert.Contains("the scale 'abc' is not a number", err);
        Assert.Single(Lines(err));
    }
}

/// <summary>Help text: named `openweights`, defaults shown once, old spellings hidden but parsed.</summary>
public class CliHelpTests
{
    [Fact]
    public void HelpNamesTheToolOpenweightsAndShowsTheThreadDefaultOnce()
    {
        var (code, outp, err) = Run("run", "--help");
        Assert.True(code == 0, err);
        Assert.Contains("openweights run MODEL [PROMPT] [options]", outp);
        Assert.DoesNotContain("OpenWeights.Cli", outp);
        var threads = outp.Split('\n').Single(l => l.Contains("--threads"));
        Assert.Contains("[default: all cores]", threads);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(threads, "default"));
        Assert.DoesNotContain("--context", outp);
        Assert.Contains("-c, --ctx", outp);
    }

    [Fact]
    public void NoArgumentsListsTheCommands()
    {
        var (code, outp, _) = Run();
        Assert.Equal(0, code);
        Assert.Contains("openweights COMMAND [options]", outp);
        Assert.Contains("synth", outp);
        Assert.DoesNotContain("OpenWeights.Cli", outp);
    }

    [Theory]
    [InlineData("synth", "-q, --quant", "--type")]
    [InlineData("convert", "-q, --quant", "--type")]
    [InlineData("merge", "-q, --quant", "--type")]
    [InlineData("convert", "-o, --output", "--out,")]
    [InlineData("bench", "--reps", "-r,")]
    [InlineData("info", "-c, --ctx", "--context")]
    public void NewSpellingIsShownAndTheOldOneHidden(string command, string shown, string hidden)
    {
        var (code, outp, _) = Run(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains(shown, outp);
        Assert.DoesNotContain(hidden, outp);
    }

    [Theory]
    [InlineData("--quant", "synth --preset tiny-llama --type q4_0 --out x.gguf")]
    [InlineData("--quant", "synth --preset tiny-llama -q q4_0 -o x.gguf")]
    [InlineData("--quant", "synth --preset tiny-llama --quant q4_0 --output x.gguf")]
    [InlineData("--quant", "convert dir --type q4_0 --out x.gguf")]
    [InlineData("--quant", "convert dir -q q4_0 -o x.gguf")]
    [InlineData("--quant", "merge m.gguf a.gguf --type q4_0 --out x.gguf")]
    [InlineData("--quant", "merge m.gguf a.gguf -q q4_0 -o x.gguf")]
    [InlineData("--reps", "bench m.gguf -r 4")]
    [InlineData("--reps", "bench m.gguf --reps 4")]
    [InlineData("--ctx", "info m.gguf --context 4")]
    [InlineData("--ctx", "info m.gguf -c 4")]
    [InlineData("--ctx", "run m.gguf hi --context 4")]
    [InlineData("--ctx", "run m.gguf hi --ctx 4")]
    [InlineData("--ctx", "chat m.gguf --context 4")]
    [InlineData("--ctx", "serve m.gguf -c 4")]
    public void OldAndNewSpellingsParseToTheSameOption(string option, string line)
    {
        var result = OpenWeights.Cli.Cli.BuildRoot().Parse(line.Split(' '));
        Assert.Empty(result.Errors);
        object? v = option == "--quant" ? result.GetValue<string>(option) : (object?)(option == "--ctx" && line.StartsWith("info") ? result.GetValue<int?>(option) : result.GetValue<int>(option));
        Assert.Equal(option == "--quant" ? "q4_0" : (object)4, v);
        if (line.Contains("x.gguf")) Assert.Equal("x.gguf", result.GetValue<string>("--output"));
    }
}

/// <summary>Progress of long writes: on stderr, lines when not a terminal, \r when it is; stdout stays the result.</summary>
public class CliProgressTests
{
    [Fact]
    public void SynthReportsProgressOnStderrAndOnlyTheResultOnStdout()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, outp, err) = Run("synth", "--preset", "tiny-llama", "-q", "q8_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        Assert.Single(outp.Trim().Split('\n'));
        Assert.StartsWith("wrote ", outp);
        var lines = err.Trim().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.True(lines.Length >= 2, err);
        Assert.All(lines, l => Assert.StartsWith("writing tiny.gguf: ", l));
        Assert.Matches(@"tensor 1/\d+, [\d.]+/[\d.]+ MB, 0%$", lines[0]);
        Assert.EndsWith("MB, 100%", lines[^1]);
        Assert.DoesNotContain('\r', err);

        (code, outp, err) = Run("synth", "--preset", "tiny-llama", "-o", path, "--threads", "1", "--quiet");
        Assert.True(code == 0, err);
        Assert.Equal("", err);
        Assert.StartsWith("wrote ", outp);
    }

    [Fact]
    public void ConvertAndMergeReportProgressOnStderr()
    {
        using var dir = new TempDir();
        string gguf = dir.File("base.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), gguf, threads: 1);
        HfFixture.Write(gguf, hf);
        var (code, outp, err) = Run("convert", hf, "-o", dir.File("c.gguf"), "-q", "q8_0", "-t", "1");
        Assert.True(code == 0, err);
        Assert.StartsWith("wrote ", outp);
        Assert.Single(outp.Trim().Split('\n'));
        Assert.StartsWith("writing c.gguf: tensor 1/", err);
        Assert.EndsWith("100%", err.Trim());

        var lora = dir.File("a.gguf");
        using (var m = DecoderModel.Load(gguf)) GgufLoraAdapter.Write(OpenWeights.Tests.Lora.LoraTestUtil.Random(m.Config), lora, m.Config);
        (code, outp, err) = Run("merge", gguf, lora, "-o", dir.File("m.gguf"), "--json");
        Assert.True(code == 0, err);
        Assert.Equal(14, JsonDocument.Parse(outp).RootElement.GetProperty("merged_tensors").GetInt32()); // stdout is only the JSON
        Assert.StartsWith("writing m.gguf: tensor 1/", err);
        Assert.EndsWith("100%", err.Trim());
        (code, _, err) = Run("merge", gguf, lora, "-o", dir.File("m2.gguf"), "--quiet");
        Assert.True(code == 0, err);
        Assert.Equal("", err);
    }

    [Fact]
    public void WriterReportsEveryTensorAndTheEnd()
    {
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.AddTensor("a", [8], new float[8]);
        w.AddTensor("b", [2_000_000], new float[2_000_000]); // 8 MB: reported inside the tensor too
        var seen = new List<GgufWriteProgress>();
        w.Progress = new SyncProgress(seen.Add);
        w.WriteTo(new MemoryStream());
        Assert.Equal(0, seen[0].Tensor);
        Assert.Equal("a", seen[0].Name);
        Assert.Contains(seen, p => p.Name == "b" && p.BytesWritten > p.BytesTotal / 2 && !p.Completed);
        Assert.True(seen[^1].Completed);
        Assert.Equal(seen[^1].BytesTotal, seen[^1].BytesWritten);
        Assert.Equal(1.0, seen[^1].Fraction);
        for (int i = 1; i < seen.Count; i++) Assert.True(seen[i].BytesWritten >= seen[i - 1].BytesWritten);
    }

    [Fact]
    public void OnATerminalTheLineIsRedrawnInPlaceAndErasedAtTheEnd()
    {
        var err = new StringWriter();
        var line = new ProgressLine(err, interactive: true, "writing x.gguf");
        line.Report(new GgufWriteProgress(0, 10, "a", 0, 1000));
        line.Report(new GgufWriteProgress(10, 10, null, 1000, 1000));
        string s = err.ToString();
        Assert.StartsWith("\rwriting x.gguf: tensor 1/10, 0.0/0.0 MB, 0%", s);
        Assert.DoesNotContain('\n', s);
        Assert.EndsWith("\r", s);

        var log = new StringWriter();
        var plain = new ProgressLine(log, interactive: false, "writing x.gguf");
        for (int i = 0; i <= 100; i++) plain.Report(new GgufWriteProgress(Math.Min(i, 9), 10, "t", i * 10, 1000));
        plain.Report(new GgufWriteProgress(10, 10, null, 1000, 1000));
        var lines = log.ToString().Trim().Split('\n');
        Assert.InRange(lines.Length, 10, 12); // one per 10%, not one per report
        Assert.EndsWith("100%", lines[^1].TrimEnd('\r'));
    }

    private sealed class SyncProgress(Action<GgufWriteProgress> report) : IProgress<GgufWriteProgress>
    {
        public void Report(GgufWriteProgress value) => report(value);
    }
}

/// <summary>`info` estimates memory at the model's own context, not at 4k.</summary>
public class InfoContextTests
{
    [Fact]
    public void InfoEstimatesMemoryAtTheTrainedContextWhenItIsShorterThanTheDefault()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, _, err) = Run("synth", "--preset", "tiny-qwen2", "-o", path, "--threads", "1", "--quiet");
        Assert.True(code == 0, err);
        // tiny-qwen2: 2 layers, 2 KV heads x 64 = kv dim 128, trained context 2048
        (code, var outp, err) = Run("info", path, "--json");
        Assert.True(code == 0, err);
        var mem = JsonDocument.Parse(outp).RootElement.GetProperty("memory");
        Assert.Equal(1, mem.GetArrayLength());
        Assert.Equal(2048, mem[0].GetProperty("context").GetInt32());
        Assert.Equal("trained", mem[0].GetProperty("basis").GetString());
        Assert.Equal(2L * 2 * 128 * 2048 * 2, mem[0].GetProperty("kv_cache_bytes").GetInt64()); // F16 (the default)

        (code, outp, _) = Run("info", path);
        Assert.Equal(0, code);
        Assert.Contains("at 2048 tokens (the trained context)", outp);
        Assert.DoesNotContain("4096", outp);

        (code, outp, _) = Run("info", path, "--ctx", "100", "--json");
        Assert.Equal(0, code);
        mem = JsonDocument.Parse(outp).RootElement.GetProperty("memory");
        Assert.Equal(1, mem.GetArrayLength());
        Assert.Equal(100, mem[0].GetProperty("context").GetInt32());
        Assert.Equal("requested", mem[0].GetProperty("basis").GetString());
        Assert.Equal(2L * 2 * 128 * 100 * 2, mem[0].GetProperty("kv_cache_bytes").GetInt64());

        (code, outp, _) = Run("info", path, "-c", "100000", "--json"); // run caps --ctx at the trained context; so does info
        Assert.Equal(0, code);
        Assert.Equal(2048, JsonDocument.Parse(outp).RootElement.GetProperty("memory")[0].GetProperty("context").GetInt32());
    }

    [Fact]
    public void InfoShowsTheDefaultAndTheTrainedContextForALongContextModel()
    {
        using var dir = new TempDir();
        var tiny = dir.File("tiny.gguf");
        var (code, _, err) = Run("synth", "--preset", "tiny-llama", "-o", tiny, "--threads", "1", "--quiet");
        Assert.True(code == 0, err);
        // the same model with an 8192-token trained context
        var path = dir.File("long.gguf");
        using (var src = GgufFile.Open(tiny)) GgufWriter.CopyOf(src).Set("llama.context_length", 8192u).Write(path);
        (code, var outp, err) = Run("info", path, "--json");
        Assert.True(code == 0, err);
        var mem = JsonDocument.Parse(outp).RootElement.GetProperty("memory");
        Assert.Equal(2, mem.GetArrayLength());
        Assert.Equal(CommonOptions.DefaultContext, mem[0].GetProperty("context").GetInt32());
        Assert.Equal("default", mem[0].GetProperty("basis").GetString());
        Assert.Equal(8192, mem[1].GetProperty("context").GetInt32());
        Assert.Equal("trained", mem[1].GetProperty("basis").GetString());
        Assert.Equal(2 * mem[0].GetProperty("kv_cache_bytes").GetInt64(), mem[1].GetProperty("kv_cache_bytes").GetInt64());
    }
}
