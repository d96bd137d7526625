using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Cli;

/// <summary>
/// Every supported architecture (<see cref="Architectures.Supported"/>) with its tiny preset from <see cref="SynthPreset.All"/>:
/// a family added to the table is covered by the family tests without a change here, and one without a tiny preset fails.
/// </summary>
public static class TinyFamilies
{
    private static readonly string Dir = Path.Combine(Path.GetTempPath(), "ow-family-tests-" + Environment.ProcessId);
    private static readonly ConcurrentDictionary<string, Lazy<string>> files = new();

    /// <summary>The names of every supported architecture, as theory data.</summary>
    public static TheoryData<string> All() => new(Architectures.Supported.Select(a => a.Name));

    /// <summary>The architecture's tiny test preset ("tiny-{arch}", else any "tiny-" preset of it); fails the test when there is none.</summary>
    public static SynthPreset PresetFor(string arch)
    {
        var tiny = SynthPreset.All.Where(p => p.Architecture == arch && p.Name.StartsWith("tiny-", StringComparison.Ordinal)).ToList();
        if (tiny.Count == 0) Assert.Fail($"architecture {arch} is supported but SynthPreset.All has no tiny preset (\"tiny-{arch}\") for it");
        return tiny.FirstOrDefault(p => p.Name == "tiny-" + arch) ?? tiny[0];
    }

    /// <summary>The architecture's tiny preset as a q8_0 GGUF, written once per test run (in-process).</summary>
    public static string Model(string arch) => files.GetOrAdd(arch, a => new Lazy<string>(() =>
    {
        Directory.CreateDirectory(Dir);
        var preset = PresetFor(a);
        var path = Path.Combine(Dir, preset.Name + ".gguf");
        var tmp = path + "." + Guid.NewGuid().ToString("N")[..8];
        SyntheticModel.Write(preset, SynthType.Parse("q8_0"), tmp, threads: 2);
        File.Move(tmp, path, overwrite: true);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } };
        return path;
    })).Value;

    /// <summary>The token that closes an assistant turn in the model's chat template (the first marker after the reply), and its text.</summary>
    public static (int Id, string Text) TurnEnd(string model)
    {
        using var m = DecoderModel.Load(model);
        var tok = Tokenizer.FromGguf(m.Source);
        string rendered = new ChatFormatter(tok).Render([ChatTurn.User("hi"), ChatTurn.Assistant("hello")], addGenerationPrompt: false);
        string end = Regex.Match(rendered[(rendered.IndexOf("hello", StringComparison.Ordinal) + 5)..], @"<\|?[a-z_]+\|?>").Value;
        return (tok.TokenToId(end), end);
    }

    /// <summary>Prompt tokens of one user message through the model's chat template (as run / serve / the chat client build them).</summary>
    public static int ChatPromptTokens(string model, string text)
    {
        using var m = DecoderModel.Load(model);
        return new ChatFormatter(Tokenizer.FromGguf(m.Source)).EncodeConversation([ChatTurn.User(text)]).Length;
    }
}

