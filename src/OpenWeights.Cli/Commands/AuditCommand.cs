using System.CommandLine;
using OpenWeights.Audit;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights audit verify FILE`: checks an audit log's hash chain (<see cref="AuditChain"/>).</summary>
public static class AuditCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("file") { Description = "An audit log written by run/chat/serve --audit" };
        var verify = new Command("verify", "Check an audit log's hash chain: exit 0 when every line is intact and in order, 1 naming the first line that is not") { file };
        verify.SetAction(pr =>
        {
            string path = pr.GetValue(file)!;
            if (!File.Exists(path)) throw new OpenWeightsException($"audit log not found: {path}");
            var r = AuditChain.Verify(path);
            if (!r.Ok)
            {
                pr.InvocationConfiguration.Error.WriteLine($"openweights: error: {path}: line {r.BadLine}: {r.Problem}");
                return 1;
            }
            pr.InvocationConfiguration.Output.WriteLine($"{path}: {r.Lines} lines, chain intact; last hash {r.LastHash}");
            return 0;
        });
        return new Command("audit", "Audit logs (run/chat/serve --audit)") { verify };
    }
}
