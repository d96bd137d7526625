using OpenWeights.Cli.Commands;
using OpenWeights.Hub;

namespace OpenWeights.Tests.Hub;

/// <summary>A fake hub on 127.0.0.1, a temporary store, and the CLI run in-process against both.</summary>
public abstract class HubCliTestBase : IDisposable
{
    protected readonly FakeHub hub = new();
    protected readonly TempDir dir = new();

    public void Dispose()
    {
        hub.Dispose(); dir.Dispose();
        GC.SuppressFinalize(this);
    }

    protected (int Code, string Out, string Err) Run(params string[] args)
    {
        HubCli.SettingsOverride.Value = new HubSettings { CacheDir = dir.File("hub"), Endpoint = hub.Endpoint, RetryBaseDelay = TimeSpan.FromMilliseconds(5) };
        var o = new StringWriter(); var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
