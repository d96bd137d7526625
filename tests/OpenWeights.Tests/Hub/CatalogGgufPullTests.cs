using System.Text.Json;
using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hub;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Hub;

/// <summary>
/// `pull ID[:QUANT]` for catalog models, against the fake hub: the catalog's GGUF repository and its exact file name for the
/// quant (not a guess by quant tag), every shard of a sharded quant, the licence gate on the resolved repository, and
/// one-line errors (naming the original repository) where the catalog has no GGUF repository or no such quant.
/// </summary>
public class CatalogGgufPullTests : HubCliTestBase
{
    private static GgufRepo Gguf(string id) => ModelCatalog.Default.Get(id).Gguf!;

    /// <summary>Paths of the repository files the puller asked the hub to resolve.</summary>
    private List<string> Resolved(string repo) =>
        hub.Requests("hub").Select(r => Uri.UnescapeDataString(r.Path)).Where(p => p.StartsWith("/" + repo + "/resolve/", StringComparison.Ordinal))
            .Select(p => p[(p.IndexOf("/resolve/", StringComparison.Ordinal) + "/resolve/".Length)..]).Select(p => p[(p.IndexOf('/') + 1)..]).Distinct().ToList();

    [Fact]
    public void Pull_catalog_id_and_quant_fetches_the_listed_file_from_the_gguf_repository()
    {
        var g = Gguf("qwen2.5-0.5b-instruct");
        string q4 = g.FileFor("Q4_K_M")!, q8 = g.FileFor("Q8_0")!;
        Assert.Equal("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", q4);
        // a real (tiny) GGUF under the Q4_K_M name, so the pulled file can be opened afterwards
        string tiny = dir.File("tiny.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("q8_0"), tiny, threads: 2);
        hub.AddRepo(new FakeRepo { Id = g.Repo, License = "apache-2.0" }
            .Add(q4, File.ReadAllBytes(tiny))
            .Add(q8, HubPullTests.Bytes(20_000, 8))
            // same quant tag, other case: `pull org/name:Q4_K_M` would be ambiguous here; the catalog names the exact file
            .Add("qwen2.5-0.5b-instruct-q4_k_m.gguf", HubPullTests.Bytes(20_000, 9)));
        // the original repository exists too and must not be touched
        hub.AddRepo(new FakeRepo { Id = "Qwen/Qwen2.5-0.5B-Instruct" }.Add("model.safetensors", HubPullTests.Bytes(1000, 1)));

        var ambiguous = Run("pull", g.Repo + ":Q4_K_M");
        Assert.Equal(1, ambiguous.Code);
        Assert.Contains("matches several", ambiguous.Err);

        var r = Run("pull", "qwen2.5-0.5b-instruct:Q4_K_M", "--json");
        Assert.True(r.Code == 0, r.Err);
        var root = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(g.Repo, root.GetProperty("repo").GetString());
        Assert.Equal("qwen2.5-0.5b-instruct:Q4_K_M", root.GetProperty("catalog_spec").GetString());
        var files = root.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()).ToList();
        Assert.Equal([q4], files);
        Assert.EndsWith("/" + q4, root.GetProperty("model_path").GetString());
        Assert.Equal(File.ReadAllBytes(tiny), File.ReadAllBytes(root.GetProperty("model_path").GetString()!));
        Assert.Equal([q4], Resolved(g.Repo));
        Assert.Empty(Resolved("Qwen/Qwen2.5-0.5B-Instruct"));

        // the same spec opens the pulled file from the store (run, info, bench...)
        var info = Run("info", "qwen2.5-0.5b-instruct:Q4_K_M");
        Assert.True(info.Code == 0, info.Err);
        Assert.Contains("qwen2", info.Out);
        // Q8_0 was not pulled: resolving it says so and names the pull
        var missing = Run("info", "qwen2.5-0.5b-instruct:Q8_0");
        Assert.Equal(1, missing.Code);
        Assert.Contains("not in the local store", missing.Err);
        Assert.Contains(g.Repo + ":" + q8, missing.Err);
    }

