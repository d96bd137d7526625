using System.Text.RegularExpressions;
using OpenWeights.Catalog;

namespace OpenWeights.Tests.Catalog;

/// <summary>Validates catalog.json: required fields, references, arithmetic consistency, and facts from the research notes.</summary>
public class CatalogTests
{
    private static readonly ModelCatalog Cat = ModelCatalog.Default;

    private static readonly HashSet<string> KnownFields =
    [
        "params_b", "active_params_b", "layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab", "context",
        "moe", "local_attention", "mla", "architecture", "license", "gated", "languages", "languages_note", "language_count",
        "release_date", "knowledge_cutoff", "training_tokens",
    ];

    public static TheoryData<string> ModelIds() => new(ModelCatalog.Default.Models.Select(m => m.Id));

    [Fact]
    public void Loads_from_embedded_resource_with_every_family()
    {
        Assert.True(Cat.Models.Count >= 50, $"only {Cat.Models.Count} models");
        var families = Cat.Models.Select(m => m.Family).ToHashSet();
        foreach (var f in new[] { "llama", "gemma", "mistral", "deepseek", "qwen", "phi", "smollm", "olmo", "tinyllama", "gpt-oss" })
            Assert.Contains(f, families);
    }

    [Fact]
    public void Ids_and_aliases_are_unique_lowercase_and_resolvable()
    {
        var seen = new HashSet<string>();
        foreach (var m in Cat.Models)
        {
            foreach (var name in m.Aliases.Prepend(m.Id))
            {
                Assert.Matches("^[a-z0-9][a-z0-9.\\-]*$", name);
                Assert.True(seen.Add(name), $"duplicate id/alias {name}");
                Assert.Same(m, Cat.Get(name));
                Assert.Same(m, Cat.Get(name.ToUpperInvariant()));
            }
        }
    }

    [Theory]
    [MemberData(nameof(ModelIds))]
    public void Every_model_is_well_formed(string id)
    {
        var m = Cat.Get(id);
        Assert.False(string.IsNullOrWhiteSpace(m.Name));
        Assert.True(m.Hf.Instruct is not null || m.Hf.Base is not null, "no HF repo");
        foreach (var repo in new[] { m.Hf.Instruct, m.Hf.Base }.Concat(m.Hf.Other).OfType<string>())
            Assert.Matches("^[A-Za-z0-9_.\\-]+/[A-Za-z0-9_.\\-]+$", repo);

        // Licences exist.
        Assert.True(Cat.TryGetLicense(m.License, out _), $"unknown licence {m.License}");
        foreach (var l in m.AdditionalLicenses) Assert.True(Cat.TryGetLicense(l, out _), $"unknown licence {l}");

        // Parameters.
        Assert.NotNull(m.ParamsB);
        Assert.True(m.ParamsB > 0);
        Assert.NotNull(m.ActiveParamsB);
        Assert.True(m.ActiveParamsB <= m.ParamsB, "active > total");

        // Architecture consistency.
        var a = m.Architecture;
        Assert.NotNull(a);
        Assert.Contains(a.Kind, new[] { "dense", "moe" });
        if (a.Kind == "dense") Assert.Equal(m.ParamsB, m.ActiveParamsB);
        if (a.Kind == "moe")
        {
            Assert.NotNull(a.Moe);
            Assert.True(m.ActiveParamsB < m.ParamsB, "MoE with active == total");
            Assert.InRange(a.Moe.ExpertsPerToken, 1, a.Moe.Experts);
            Assert.True(a.Moe.MoeLayerStep >= 1);
        }
        else Assert.Null(a.Moe);
        if (a.Heads is { } h && a.KvHeads is { } kv) Assert.True(h % kv == 0, $"heads {h} not divisible by kv heads {kv}");
        foreach (var v in new[] { a.Layers, a.HiddenSize, a.Heads, a.KvHeads, a.HeadDim, a.Vocab, a.Context }) Assert.True(v is null || v > 0);
        Assert.NotNull(a.Context);
        if (a.LocalAttention is { } la)
        {
            Assert.Contains(la.Kind, new[] { "sliding", "chunked" });
            Assert.True(la.Window > 0 && la.Window < a.Context);
            Assert.True(la.GlobalEvery >= 2);
        }
        if (a.Mla is { } mla) Assert.True(mla.KvLoraRank > 0 && mla.RopeHeadDim > 0);
        if (m.ArchitectureFrom is { } from) Assert.Same(Cat.Get(from).Architecture, a);

        // Languages, dates, openness, uncertainty, sources.
        foreach (var lang in m.Languages) Assert.Matches("^[a-z]{2}$", lang);
        Assert.Equal(m.Languages.Count, m.Languages.Distinct().Count());
        if (m.ReleaseDate is not null) Assert.Matches(@"^\d{4}(-\d{2}(-\d{2})?)?$", m.ReleaseDate);
        if (m.KnowledgeCutoff is not null) Assert.Matches(@"^\d{4}(-\d{2}(-\d{2})?)?$", m.KnowledgeCutoff);
        Assert.Contains(m.Openness, new[] { "open-source", "open-weights-permissive", "open-weights-restricted" });
        foreach (var f in m.Uncertain) Assert.True(KnownFields.Contains(f), $"unknown field '{f}' in uncertain list");
        Assert.Equal(m.Uncertain.Count, m.Uncertain.Distinct().Count());
        foreach (var s in m.Sources) Assert.True(Cat.Document.Sources.ContainsKey(s), $"unknown source key {s}");
        if (m.Modalities is not null) Assert.Contains("text", m.Modalities);
    }

