using System.CommandLine;
using OpenWeights.Catalog;
using OpenWeights.Hardware;
using F = OpenWeights.Cli.Commands.CatalogFormat;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights models [filters]` lists the catalog; `openweights models show ID` prints one model's sheet.</summary>
public static class ModelsCommand
{
    public static Command Create()
    {
        var commercial = new Option<bool>("--commercial") { Description = "Only models whose licence allows commercial use (with --mau: at your user count)" };
        var mau = new Option<long?>("--mau") { Description = "Your products' monthly active users, checked against licence limits" };
        var region = new Option<string?>("--region") { Description = "Where you are domiciled (e.g. EU), checked against regional licence restrictions" };
        var language = new Option<string?>("--language") { Description = "ISO 639-1 code the model must support (e.g. de)" };
        var fits = new Option<bool>("--fits") { Description = "Only models that fit this machine's available RAM at some quantization, or (mixtures of experts) run from the file map, marked with their estimated speed (ones the engine cannot run yet are marked)" };
        var runnable = new Option<bool>("--runnable") { Description = "Only models the engine can run (their architecture is in its registry)" };
        var maxParams = new Option<double?>("--max-params") { Description = "Largest total parameter count, in billions" };
        var family = new Option<string?>("--family") { Description = "Only this family (llama, gemma, mistral, deepseek, qwen, phi, smollm, olmo, tinyllama, gpt-oss)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("models", "List the model catalog, filtered by licence, language, size and hardware fit")
        {
            commercial, mau, region, language, fits, runnable, maxParams, family, json,
        };
        cmd.Subcommands.Add(CreateShow());
        cmd.SetAction(pr =>
        {
            var cat = ModelCatalog.Default;
            var w = pr.InvocationConfiguration.Output;
            IEnumerable<CatalogModel> q = cat.Models;
            if (pr.GetValue(family) is { } fam) q = q.Where(m => string.Equals(m.Family, fam, StringComparison.OrdinalIgnoreCase));
            if (pr.GetValue(maxParams) is { } mp) q = q.Where(m => m.ParamsB is { } p && p <= mp);
            long? mauValue = pr.GetValue(mau);
            string? regionValue = pr.GetValue(region);
            if (pr.GetValue(commercial))
                q = q.Where(m => LicenseGate.Check(m, LicenseUse.Commercial, mauValue, regionValue, cat).Allowed);
            else if (mauValue is not null || regionValue is not null)
                q = q.Where(m => LicenseGate.Check(m, LicenseUse.Personal, mauValue, regionValue, cat).Allowed
                    || LicenseGate.Check(m, LicenseUse.Research, mauValue, regionValue, cat).Allowed);
            string? lang = pr.GetValue(language)?.ToLowerInvariant();
            if (lang is not null) q = q.Where(m => LanguageMatch(m, lang) is not null);
            if (pr.GetValue(runnable)) q = q.Where(m => EngineSupport.For(m).Runs);

            bool wantFit = pr.GetValue(fits);
            HardwareInfo? hw = wantFit ? HardwareProbe.Probe(new HardwareProbeOptions { QueryGpus = false, BandwidthFile = HardwareCommand.BandwidthFile() }) : null;
            var rows = q.Select(m => (m, fit: hw is null ? null : FitEstimator.Estimate(m, hw))).ToList();
            if (wantFit) rows = rows.Where(r => r.fit!.BestQuant is not null).ToList();

            if (pr.GetValue(json))
            {
                CliJson.Write(w, rows.Select(r => new
                {
                    r.m.Id,
                    r.m.Name,
                    r.m.Family,
                    r.m.ParamsB,
                    r.m.ActiveParamsB,
                    Experts = r.m.Architecture?.Moe?.Experts,
                    ExpertsPerToken = r.m.Architecture?.Moe?.ExpertsPerToken,
                    SharedExperts = r.m.Architecture?.Moe?.SharedExperts,
                    FileMap = r.fit is null ? (bool?)null : r.fit.BestQuant is not null && r.fit.Ladder.FirstOrDefault(x => x.Quant == r.fit.BestQuant)?.Verdict == FitVerdict.FromFileMap,
                    Context = r.m.Architecture?.Context,
                    r.m.License,
                    Commercial = F.Commercial(r.m, cat),
                    MauLimit = new[] { r.m.License }.Concat(r.m.AdditionalLicenses).Select(cat.GetLicense).Select(l => l.MauLimit).Where(x => x is not null).Min(),
                    r.m.Languages,
                    r.m.LanguageCount,
                    LanguageMatch = lang is null ? null : LanguageMatch(r.m, lang),
                    r.m.Gated,
                    r.m.Openness,
                    Runs = EngineSupport.For(r.m).Runs,
                    Architecture = r.m.Architecture?.GgufArchitecture,
                    BestQuant = r.fit?.BestQuant,
                    GgufRepo = r.m.Gguf?.Repo,
                    r.m.Uncertain,
                }).ToList());
                return 0;
            }
            if (rows.Count == 0) { w.WriteLine("no models match"); return 0; }
            var header = new List<string> { "ID", "PARAMS", "ACTIVE", "EXPERTS", "CONTEXT", "RUNS", "LICENSE", "COMMERCIAL", "LANGUAGES" };
            if (wantFit) header.Add("BEST FIT");
            F.Table(w, header, rows.Select(r =>
            {
                var m = r.m;
                var cells = new List<string>
                {
                    m.Id,
                    F.Params(m.ParamsB) + (m.IsUncertain("params_b") ? "?" : ""),
                    F.Params(m.ActiveParamsB) + (m.IsUncertain("active_params_b") ? "?" : ""),
                    m.Architecture?.Moe is { } moe ? $"{moe.ExpertsPerToken}/{moe.Experts}{(moe.SharedExperts > 0 ? $"+{moe.SharedExperts}" : "")}" + (m.IsUncertain("moe") ? "?" : "") : "-",
                    F.Context(m.Architecture?.Context) + (m.IsUncertain("context") ? "?" : ""),
                    EngineSupport.For(m).Runs ? "yes" : "no",
                    m.License,
                    F.Commercial(m, cat),
                    F.Languages(m),
                };
                if (wantFit)
                {
                    var f = r.fit!;
                    // from the file map the speed is what matters: a 671B model "runs" on 24 GB, at a token every few seconds
                    string mapped = f.BestQuant is { } b && f.Ladder.FirstOrDefault(x => x.Quant == b) is { Verdict: FitVerdict.FromFileMap } rung
                        ? rung.DecodeTokensPerSecond is { } t ? $" (file map, ~{F.Number(t, t < 1 ? "0.##" : "0.#")} tok/s)" : " (file map)" : "";
                    cells.Add(f.BestQuant is not { } bq ? "-" : f.Runs ? bq + mapped : $"{bq}{mapped} (cannot run yet)");
                }
                return (IReadOnlyList<string>)cells;
            }));
            w.WriteLine();
            w.WriteLine($"{rows.Count} models. '?' marks an uncertain figure. EXPERTS: routed experts used per token / in all (+ shared) for mixtures of experts, whose speed follows ACTIVE and memory PARAMS. RUNS: whether this engine (CPU-only) can run the architecture today; --runnable lists only those. Details: openweights models show ID");
            int unrunnable = rows.Count(r => !EngineSupport.For(r.m).Runs);
            if (wantFit && unrunnable > 0)
                w.WriteLine($"{unrunnable} of them fit in memory but the engine cannot run them yet (RUNS no); add --runnable to hide them.");
            return 0;
        });
        return cmd;
    }

    /// <summary>"listed" when the research names the language, "claimed" when the model only claims a language count; null otherwise.</summary>
    internal static string? LanguageMatch(CatalogModel m, string code) =>
        m.Languages.Contains(code, StringComparer.OrdinalIgnoreCase) ? "listed"
        : m.LanguageCount is not null ? "claimed"
        : null;

    private static Command CreateShow()
    {
        var id = new Argument<string>("id") { Description = "Model id or alias (see 'openweights models')" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("show", "Print a model's full sheet: architecture, licence terms in plain language, obligations") { id, json };
        cmd.SetAction(pr =>
        {
            var cat = ModelCatalog.Default;
            var m = cat.Get(pr.GetValue(id)!);
            var lics = new[] { m.License }.Concat(m.AdditionalLicenses).Select(cat.GetLicense).ToList();
            var w = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json))
            {
                var es = EngineSupport.For(m);
                CliJson.Write(w, new { Model = m, Licenses = lics, GgufInCatalog = m.Gguf is not null, Pull = PullCommandFor(m), Runs = es.Runs, CannotRun = es.Reason });
                return 0;
            }
            string U(string field) => m.IsUncertain(field) ? " ?" : "";
            w.WriteLine($"{m.Name}  ({m.Id})");
            if (m.Aliases.Count > 0) w.WriteLine($"  aliases        {string.Join(", ", m.Aliases)}");
            w.WriteLine($"  family         {m.Family}");
            if (m.Hf.Instruct is not null) w.WriteLine($"  hf (instruct)  {m.Hf.Instruct}");
            if (m.Hf.Base is not null) w.WriteLine($"  hf (base)      {m.Hf.Base}");
            foreach (var o in m.Hf.Other) w.WriteLine($"  hf (other)     {o}");
            if (m.Gguf is { } g)
            {
                w.WriteLine($"  gguf           {g.Repo}{(g.Source is null ? "" : $" (source {g.Source})")}");
                foreach (var (quant, file) in g.Files) w.WriteLine($"    {quant,-8} {file}");
            }
            else w.WriteLine("  gguf           none in the catalog (no source confirmed a GGUF repository and its file names)");
            w.WriteLine($"  pull           {PullCommandFor(m)}");
            w.WriteLine($"  gated          {(m.Gated is null ? "unknown" : m.Gated.Value ? "yes (accept the licence on Hugging Face)" : "no")}{U("gated")}");
            var support = EngineSupport.For(m);
            w.WriteLine($"  runs           {(support.Runs ? $"yes (engine architecture {support.Architecture})" : $"no: {support.Reason}")}");
            w.WriteLine($"  parameters     {F.Params(m.ParamsB)}{U("params_b")} total, {F.Params(m.ActiveParamsB)}{U("active_params_b")} active per token");
            if (m.Architecture is { } a)
            {
                w.WriteLine($"  architecture   {a.Kind ?? "?"}{(a.GgufArchitecture is null ? "" : $", {a.GgufArchitecture}")}{(m.ArchitectureFrom is null ? "" : $" (from {m.ArchitectureFrom}){U("architecture")}")}");
                w.WriteLine($"    layers {Val(a.Layers)}{U("layers")}, hidden {Val(a.HiddenSize)}{U("hidden_size")}, heads {Val(a.Heads)}{U("heads")}/{Val(a.KvHeads)}{U("kv_heads")} KV, head dim {Val(a.HeadDim)}{U("head_dim")}, vocab {Val(a.Vocab)}{U("vocab")}, context {F.Context(a.Context)}{U("context")}");
                if (a.Moe is { } moe)
                    w.WriteLine($"    MoE: {moe.Experts} experts, {moe.ExpertsPerToken} per token, {moe.SharedExperts} shared{(moe.MoeLayerStep > 1 ? $", every {moe.MoeLayerStep} layers" : "")}{(moe.FirstDenseLayers is { } fd ? $", first {fd} layers dense" : "")}{(moe.ExpertFfn is { } ef ? $", expert feed-forward {ef}" : "")}{U("moe")}; memory follows the {F.Params(m.ParamsB)} total, speed the {F.Params(m.ActiveParamsB)} active");
                if (a.LocalAttention is { } la)
                    w.WriteLine($"    {la.Kind} attention: window {la.Window}, one global layer in {la.GlobalEvery}{U("local_attention")}");
                if (a.Mla is { } mla)
                    w.WriteLine($"    MLA: kv_lora_rank {mla.KvLoraRank} + rope dim {mla.RopeHeadDim} cached per token per layer");
            }
            w.WriteLine($"  modalities     {(m.Modalities is null ? "not stated" : string.Join(", ", m.Modalities))}");
            w.WriteLine($"  languages      {(m.Languages.Count > 0 ? string.Join(", ", m.Languages) : "-")}{U("languages")}{(m.LanguagesNote is null ? "" : $"  ({m.LanguagesNote})")}");
            w.WriteLine($"  released       {m.ReleaseDate ?? "?"}{U("release_date")}; knowledge cutoff {m.KnowledgeCutoff ?? "not stated"}{U("knowledge_cutoff")}; training tokens {m.TrainingTokens ?? "?"}{U("training_tokens")}");
            w.WriteLine($"  openness       {m.Openness}");
            if (m.Notes is not null) w.WriteLine($"  notes          {m.Notes}");
            foreach (var l in lics)
            {
                w.WriteLine();
                w.WriteLine($"Licence: {l.Name} ({l.Id}){(l.Id == m.License ? "" : " — also applies")}{(m.IsUncertain("license") && l.Id == m.License ? " ?" : "")}");
                if (l.Url is not null) w.WriteLine($"  {l.Url}");
                w.WriteLine($"  {l.Summary}");
                w.WriteLine($"  commercial use: {(l.CommercialUse ? "yes" : "no")}; allowed uses: {string.Join(", ", l.AllowedUses)}; OSI-approved: {(l.OsiApproved ? "yes" : "no")}");
                if (l.MauLimit is not null) w.WriteLine($"  user limit: {l.MauClause}");
                if (l.NamingRule is not null) w.WriteLine($"  naming: {l.NamingRule}");
                if (l.AcceptableUsePolicy is not null) w.WriteLine($"  acceptable use: {l.AcceptableUsePolicy}{(l.AcceptableUsePolicyUrl is null ? "" : $" ({l.AcceptableUsePolicyUrl})")}");
                foreach (var rr in l.RegionalRestrictions.Where(r => r.AppliesToModel(m)))
                    w.WriteLine($"  regional restriction ({rr.Region}): {rr.Clause}");
                if (l.Obligations.Count > 0)
                {
                    w.WriteLine("  obligations:");
                    foreach (var ob in l.Obligations) w.WriteLine($"    - {ob}");
                }
                if (l.Uncertain.Count > 0) w.WriteLine($"  unverified terms: {string.Join(", ", l.Uncertain)}");
            }
            if (m.Uncertain.Count > 0)
            {
                w.WriteLine();
                w.WriteLine($"Uncertain facts (marked '?'): {string.Join(", ", m.Uncertain)}");
            }
            if (m.Sources.Count > 0) w.WriteLine($"Sources: {string.Join(", ", m.Sources)} (see catalog.json)");
            return 0;
        });
        return cmd;
    }

    /// <summary>The pull that fetches this model: the catalog's GGUF file (default quant), else the original repository.</summary>
    internal static string PullCommandFor(CatalogModel m) =>
        m.Gguf is not null ? $"openweights pull {m.Id}:{GgufRepo.DefaultQuant}"
        : $"openweights pull {m.Hf.Instruct ?? m.Hf.Base ?? m.Hf.Other.FirstOrDefault() ?? m.Id}";

    private static string Val(int? v) => v?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?";
}
