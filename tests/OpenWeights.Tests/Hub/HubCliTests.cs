using System.Text.Json;
using OpenWeights.Cli.Commands;
using OpenWeights.Hub;

namespace OpenWeights.Tests.Hub;

public class HubCliTests : HubCliTestBase
{
    private FakeRepo Repo() => hub.AddRepo(new FakeRepo { Id = "org/tiny-GGUF", License = "mit" }
        .Add("LICENSE", "MIT").Add("tiny-Q4_K_M.gguf", HubPullTests.Bytes(20_000, 1)).Add("tiny-Q8_0.gguf", HubPullTests.Bytes(30_000, 2)));

    [Fact]
    public void Pull_list_rm_round_trip()
    {
        var r = Repo();
        var pull = Run("pull", "org/tiny-GGUF:Q8_0", "--accept-license");
        Assert.Equal(0, pull.Code);
        var modelPath = pull.Out.Trim().Split('\n')[^1];
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(modelPath));
        Assert.Contains("license accepted", pull.Out);
        Assert.Contains("tiny-Q8_0.gguf: done", pull.Err); // non-terminal stderr: plain lines, no carriage returns
        Assert.DoesNotContain('\r', pull.Err);

        var json = Run("pull", "org/tiny-GGUF:Q4_K_M", "--json");
        Assert.Equal(0, json.Code);
        using (var doc = JsonDocument.Parse(json.Out))
        {
            Assert.Equal(r.Commit, doc.RootElement.GetProperty("commit").GetString());
            Assert.EndsWith("tiny-Q4_K_M.gguf", doc.RootElement.GetProperty("model_path").GetString());
        }

        var list = Run("list", "--json");
        Assert.Equal(0, list.Code);
        using (var doc = JsonDocument.Parse(list.Out))
        {
            var repo = doc.RootElement.GetProperty("repos").EnumerateArray().Single();
            Assert.Equal("org/tiny-GGUF", repo.GetProperty("repo").GetString());
            var rev = repo.GetProperty("revisions").EnumerateArray().Single();
            Assert.Equal("main", rev.GetProperty("refs").EnumerateArray().Single().GetString());
            Assert.Equal(3, rev.GetProperty("files").GetArrayLength());
        }
        var text = Run("list");
        Assert.Contains("org/tiny-GGUF", text.Out);
        Assert.Contains("tiny-Q8_0.gguf", text.Out);

        var rm = Run("rm", "org/tiny-GGUF:Q8_0");
        Assert.Equal(0, rm.Code);
        Assert.Contains("freed 30.0 kB", rm.Out);
        Assert.DoesNotContain("tiny-Q8_0.gguf", Run("list").Out);
        Assert.Equal(0, Run("rm", "org/tiny-GGUF").Code);
        Assert.Contains("no models", Run("list").Out);
        var again = Run("rm", "org/tiny-GGUF");
        Assert.Equal(1, again.Code);
        Assert.Contains("not in the store", again.Err);
    }

    [Fact]
    public void Errors_are_one_line()
    {
        Repo();
        var (code, _, err) = Run("pull", "org/tiny-GGUF");
        Assert.Equal(1, code);
        Assert.StartsWith("openweights: error: org/tiny-GGUF has 2 GGUF files; pick one with org/tiny-GGUF:QUANT", err);
        Assert.Single(err.Trim().Split('\n'));

        var nf = Run("pull", "org/missing");
        Assert.Equal(1, nf.Code);
        Assert.Contains("repository or file not found", nf.Err);
    }
}