    [Theory]
    [MemberData(nameof(ModelIds))]
    public void Openness_class_follows_the_licences(string id)
    {
        var m = Cat.Get(id);
        bool allOsi = new[] { m.License }.Concat(m.AdditionalLicenses).All(l => Cat.GetLicense(l).OsiApproved);
        if (allOsi) Assert.NotEqual("open-weights-restricted", m.Openness);
        else Assert.Equal("open-weights-restricted", m.Openness);
    }

    [Fact]
    public void Licences_are_well_formed_and_all_used()
    {
        var used = Cat.Models.SelectMany(m => m.AdditionalLicenses.Prepend(m.License)).ToHashSet();
        foreach (var l in Cat.Licenses)
        {
            Assert.Contains(l.Id, used);
            Assert.False(string.IsNullOrWhiteSpace(l.Summary));
            Assert.NotEmpty(l.Obligations);
            Assert.All(l.AllowedUses, u => Assert.Contains(u, new[] { "commercial", "research", "personal" }));
            Assert.Equal(l.CommercialUse, l.AllowedUses.Contains("commercial"));
            if (l.MauLimit is not null) Assert.False(string.IsNullOrWhiteSpace(l.MauClause));
            if (l.OsiApproved) { Assert.Null(l.MauLimit); Assert.True(l.CommercialUse); Assert.Empty(l.RegionalRestrictions); }
            if (l.NamingPrefix is not null) Assert.Contains(l.NamingPrefix, l.NamingRule);
            foreach (var r in l.RegionalRestrictions) Assert.Contains(r.AppliesTo, new[] { "all", "multimodal" });
            foreach (var s in l.Sources) Assert.True(Cat.Document.Sources.ContainsKey(s), $"unknown source key {s}");
        }
    }