    [Fact]
    public void Pull_catalog_id_alone_fetches_the_default_quant_and_says_what_it_resolved()
    {
        var g = Gguf("qwen2.5-0.5b-instruct");
        hub.AddRepo(new FakeRepo { Id = g.Repo, License = "apache-2.0" }
            .Add(g.FileFor("Q4_K_M")!, HubPullTests.Bytes(30_000, 1))
            .Add(g.FileFor("Q6_K")!, HubPullTests.Bytes(30_000, 2)));
        var r = Run("pull", "qwen2.5-0.5b");   // an alias
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"qwen2.5-0.5b -> {g.Repo}:{g.FileFor(GgufRepo.DefaultQuant)}", r.Out);
        Assert.Equal([g.FileFor("Q4_K_M")!], Resolved(g.Repo));
    }

    [Fact]
    public void Sharded_quant_pulls_every_shard_and_the_licence_gate_sees_the_catalog_model()
    {
        var g = Gguf("llama-3.3-70b-instruct");
        string first = g.FileFor("Q8_0")!;
        Assert.EndsWith("-00001-of-00002.gguf", first);
        string second = first.Replace("-00001-of-", "-00002-of-", StringComparison.Ordinal);
        hub.AddRepo(new FakeRepo { Id = g.Repo, License = "llama3.3" }
            .Add(first, HubPullTests.Bytes(40_000, 1)).Add(second, HubPullTests.Bytes(30_000, 2))
            .Add(g.FileFor("Q4_K_M")!, HubPullTests.Bytes(30_000, 3)));

        var refused = Run("pull", "llama-3.3-70b-instruct:Q8_0");
        Assert.Equal(1, refused.Code);
        Assert.Contains("llama-3.3-70b-instruct", refused.Err);
        Assert.Contains("--accept-license", refused.Err);
        Assert.Single(refused.Err.Trim().Split('\n'));

        var r = Run("pull", "llama-3.3-70b:q8_0", "--accept-license", "--json");
        Assert.True(r.Code == 0, r.Err);
        var files = JsonDocument.Parse(r.Out).RootElement.GetProperty("files").EnumerateArray().Select(f => f.GetProperty("path").GetString()).ToList();
        Assert.Equal([first, second], files);
        Assert.DoesNotContain(g.FileFor("Q4_K_M")!, Resolved(g.Repo));
    }

    [Fact]
    public void No_gguf_repository_or_unknown_quant_is_a_one_line_error_before_any_request()
    {
        var m = ModelCatalog.Default.Get("qwen3-8b");
        Assert.Null(m.Gguf);
        var none = Run("pull", "qwen3-8b:Q4_K_M");
        Assert.Equal(1, none.Code);
        Assert.Single(none.Err.Trim().Split('\n'));
        Assert.Contains("no GGUF repository for qwen3-8b", none.Err);
        Assert.Contains("openweights pull " + m.Hf.Instruct, none.Err);
        Assert.Equal(1, Run("pull", "qwen3-8b").Code);

        var unknown = Run("pull", "qwen2.5-0.5b-instruct:Q5_K_S");
        Assert.Equal(1, unknown.Code);
        Assert.Single(unknown.Err.Trim().Split('\n'));
        Assert.Contains("no Q5_K_S file", unknown.Err);
        Assert.Contains("Q4_K_M", unknown.Err);
        Assert.Empty(hub.Log);
    }

    [Fact]
    public void Resolver_leaves_repository_specs_alone()
    {
        var cat = ModelCatalog.Default;
        Assert.Null(CatalogPullSpec.Resolve("Qwen/Qwen2.5-0.5B-Instruct", cat));
        Assert.Null(CatalogPullSpec.Resolve("org/x:Q4_K_M", cat));
        Assert.Null(CatalogPullSpec.Resolve("not-a-catalog-id:Q4_K_M", cat));
        var p = CatalogPullSpec.Resolve("TinyLlama:q4_0", cat)!;
        Assert.Equal(("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q4_0.gguf"), (p.RepoId, p.File));
        Assert.Null(p.Quant);
    }
}
