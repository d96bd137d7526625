using System.Text.Json;
using OpenWeights.Hub;

namespace OpenWeights.Tests.Hub;

public class HubPullTests : IDisposable
{
    private readonly FakeHub hub = new();
    private readonly TempDir dir = new();

    public void Dispose() { hub.Dispose(); dir.Dispose(); }

    internal static byte[] Bytes(int n, int seed) { var b = new byte[n]; new Random(seed).NextBytes(b); return b; }

    private HubSettings Settings(string? token = null) => new()
    {
        CacheDir = dir.File("hub"), Endpoint = hub.Endpoint, Token = token,
        RetryBaseDelay = TimeSpan.FromMilliseconds(5), ReadTimeout = TimeSpan.FromSeconds(20), MaxRetries = 3,
    };

    private HubStore Store => new(dir.File("hub"));

    private FakeRepo GgufRepo(string id = "org/tiny-GGUF")
    {
        var r = new FakeRepo { Id = id, License = "apache-2.0" }
            .Add("README.md", "# tiny")
            .Add("LICENSE", "Apache License 2.0 text")
            .Add("tiny-Q4_K_M.gguf", Bytes(20_000, 1))
            .Add("tiny-Q4_K_S.gguf", Bytes(15_000, 2))
            .Add("tiny-Q8_0.gguf", Bytes(30_000, 3));
        return hub.AddRepo(r);
    }

    private string SnapshotFile(FakeRepo r, string path) => Store.SnapshotPath(r.Id, r.Commit, path);

