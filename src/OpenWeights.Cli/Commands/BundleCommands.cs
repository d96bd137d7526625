using System.CommandLine;
using OpenWeights.Hub.Bundles;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights export MODEL[+ADAPTER...] -o DIR|FILE.tar`: a verifiable bundle for a machine without network.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var spec = new Argument<string>("model") { Description = "MODEL[+ADAPTER...]: a catalog id, org/name[:QUANT] in the store, or a GGUF file / checkpoint folder; adapters are GGUF LoRA files or PEFT folders" };
        var output = CommonOptions.Output("Bundle to write: a folder, or a single file when the name ends in .tar (must not exist)");
        var signKey = new Option<string?>("--sign-key") { Description = "ECDSA private key (PEM) to sign manifest.json with (see `openweights keygen`)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("export", "Write a model (and adapters) with its licence, catalog entry and a SHA-256 manifest into a bundle for an air-gapped machine") { spec, output, signKey, json };
        cmd.SetAction((pr, ct) =>
        {
            var o = pr.InvocationConfiguration.Output;
            var err = pr.InvocationConfiguration.Error;
            var exporter = new BundleExporter(HubCli.Settings()) { Progress = ProgressPrinter.For(err) };
            var r = exporter.Export(pr.GetValue(spec)!, pr.GetValue(output)!, new ExportOptions { SignKeyFile = pr.GetValue(signKey), ToolVersion = VersionCommand.Text }, ct);
            foreach (var n in r.Notes) err.WriteLine($"openweights: note: {n}");
            var m = r.Manifest.Models[0];
            if (pr.GetValue(json))
                CliJson.Write(o, new { output = r.Output, tar = r.IsTar, signed = r.Signed, repo = m.Repo, commit = m.Commit, files = r.Manifest.Files.Count, bytes = r.TotalBytes, adapters = r.Manifest.Adapters.Select(a => a.Name).ToList() });
            else
            {
                o.WriteLine($"{m.Repo}@{m.Commit[..12]}: {r.Manifest.Files.Count} file(s), {HubCli.FormatBytes(r.TotalBytes)}{(r.Manifest.Adapters.Count > 0 ? $", {r.Manifest.Adapters.Count} adapter(s)" : "")}{(r.Signed ? ", signed" : "")}");
                o.WriteLine(r.Output);
            }
            return Task.FromResult(0);
        });
        return cmd;
    }
}

/// <summary>`openweights import BUNDLE`: verify every file, then install into the store.</summary>
public static partial class ImportCommand
{
    public static Command Create()
    {
        var bundle = new Argument<string>("bundle") { Description = "A bundle folder or .tar written by `openweights export`" };
        var trust = new Option<string?>("--trust-key") { Description = "ECDSA public key (PEM): refuse a bundle not signed with its private key" };
        var accept = new Option<bool>("--accept-license") { Description = "Accept the model's licence when the bundle carries no acceptance record" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("import", "Verify a bundle (SHA-256 of every file, signature, licence) and install it into the local store") { bundle, trust, accept, json };
        cmd.SetAction((pr, ct) =>
        {
            var o = pr.InvocationConfiguration.Output;
            var err = pr.InvocationConfiguration.Error;
            var importer = new BundleImporter(HubCli.Settings()) { Progress = ProgressPrinter.For(err) };
            ImportResult r;
            try { r = importer.Import(pr.GetValue(bundle)!, new ImportOptions { TrustKeyFile = pr.GetValue(trust), AcceptLicense = pr.GetValue(accept) }, ct); }
            catch (BundleLicenseNotAcceptedException e) { throw new OpenWeightsException(AcceptAdvice(e), e); }
            if (r.Signed && !r.SignatureVerified) err.WriteLine("openweights: note: the bundle is signed but no --trust-key was given; the signature was not checked");
            if (pr.GetValue(json))
                CliJson.Write(o, new
                {
                    signed = r.Signed, signature_verified = r.SignatureVerified, bytes = r.Bytes, adapters = r.AdapterPaths,
                    models = r.Models.Select(m => new { repo = m.Repo, commit = m.Commit, files = m.Files, files_installed = m.FilesInstalled, license_record = m.LicenseRecordPath }).ToList(),
                });
            else
            {
                foreach (var m in r.Models)
                    o.WriteLine($"{m.Repo}@{m.Commit[..12]}: {m.Files} file(s) verified, {(m.FilesInstalled == 0 ? "already in the store" : $"{m.FilesInstalled} installed")}{(r.SignatureVerified ? ", signature verified" : "")}; run it with `openweights run {m.Repo}`");
                foreach (var a in r.AdapterPaths) o.WriteLine($"adapter: {a}");
            }
            return Task.FromResult(0);
        });
        return cmd;
    }
}

/// <summary>The library's licence refusal, advised in flags.</summary>
public static partial class ImportCommand
{
    internal static string AcceptAdvice(BundleLicenseNotAcceptedException e) =>
        $"{e.Problem}; read it ({(e.ModelId is null ? "" : $"openweights models show {e.ModelId}")}{(e.ModelId is not null && e.LicenseUrl is not null ? ", " : "")}{e.LicenseUrl}) and pass --accept-license to accept it";
}

/// <summary>`openweights keygen -o FILE`: an ECDSA P-256 key pair for signing bundles.</summary>
public static class KeygenCommand
{
    public static Command Create()
    {
        var output = CommonOptions.Output("Private key file to write (PEM, owner-only); the public key goes to FILE.pub");
        var cmd = new Command("keygen", "Make an ECDSA P-256 key pair for signing bundles (export --sign-key FILE, import --trust-key FILE.pub)") { output };
        cmd.SetAction(pr =>
        {
            var (priv, pub) = BundleSigning.Generate(pr.GetValue(output)!);
            pr.InvocationConfiguration.Output.WriteLine($"private key: {priv}");
            pr.InvocationConfiguration.Output.WriteLine($"public key:  {pub}");
            return 0;
        });
        return cmd;
    }
}
