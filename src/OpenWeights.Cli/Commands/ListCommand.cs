using System.CommandLine;
using OpenWeights.Hub;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights list`: repositories, revisions and files in the local store.</summary>
public static class ListCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("list", "List the models in the local store") { json };
        cmd.SetAction(pr =>
        {
            var output = pr.InvocationConfiguration.Output;
            var store = new HubStore(HubCli.Settings().CacheDir);
            var repos = store.List();
            if (pr.GetValue(json))
            {
                CliJson.Write(output, new
                {
                    cache_dir = store.CacheDir,
                    repos = repos.Select(r => new
                    {
                        repo = r.RepoId, path = r.Folder, size_on_disk = r.SizeOnDisk,
                        revisions = r.Snapshots.Select(s => new
                        {
                            commit = s.Commit, refs = s.Refs,
                            files = s.Files.Select(f => new { path = f.Path, size = f.Size, complete = f.Size >= 0 }).ToList(),
                        }).ToList(),
                    }).ToList(),
                });
                return 0;
            }
            if (repos.Count == 0) { output.WriteLine($"no models in {store.CacheDir}"); return 0; }
            foreach (var r in repos)
            {
                output.WriteLine($"{r.RepoId}  {HubCli.FormatBytes(r.SizeOnDisk)}");
                foreach (var s in r.Snapshots)
                {
                    output.WriteLine($"  {s.Commit[..12]}{(s.Refs.Count > 0 ? " (" + string.Join(", ", s.Refs) + ")" : "")}");
                    foreach (var f in s.Files) output.WriteLine($"    {f.Path}  {(f.Size >= 0 ? HubCli.FormatBytes(f.Size) : "missing blob")}");
                }
            }
            return 0;
        });
        return cmd;
    }
}