    [Fact]
    public void Unknown_keys_in_the_json_are_rejected()
    {
        var json = ModelCatalog.EmbeddedJson().Replace("\"params_b\": 8,", "\"parms_b\": 8,");
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => ModelCatalog.Parse(json));
    }

    [Fact]
    public void Unknown_model_is_a_one_line_user_error()
    {
        var e = Assert.Throws<OpenWeightsException>(() => Cat.Get("no-such-model"));
        Assert.Equal("unknown model 'no-such-model' (try 'openweights models')", e.Message);
    }

    // ---- facts from docs/catalog-facts.md ------------------------------------------------------

    [Theory]
    [InlineData("llama-3.1-8b-instruct", 32, 4096, 32, 8, 128, 128256)]
    [InlineData("llama-3.1-70b-instruct", 80, 8192, 64, 8, 128, 128256)]
    [InlineData("llama-3.1-405b-instruct", 126, 16384, 128, 8, 128, 128256)]
    [InlineData("llama-3.2-1b-instruct", 16, 2048, 32, 8, 64, 128256)]
    [InlineData("gemma-3-27b-it", 62, 5376, 32, 16, 128, 262144)]
    [InlineData("mistral-large-instruct-2407", 88, 12288, 96, 8, 128, 32768)]
    [InlineData("tinyllama-1.1b-chat-v1.0", 22, 2048, 32, 4, 64, 32000)]
    [InlineData("smollm2-360m-instruct", 32, 960, 15, 5, 64, 49152)]
    [InlineData("phi-4", 40, 5120, 40, 10, 128, 100352)]
    public void Architecture_matches_the_research(string id, int layers, int hidden, int heads, int kv, int hd, int vocab)
    {
        var a = Cat.Get(id).Architecture!;
        Assert.Equal((layers, hidden, heads, kv, hd, vocab), (a.Layers, a.HiddenSize, a.Heads, a.KvHeads, a.HeadDim, a.Vocab));
    }

    [Fact]
    public void Research_details_are_kept()
    {
        var scout = Cat.Get("llama-4-scout");
        Assert.Equal((109.0, 17.0), (scout.ParamsB!.Value, scout.ActiveParamsB!.Value));
        Assert.True(scout.IsMultimodal);
        Assert.Equal("chunked", scout.Architecture!.LocalAttention!.Kind);
        Assert.False(Cat.Get("llama-3.2-1b").IsMultimodal);

        var v3 = Cat.Get("deepseek-v3");
        Assert.Equal(512, v3.Architecture!.Mla!.KvLoraRank);
        Assert.Equal(64, v3.Architecture.Mla.RopeHeadDim);
        Assert.Equal((256, 8, 1), (v3.Architecture.Moe!.Experts, v3.Architecture.Moe.ExpertsPerToken, v3.Architecture.Moe.SharedExperts));

        Assert.Equal("qwen-research", Cat.Get("qwen2.5-3b-instruct").License);
        Assert.Equal("qwen", Cat.Get("qwen2.5-72b-instruct").License);
        Assert.Equal("mnpl", Cat.Get("codestral-22b").License);
        Assert.Equal("open-source", Cat.Get("olmo-2-7b").Openness);
        Assert.True(Cat.Get("llama-3.1-8b").Gated);
        Assert.False(Cat.Get("deepseek-r1").Gated);

        // Uncertain research figures stay marked.
        Assert.True(Cat.Get("gemma-3-270m").IsUncertain("layers"));
        Assert.True(Cat.Get("mixtral-8x7b").IsUncertain("layers"));
        Assert.True(Cat.Get("deepseek-v3-0324").IsUncertain("license"));
        Assert.True(Cat.Get("deepseek-r1-distill-qwen-7b").IsUncertain("context"));
        Assert.False(Cat.Get("llama-3.1-8b").IsUncertain("layers"));
    }

    [Fact]
    public void Facts_without_a_source_are_left_null()
    {
        // GGUF repositories only where a stored file listing was found: nothing is invented, so most models (Gemma, Qwen3,
        // Phi, gpt-oss, MoE...) have no GGUF entry.
        Assert.Null(Cat.Get("qwen3-8b").Gguf);
        Assert.Null(Cat.Get("gemma-3-4b-it").Gguf);
        Assert.True(Cat.Models.Count(m => m.Gguf is null) > Cat.Models.Count / 2);
        Assert.Null(Cat.Get("gemma-2-9b").KnowledgeCutoff);
    }

    // A GGUF file name carries its quant tag: Q4_K_M, Q8_0, bf16... bounded by '-', '.', '_' or the extension.
    private static bool NamesQuant(string file, string quant) =>
        Regex.IsMatch(file, "(?<![A-Za-z0-9])" + Regex.Escape(quant) + "(?![A-Za-z0-9]|_[A-Za-z0-9])", RegexOptions.IgnoreCase);

    [Fact]
    public void Gguf_entries_are_well_formed_and_sourced()
    {
        var withGguf = Cat.Models.Where(m => m.Gguf is not null).ToList();
        Assert.True(withGguf.Count >= 10, $"only {withGguf.Count} models have a GGUF repository");
        foreach (var m in withGguf)
        {
            var g = m.Gguf!;
            Assert.Matches("^[A-Za-z0-9][A-Za-z0-9._\\-]*/[A-Za-z0-9][A-Za-z0-9._\\-]*$", g.Repo);
            Assert.Contains("gguf", g.Repo, StringComparison.OrdinalIgnoreCase);
            Assert.NotEmpty(g.Files);
            Assert.True(g.Source is not null && Cat.Document.Sources.ContainsKey(g.Source), $"{m.Id}: GGUF source '{g.Source}' is not in the sources table");
            Assert.Contains("https://huggingface.co/" + g.Repo + "/", Cat.Document.Sources[g.Source!]);
            Assert.Contains(GgufRepo.DefaultQuant, g.Files.Keys);
            foreach (var (quant, file) in g.Files)
            {
                Assert.Matches("^(I?Q[1-8]_[0-9A-Z_]+|F16|BF16|F32)$", quant);
                Assert.EndsWith(".gguf", file, StringComparison.Ordinal);
                Assert.DoesNotContain("/", file);
                Assert.True(NamesQuant(file, quant), $"{m.Id}: {file} does not name its quant {quant}");
                // the hub's quant matching (pull org/name:QUANT) finds exactly this file's quant in the name
                Assert.Equal(quant, OpenWeights.Hub.PullSelection.QuantOf(file), StringComparer.OrdinalIgnoreCase);
                // a sharded file is named by its first shard
                if (Regex.Match(file, "-(\\d{5})-of-(\\d{5})\\.gguf$") is { Success: true } shard) Assert.Equal("00001", shard.Groups[1].Value);
            }
            Assert.Equal(g.Files.Count, g.Files.Values.Distinct(StringComparer.OrdinalIgnoreCase).Count());
            // the catalog's own licence gate recognises the GGUF repository as this model's
            Assert.Same(m, new OpenWeights.Hub.CatalogPullGate { Catalog = Cat }.FindModel(g.Repo));
        }
    }

    [Fact]
    public void Gguf_file_names_keep_the_case_the_source_lists()
    {
        Assert.Equal("Qwen2.5-7B-Instruct-Q4_K_M.gguf", Cat.Get("qwen2.5-7b-instruct").Gguf!.FileFor("q4_k_m"));
        Assert.Equal("smollm2-1.7b-instruct-q4_k_m.gguf", Cat.Get("smollm2-1.7b-instruct").Gguf!.FileFor("Q4_K_M"));
        Assert.Equal("Meta-Llama-3.1-8B-Instruct-bf16.gguf", Cat.Get("llama-3.1-8b-instruct").Gguf!.FileFor("BF16"));
        Assert.Equal("Llama-3.3-70B-Instruct-Q8_0-00001-of-00002.gguf", Cat.Get("llama-3.3-70b-instruct").Gguf!.FileFor("Q8_0"));
        Assert.Null(Cat.Get("qwen2.5-7b-instruct").Gguf!.FileFor("Q5_K_S"));
    }
}
