using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace OpenWeights.Tests.Hub;

/// <summary>A repository served by <see cref="FakeHub"/>.</summary>
public sealed class FakeRepo
{
    public required string Id { get; init; }
    public string Commit { get; init; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
    public Dictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal);
    /// <summary>"manual" to gate: resolve needs one of <see cref="Tokens"/>.</summary>
    public string? Gated { get; init; }
    public string? License { get; init; }
    public HashSet<string> Tokens { get; } = [];

    public FakeRepo Add(string path, byte[] data) { Files[path] = data; return this; }
    public FakeRepo Add(string path, string text) => Add(path, Encoding.UTF8.GetBytes(text));

    public static bool IsLfs(string path, byte[] data) =>
        path.EndsWith(".gguf", StringComparison.Ordinal) || path.EndsWith(".safetensors", StringComparison.Ordinal) || data.Length >= 64 * 1024;

    public static string Sha256(byte[] d) => Convert.ToHexStringLower(SHA256.HashData(d));
    public static string GitSha1(byte[] d) => Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {d.Length}\0"), .. d]));
}

public sealed record FakeRequest(string Server, string Method, string Path, string? Range, string? Authorization);

/// <summary>
/// An HF-shaped hub on 127.0.0.1 over raw sockets: /api/models/{repo}/revision/{rev}, HEAD/GET
/// /{repo}/resolve/{rev}/{path} (302 to a second "CDN" listener for LFS files, with X-Repo-Commit,
/// X-Linked-Etag, X-Linked-Size), Range support and injected faults.
/// </summary>
public sealed class FakeHub : IDisposable
{
    private readonly TcpListener hub = new(IPAddress.Loopback, 0);
    private readonly TcpListener cdn = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource stop = new();

    public ConcurrentDictionary<string, FakeRepo> Repos { get; } = new(StringComparer.Ordinal);
    public ConcurrentQueue<FakeRequest> Log { get; } = new();
    /// <summary>Old repo id to new one: resolve URLs answer a relative 307 like the hub does.</summary>
    public ConcurrentDictionary<string, string> Renamed { get; } = new(StringComparer.Ordinal);

    /// <summary>Number of content responses still to cut short after <see cref="DropAfterBytes"/> bytes.</summary>
    public int DropsRemaining;
    public long DropAfterBytes = 1000;
    /// <summary>Serve full 200 responses even when a Range is asked for.</summary>
    public volatile bool IgnoreRange;
    /// <summary>SHA-256 of blobs to serve with one byte flipped.</summary>
    public ConcurrentDictionary<string, bool> Corrupt { get; } = new();
    /// <summary>Delay before each content chunk (to keep downloads running while a test races them).</summary>
    public int ChunkDelayMs;

    public FakeHub()
    {
        hub.Start(); cdn.Start();
        _ = AcceptLoop(hub, "hub");
        _ = AcceptLoop(cdn, "cdn");
    }

    public string Endpoint => $"http://127.0.0.1:{((IPEndPoint)hub.LocalEndpoint).Port}";
    public string CdnBase => $"http://127.0.0.1:{((IPEndPoint)cdn.LocalEndpoint).Port}";

    public FakeRepo AddRepo(FakeRepo r) { Repos[r.Id] = r; return r; }

    public IEnumerable<FakeRequest> Requests(string server, string? method = null) => Log.Where(r => r.Server == server && (method is null || r.Method == method));

    public void Dispose()
    {
        stop.Cancel();
        hub.Stop(); cdn.Stop();
    }

