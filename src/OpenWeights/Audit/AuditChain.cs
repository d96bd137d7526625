using System.Security.Cryptography;
using System.Text;

namespace OpenWeights.Audit;

/// <summary>
/// The hash chain of an audit log. Each line is one JSON object whose last two members are
/// <c>"prev":"&lt;hex&gt;"</c> (the previous line's hash; <see cref="Genesis"/> on the first line) and
/// <c>"hash":"&lt;hex&gt;"</c> = SHA-256 of the line's UTF-8 text with <c>,"hash":"…"</c> removed (everything before it,
/// then the closing brace). An edited line no longer matches its own hash; a deleted, inserted or reordered line breaks
/// the next line's <c>prev</c>; a last line cut short has no newline (or no hash). What the chain cannot show on its own:
/// someone who rewrites a line and every line after it (the hashes are not keyed) or cuts whole lines off the end. Keep
/// the last hash (<c>openweights audit verify</c> prints it) somewhere else to catch those too.
/// </summary>
public static class AuditChain
{
    /// <summary>The <c>prev</c> of a log's first line: 64 zeros.</summary>
    public static readonly string Genesis = new('0', 64);

    private const string HashMember = ",\"hash\":\"";
    private const int HexLength = 64;

    /// <summary>Closes a JSON object (text ending in '}', with "prev" already its last member) with its hash: the line to write, no newline.</summary>
    public static string Seal(string json)
    {
        if (!json.EndsWith('}')) throw new ArgumentException("a sealed line is a JSON object", nameof(json));
        string hash = Hash(json);
        return string.Concat(json.AsSpan(0, json.Length - 1), HashMember, hash, "\"}");
    }

    /// <summary>SHA-256 (hex) of the object text without its hash member.</summary>
    public static string Hash(string unsealedJson) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(unsealedJson)));

    /// <summary>A line's hash member (the last 64 hex digits before "}), or null when the line does not end so.</summary>
    public static string? HashOf(string line)
    {
        int tail = HashMember.Length + HexLength + 2; // ,"hash":" + hex + "}
        if (line.Length < tail + 1 || !line.EndsWith("\"}", StringComparison.Ordinal)) return null;
        int at = line.Length - tail;
        if (string.CompareOrdinal(line, at, HashMember, 0, HashMember.Length) != 0) return null;
        string hex = line.Substring(at + HashMember.Length, HexLength);
        return hex.All(char.IsAsciiHexDigitLower) ? hex : null;
    }

    /// <summary>The object text the hash covers: the line without its hash member.</summary>
    public static string Unsealed(string line) => string.Concat(line.AsSpan(0, line.Length - (HashMember.Length + HexLength + 2)), "}");

    /// <summary>The "prev" member's value, read as the member just before the hash; null when absent.</summary>
    public static string? PrevOf(string line)
    {
        const string PrevMember = ",\"prev\":\"";
        int end = line.Length - (HashMember.Length + HexLength + 2);
        int at = end - HexLength - 1 - PrevMember.Length;
        if (at < 0 || string.CompareOrdinal(line, at, PrevMember, 0, PrevMember.Length) != 0 || line[end - 1] != '"') return null;
        return line.Substring(at + PrevMember.Length, HexLength);
    }

    /// <summary>The outcome of <see cref="Verify"/>: Ok, the line count and last hash; otherwise the first bad line (1-based) and why.</summary>
    public sealed record Result(bool Ok, long Lines, string LastHash, long BadLine = 0, string? Problem = null);

    /// <summary>Checks every line of a log in order: its own hash, its link to the line before, and that the file ends with a newline.</summary>
    public static Result Verify(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16);
        return Verify(stream);
    }

    public static Result Verify(Stream stream)
    {
        string prev = Genesis;
        long n = 0;
        foreach (var (line, terminated) in Lines(stream))
        {
            n++;
            if (!terminated) return new(false, n - 1, prev, n, "truncated: the last line has no newline (a write was cut short, or the line was edited)");
            string? hash = HashOf(line);
            if (hash is null) return new(false, n - 1, prev, n, "not a sealed audit line (no \"hash\" member at its end)");
            if (Hash(Unsealed(line)) != hash) return new(false, n - 1, prev, n, "its content does not match its hash (the line was edited)");
            string? linked = PrevOf(line);
            if (linked != prev)
                return new(false, n - 1, prev, n, n == 1
                    ? "the first line does not start the chain (lines before it were removed)"
                    : $"its \"prev\" is not line {n - 1}'s hash (a line was deleted, inserted or reordered)");
            prev = hash;
        }
        return new(true, n, prev);
    }

    /// <summary>The lines of a UTF-8 stream, each with whether a '\n' ended it (a final line without one is reported unterminated).</summary>
    private static IEnumerable<(string Line, bool Terminated)> Lines(Stream stream)
    {
        using var reader = new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true), false, 1 << 16, leaveOpen: true);
        var sb = new StringBuilder();
        var buffer = new char[1 << 16];
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] != '\n') continue;
                sb.Append(buffer, start, i - start);
                yield return (sb.ToString(), true);
                sb.Clear();
                start = i + 1;
            }
            sb.Append(buffer, start, read - start);
        }
        if (sb.Length > 0) yield return (sb.ToString(), false);
    }

    /// <summary>
    /// The hash a new line appended to <paramref name="path"/> must link to: the last line's hash (<see cref="Genesis"/> for
    /// an empty or missing file). The last line is found by reading backwards from the end, so a long log opens at once.
    /// Refuses a file whose last line is cut short or not sealed: appending after it would hide the damage.
    /// </summary>
    public static string LastHash(FileStream stream)
    {
        long length = stream.Length;
        if (length == 0) return Genesis;
        var one = new byte[1];
        stream.Position = length - 1;
        stream.ReadExactly(one);
        if (one[0] != (byte)'\n') throw new OpenWeightsException($"the audit log {stream.Name} ends with a line cut short (no newline); check it with `openweights audit verify` and start a new file");
        // the start of the last line: after the previous '\n', searched backwards a block at a time
        long end = length - 1, start = 0;
        var block = new byte[64 * 1024];
        for (long pos = end; pos > 0 && start == 0;)
        {
            int n = (int)Math.Min(block.Length, pos);
            stream.Position = pos - n;
            stream.ReadExactly(block, 0, n);
            int i = Array.LastIndexOf(block, (byte)'\n', n - 1, n);
            if (i >= 0) start = pos - n + i + 1;
            pos -= n;
        }
        var last = new byte[end - start];
        stream.Position = start;
        stream.ReadExactly(last);
        string line = Encoding.UTF8.GetString(last);
        return HashOf(line) is { } hash && Hash(Unsealed(line)) == hash
            ? hash
            : throw new OpenWeightsException($"the last line of the audit log {stream.Name} is not a sealed audit line; check it with `openweights audit verify` and start a new file");
    }
}
