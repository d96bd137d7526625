using System.Text.Json.Nodes;
using OpenWeights.Audit;

namespace OpenWeights.Tests.Audit;

/// <summary>The audit log's hash chain: intact logs pass, and each kind of tampering is caught at the line where it happened.</summary>
public class AuditChainTests
{
    private static readonly AuditModel Model = new("/models/m.gguf", new string('a', 64), [], null, "f16/f16", 4096);

    /// <summary>A log of <paramref name="lines"/> lines written through <see cref="AuditLog"/>; returns its lines.</summary>
    private static string[] Write(string path, int lines)
    {
        using (var log = new AuditLog(path, Model, content: false))
            for (int i = 0; i < lines; i++) log.Append(new JsonObject { ["i"] = i, ["text"] = $"generation {i} \"quoted\" é" });
        return File.ReadAllLines(path);
    }

    private static AuditChain.Result VerifyLines(string path, IEnumerable<string> lines)
    {
        File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")));
        return AuditChain.Verify(path);
    }

    [Fact]
    public void An_intact_log_of_10000_lines_verifies_and_reports_its_last_hash()
    {
        using var dir = new TempDir();
        var lines = Write(dir.File("a.log"), 10_000);
        var r = AuditChain.Verify(dir.File("a.log"));
        Assert.True(r.Ok, r.Problem);
        Assert.Equal(10_000, r.Lines);
        Assert.Equal(AuditChain.HashOf(lines[^1]), r.LastHash);
        Assert.Equal(AuditChain.Genesis, AuditChain.PrevOf(lines[0]));
    }

    [Fact]
    public void A_deleted_line_is_reported_at_the_line_after_the_gap()
    {
        using var dir = new TempDir();
        var lines = Write(dir.File("a.log"), 50).ToList();
        lines.RemoveAt(19); // line 20
        var r = VerifyLines(dir.File("b.log"), lines);
        Assert.False(r.Ok);
        Assert.Equal(20, r.BadLine);
        Assert.Contains("deleted, inserted or reordered", r.Problem);
    }

    [Fact]
    public void A_deleted_first_line_is_reported_at_line_1()
    {
        using var dir = new TempDir();
        var lines = Write(dir.File("a.log"), 5);
        var r = VerifyLines(dir.File("b.log"), lines.Skip(1));
        Assert.Equal((false, 1L), (r.Ok, r.BadLine));
    }

    [Fact]
    public void Reordered_lines_are_reported()
    {
        using var dir = new TempDir();
        var lines = Write(dir.File("a.log"), 50);
        (lines[30], lines[31]) = (lines[31], lines[30]);
        var r = VerifyLines(dir.File("b.log"), lines);
        Assert.Equal((false, 31L), (r.Ok, r.BadLine));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(24)]
    [InlineData(49)] // the last line: only its own hash can tell
    public void An_edited_line_is_reported_at_that_line(int index)
    {
        using var dir = new TempDir();
        var lines = Write(dir.File("a.log"), 50);
        lines[index] = lines[index].Replace($"generation {index} ", $"generation {index + 1000} ");
        var r = VerifyLines(dir.File("b.log"), lines);
        Assert.Equal((false, index + 1L), (r.Ok, r.BadLine));
        Assert.Contains("edited", r.Problem);
    }

    [Fact]
    public void A_truncated_last_line_is_reported_and_a_new_writer_refuses_to_continue_after_it()
    {
        using var dir = new TempDir();
        string path = dir.File("a.log");
        Write(path, 10);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^30]); // a write cut short
        var r = AuditChain.Verify(path);
        Assert.Equal((false, 10L), (r.Ok, r.BadLine));
        Assert.Contains("truncated", r.Problem);
        var e = Assert.Throws<OpenWeightsException>(() => new AuditLog(path, Model, content: false));
        Assert.Contains("cut short", e.Message);
    }

    [Fact]
    public void Reopening_a_log_continues_its_chain()
    {
        using var dir = new TempDir();
        string path = dir.File("a.log");
        Write(path, 3);
        using (var log = new AuditLog(path, Model, content: false)) log.Append(new JsonObject { ["i"] = 3 });
        var r = AuditChain.Verify(path);
        Assert.True(r.Ok, r.Problem);
        Assert.Equal(4, r.Lines);
    }

    [Fact]
    public void Concurrent_appends_each_land_as_one_whole_line_of_one_chain()
    {
        using var dir = new TempDir();
        string path = dir.File("a.log");
        using (var log = new AuditLog(path, Model, content: false))
            Parallel.For(0, 8, t => { for (int i = 0; i < 250; i++) log.Append(new JsonObject { ["t"] = t, ["i"] = i, ["pad"] = new string('x', 5000) }); });
        var r = AuditChain.Verify(path);
        Assert.True(r.Ok, r.Problem);
        Assert.Equal(2000, r.Lines);
    }

    [Fact]
    public void A_file_is_hashed_once_while_it_is_unchanged_and_again_when_it_changes()
    {
        using var dir = new TempDir();
        string f = dir.File("w.bin");
        File.WriteAllBytes(f, [1, 2, 3]);
        string first = FileDigest.Sha256(f);
        Assert.Equal("039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81", first); // sha256sum of 01 02 03
        Assert.Equal(first, FileDigest.Sha256(f));
        Assert.Equal(1, FileDigest.TimesRead(f));
        File.WriteAllBytes(f, [1, 2, 3, 4]);
        File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddMinutes(1));
        Assert.NotEqual(first, FileDigest.Sha256(f));
        Assert.Equal(2, FileDigest.TimesRead(f));
    }
}