    private async Task AcceptLoop(TcpListener l, string name)
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient c;
            try { c = await l.AcceptTcpClientAsync(stop.Token); }
            catch { return; }
            _ = Task.Run(async () =>
            {
                using (c)
                {
                    try { await Handle(c, name); }
                    catch (IOException) { }
                    catch (SocketException) { }
                    catch (ObjectDisposedException) { }
                }
            });
        }
    }

    private sealed record Req(string Method, string Target, Dictionary<string, string> Headers);

    private static async Task<Req?> ReadRequest(NetworkStream s)
    {
        var buf = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            int n = await s.ReadAsync(one);
            if (n == 0) return null;
            buf.Add(one[0]);
            int c = buf.Count;
            if (c >= 4 && buf[c - 4] == '\r' && buf[c - 3] == '\n' && buf[c - 2] == '\r' && buf[c - 1] == '\n') break;
        }
        var lines = Encoding.ASCII.GetString([.. buf]).Split("\r\n");
        var parts = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var l in lines.Skip(1))
        {
            int i = l.IndexOf(':');
            if (i > 0) headers[l[..i].Trim()] = l[(i + 1)..].Trim();
        }
        return new Req(parts[0], parts[1], headers);
    }

    private async Task Handle(TcpClient c, string server)
    {
        var s = c.GetStream();
        var req = await ReadRequest(s);
        if (req is null) return;
        req.Headers.TryGetValue("Range", out var range);
        req.Headers.TryGetValue("Authorization", out var auth);
        string path = req.Target.Split('?')[0];
        Log.Enqueue(new FakeRequest(server, req.Method, path, range, auth));
        if (server == "cdn") { await ServeCdn(c, s, req, path, range); return; }

        var segs = path.TrimStart('/').Split('/').Select(Uri.UnescapeDataString).ToArray();
        if (segs.Length >= 5 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision")
        {
            var repoId = segs[2] + "/" + segs[3];
            var rev = string.Join('/', segs.Skip(5));
            if (!Repos.TryGetValue(repoId, out var repo)) { await Send(s, 404, new() { ["X-Error-Code"] = "RepoNotFound" }, "{\"error\":\"Repository not found\"}"u8.ToArray(), req.Method); return; }
            if (rev != "main" && rev != repo.Commit) { await Send(s, 404, new() { ["X-Error-Code"] = "RevisionNotFound" }, "{}"u8.ToArray(), req.Method); return; }
            var json = JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["id"] = repo.Id,
                ["sha"] = repo.Commit,
                ["gated"] = repo.Gated is null ? false : repo.Gated,
                ["cardData"] = repo.License is null ? null : new Dictionary<string, object> { ["license"] = repo.License },
                ["siblings"] = repo.Files.Select(f => FakeRepo.IsLfs(f.Key, f.Value)
                    ? (object)new { rfilename = f.Key, size = f.Value.Length, blobId = FakeRepo.GitSha1(f.Value), lfs = new { sha256 = FakeRepo.Sha256(f.Value), size = f.Value.Length, pointerSize = 134 } }
                    : new { rfilename = f.Key, size = f.Value.Length, blobId = FakeRepo.GitSha1(f.Value) }).ToList(),
            });
            await Send(s, 200, new() { ["Content-Type"] = "application/json" }, Encoding.UTF8.GetBytes(json), req.Method);
            return;
        }
        if (segs.Length >= 5 && segs[2] == "resolve")
        {
            var repoId = segs[0] + "/" + segs[1];
            var rev = segs[3];
            var file = string.Join('/', segs.Skip(4));
            if (Renamed.TryGetValue(repoId, out var newId))
            {
                await Send(s, 307, new() { ["Location"] = "/" + newId + path[(repoId.Length + 1)..] }, [], req.Method);
                return;
            }
            if (!Repos.TryGetValue(repoId, out var repo)) { await Send(s, 404, new() { ["X-Error-Code"] = "RepoNotFound" }, [], req.Method); return; }
            if (repo.Gated is not null)
            {
                string? token = auth?.StartsWith("Bearer ", StringComparison.Ordinal) == true ? auth[7..] : null;
                if (token is null) { await Send(s, 401, new() { ["X-Error-Code"] = "GatedRepo" }, "Access to model is restricted"u8.ToArray(), req.Method); return; }
                if (!repo.Tokens.Contains(token)) { await Send(s, 403, new() { ["X-Error-Code"] = "GatedRepo" }, "Access to model is restricted"u8.ToArray(), req.Method); return; }
            }
            if (rev != "main" && rev != repo.Commit) { await Send(s, 404, new() { ["X-Error-Code"] = "RevisionNotFound" }, [], req.Method); return; }
            if (!repo.Files.TryGetValue(file, out var data)) { await Send(s, 404, new() { ["X-Error-Code"] = "EntryNotFound" }, [], req.Method); return; }
            var h = new Dictionary<string, string> { ["X-Repo-Commit"] = repo.Commit };
            if (FakeRepo.IsLfs(file, data))
            {
                var sha = FakeRepo.Sha256(data);
                h["X-Linked-Etag"] = $"\"{sha}\"";
                h["X-Linked-Size"] = data.Length.ToString();
                h["ETag"] = $"W/\"{FakeRepo.GitSha1(data)[..20]}\"";
                h["Location"] = $"{CdnBase}/repos/ab/cd/{sha}?X-Amz-Signature=fake";
                await Send(s, 302, h, Encoding.ASCII.GetBytes("Found. Redirecting"), req.Method);
                return;
            }
            h["ETag"] = $"\"{FakeRepo.GitSha1(data)}\"";
            await ServeContent(c, s, req, data, range, h);
            return;
        }
        await Send(s, 404, [], [], req.Method);
    }

    private async Task ServeCdn(TcpClient c, NetworkStream s, Req req, string path, string? range)
    {
        var sha = path.Split('/')[^1];
        var data = Repos.Values.SelectMany(r => r.Files.Values).FirstOrDefault(d => FakeRepo.Sha256(d) == sha);
        if (data is null) { await Send(s, 404, [], [], req.Method); return; }
        if (Corrupt.ContainsKey(sha)) { data = (byte[])data.Clone(); data[data.Length / 2] ^= 0xFF; }
        await ServeContent(c, s, req, data, range, []);
    }

    private async Task ServeContent(TcpClient c, NetworkStream s, Req req, byte[] data, string? range, Dictionary<string, string> h)
    {
        long from = 0, to = data.Length - 1;
        int status = 200;
        h["Accept-Ranges"] = "bytes";
        if (range is not null && !IgnoreRange && range.StartsWith("bytes=", StringComparison.Ordinal))
        {
            var r = range[6..].Split('-');
            from = long.Parse(r[0]);
            if (r[1].Length > 0) to = Math.Min(long.Parse(r[1]), data.Length - 1);
            if (from >= data.Length)
            {
                h["Content-Range"] = $"bytes */{data.Length}";
                await Send(s, 416, h, [], req.Method);
                return;
            }
            status = 206;
            h["Content-Range"] = $"bytes {from}-{to}/{data.Length}";
        }
        long len = to - from + 1;
        await WriteHead(s, status, h, len);
        if (req.Method == "HEAD") return;
        long limit = len;
        if (len > DropAfterBytes && TakeDrop()) limit = DropAfterBytes;
        long sent = 0;
        while (sent < limit)
        {
            int n = (int)Math.Min(16384, limit - sent);
            await s.WriteAsync(data.AsMemory((int)(from + sent), n));
            sent += n;
            if (ChunkDelayMs > 0) await Task.Delay(ChunkDelayMs);
        }
        await s.FlushAsync();
        if (limit < len)
        {
            c.Client.LingerState = new LingerOption(true, 0); // reset: the client sees the body end early
            c.Client.Close();
        }
    }

    private bool TakeDrop()
    {
        while (true)
        {
            int d = Volatile.Read(ref DropsRemaining);
            if (d <= 0) return false;
            if (Interlocked.CompareExchange(ref DropsRemaining, d - 1, d) == d) return true;
        }
    }

    private static readonly Dictionary<int, string> Reasons = new() { [200] = "OK", [206] = "Partial Content", [302] = "Found", [307] = "Temporary Redirect", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found", [416] = "Range Not Satisfiable" };

    private static async Task WriteHead(NetworkStream s, int status, Dictionary<string, string> h, long length)
    {
        var sb = new StringBuilder($"HTTP/1.1 {status} {Reasons.GetValueOrDefault(status, "X")}\r\n");
        foreach (var (k, v) in h) sb.Append($"{k}: {v}\r\n");
        sb.Append($"Content-Length: {length}\r\nConnection: close\r\n\r\n");
        await s.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()));
    }

    private static async Task Send(NetworkStream s, int status, Dictionary<string, string> h, byte[] body, string method)
    {
        await WriteHead(s, status, h, body.Length);
        if (method != "HEAD") await s.WriteAsync(body);
        await s.FlushAsync();
    }
}

/// <summary>A write stream that fails with ENOSPC once a shared byte quota is used up.</summary>
public sealed class QuotaStream(Stream inner, DiskQuota quota) : Stream
{
    public override bool CanRead => false;
    public override bool CanSeek => inner.CanSeek;
    public override bool CanWrite => true;
    public override long Length => inner.Length;
    public override long Position { get => inner.Position; set => inner.Position = value; }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
    public override void SetLength(long value) => inner.SetLength(value);
    public override void Write(byte[] buffer, int offset, int count)
    {
        int allowed = quota.Take(count);
        if (allowed > 0) inner.Write(buffer, offset, allowed);
        if (allowed < count) throw new IOException("No space left on device", 28);
    }
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int allowed = quota.Take(buffer.Length);
        if (allowed > 0) await inner.WriteAsync(buffer[..allowed], cancellationToken);
        if (allowed < buffer.Length) throw new IOException("No space left on device", 28);
    }
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}

public sealed class DiskQuota(long bytes)
{
    private long left = bytes;
    public int Take(int want)
    {
        lock (this)
        {
            int n = (int)Math.Clamp(left, 0, want);
            left -= n;
            return n;
        }
    }
}
