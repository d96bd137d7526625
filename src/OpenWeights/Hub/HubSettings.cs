namespace OpenWeights.Hub;

/// <summary>
/// Where the store lives and how to talk to the hub. <see cref="FromEnvironment()"/> reads the same
/// variables as Python's huggingface_hub (HF_HUB_CACHE, HF_HOME, HF_TOKEN, HF_TOKEN_PATH, HF_ENDPOINT,
/// HF_HUB_OFFLINE); tests build one explicitly instead of mutating the process environment.
/// </summary>
public sealed record HubSettings
{
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>The hub cache folder that holds models--org--name folders (huggingface_hub's HF_HUB_CACHE).</summary>
    public required string CacheDir { get; init; }

    /// <summary>Base URL of the hub, without a trailing slash.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>Bearer token, or null for anonymous access.</summary>
    public string? Token { get; init; }

    /// <summary>Resolve only from the cache; never touch the network.</summary>
    public bool Offline { get; init; }

    /// <summary>Files at least this large are fetched over <see cref="Connections"/> parallel ranges.</summary>
    public long ParallelThreshold { get; init; } = 64L << 20;

    /// <summary>Parallel connections for one large file.</summary>
    public int Connections { get; init; } = 4;

    /// <summary>Retries per byte range after a dropped connection or a server error (5xx/429).</summary>
    public int MaxRetries { get; init; } = 5;

    /// <summary>First retry delay; doubles each retry (with jitter), capped at 30 s.</summary>
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long to wait for another process holding a blob's lock.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Timeout of a single HTTP read (not of a whole download).</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Optional handler for the HTTP client (tests, proxies). Redirects are followed by us, not by it.</summary>
    public Func<HttpMessageHandler>? HandlerFactory { get; init; }

    /// <summary>
    /// Wraps every stream that writes into the store (tests give a byte quota to simulate a full disk).
    /// Identity when null.
    /// </summary>
    public Func<Stream, Stream>? WriteStreamWrapper { get; init; }

    /// <summary>The process environment.</summary>
    public static HubSettings FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary>Settings from an environment lookup (variable name to value or null).</summary>
    public static HubSettings FromEnvironment(Func<string, string?> env)
    {
        string? Get(string name) { var v = env(name); return string.IsNullOrWhiteSpace(v) ? null : v.Trim(); }

        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string xdgCache = Get("XDG_CACHE_HOME") ?? Path.Combine(home, ".cache");
        string hfHome = ExpandHome(Get("HF_HOME") ?? Path.Combine(xdgCache, "huggingface"), home);
        string cache = ExpandHome(Get("HF_HUB_CACHE") ?? Get("HUGGINGFACE_HUB_CACHE") ?? Path.Combine(hfHome, "hub"), home);

        string? token = Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN");
        if (token is null)
        {
            string tokenPath = ExpandHome(Get("HF_TOKEN_PATH") ?? Path.Combine(hfHome, "token"), home);
            try { if (File.Exists(tokenPath)) token = File.ReadAllText(tokenPath).Trim() is { Length: > 0 } t ? t : null; }
            catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        return new HubSettings
        {
            CacheDir = cache,
            Endpoint = (Get("HF_ENDPOINT") ?? DefaultEndpoint).TrimEnd('/'),
            Token = token,
            Offline = IsTrue(Get("HF_HUB_OFFLINE")) || IsTrue(Get("TRANSFORMERS_OFFLINE")),
        };
    }

    private static bool IsTrue(string? v) => v is not null && v.ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    private static string ExpandHome(string p, string home) =>
        p == "~" ? home : p.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(home, p[2..]) : p;
}
