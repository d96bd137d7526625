using System.Text.Json;
using OpenWeights.Hub;

namespace OpenWeights.Tests.Hub;

/// <summary>
/// A failed pull leaves no ref behind (issue 19: refs/main was written before the downloads, and `list` then showed the
/// repository at 0 B); the ref is written once every file of the snapshot is verified in place.
/// </summary>
public class HubFailedPullTests : HubCliTestBase
{
    private FakeRepo Repo() => hub.AddRepo(new FakeRepo { Id = "org/tiny-GGUF", License = "mit" }
        .Add("LICENSE", "MIT").Add("tiny-Q8_0.gguf", HubPullTests.Bytes(30_000, 2)));

    private string RefMain => Path.Combine(new HubStore(dir.File("hub")).RepoDir("org/tiny-GGUF"), "refs", "main");

    [Fact]
    public void Corrupt_download_writes_no_ref_and_list_shows_nothing_until_a_pull_succeeds()
    {
        var r = Repo();
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        hub.Corrupt[sha] = true;
        var failed = Run("pull", "org/tiny-GGUF:Q8_0");
        Assert.Equal(1, failed.Code);
        Assert.Contains("checksum mismatch", failed.Err);
        Assert.False(File.Exists(RefMain), "a failed pull must not write refs/main");
        // the LICENSE (downloaded first) is complete, so the repository is listed, but without a ref and without the model
        var listed = Run("list", "--json");
        using (var doc = JsonDocument.Parse(listed.Out))
        {
            var repo = doc.RootElement.GetProperty("repos").EnumerateArray().Single();
            var rev = repo.GetProperty("revisions").EnumerateArray().Single();
            Assert.Empty(rev.GetProperty("refs").EnumerateArray());
            Assert.Equal(["LICENSE"], rev.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()));
        }
        Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve("org/tiny-GGUF", new HubSettings { CacheDir = dir.File("hub"), Endpoint = hub.Endpoint, Offline = true }));

        hub.Corrupt.Clear();
        var ok = Run("pull", "org/tiny-GGUF:Q8_0");
        Assert.Equal(0, ok.Code);
        Assert.Equal(r.Commit, File.ReadAllText(RefMain));
    }

    [Fact]
    public void A_pull_that_fails_before_any_file_is_complete_leaves_nothing_listed()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/tiny-GGUF" }.Add("tiny-Q8_0.gguf", HubPullTests.Bytes(30_000, 2)));
        hub.Corrupt[FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"])] = true;
        Assert.Equal(1, Run("pull", "org/tiny-GGUF:Q8_0").Code);
        Assert.False(File.Exists(RefMain));
        // it used to list "org/tiny-GGUF  0 B"
        Assert.Contains("no models", Run("list").Out);
        using (var doc = JsonDocument.Parse(Run("list", "--json").Out))
            Assert.Empty(doc.RootElement.GetProperty("repos").EnumerateArray());

        hub.Corrupt.Clear();
        Assert.Equal(0, Run("pull", "org/tiny-GGUF:Q8_0").Code);
        Assert.Equal(r.Commit, File.ReadAllText(RefMain));
        Assert.Contains("org/tiny-GGUF", Run("list").Out);
    }

    [Fact]
    public async Task An_interrupted_pull_keeps_its_partial_blob_but_writes_no_ref_and_lists_nothing()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/tiny-GGUF" }.Add("tiny-Q8_0.gguf", HubPullTests.Bytes(30_000, 2)));
        hub.DropsRemaining = 1; hub.DropAfterBytes = 12_000;
        var settings = new HubSettings { CacheDir = dir.File("hub"), Endpoint = hub.Endpoint, RetryBaseDelay = TimeSpan.FromMilliseconds(5), MaxRetries = 0 };
        await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(settings).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        var store = new HubStore(dir.File("hub"));
        Assert.True(File.Exists(store.IncompletePath(r.Id, FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]))), "the partial download is kept for resuming");
        Assert.False(File.Exists(RefMain));
        Assert.Empty(store.List());
        Assert.Contains("no models", Run("list").Out);
    }
}
