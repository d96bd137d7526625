using System.CommandLine;
using OpenWeights.Hub;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights pull REPO[:FILE|:QUANT]`: download a model from Hugging Face into the local store.</summary>
public static class PullCommand
{
    public static Command Create() => Create(gate: null);

    /// <summary>The catalog's license gate plugs in here; a catalog id (ID[:QUANT]) pulls the file the catalog lists in its GGUF repository.</summary>
    public static Command Create(IPullGate? gate)
    {
        var spec = new Argument<string>("model") { Description = "org/name, org/name:QUANT (e.g. Q4_K_M), org/name:FILE, or a catalog id ID[:QUANT] (its GGUF repository's file; default Q4_K_M)" };
        var revision = new Option<string?>("--revision") { Description = "Branch, tag or commit (default: main)" };
        var accept = new Option<bool>("--accept-license") { Description = "Accept the model's license and record it in the store" };
        var use = new Option<string?>("--use") { Description = "Intended use, checked against the catalog's license terms: commercial, research or personal" };
        var mau = new Option<long?>("--mau") { Description = "Monthly active users of your product (checked against the license's user limit)" };
        var region = new Option<string?>("--region") { Description = "Where you are established, e.g. EU (checked against regional restrictions)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("pull", "Download a model from Hugging Face into the local store (the huggingface_hub cache)") { spec, revision, accept, use, mau, region, json };
        cmd.SetAction(async (pr, ct) =>
        {
            var output = pr.InvocationConfiguration.Output;
            var error = pr.InvocationConfiguration.Error;
            var settings = HubCli.Settings();
            var store = new HubStore(settings.CacheDir);
            var g = gate;
            if (gate is CatalogPullGate cg)
                g = cg with
                {
                    Use = pr.GetValue(use) is { } u ? OpenWeights.Catalog.LicenseGate.ParseUse(u) : null,
                    Mau = pr.GetValue(mau), Region = pr.GetValue(region),
                    AlreadyAccepted = repo => File.Exists(store.LicensePath(repo)),
                    Notes = [],
                };
            else if (pr.GetValue(use) is not null || pr.GetValue(mau) is not null || pr.GetValue(region) is not null)
                throw new OpenWeightsException("--use, --mau and --region need the catalog license gate");
            string typed = pr.GetValue(spec)!;
            var catalog = (gate as CatalogPullGate)?.Catalog ?? OpenWeights.Catalog.ModelCatalog.Default;
            var fromCatalog = CatalogPullSpec.Resolve(typed, catalog);
            string typedId = typed.Split(':')[0].Trim();
            if (fromCatalog is null && !typedId.Contains('/') && catalog.Suggest(typedId) is not null)
                throw new OpenWeightsException(catalog.UnknownModelMessage(typedId)); // a mistyped catalog id, not an org/name
            var puller = new HubPuller(settings, g) { Progress = ProgressPrinter.For(error) };
            PullResult result;
            try { result = await puller.PullAsync(fromCatalog ?? PullSpec.Parse(typed), new PullOptions { Revision = pr.GetValue(revision), AcceptLicense = pr.GetValue(accept) }, ct); }
            catch (LicenseNotAcceptedException e) { throw new OpenWeightsException(AcceptAdvice(e), e); }
            long total = result.Files.Sum(f => f.Size);
            if (g is CatalogPullGate done) foreach (var note in done.Notes) error.WriteLine($"openweights: note: {note}");
            if (pr.GetValue(json))
            {
                CliJson.Write(output, new
                {
                    repo = result.RepoId, catalog_spec = fromCatalog is null ? null : typed, revision = result.Revision, commit = result.Commit, model_path = result.ModelPath, snapshot = result.SnapshotDir,
                    offline = result.Offline, license_record = result.LicenseRecordPath,
                    files = result.Files.Select(f => new { path = f.Path, size = f.Size, local_path = f.LocalPath, downloaded = f.Downloaded }).ToList(),
                });
            }
            else
            {
                int downloaded = result.Files.Count(f => f.Downloaded);
                if (fromCatalog is not null) output.WriteLine($"{typed} -> {fromCatalog}");
                output.WriteLine($"{result.RepoId}@{result.Commit[..12]}: {result.Files.Count} file(s), {HubCli.FormatBytes(total)}, {downloaded} downloaded{(result.Offline ? " (offline)" : "")}");
                if (result.LicenseRecordPath is not null) output.WriteLine($"license accepted: {result.LicenseRecordPath}");
                output.WriteLine(result.ModelPath);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The library's refusal, advised in flags: "...; read it (openweights models show ID, URL) and pass --accept-license to accept it".</summary>
    internal static string AcceptAdvice(LicenseNotAcceptedException e) => e.ModelId is null
        ? $"{e.Problem}; read its terms and pass --accept-license"
        : $"{e.Problem}; read it (openweights models show {e.ModelId}{(e.LicenseUrl is null ? "" : ", " + e.LicenseUrl)}) and pass --accept-license to accept it";
}
