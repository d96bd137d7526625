using OpenWeights.Formats;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace OpenWeights.Hub;

/// <summary>A file of a repository as the hub lists it.</summary>
/// <param name="Path">Path inside the repository ('/'-separated).</param>
/// <param name="Size">Size in bytes when the hub says.</param>
/// <param name="Sha256">LFS object id (SHA-256, hex) for LFS files.</param>
public sealed record HubFile(string Path, long? Size, string? Sha256);

/// <summary>A repository at one revision.</summary>
/// <param name="Commit">The commit hash the revision points at.</param>
/// <param name="License">License id from the model card (cardData.license or a license: tag).</param>
/// <param name="Gated">"auto", "manual" or null when not gated.</param>
public sealed record RepoInfo(string RepoId, string Commit, string? License, string? Gated, IReadOnlyList<HubFile> Files);

/// <summary>What HEAD on a resolve URL tells: the commit, the blob's ETag and size.</summary>
/// <param name="IsLfs">Whether the ETag came from X-Linked-Etag (then it is the SHA-256 of the content).</param>
public sealed record FileMetadata(string Commit, string Etag, long? Size, bool IsLfs, Uri? Location);

/// <summary>
/// HTTP client for the Hugging Face hub protocol (the subset huggingface_hub uses to download).
/// Redirects are followed here, not by the handler, so the Authorization header never leaves the hub's origin.
/// </summary>
public sealed class HubClient : IDisposable
{
    private readonly HttpClient http;
    private readonly HubSettings settings;
    private readonly Uri endpoint;

    public HubClient(HubSettings settings)
    {
        this.settings = settings;
        endpoint = new Uri(settings.Endpoint.TrimEnd('/') + "/");
        HttpMessageHandler handler = settings.HandlerFactory?.Invoke() ?? new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        if (handler is SocketsHttpHandler sh) sh.AllowAutoRedirect = false;
        if (handler is HttpClientHandler ch) ch.AllowAutoRedirect = false;
        http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        var v = typeof(HubClient).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
        http.DefaultRequestHeaders.UserAgent.ParseAdd($"openweights/{v}");
    }

    public void Dispose() => http.Dispose();

    private static string EscapePath(string path) => string.Join('/', path.Split('/').Select(Uri.EscapeDataString));
    private static string EscapeRepo(string repoId) => EscapePath(repoId);

    public Uri ResolveUrl(string repoId, string revision, string path) =>
        new(endpoint, $"{EscapeRepo(repoId)}/resolve/{Uri.EscapeDataString(revision)}/{EscapePath(path)}");

    /// <summary>GET /api/models/{repo}/revision/{rev}?blobs=true: the commit and the files with sizes and LFS hashes.</summary>
    public async Task<RepoInfo> GetRepoInfoAsync(string repoId, string revision, CancellationToken ct = default)
    {
        HubStore.CheckRepoId(repoId);
        var url = new Uri(endpoint, $"api/models/{EscapeRepo(repoId)}/revision/{Uri.EscapeDataString(revision)}?blobs=true");
        using var resp = await SendWithRetryAsync(HttpMethod.Get, url, null, followRedirects: true, ct).ConfigureAwait(false);
        EnsureSuccess(resp, repoId, revision, null);
        await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        try
        {
            using var doc = await JsonDocument.ParseAsync(body, cancellationToken: ct).ConfigureAwait(false);
            return ParseRepoInfo(doc.RootElement, repoId, revision);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            // not JSON, or a value of another kind than the hub's API documents (or a lone-surrogate escape)
            throw new OpenWeightsException($"the hub sent an invalid repository listing for {repoId}@{UntrustedText.Quote(revision)} ({UntrustedText.Quote(e.Message.Split('\n')[0], 120)})");
        }
    }

