using System.Runtime.InteropServices;

namespace OpenWeights.Cli;

/// <summary>
/// Turns the first Ctrl-C (SIGINT) or SIGTERM into a cancellation the command can finish cleanly on (for `tune`: checkpoint
/// the last completed step); a second signal terminates the process at once, as usual.
/// </summary>
internal sealed class StopSignal : IDisposable
{
    private readonly CancellationTokenSource cts;
    private readonly PosixSignalRegistration[] registrations;
    private readonly TextWriter err;
    private readonly string message;
    private int signals;

    public StopSignal(CancellationToken outer, TextWriter err, string message)
    {
        cts = CancellationTokenSource.CreateLinkedTokenSource(outer);
        this.err = err; this.message = message;
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => cts.Token;

    private void Handle(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref signals) != 1) return; // second signal: default handling terminates the process
        context.Cancel = true;
        err.WriteLine();
        err.WriteLine(message);
        cts.Cancel();
    }

    public void Dispose()
    {
        foreach (var r in registrations) r.Dispose();
        cts.Dispose();
    }
}
