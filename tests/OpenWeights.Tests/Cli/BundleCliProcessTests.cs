using System.Diagnostics;
using System.Security.Cryptography;
using OpenWeights.Hub;
using OpenWeights.Tests.Chat;
using OpenWeights.Tests.Hub;

namespace OpenWeights.Tests.Cli;

/// <summary>
/// The `openweights` executable end to end, each step a child process with its own HF_HUB_CACHE: keygen, export a signed
/// .tar from one store, import it into an empty store with --trust-key, then `run` the imported model by its repository id;
/// a tampered bundle is one error line and exit code 1.
/// </summary>
public class BundleCliProcessTests
{
    private static (int Code, string Out, string Err) Cli(string hubCache, params string[] args)
    {
        var psi = new ProcessStartInfo(RunCommandTests.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(typeof(OpenWeights.Cli.Cli).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["HF_HUB_CACHE"] = hubCache;
        psi.Environment["HF_HUB_OFFLINE"] = "1";
        psi.Environment.Remove("OPENWEIGHTS_DEBUG");
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(entireProcessTree: true); Assert.Fail($"{string.Join(' ', args)} did not finish in 120 s"); }
        return (p.ExitCode, o.Result, e.Result);
    }

    [Fact]
    public void ExportImportThenRunTheImportedModel()
    {
        using var dir = new TempDir();
        string srcHub = dir.File("src-hub"), dstHub = dir.File("dst-hub");
        BundleTests.AddRepo(new HubStore(srcHub), "acme/tiny-qwen", "1111111111111111111111111111111111111111",
            new() { ["tiny-qwen2-Q8_0.gguf"] = File.ReadAllBytes(TinyModels.Qwen) });

        var (code, o, e) = Cli(srcHub, "keygen", "-o", dir.File("key.pem"));
        Assert.True(code == 0, e);
        (code, o, e) = Cli(srcHub, "export", "acme/tiny-qwen", "-o", dir.File("b.tar"), "--sign-key", dir.File("key.pem"));
        Assert.True(code == 0, e);
        Assert.Contains("signed", o);
        Assert.True(File.Exists(dir.File("b.tar")));

        (code, o, e) = Cli(dstHub, "import", dir.File("b.tar"), "--trust-key", dir.File("key.pem.pub"));
        Assert.True(code == 0, e);
        Assert.Contains("signature verified", o);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(TinyModels.Qwen))),
            Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(ModelResolver.Resolve("acme/tiny-qwen", new HubSettings { CacheDir = dstHub })))));

        (code, o, e) = Cli(dstHub, "run", "acme/tiny-qwen", "Hello", "-n", "3", "--temp", "0", "--threads", "1");
        Assert.True(code == 0, e);
        Assert.True(o.Length > 0, "run printed nothing");

        // a flipped byte in the tar's model data: one line, exit 1, naming the file; the store is unchanged
        var bytes = File.ReadAllBytes(dir.File("b.tar"));
        bytes[bytes.Length / 2] ^= 0x20;
        File.WriteAllBytes(dir.File("bad.tar"), bytes);
        string before = BundleTests.Tree(dstHub);
        (code, o, e) = Cli(dstHub, "import", dir.File("bad.tar"));
        Assert.Equal(1, code);
        var lines = e.TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("openweights: error: SHA-256 mismatch", lines[0]);
        Assert.Contains("tiny-qwen2-Q8_0.gguf", lines[0]);
        Assert.Equal(before, BundleTests.Tree(dstHub));
    }
}