/// <summary>The built CLI as a separate process (what a user runs), with a time limit.</summary>
public static class CliProcess
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(RunCommandTests.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(typeof(OpenWeights.Cli.Cli).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi)!;
        proc.StandardInput.Close();
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var stderr = proc.StandardError.ReadToEndAsync();
        if (!proc.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            proc.Kill(entireProcessTree: true);
            Assert.Fail($"openweights {string.Join(' ', args)} did not end within 90 s");
        }
        proc.WaitForExit();
        return (proc.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}

/// <summary>Issue 12 from the outside: each family's tiny model written, described and run by the CLI as processes.</summary>
public class FamilyCliTests
{
    private static int Stat(string err, string what) =>
        Regex.Match(err, what + @" (\d+) tokens") is { Success: true } m ? int.Parse(m.Groups[1].Value) : throw new Xunit.Sdk.XunitException($"no '{what} N tokens' in: {err}");

    [Fact]
    public void EverySupportedArchitectureHasATinyPreset()
    {
        foreach (var a in Architectures.Supported)
        {
            var p = TinyFamilies.PresetFor(a.Name);
            Assert.Equal(0, p.Dim % 256); // every quant type applies
            Assert.InRange(p.Layers, 2, 6);
            Assert.Equal(1024, p.VocabSize);
        }
    }

    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public void SynthAndInfoAsProcesses(string arch)
    {
        var preset = TinyFamilies.PresetFor(arch);
        using var dir = new TempDir();
        string file = dir.File(preset.Name + ".gguf");
        var s = CliProcess.Run("synth", "--preset", preset.Name, "-q", "q8_0", "-o", file, "--threads", "2", "--quiet");
        Assert.True(s.Code == 0, s.Err);
        // the same bytes as the library's writer (seed 42): the file the other family tests run
        Assert.True(File.ReadAllBytes(file).AsSpan().SequenceEqual(File.ReadAllBytes(TinyFamilies.Model(arch))), "synth and SyntheticModel.Write differ");

        var info = CliProcess.Run("info", file);
        Assert.True(info.Code == 0, info.Err);
        Assert.Contains($"architecture   {arch} ({Architectures.Get(arch).Description})", info.Out);
        Assert.Contains($"layers         {preset.Layers}, embedding {preset.Dim}, feed-forward {preset.FfnDim}", info.Out);
        Assert.Contains(preset.Architecture == "deepseek2" // latent attention: no KV heads, a cached latent
            ? $"latent (MLA): {preset.Heads} heads"
            : $"{preset.Heads} heads, {preset.KvHeads} KV heads, head dim {preset.HeadDim}", info.Out);
        Assert.Contains("chat template: yes", info.Out);
    }

    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public void RunAndRawRunAsProcesses(string arch)
    {
        string file = TinyFamilies.Model(arch);
        // sampled with a seed: a greedy random-weight model may repeat one reserved (control, never printed) token
        string[] sampling = ["-n", "8", "--temp", "0.8", "--seed", "7", "--threads", "2", "--stats"];
        // run applies the chat template: its prompt is the template's rendering of one user turn
        const string text = "hello";
        var run = CliProcess.Run(["run", file, text, .. sampling]);
        Assert.True(run.Code == 0, run.Err);
        Assert.True(run.Out.Trim().Length > 0, $"{arch}: run printed no text; stderr: {run.Err}");
        Assert.Equal(TinyFamilies.ChatPromptTokens(file, text), Stat(run.Err, "prompt"));
        Assert.InRange(Stat(run.Err, "generated"), 1, 8);
        Assert.DoesNotContain("error", run.Err);

        var raw = CliProcess.Run(["run", file, "Once upon a time", "--raw", .. sampling]);
        Assert.True(raw.Code == 0, raw.Err);
        Assert.True(raw.Out.Trim().Length > 0, $"{arch}: run --raw printed no text; stderr: {raw.Err}");
        int rawTokens;
        using (var m = DecoderModel.Load(file)) rawTokens = Tokenizer.FromGguf(m.Source).Encode("Once upon a time", addSpecial: true).Length;
        Assert.Equal(rawTokens, Stat(raw.Err, "prompt"));
        Assert.InRange(Stat(raw.Err, "generated"), 1, 8);
    }

    [Fact]
    public void FitMeasureOfTheSmallestNewFamilyCatalogModelRunsAsAProcess()
    {
        // gemma-3-270m-it: a gemma3 model of the exact shape (262k vocabulary, 18 layers) written, measured and deleted
        var r = CliProcess.Run("fit", "gemma-3-270m-it", "--measure", "--measure-prompt", "8", "--measure-tokens", "2", "-q", "Q8_0", "-t", "2", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var m = doc.RootElement.GetProperty("measurement");
        Assert.Equal("synthetic", m.GetProperty("source").GetString());
        Assert.InRange(m.GetProperty("file_bytes").GetInt64(), 250_000_000, 350_000_000); // 268M parameters at 8.5 bits, embedding included
        Assert.True(m.GetProperty("prefill_tokens_per_second").GetDouble() > 0);
        Assert.True(m.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.True(m.GetProperty("peak_rss_bytes").GetInt64() > 0);
    }
}