    private static RepoInfo ParseRepoInfo(JsonElement root, string repoId, string revision)
    {
        string commit = root.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString()! : "";
        if (!HubStore.IsCommitHash(commit)) throw new OpenWeightsException($"the hub sent no valid commit hash for {repoId}@{revision}");
        string? license = null;
        if (root.TryGetProperty("cardData", out var card) && card.ValueKind == JsonValueKind.Object && card.TryGetProperty("license", out var lic))
            license = lic.ValueKind == JsonValueKind.String ? lic.GetString() : lic.ValueKind == JsonValueKind.Array ? string.Join(",", lic.EnumerateArray().Select(x => x.ToString())) : null;
        if (license is null && root.TryGetProperty("tags", out var tags) && tags.ValueKind == JsonValueKind.Array)
            license = tags.EnumerateArray().Select(t => t.ToString()).FirstOrDefault(t => t.StartsWith("license:", StringComparison.Ordinal))?["license:".Length..];
        string? gated = null;
        if (root.TryGetProperty("gated", out var g))
            gated = g.ValueKind == JsonValueKind.String ? g.GetString() : g.ValueKind == JsonValueKind.True ? "true" : null;
        var files = new List<HubFile>();
        if (root.TryGetProperty("siblings", out var sibs) && sibs.ValueKind == JsonValueKind.Array)
        {
            foreach (var s in sibs.EnumerateArray())
            {
                if (!s.TryGetProperty("rfilename", out var fn) || fn.GetString() is not { } name) continue;
                HubStore.CheckRepoPath(name);
                long? size = s.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number ? sz.GetInt64() : null;
                string? sha256 = null;
                if (s.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                {
                    if (lfs.TryGetProperty("sha256", out var o) && o.ValueKind == JsonValueKind.String) sha256 = o.GetString();
                    else if (lfs.TryGetProperty("oid", out o) && o.ValueKind == JsonValueKind.String) sha256 = o.GetString();
                    if (lfs.TryGetProperty("size", out var ls) && ls.ValueKind == JsonValueKind.Number) size = ls.GetInt64();
                }
                files.Add(new HubFile(name, size, sha256?.ToLowerInvariant()));
            }
        }
        return new RepoInfo(repoId, commit, license, gated, files);
    }

    /// <summary>HEAD on the resolve URL, stopping at the LFS redirect like huggingface_hub does.</summary>
    public async Task<FileMetadata> GetFileMetadataAsync(string repoId, string revision, string path, CancellationToken ct = default)
    {
        HubStore.CheckRepoId(repoId);
        HubStore.CheckRepoPath(path);
        var url = ResolveUrl(repoId, revision, path);
        // Like huggingface_hub: follow relative redirects (renamed repositories), stop at the absolute one to the CDN.
        using var resp = await SendWithRetryAsync(HttpMethod.Head, url, null, followRedirects: false, ct).ConfigureAwait(false);
        EnsureSuccess(resp, repoId, revision, path);
        string? commit = Header(resp, "X-Repo-Commit");
        string? linked = Header(resp, "X-Linked-Etag");
        string? etag = linked ?? Header(resp, "ETag");
        if (commit is null || !HubStore.IsCommitHash(commit)) throw new OpenWeightsException($"the hub sent no commit hash (X-Repo-Commit) for {repoId}/{path}");
        if (etag is null) throw new OpenWeightsException($"the hub sent no ETag for {repoId}/{path}");
        etag = NormalizeEtag(etag);
        HubStore.CheckEtag(etag);
        long? size = long.TryParse(Header(resp, "X-Linked-Size"), out var ls) ? ls
            : IsRedirect(resp.StatusCode) ? null : resp.Content.Headers.ContentLength;
        Uri? location = resp.Headers.Location is { } loc ? Resolve(url, loc) : null;
        return new FileMetadata(commit, etag, size, linked is not null, location);
    }

    internal static string NormalizeEtag(string etag)
    {
        etag = etag.Trim();
        if (etag.StartsWith("W/", StringComparison.Ordinal)) etag = etag[2..];
        return etag.Trim('"');
    }

    private static string? Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : r.Content.Headers.TryGetValues(name, out v) ? v.FirstOrDefault() : null;

    private static bool IsRedirect(HttpStatusCode c) => (int)c is 301 or 302 or 303 or 307 or 308;

    /// <summary>
    /// GET the file (following redirects to the CDN without the token), optionally from a byte offset up to
    /// an inclusive end. The caller owns the response and checks 200 vs 206.
    /// </summary>
    internal async Task<HttpResponseMessage> GetFileAsync(string repoId, string commit, string path, long from, long? toInclusive, CancellationToken ct)
    {
        var url = ResolveUrl(repoId, commit, path);
        RangeHeaderValue? range = from > 0 || toInclusive is not null ? new RangeHeaderValue(from, toInclusive) : null;
        var resp = await SendAsync(HttpMethod.Get, url, range, followRedirects: true, ct).ConfigureAwait(false);
        if (resp.StatusCode is HttpStatusCode.OK or HttpStatusCode.PartialContent or HttpStatusCode.RequestedRangeNotSatisfiable) return resp;
        using (resp)
        {
            if (IsTransient(resp.StatusCode)) throw new HttpRequestException($"HTTP {(int)resp.StatusCode} from {resp.RequestMessage?.RequestUri?.Host}", null, resp.StatusCode);
            EnsureSuccess(resp, repoId, commit, path);
            throw new OpenWeightsException($"unexpected HTTP {(int)resp.StatusCode} downloading {repoId}/{path}");
        }
    }

    internal static bool IsTransient(HttpStatusCode c) => (int)c >= 500 || c == HttpStatusCode.TooManyRequests || c == HttpStatusCode.RequestTimeout;

    private async Task<HttpResponseMessage> SendWithRetryAsync(HttpMethod method, Uri url, RangeHeaderValue? range, bool followRedirects, CancellationToken ct)
    {
        // Metadata calls retry briefly (an unreachable hub should fail in seconds, not minutes); downloads retry more.
        int maxRetries = Math.Min(settings.MaxRetries, 2);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                var resp = await SendAsync(method, url, range, followRedirects, ct).ConfigureAwait(false);
                if (!IsTransient(resp.StatusCode) || attempt >= maxRetries) return resp;
                resp.Dispose();
            }
            catch (Exception e) when (IsNetworkError(e, ct) && attempt < maxRetries) { }
            catch (Exception e) when (IsNetworkError(e, ct))
            {
                throw new OpenWeightsException($"cannot reach {url.GetLeftPart(UriPartial.Authority)}: {e.Message} (set HF_HUB_OFFLINE=1 to use only the local store)", e);
            }
            await Task.Delay(Backoff(settings.RetryBaseDelay, attempt), ct).ConfigureAwait(false);
        }
    }

    internal static bool IsNetworkError(Exception e, CancellationToken ct) =>
        e is HttpRequestException or IOException or TimeoutException || (e is OperationCanceledException && !ct.IsCancellationRequested);

    internal static TimeSpan Backoff(TimeSpan baseDelay, int attempt)
    {
        double ms = baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 10));
        ms = Math.Min(ms, 30_000) * (0.75 + 0.5 * Random.Shared.NextDouble());
        return TimeSpan.FromMilliseconds(ms);
    }

    private static Uri Resolve(Uri current, Uri location) =>
        location.IsAbsoluteUri && location.IsFile ? new Uri(current, location.OriginalString) : new Uri(current, location);

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    /// <summary>Sends with manual redirects: the token goes to the hub's origin only.</summary>
    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, RangeHeaderValue? range, bool followRedirects, CancellationToken ct)
    {
        for (int hop = 0; ; hop++)
        {
            using var req = new HttpRequestMessage(method, url);
            req.Headers.AcceptEncoding.ParseAdd("identity");
            if (range is not null) req.Headers.Range = range;
            if (settings.Token is { } token && SameOrigin(url, endpoint))
                req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (!IsRedirect(resp.StatusCode) || resp.Headers.Location is not { } location) return resp;
            bool relative = !location.IsAbsoluteUri || location.IsFile; // "/x" parses as file:///x on Unix
            // A redirect that already carries the file's metadata is the LFS one (some mirrors make it relative).
            if (!followRedirects && (!relative || resp.Headers.Contains("X-Repo-Commit"))) return resp;
            if (hop >= 10) { resp.Dispose(); throw new OpenWeightsException($"too many redirects fetching {url}"); }
            var next = Resolve(url, location);
            resp.Dispose();
            if (next.Scheme != Uri.UriSchemeHttps && next.Scheme != Uri.UriSchemeHttp) throw new OpenWeightsException($"refusing redirect to {next.Scheme}: URL");
            url = next;
        }
    }

    private void EnsureSuccess(HttpResponseMessage resp, string repoId, string revision, string? path)
    {
        int code = (int)resp.StatusCode;
        if (code is >= 200 and < 300 || IsRedirect(resp.StatusCode)) return;
        string? errorCode = Header(resp, "X-Error-Code");
        string what = path is null ? repoId : $"{repoId}/{path}";
        string page = new Uri(endpoint, EscapeRepo(repoId)).ToString();
        if (errorCode == "RepoNotFound" || errorCode == "RepositoryNotFound")
            throw new OpenWeightsException($"repository or file not found: {repoId} (if it is private, set HF_TOKEN to a token that can read it)");
        if (errorCode == "RevisionNotFound") throw new OpenWeightsException($"repository or file not found: revision '{revision}' of {repoId}");
        if (errorCode == "EntryNotFound") throw new OpenWeightsException($"repository or file not found: {what} at revision {revision}");
        if (code is 401 or 403 || errorCode == "GatedRepo")
        {
            string tokenHint = settings.Token is null ? "set HF_TOKEN (or run `huggingface-cli login`)" : "make sure HF_TOKEN belongs to the account that accepted it";
            throw new OpenWeightsException($"access to {repoId} denied (HTTP {code}): it is gated or private; accept its license at {page} and {tokenHint}");
        }
        if (code == 404) throw new OpenWeightsException($"repository or file not found: {what} at revision {revision}");
        throw new OpenWeightsException($"the hub answered HTTP {code} {UntrustedText.Quote(resp.ReasonPhrase)} for {what}");
    }
}