    /// <summary>Nothing visible to the resolver or in snapshots for this file.</summary>
    private void AssertNotInSnapshots(FakeRepo r, string path)
    {
        var snap = Store.SnapshotPath(r.Id, r.Commit, path);
        Assert.False(File.Exists(snap) || new FileInfo(snap).LinkTarget is not null, $"{path} must not be in the snapshot");
        Assert.False(File.Exists(Store.BlobPath(r.Id, FakeRepo.Sha256(r.Files[path]))), "no complete blob for a failed download");
        Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve($"{r.Id}:{path}", Settings()));
    }

    [Fact]
    public async Task Pulls_gguf_by_quant_into_the_huggingface_cache_layout()
    {
        var r = GgufRepo();
        var result = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:q4_k_m", ct: TestContext.Current.CancellationToken);
        Assert.Equal(["LICENSE", "tiny-Q4_K_M.gguf"], result.Files.Select(f => f.Path));
        Assert.Equal(r.Commit, result.Commit);
        Assert.Equal(SnapshotFile(r, "tiny-Q4_K_M.gguf"), result.ModelPath);

        var repoDir = Path.Combine(dir.File("hub"), "models--org--tiny-GGUF");
        Assert.Equal(r.Commit, File.ReadAllText(Path.Combine(repoDir, "refs", "main")));
        var sha = FakeRepo.Sha256(r.Files["tiny-Q4_K_M.gguf"]);
        var link = new FileInfo(Path.Combine(repoDir, "snapshots", r.Commit, "tiny-Q4_K_M.gguf"));
        Assert.Equal($"../../blobs/{sha}", link.LinkTarget);
        Assert.Equal(r.Files["tiny-Q4_K_M.gguf"], File.ReadAllBytes(link.FullName));
        // non-LFS files are stored under their git blob id (the ETag), like huggingface_hub
        Assert.True(File.Exists(Path.Combine(repoDir, "blobs", FakeRepo.GitSha1(r.Files["LICENSE"]))));
        Assert.Empty(Directory.GetFiles(Path.Combine(repoDir, "blobs"), "*.incomplete*"));

        Assert.Equal(result.ModelPath, ModelResolver.Resolve("org/tiny-GGUF:Q4_K_M", Settings()));
        Assert.Equal(result.ModelPath, ModelResolver.Resolve("org/tiny-GGUF:tiny-Q4_K_M.gguf", Settings()));
        Assert.Equal(result.ModelPath, ModelResolver.Resolve("org/tiny-GGUF", Settings()));
        Assert.Equal(result.ModelPath, ModelResolver.Resolve(result.ModelPath, Settings()));

        // second pull downloads nothing
        int before = hub.Requests("cdn").Count();
        var again = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken);
        Assert.All(again.Files, f => Assert.False(f.Downloaded));
        Assert.Equal(before, hub.Requests("cdn").Count());
    }

    [Fact]
    public async Task Gguf_repo_without_a_quant_lists_the_choices()
    {
        GgufRepo();
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF", ct: TestContext.Current.CancellationToken));
        Assert.Contains("Q4_K_M (tiny-Q4_K_M.gguf)", e.Message);
        Assert.Contains("Q8_0 (tiny-Q8_0.gguf)", e.Message);
        Assert.Contains(":QUANT", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Empty(hub.Requests("cdn"));

        var none = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF:IQ2_XXS", ct: TestContext.Current.CancellationToken));
        Assert.Contains("choices", none.Message);
        // Q4_K alone does not silently match Q4_K_M or Q4_K_S
        var amb = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q4_K", ct: TestContext.Current.CancellationToken));
        Assert.Contains("several", amb.Message);
    }

    [Fact]
    public async Task Sharded_gguf_pulls_every_shard_and_resolves_to_the_first()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/big-GGUF" }
            .Add("Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", Bytes(9000, 5))
            .Add("Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", Bytes(9000, 4))
            .Add("big-Q8_0.gguf", Bytes(100, 6)));
        var result = await new HubPuller(Settings()).PullAsync("org/big-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken);
        Assert.Equal(["Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf"], result.Files.Select(f => f.Path));
        var link = new FileInfo(SnapshotFile(r, "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf"));
        Assert.StartsWith("../../../blobs/", link.LinkTarget);
        Assert.Equal(link.FullName, ModelResolver.Resolve("org/big-GGUF:Q4_K_M", Settings()));

        // naming one shard means the whole set
        Store.Remove(r.Id);
        var one = await new HubPuller(Settings()).PullAsync("org/big-GGUF:Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", ct: TestContext.Current.CancellationToken);
        Assert.Equal(2, one.Files.Count);
    }

    [Fact]
    public async Task Safetensors_repo_pulls_config_tokenizer_and_weights_only()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/st" }
            .Add("config.json", "{}").Add("tokenizer.json", "{}").Add("tokenizer_config.json", "{}").Add("generation_config.json", "{}")
            .Add("model-00001-of-00002.safetensors", Bytes(5000, 7)).Add("model-00002-of-00002.safetensors", Bytes(5000, 8))
            .Add("model.safetensors.index.json", "{}").Add("consolidated.safetensors", Bytes(9000, 9))
            .Add("README.md", "x").Add("original/consolidated.pth", Bytes(100, 10)).Add("LICENSE.txt", "MIT"));
        var result = await new HubPuller(Settings()).PullAsync("org/st", ct: TestContext.Current.CancellationToken);
        Assert.Equal(["LICENSE.txt", "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"], result.Files.Select(f => f.Path).Order(StringComparer.Ordinal));
        Assert.Equal(Store.SnapshotDir(r.Id, r.Commit), result.ModelPath);
        Assert.Equal(result.ModelPath, ModelResolver.Resolve("org/st", Settings()));
        Assert.Equal(SnapshotFile(r, "config.json"), ModelResolver.Resolve("org/st:config.json", Settings()));
    }

    [Fact]
    public async Task Gated_repo_needs_a_token_which_never_reaches_the_cdn()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "meta/gated", Gated = "manual", License = "llama3.2" }.Add("m-Q4_0.gguf", Bytes(4000, 11)));
        r.Tokens.Add("hf_good");

        var e401 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("meta/gated", ct: TestContext.Current.CancellationToken));
        Assert.Contains("accept its license", e401.Message);
        Assert.Contains("HF_TOKEN", e401.Message);
        Assert.Contains("401", e401.Message);
        var e403 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings("hf_bad")).PullAsync("meta/gated", ct: TestContext.Current.CancellationToken));
        Assert.Contains("403", e403.Message);
        AssertNotInSnapshots(r, "m-Q4_0.gguf");

        var ok = await new HubPuller(Settings("hf_good")).PullAsync("meta/gated", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-Q4_0.gguf"], File.ReadAllBytes(ok.ModelPath));
        Assert.Contains(hub.Requests("hub"), q => q.Authorization == "Bearer hf_good");
        Assert.NotEmpty(hub.Requests("cdn"));
        Assert.All(hub.Requests("cdn"), q => Assert.Null(q.Authorization));
    }

    [Fact]
    public async Task Relative_redirects_of_renamed_repos_are_followed()
    {
        var r = GgufRepo("org/new-name");
        hub.Renamed["org/old-name"] = "org/new-name";
        // metadata and file requests for the old name go through the hub's relative 307
        using var client = new HubClient(Settings());
        var meta = await client.GetFileMetadataAsync("org/old-name", r.Commit, "tiny-Q8_0.gguf", TestContext.Current.CancellationToken);
        Assert.Equal(r.Commit, meta.Commit);
        Assert.Equal(FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]), meta.Etag);
        Assert.True(meta.IsLfs);
        Assert.Equal(30_000, meta.Size);
        Assert.StartsWith(hub.CdnBase, meta.Location!.ToString());
        var lic = await client.GetFileMetadataAsync("org/old-name", "main", "LICENSE", TestContext.Current.CancellationToken);
        Assert.Equal(FakeRepo.GitSha1(r.Files["LICENSE"]), lic.Etag);
        Assert.False(lic.IsLfs);
    }

    [Fact]
    public async Task Unreachable_hub_falls_back_to_the_store()
    {
        GgufRepo();
        var online = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        var down = Settings() with { Endpoint = "http://127.0.0.1:9", MaxRetries = 0 };
        var res = await new HubPuller(down).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        Assert.True(res.Offline);
        Assert.Equal(online.ModelPath, res.ModelPath);
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(down).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken));
        Assert.Contains("cannot reach", e.Message);
    }

    [Fact]
    public async Task Missing_repo_or_file_says_not_found()
    {
        GgufRepo();
        var e1 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/nope", ct: TestContext.Current.CancellationToken));
        Assert.Contains("repository or file not found", e1.Message);
        var e2 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF:nope.gguf", ct: TestContext.Current.CancellationToken));
        Assert.Contains("repository or file not found", e2.Message);
        var e3 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", new PullOptions { Revision = "v9" }, ct: TestContext.Current.CancellationToken));
        Assert.Contains("repository or file not found", e3.Message);
    }

    [Fact]
    public async Task Dropped_connection_is_resumed_with_a_range_request()
    {
        var r = GgufRepo();
        hub.DropsRemaining = 2; hub.DropAfterBytes = 7000;
        var result = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(result.ModelPath));
        var ranges = hub.Requests("cdn", "GET").Select(q => q.Range).ToList();
        Assert.Equal([null, "bytes=7000-", "bytes=14000-"], ranges);
    }

    [Fact]
    public async Task Interrupted_pull_leaves_a_partial_file_that_the_next_pull_resumes()
    {
        var r = GgufRepo();
        hub.DropsRemaining = 1; hub.DropAfterBytes = 12_000;
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings() with { MaxRetries = 0 }).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        Assert.Contains("pull again to resume", e.Message);
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        Assert.Equal(12_000, new FileInfo(Store.IncompletePath(r.Id, sha)).Length);
        AssertNotInSnapshots(r, "tiny-Q8_0.gguf");

        var result = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(result.ModelPath));
        Assert.Equal("bytes=12000-", hub.Requests("cdn", "GET").Last().Range);
        Assert.False(File.Exists(Store.IncompletePath(r.Id, sha)));
    }

    [Fact]
    public async Task Server_that_ignores_ranges_restarts_from_zero()
    {
        var r = GgufRepo();
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        Directory.CreateDirectory(Path.GetDirectoryName(Store.IncompletePath(r.Id, sha))!);
        File.WriteAllBytes(Store.IncompletePath(r.Id, sha), r.Files["tiny-Q8_0.gguf"][..5000]);
        hub.IgnoreRange = true;
        var result = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(result.ModelPath));
    }

    [Fact]
    public async Task Wrong_checksum_is_rejected_and_nothing_is_left()
    {
        var r = GgufRepo();
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        hub.Corrupt[sha] = true;
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        Assert.Contains("checksum mismatch", e.Message);
        AssertNotInSnapshots(r, "tiny-Q8_0.gguf");
        Assert.False(File.Exists(Store.IncompletePath(r.Id, sha)));
        Assert.Empty(Directory.GetFiles(Store.BlobsDir(r.Id), sha + "*"));
    }

    [Fact]
    public async Task Wrong_checksum_in_parallel_mode_is_rejected_too()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(2_000_000, 12)));
        var sha = FakeRepo.Sha256(r.Files["m-F16.gguf"]);
        hub.Corrupt[sha] = true;
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings() with { ParallelThreshold = 1 << 20 }).PullAsync("org/par", ct: TestContext.Current.CancellationToken));
        Assert.Contains("checksum mismatch", e.Message);
        AssertNotInSnapshots(r, "m-F16.gguf");
        Assert.Empty(Directory.GetFiles(Store.BlobsDir(r.Id), sha + "*"));
    }

    [Fact]
    public async Task Disk_full_is_one_line_and_keeps_the_partial_file_for_resume()
    {
        var r = GgufRepo();
        var quota = new DiskQuota(30_000); // LICENSE fits, Q8_0 (30 000 bytes) does not
        var s = Settings() with { WriteStreamWrapper = inner => new QuotaStream(inner, quota) };
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(s).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        Assert.StartsWith("disk full", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        long kept = new FileInfo(Store.IncompletePath(r.Id, sha)).Length;
        Assert.InRange(kept, 1, 29_999);
        AssertNotInSnapshots(r, "tiny-Q8_0.gguf");

        var result = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(result.ModelPath));
        Assert.Equal($"bytes={kept}-", hub.Requests("cdn", "GET").Last().Range);
    }

    [Fact]
    public async Task Large_files_use_parallel_ranges()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(3_000_000, 13)));
        var reports = new List<DownloadProgress>();
        var puller = new HubPuller(Settings() with { ParallelThreshold = 1 << 20, Connections = 4 }) { Progress = new SyncProgress(p => { lock (reports) reports.Add(p); }) };
        var result = await puller.PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(result.ModelPath));
        var ranges = hub.Requests("cdn", "GET").Select(q => q.Range).Order().ToList();
        Assert.Equal(["bytes=0-749999", "bytes=1500000-2249999", "bytes=2250000-2999999", "bytes=750000-1499999"], ranges);
        Assert.Single(Directory.GetFiles(Store.BlobsDir(r.Id)));
        Assert.True(reports[^1].Completed);
        Assert.Equal(3_000_000, reports[^1].BytesDone);
        Assert.All(reports, p => Assert.Equal(3_000_000, p.BytesTotal));
    }

    [Fact]
    public async Task Parallel_download_survives_drops_and_resumes_across_runs()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(2_000_000, 14)));
        var s = Settings() with { ParallelThreshold = 1 << 20, Connections = 4 };
        hub.DropsRemaining = 3; hub.DropAfterBytes = 100_000;
        var result = await new HubPuller(s).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(result.ModelPath));

        Store.Remove(r.Id);
        hub.Log.Clear();
        hub.DropsRemaining = 4; hub.DropAfterBytes = 100_000;
        await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(s with { MaxRetries = 0 }).PullAsync("org/par", ct: TestContext.Current.CancellationToken));
        AssertNotInSnapshots(r, "m-F16.gguf");
        Assert.NotEmpty(Directory.GetFiles(Store.BlobsDir(r.Id), "*.incomplete*"));
        hub.DropsRemaining = 0;
        var again = await new HubPuller(s).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(again.ModelPath));
        Assert.Single(Directory.GetFiles(Store.BlobsDir(r.Id)));
        // the second run asks only for what the first did not keep
        long asked = hub.Requests("cdn", "GET").Skip(4).Sum(q =>
        {
            var m = System.Text.RegularExpressions.Regex.Match(q.Range!, @"^bytes=(\d+)-(\d+)$");
            return long.Parse(m.Groups[2].Value) - long.Parse(m.Groups[1].Value) + 1;
        });
        Assert.InRange(asked, 1, 2_000_000 - 1);
    }

    [Fact]
    public async Task Parallel_falls_back_to_one_stream_when_ranges_are_ignored()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(1_500_000, 15)));
        hub.IgnoreRange = true;
        var result = await new HubPuller(Settings() with { ParallelThreshold = 1 << 20 }).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(result.ModelPath));
        Assert.Single(Directory.GetFiles(Store.BlobsDir(r.Id)));
    }

    [Fact]
    public async Task Parallel_disk_full_keeps_parts_and_resumes()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(2_000_000, 16)));
        var s = Settings() with { ParallelThreshold = 1 << 20 };
        var quota = new DiskQuota(900_000);
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(s with { WriteStreamWrapper = i => new QuotaStream(i, quota) }).PullAsync("org/par", ct: TestContext.Current.CancellationToken));
        Assert.StartsWith("disk full", e.Message);
        AssertNotInSnapshots(r, "m-F16.gguf");
        var result = await new HubPuller(s).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(result.ModelPath));
    }

    [Fact]
    public async Task Two_pulls_of_the_same_file_at_once_do_not_corrupt_it()
    {
        var r = hub.AddRepo(new FakeRepo { Id = "org/par" }.Add("m-F16.gguf", Bytes(1_200_000, 17)));
        hub.ChunkDelayMs = 1;
        var s = Settings();
        var a = new HubPuller(s).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        var b = new HubPuller(s).PullAsync("org/par", ct: TestContext.Current.CancellationToken);
        var both = await Task.WhenAll(a, b);
        Assert.Equal(r.Files["m-F16.gguf"], File.ReadAllBytes(both[0].ModelPath));
        Assert.Equal(both[0].ModelPath, both[1].ModelPath);
        Assert.Single(both.SelectMany(x => x.Files), f => f.Downloaded);
    }

    [Fact]
    public async Task A_blob_lock_held_elsewhere_makes_the_pull_wait()
    {
        var r = GgufRepo();
        var sha = FakeRepo.Sha256(r.Files["tiny-Q8_0.gguf"]);
        var lockPath = Store.LockPath(r.Id, sha);
        Assert.Equal(Path.Combine(dir.File("hub"), ".locks", "models--org--tiny-GGUF", sha + ".lock"), lockPath);
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        Task<PullResult> pull;
        using (new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var timeout = await Assert.ThrowsAsync<OpenWeightsException>(() =>
                new HubPuller(Settings() with { LockTimeout = TimeSpan.FromMilliseconds(300) }).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
            Assert.Contains("another download holds", timeout.Message);
            pull = new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
            await Task.Delay(500, TestContext.Current.CancellationToken);
            Assert.False(pull.IsCompleted);
            Assert.DoesNotContain(hub.Requests("cdn"), q => q.Path.EndsWith(sha, StringComparison.Ordinal));
        }
        var res = await pull;
        Assert.Equal(r.Files["tiny-Q8_0.gguf"], File.ReadAllBytes(res.ModelPath));
    }

    [Fact]
    public async Task Offline_mode_resolves_only_from_the_store()
    {
        var r = GgufRepo();
        var offline = Settings() with { Offline = true, Endpoint = "http://127.0.0.1:9" };
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(offline).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken));
        Assert.Contains("HF_HUB_OFFLINE", e.Message);

        var online = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken);
        var res = await new HubPuller(offline).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken);
        Assert.True(res.Offline);
        Assert.Equal(online.ModelPath, res.ModelPath);
        var e2 = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(offline).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        Assert.Contains("HF_HUB_OFFLINE", e2.Message);
    }

    [Fact]
    public async Task Pull_by_commit_does_not_write_a_ref()
    {
        var r = GgufRepo();
        var res = await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", new PullOptions { Revision = r.Commit }, ct: TestContext.Current.CancellationToken);
        Assert.Equal(r.Commit, res.Commit);
        Assert.False(Directory.Exists(Path.Combine(Store.RepoDir(r.Id), "refs")));
        Assert.Equal(res.ModelPath, ModelResolver.Resolve("org/tiny-GGUF:Q8_0", Settings()));
        Assert.Equal(res.ModelPath, ModelResolver.Resolve("org/tiny-GGUF:Q8_0", Settings(), r.Commit));
    }

    [Fact]
    public async Task Gate_sees_the_license_before_anything_is_downloaded_and_acceptance_is_recorded()
    {
        var r = GgufRepo();
        PullContext? seen = null;
        var refuse = new DelegatePullGate(c => { seen = c; if (!c.AcceptLicense) throw new OpenWeightsException($"{c.RepoId} is under {c.License}: pass --accept-license"); });
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => new HubPuller(Settings(), refuse).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken));
        Assert.Contains("--accept-license", e.Message);
        Assert.Equal("apache-2.0", seen!.License);
        Assert.Equal(r.Commit, seen.Commit);
        Assert.Equal(["LICENSE", "tiny-Q8_0.gguf"], seen.Files.Select(f => f.Path));
        Assert.Equal(30_000, seen.Files[1].Size);
        Assert.Empty(hub.Requests("cdn"));
        Assert.False(Directory.Exists(Store.RepoDir(r.Id)));

        var res = await new HubPuller(Settings(), refuse).PullAsync("org/tiny-GGUF:Q8_0", new PullOptions { AcceptLicense = true }, ct: TestContext.Current.CancellationToken);
        Assert.Equal(Store.LicensePath(r.Id), res.LicenseRecordPath);
        Assert.EndsWith(Path.Combine("openweights", "licenses", "org--tiny-GGUF.json"), res.LicenseRecordPath);
        var rec = Store.ReadLicense(r.Id)!;
        Assert.Equal("apache-2.0", rec.License);
        Assert.Equal(FakeRepo.Sha256(r.Files["LICENSE"]), rec.LicenseSha256);
        Assert.Equal("LICENSE", rec.LicenseFile);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", rec.AcceptedAt);
        using var doc = JsonDocument.Parse(File.ReadAllText(res.LicenseRecordPath!));
        Assert.True(doc.RootElement.TryGetProperty("accepted_at", out _));
    }

    [Fact]
    public async Task Remove_deletes_files_and_unreferenced_blobs_only()
    {
        var r = GgufRepo();
        await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q4_K_M", ct: TestContext.Current.CancellationToken);
        await new HubPuller(Settings()).PullAsync("org/tiny-GGUF:Q8_0", ct: TestContext.Current.CancellationToken);
        var listed = Store.List().Single();
        Assert.Equal("org/tiny-GGUF", listed.RepoId);
        Assert.Equal(["LICENSE", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"], listed.Snapshots.Single().Files.Select(f => f.Path));
        Assert.Equal(["main"], listed.Snapshots.Single().Refs);
        Assert.Equal(r.Files["LICENSE"].Length + 20_000 + 30_000, listed.SizeOnDisk);

        var rm = Store.Remove(r.Id, ["tiny-Q8_0.gguf"]);
        Assert.Equal(1, rm.BlobsRemoved);
        Assert.Equal(30_000, rm.BytesFreed);
        Assert.False(rm.RepoRemoved);
        Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve("org/tiny-GGUF:Q8_0", Settings()));
        Assert.Equal(r.Files["tiny-Q4_K_M.gguf"], File.ReadAllBytes(ModelResolver.Resolve("org/tiny-GGUF:Q4_K_M", Settings())));

        Assert.True(Store.Remove(r.Id).RepoRemoved);
        Assert.Empty(Store.List());
        var e = Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve("org/tiny-GGUF:Q4_K_M", Settings()));
        Assert.Contains("openweights pull org/tiny-GGUF:Q4_K_M", e.Message);
    }
}

/// <summary>IProgress without a synchronization context hop.</summary>
public sealed class SyncProgress<T>(Action<T> a) : IProgress<T> { public void Report(T value) => a(value); }
public sealed class SyncProgress(Action<DownloadProgress> a) : IProgress<DownloadProgress> { public void Report(DownloadProgress value) => a(value); }
