using System.Text;
using System.Text.Json.Nodes;

namespace OpenWeights.Audit;

/// <summary>
/// An append-only audit log: one sealed JSON line per generation (<see cref="AuditEntry"/>, chained by
/// <see cref="AuditChain"/>). Opening an existing log continues its chain from its last line (a log whose last line is
/// cut short is refused). Each line is written with one write call on an unbuffered stream, under a lock (the server
/// appends from its scheduler thread; any number of callers may append), and reaches the operating system before
/// <see cref="Append"/> returns, so a crash of the process loses nothing written. Durability policy: no fsync per line
/// (it would cost a disk flush per request); the file is fsynced when the log is closed, and with
/// <c>fsyncEachLine</c> after every line. The file is opened for writing by one process at a time (others may read).
/// </summary>
public sealed class AuditLog : IDisposable
{
    private readonly FileStream stream;
    private readonly bool fsyncEachLine;
    private readonly object gate = new();
    private string prev;

    public string Path { get; }
    /// <summary>The model every line names unless its entry names another (null: each entry must: a server with several models).</summary>
    public AuditModel? Model { get; }
    /// <summary>Whether lines carry the prompt and output texts and token ids (<c>--audit-content</c>).</summary>
    public bool Content { get; }
    /// <summary>The hash of the last line written (or found when the log was opened).</summary>
    public string LastHash { get { lock (gate) return prev; } }

    public AuditLog(string path, AuditModel? model, bool content, bool fsyncEachLine = false)
    {
        Path = path; Model = model; Content = content; this.fsyncEachLine = fsyncEachLine;
        try { stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0); }
        catch (IOException e) { throw new OpenWeightsException($"cannot open the audit log {path}: {e.Message} (is another process writing it?)"); }
        try { prev = AuditChain.LastHash(stream); stream.Seek(0, SeekOrigin.End); }
        catch { stream.Dispose(); throw; }
    }

    /// <summary>Seals and appends one generation; returns the line's hash.</summary>
    public string Append(AuditEntry entry) => Append(entry.ToJson(entry.Model ?? Model ?? throw new InvalidOperationException("the audit entry names no model"), DateTimeOffset.UtcNow, Content));

    /// <summary>Appends a JSON object (without prev and hash) as the next line of the chain.</summary>
    public string Append(JsonObject json)
    {
        lock (gate)
        {
            json["prev"] = prev;
            string line = AuditChain.Seal(json.ToJsonString(AuditEntry.Json));
            byte[] bytes = Encoding.UTF8.GetBytes(line + "\n");
            stream.Write(bytes); // unbuffered: one write call for the whole line
            if (fsyncEachLine) stream.Flush(flushToDisk: true);
            prev = AuditChain.HashOf(line)!;
            return prev;
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            try { stream.Flush(flushToDisk: true); } catch (ObjectDisposedException) { }
            stream.Dispose();
        }
    }
}
