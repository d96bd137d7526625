using OpenWeights.Hub;

namespace OpenWeights.Tests.Hub;

public class HubUnitTests
{
    [Theory]
    [InlineData("org/name", "org/name", null, null)]
    [InlineData("org/name:Q4_K_M", "org/name", null, "Q4_K_M")]
    [InlineData("org/name:model.Q4_K_M.gguf", "org/name", "model.Q4_K_M.gguf", null)]
    [InlineData("org/name:sub/dir/file", "org/name", "sub/dir/file", null)]
    [InlineData("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q8_0", "bartowski/Llama-3.2-1B-Instruct-GGUF", null, "Q8_0")]
    [InlineData("https://huggingface.co/Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", null, null)]
    public void Parses_pull_specs(string spec, string repo, string? file, string? quant)
    {
        var p = PullSpec.Parse(spec);
        Assert.Equal(new PullSpec(repo, file, quant), p);
    }

    [Theory]
    [InlineData("name")]
    [InlineData("org/name:")]
    [InlineData("../x/y")]
    [InlineData("org/na--me")]
    [InlineData("org/name:../../etc/passwd")]
    [InlineData("a/b/c")]
    public void Rejects_bad_specs(string spec) => Assert.Throws<OpenWeightsException>(() => PullSpec.Parse(spec));

    [Theory]
    [InlineData("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M")]
    [InlineData("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0")]
    [InlineData("model.IQ2_XXS.gguf", "IQ2_XXS")]
    [InlineData("model-bf16-00001-of-00003.gguf", "BF16")]
    [InlineData("ggml-model-f16.gguf", "F16")]
    [InlineData("Q5_K_S/model-Q5_K_S-00001-of-00002.gguf", "Q5_K_S")]
    [InlineData("model.gguf", null)]
    public void Finds_quant_tags(string path, string? quant) => Assert.Equal(quant, PullSelection.QuantOf(path));

    [Fact]
    public void Quant_matching_is_bounded_and_groups_shards()
    {
        var choices = PullSelection.GgufChoices(["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-BF16-00002-of-00002.gguf", "m-BF16-00001-of-00002.gguf", "m-F16.gguf", "mmproj-m-f16.gguf", "README.md"]);
        Assert.Equal(5, choices.Count);
        Assert.Equal(["m-BF16-00001-of-00002.gguf", "m-BF16-00002-of-00002.gguf"], PullSelection.MatchQuant(choices, "bf16").Single().Files);
        Assert.Equal("m-F16.gguf", PullSelection.MatchQuant(choices, "F16").Single().Name); // not BF16, not the projector
        Assert.Equal(2, PullSelection.MatchQuant(choices, "Q4_K").Count);
        Assert.Equal("m-Q4_K_S.gguf", PullSelection.MatchQuant(choices, "q4_k_s").Single().Name);
    }

    [Fact]
    public void Settings_follow_huggingface_hub_environment_variables()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("token"), "hf_from_file\n");
        var env = new Dictionary<string, string> { ["HF_HOME"] = tmp.Path, ["HF_ENDPOINT"] = "http://mirror.local/", ["HF_HUB_OFFLINE"] = "1" };
        var s = HubSettings.FromEnvironment(k => env.GetValueOrDefault(k));
        Assert.Equal(Path.Combine(tmp.Path, "hub"), s.CacheDir);
        Assert.Equal("http://mirror.local", s.Endpoint);
        Assert.Equal("hf_from_file", s.Token);
        Assert.True(s.Offline);

        env["HF_HUB_CACHE"] = tmp.File("elsewhere");
        env["HF_TOKEN"] = "hf_env";
        env.Remove("HF_HUB_OFFLINE");
        env.Remove("HF_ENDPOINT");
        s = HubSettings.FromEnvironment(k => env.GetValueOrDefault(k));
        Assert.Equal(tmp.File("elsewhere"), s.CacheDir);
        Assert.Equal("hf_env", s.Token);
        Assert.Equal("https://huggingface.co", s.Endpoint);
        Assert.False(s.Offline);

        var none = HubSettings.FromEnvironment(_ => null);
        Assert.EndsWith(Path.Combine(".cache", "huggingface", "hub"), none.CacheDir);
    }

    [Fact]
    public void Resolver_returns_local_paths_and_explains_missing_models()
    {
        using var tmp = new TempDir();
        var s = new HubSettings { CacheDir = tmp.File("hub") };
        var f = tmp.File("local.gguf");
        File.WriteAllText(f, "x");
        Assert.Equal(f, ModelResolver.Resolve(f, s));
        var e = Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve("org/absent:Q4_K_M", s));
        Assert.Contains("openweights pull org/absent:Q4_K_M", e.Message);
        Assert.Throws<OpenWeightsException>(() => ModelResolver.Resolve("no-such-file.gguf", s));
    }

    [Fact]
    public void Snapshot_links_are_relative_like_huggingface_hub()
    {
        using var tmp = new TempDir();
        var store = new HubStore(tmp.File("hub"));
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        Directory.CreateDirectory(store.BlobsDir("a/b"));
        File.WriteAllText(store.BlobPath("a/b", "abc123"), "data");
        var p = store.LinkSnapshot("a/b", commit, "dir/x.json", "abc123");
        Assert.Equal("../../../blobs/abc123", new FileInfo(p).LinkTarget);
        Assert.Equal("data", File.ReadAllText(p));
        store.WriteRef("a/b", "refs/pr/1", commit);
        Assert.Equal(commit, File.ReadAllText(Path.Combine(store.RepoDir("a/b"), "refs", "refs", "pr", "1")));
        Assert.Equal(commit, store.ResolveCommit("a/b", "refs/pr/1"));
        Assert.Throws<OpenWeightsException>(() => store.SnapshotPath("a/b", commit, "../../escape"));
        Assert.Throws<OpenWeightsException>(() => store.BlobPath("a/b", "../x"));
    }
}
