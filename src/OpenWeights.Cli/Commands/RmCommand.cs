using System.CommandLine;
using OpenWeights.Hub;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights rm REPO[:FILE|:QUANT]`: remove a model (or some of its files) and unreferenced blobs.</summary>
public static class RmCommand
{
    public static Command Create()
    {
        var spec = new Argument<string>("model") { Description = "org/name (whole repository), org/name:FILE or org/name:QUANT" };
        var revision = new Option<string?>("--revision") { Description = "Only this revision's snapshot (default: all)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("rm", "Remove a model from the local store") { spec, revision, json };
        cmd.SetAction(pr =>
        {
            var output = pr.InvocationConfiguration.Output;
            var store = new HubStore(HubCli.Settings().CacheDir);
            var p = PullSpec.Parse(pr.GetValue(spec)!);
            var rev = pr.GetValue(revision);
            IReadOnlyCollection<string>? paths = null;
            if (p.File is not null || p.Quant is not null)
            {
                if (!Directory.Exists(store.RepoDir(p.RepoId))) throw new OpenWeightsException($"{p.RepoId} is not in the store ({store.CacheDir})");
                var local = store.Describe(p.RepoId).Snapshots.SelectMany(s => s.Files).Select(f => f.Path).Distinct().ToList();
                if (p.File is not null)
                {
                    var choice = PullSelection.GgufChoices(local).FirstOrDefault(c => c.Files.Contains(p.File));
                    paths = choice is not null ? choice.Files.ToList() : [p.File];
                }
                else
                {
                    var hits = PullSelection.MatchQuant(PullSelection.GgufChoices(local), p.Quant!);
                    if (hits.Count != 1)
                        throw new OpenWeightsException(hits.Count == 0 ? $"no GGUF file of {p.RepoId} in the store matches '{p.Quant}'"
                            : $"'{p.Quant}' matches several files: {PullSelection.DescribeChoices(hits)}");
                    paths = hits[0].Files.ToList();
                }
            }
            var r = store.Remove(p.RepoId, paths, rev);
            if (pr.GetValue(json))
                CliJson.Write(output, new { repo = r.RepoId, files_removed = r.SnapshotEntriesRemoved, blobs_removed = r.BlobsRemoved, bytes_freed = r.BytesFreed, repo_removed = r.RepoRemoved });
            else
                output.WriteLine($"removed {(r.RepoRemoved ? p.RepoId : $"{r.SnapshotEntriesRemoved} file(s) of {p.RepoId}")}, freed {HubCli.FormatBytes(r.BytesFreed)}");
            return 0;
        });
        return cmd;
    }
}
