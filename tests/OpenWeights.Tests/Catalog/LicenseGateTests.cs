using OpenWeights.Catalog;

namespace OpenWeights.Tests.Catalog;

public class LicenseGateTests
{
    private static CatalogModel M(string id) => ModelCatalog.Default.Get(id);

    [Fact]
    public void Llama_commercial_below_700M_is_allowed_with_obligations()
    {
        var d = LicenseGate.Check(M("llama-3.1-8b-instruct"), LicenseUse.Commercial, mau: 5_000_000);
        Assert.True(d.Allowed);
        Assert.Null(d.Clause);
        Assert.Contains(d.Obligations, o => o.Contains("Built with Llama"));
        Assert.Contains(d.Obligations, o => o.Contains("starts with \"Llama\""));
        Assert.DoesNotContain(d.Warnings, w => w.Contains("monthly active users"));
    }

    [Fact]
    public void Llama_above_700M_is_refused_by_the_MAU_clause()
    {
        var d = LicenseGate.Check(M("llama-3.3-70b"), LicenseUse.Commercial, mau: 800_000_000);
        Assert.False(d.Allowed);
        Assert.Equal("llama3.3", d.RefusedBy);
        Assert.Contains("700M", d.Clause);
    }

    [Fact]
    public void Llama_commercial_without_mau_warns_about_the_limit()
    {
        var d = LicenseGate.Check(M("llama-3.1-8b"), LicenseUse.Commercial);
        Assert.True(d.Allowed);
        Assert.Contains(d.Warnings, w => w.Contains("700,000,000"));
    }

    [Fact]
    public void Qwen_license_has_a_100M_limit()
    {
        Assert.True(LicenseGate.Check(M("qwen2.5-72b"), LicenseUse.Commercial, 50_000_000).Allowed);
        var d = LicenseGate.Check(M("qwen2.5-72b"), LicenseUse.Commercial, 150_000_000);
        Assert.False(d.Allowed);
        Assert.Equal("qwen", d.RefusedBy);
        Assert.Contains("100M", d.Clause);
        // Apache-2.0 Qwen models have no limit.
        Assert.True(LicenseGate.Check(M("qwen2.5-7b"), LicenseUse.Commercial, 5_000_000_000).Allowed);
    }

    [Theory]
    [InlineData("mistral-large-instruct-2407", "mrl")]
    [InlineData("codestral-22b-v0.1", "mnpl")]
    [InlineData("qwen2.5-3b-instruct", "qwen-research")]
    public void Non_commercial_licences_refuse_commercial_use(string id, string licence)
    {
        var d = LicenseGate.Check(M(id), LicenseUse.Commercial);
        Assert.False(d.Allowed);
        Assert.Equal(licence, d.RefusedBy);
        Assert.Contains("no commercial use", d.Clause);
        Assert.True(LicenseGate.Check(M(id), LicenseUse.Research).Allowed);
    }

    [Fact]
    public void Qwen_research_license_is_research_only()
    {
        var d = LicenseGate.Check(M("qwen2.5-3b"), LicenseUse.Personal);
        Assert.False(d.Allowed);
        Assert.Contains("personal use is not granted", d.Clause);
        Assert.True(LicenseGate.Check(M("mistral-large-2"), LicenseUse.Personal).Allowed);
    }

    [Fact]
    public void Llama4_is_refused_in_the_EU_because_it_is_multimodal()
    {
        var d = LicenseGate.Check(M("llama-4-scout"), LicenseUse.Commercial, mau: 1000, region: "eu");
        Assert.False(d.Allowed);
        Assert.Equal("llama4", d.RefusedBy);
        Assert.Contains("EU", d.Clause);

        var unknownRegion = LicenseGate.Check(M("llama-4-scout"), LicenseUse.Commercial, mau: 1000);
        Assert.True(unknownRegion.Allowed);
        Assert.Contains(unknownRegion.Warnings, w => w.Contains("EU"));
        Assert.True(LicenseGate.Check(M("llama-4-maverick"), LicenseUse.Research, region: "US").Allowed);
    }

    [Fact]
    public void Llama_3_2_text_models_are_not_affected_by_the_EU_clause()
    {
        var d = LicenseGate.Check(M("llama-3.2-1b"), LicenseUse.Commercial, mau: 1000, region: "EU");
        Assert.True(d.Allowed);
        Assert.DoesNotContain(d.Warnings, w => w.Contains("EU"));
    }

    [Fact]
    public void Distills_are_bound_by_every_licence()
    {
        var d = LicenseGate.Check(M("deepseek-r1-distill-llama-8b"), LicenseUse.Commercial, mau: 900_000_000);
        Assert.False(d.Allowed);
        Assert.Equal("llama3.1", d.RefusedBy);
        var ok = LicenseGate.Check(M("deepseek-r1-distill-qwen-7b"), LicenseUse.Commercial, mau: 900_000_000);
        Assert.True(ok.Allowed);
        Assert.Contains(ok.Obligations, o => o.Contains("Apache"));
        Assert.Contains(ok.Obligations, o => o.Contains("copyright and permission notice"));
    }

    [Fact]
    public void Gemma_allows_commercial_use_at_any_scale_and_passes_restrictions_on()
    {
        var d = LicenseGate.Check(M("gemma-3-27b"), LicenseUse.Commercial, mau: 10_000_000_000);
        Assert.True(d.Allowed);
        Assert.Contains(d.Obligations, o => o.Contains("pass the use restrictions on"));
        Assert.Contains(d.Warnings, w => w.Contains("unverified")); // "Google may restrict use" is marked '?' in the research
    }

    [Fact]
    public void Permissive_licences_are_allowed_without_warnings()
    {
        var d = LicenseGate.Check(M("olmo-2-7b"), LicenseUse.Commercial, mau: long.MaxValue, region: "EU");
        Assert.True(d.Allowed);
        Assert.Empty(d.Warnings);
        Assert.NotEmpty(d.Obligations);
    }

    [Fact]
    public void Uncertain_model_licence_is_warned()
    {
        var d = LicenseGate.Check(M("deepseek-v3-0324"), LicenseUse.Commercial);
        Assert.True(d.Allowed);
        Assert.Contains(d.Warnings, w => w.Contains("unverified"));
    }

    [Fact]
    public void ParseUse_accepts_the_three_uses()
    {
        Assert.Equal(LicenseUse.Commercial, LicenseGate.ParseUse("Commercial"));
        Assert.Equal(LicenseUse.Research, LicenseGate.ParseUse("research"));
        Assert.Equal(LicenseUse.Personal, LicenseGate.ParseUse("personal"));
        Assert.Throws<OpenWeightsException>(() => LicenseGate.ParseUse("military"));
    }
}
