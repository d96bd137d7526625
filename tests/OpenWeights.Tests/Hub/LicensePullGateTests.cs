using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hub;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Formats;

namespace OpenWeights.Tests.Hub;

/// <summary>The catalog's license gate wired into `pull`, and run/info/tokenize resolving catalog and repo ids from the store.</summary>
public class LicensePullGateTests : HubCliTestBase
{
    private FakeRepo GgufRepo(string id, string license) =>
        hub.AddRepo(new FakeRepo { Id = id, License = license }.Add("LICENSE", "terms of " + license).Add("model-Q8_0.gguf", HubPullTests.Bytes(10_000, 3)));

    private bool Snapshotted(string repo) =>
        Directory.Exists(Path.Combine(dir.File("hub"), "models--" + repo.Replace("/", "--"), "snapshots"))
        && Directory.EnumerateFiles(Path.Combine(dir.File("hub"), "models--" + repo.Replace("/", "--"), "snapshots"), "*.gguf", SearchOption.AllDirectories).Any();

    [Fact]
    public void Restrictive_license_needs_accept_license_once_and_is_recorded()
    {
        GgufRepo("meta-llama/Llama-3.2-1B-Instruct", "llama3.2");
        var refused = Run("pull", "meta-llama/Llama-3.2-1B-Instruct");
        Assert.Equal(1, refused.Code);
        Assert.Contains("llama-3.2-1b-instruct", refused.Err);
        Assert.Contains("--accept-license", refused.Err);
        Assert.Single(refused.Err.Trim().Split('\n'));
        Assert.False(Snapshotted("meta-llama/Llama-3.2-1B-Instruct"));

        var ok = Run("pull", "meta-llama/Llama-3.2-1B-Instruct", "--accept-license");
        Assert.Equal(0, ok.Code);
        Assert.Contains("license accepted", ok.Out);
        Assert.True(File.Exists(new HubStore(dir.File("hub")).LicensePath("meta-llama/Llama-3.2-1B-Instruct")));
        // accepted before: a second pull does not ask again
        Assert.Equal(0, Run("pull", "meta-llama/Llama-3.2-1B-Instruct").Code);
    }

    [Fact]
    public void Quantizer_copies_of_catalog_models_are_gated_too()
    {
        GgufRepo("someone/Llama-3.2-1B-Instruct-GGUF", "llama3.2");
        var refused = Run("pull", "someone/Llama-3.2-1B-Instruct-GGUF");
        Assert.Equal(1, refused.Code);
        Assert.Contains("--accept-license", refused.Err);
        Assert.Equal("llama-3.2-1b-instruct", new CatalogPullGate().FindModel("someone/Llama-3.2-1B-Instruct-GGUF")?.Id);
        Assert.Null(new CatalogPullGate().FindModel("someone/unrelated-GGUF"));
    }

    [Fact]
    public void Permissive_and_unknown_repos_pass_without_accept()
    {
        GgufRepo("Qwen/Qwen2.5-0.5B-Instruct", "apache-2.0");
        GgufRepo("org/not-in-catalog", "other");
        Assert.Equal(0, Run("pull", "Qwen/Qwen2.5-0.5B-Instruct").Code);
        Assert.Equal(0, Run("pull", "org/not-in-catalog").Code);
    }

    [Fact]
    public void Use_and_mau_refuse_what_the_terms_forbid_naming_the_clause()
    {
        GgufRepo("Qwen/Qwen2.5-3B-Instruct", "other");
        var qwen = Run("pull", "Qwen/Qwen2.5-3B-Instruct", "--accept-license", "--use", "commercial");
        Assert.Equal(1, qwen.Code);
        Assert.Contains("no commercial use", qwen.Err);
        Assert.Single(qwen.Err.Trim().Split('\n'));
        Assert.False(Snapshotted("Qwen/Qwen2.5-3B-Instruct"));
        Assert.Equal(0, Run("pull", "Qwen/Qwen2.5-3B-Instruct", "--accept-license", "--use", "research").Code);

        GgufRepo("meta-llama/Llama-3.1-8B-Instruct", "llama3.1");
        var big = Run("pull", "meta-llama/Llama-3.1-8B-Instruct", "--accept-license", "--use", "commercial", "--mau", "800000000");
        Assert.Equal(1, big.Code);
        Assert.Contains("700", big.Err);
        var small = Run("pull", "meta-llama/Llama-3.1-8B-Instruct", "--accept-license", "--use", "commercial", "--mau", "1000");
        Assert.Equal(0, small.Code);
    }

    [Fact]
    public void Gate_unit_refuses_without_network()
    {
        var gate = new CatalogPullGate { Use = LicenseUse.Commercial };
        var ctx = new PullContext("Qwen/Qwen2.5-3B", "main", new string('a', 40), "other", null, [], AcceptLicense: true);
        var e = Assert.Throws<OpenWeightsException>(() => gate.BeforePull(ctx));
        Assert.Contains("qwen2.5-3b-instruct", e.Message);
        var gated = new PullContext("org/x", "main", new string('a', 40), "other", "manual", [], AcceptLicense: false);
        Assert.Contains("gated", Assert.Throws<LicenseNotAcceptedException>(() => new CatalogPullGate().BeforePull(gated)).Message);
        new CatalogPullGate().BeforePull(gated with { AcceptLicense = true });
    }

    [Fact]
    public void Run_info_tokenize_resolve_catalog_and_repo_ids_from_the_store()
    {
        // an HF-format checkpoint published under a catalog model's repository
        string gguf = dir.File("src.gguf"), hf = dir.File("hfsrc");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        var repo = new FakeRepo { Id = "Qwen/Qwen2.5-0.5B-Instruct", License = "apache-2.0" };
        foreach (var f in Directory.EnumerateFiles(hf)) repo.Add(Path.GetFileName(f), File.ReadAllBytes(f));
        hub.AddRepo(repo);

        var missing = Run("info", "qwen2.5-0.5b-instruct");
        Assert.Equal(1, missing.Code);
        Assert.Contains("not in the local store", missing.Err);
        Assert.Contains("Qwen/Qwen2.5-0.5B-Instruct", missing.Err);

        var pulled = Run("pull", "Qwen/Qwen2.5-0.5B-Instruct");
        Assert.True(pulled.Code == 0, pulled.Err);
        var byId = Run("info", "qwen2.5-0.5b-instruct");
        Assert.True(byId.Code == 0, byId.Err);
        Assert.Contains("qwen2", byId.Out);
        var byRepo = Run("tokenize", "Qwen/Qwen2.5-0.5B-Instruct", "hello world");
        Assert.Equal(0, byRepo.Code);
        Assert.Contains("tokens", byRepo.Out);
        var run = Run("run", "qwen2.5-0.5b-instruct", "hi", "-n", "2", "--temp", "0", "-t", "2", "--ctx", "32");
        Assert.Equal(0, run.Code);
        var notPulled = Run("run", "org/never-pulled", "hi");
        Assert.Equal(1, notPulled.Code);
        Assert.Contains("not in the local store", notPulled.Err);
    }
}
