using System.Diagnostics;
using System.Text;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// `openweights info CORRUPT.gguf` in a child process (the CLI assembly the test project references): one line
/// `openweights: error: ...` on stderr, nothing that a terminal would interpret, exit code 1.
/// </summary>
public class GgufCorruptCliTests
{
    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h
        : Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p
        : "dotnet";

    private static (int Code, string Out, string Err) Info(string file)
    {
        var psi = new ProcessStartInfo(DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { typeof(OpenWeights.Cli.Cli).Assembly.Location, "info", file }) psi.ArgumentList.Add(a);
        psi.Environment.Remove("OPENWEIGHTS_DEBUG");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(entireProcessTree: true); Assert.Fail($"info {file} did not finish in 60 s"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A GGUF header by hand: magic, version 3, no tensors, one metadata entry with this key and a string value.</summary>
    private static byte[] OneKey(byte[] key, byte[] value)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write(0x46554747u); w.Write(3u); w.Write(0UL); w.Write(1UL);
        w.Write((ulong)key.Length); w.Write(key);
        w.Write(8u); w.Write((ulong)value.Length); w.Write(value);
        return ms.ToArray();
    }

    [Fact]
    public async Task Info_on_corrupt_gguf_files_prints_one_safe_line_and_exits_1()
    {
        using var dir = new TempDir();
        var seed = File.ReadAllBytes(FormatFuzz.Seeds("gguf")[0]);
        var (fields, headerEnd) = GgufFuzzTests.Fields(seed);
        var cases = new Dictionary<string, byte[]>
        {
            ["truncated.gguf"] = seed[..(headerEnd / 2)],
            ["bad-magic.gguf"] = [.. "GGML"u8, .. seed.AsSpan(4)],
            ["huge-count.gguf"] = WithU64(seed, fields.First(f => f.Kind == FieldKind.Count).Offset, ulong.MaxValue),
            ["huge-string.gguf"] = WithU64(seed, fields.First(f => f.Kind == FieldKind.Length).Offset, 1UL << 62),
            // a duplicate key made of 9 KB with terminal escapes: the message must quote, escape and cut it
            ["hostile-key.gguf"] = DuplicateKey(Encoding.UTF8.GetBytes("\u001b]0;owned\u0007\u001b[2J\r\n" + new string('k', 9000))),
        };
        foreach (var (name, bytes) in cases) File.WriteAllBytes(dir.File(name), bytes);
        // one child process per file, started together: the wall time is about one start-up
        var runs = await Task.WhenAll(cases.Keys.Select(n => Task.Run(() => (Name: n, Result: Info(dir.File(n))))));
        foreach (var (name, (code, stdout, stderr)) in runs)
        {
            Assert.True(code == 1, $"{name}: exit {code}, stderr {stderr}");
            Assert.Equal("", stdout);
            var lines = stderr.TrimEnd('\n').Split('\n');
            Assert.True(lines.Length == 1, $"{name}: {lines.Length} lines: {stderr[..Math.Min(400, stderr.Length)]}");
            Assert.StartsWith("openweights: error: ", lines[0]);
            Assert.DoesNotContain("internal error", lines[0]);
            Assert.DoesNotContain('\u001b', lines[0]);
            Assert.DoesNotContain('\r', lines[0]);
            Assert.True(lines[0].Length < 400, $"{name}: a {lines[0].Length}-character line");
        }
    }

    private static byte[] WithU64(byte[] b, int offset, ulong v)
    {
        var c = (byte[])b.Clone();
        BitConverter.GetBytes(v).CopyTo(c, offset);
        return c;
    }

    private static byte[] DuplicateKey(byte[] key)
    {
        var one = OneKey(key, "v"u8.ToArray());
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write(0x46554747u); w.Write(3u); w.Write(0UL); w.Write(2UL);
        for (int i = 0; i < 2; i++) w.Write(one.AsSpan(24));
        return ms.ToArray();
    }
}
