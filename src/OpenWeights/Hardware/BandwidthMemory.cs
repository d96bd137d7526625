using System.Text.Json;

namespace OpenWeights.Hardware;

/// <summary>A memory bandwidth measured by `openweights hardware --measure-bandwidth`, and the machine it was measured on.</summary>
public sealed record RememberedBandwidth
{
    [System.Text.Json.Serialization.JsonPropertyName("gbps")]
    public required double GBps { get; init; }
    public required DateTimeOffset MeasuredAt { get; init; }
    public string? CpuModel { get; init; }
    public int LogicalCores { get; init; }
}

/// <summary>
/// Remembers a measured bandwidth in a small JSON file (<see cref="FileName"/> in the OpenWeights cache folder), so `fit`
/// uses the measurement instead of the 25 GB/s assumption. A file written on another machine (different CPU model or
/// core count, e.g. a home folder shared between hosts) is ignored.
/// </summary>
public static class BandwidthMemory
{
    public const string FileName = "bandwidth.json";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    /// <summary>
    /// The OpenWeights cache folder: OPENWEIGHTS_CACHE_DIR, else $XDG_CACHE_HOME/openweights, else ~/.cache/openweights
    /// (Windows: %LOCALAPPDATA%\openweights). Machine-specific facts go here, not into the model store.
    /// </summary>
    public static string DefaultDirectory(Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        string? Get(string name) => env(name) is { Length: > 0 } v && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;
        if (Get("OPENWEIGHTS_CACHE_DIR") is { } own) return own;
        if (Get("XDG_CACHE_HOME") is { } xdg) return Path.Combine(xdg, "openweights");
        if (OperatingSystem.IsWindows())
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "openweights");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "openweights");
    }

    public static string DefaultPath(Func<string, string?>? env = null) => Path.Combine(DefaultDirectory(env), FileName);

    /// <summary>Writes the record (creating the folder; replaced whole, never half-written).</summary>
    public static void Save(string path, RememberedBandwidth r)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(r, Json));
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>The remembered record, or null when there is none or it cannot be read (never an error: it is only a cache).</summary>
    public static RememberedBandwidth? Load(string path)
    {
        try
        {
            if (!File.Exists(path)) return null;
            var r = JsonSerializer.Deserialize<RememberedBandwidth>(File.ReadAllText(path), Json);
            return r is { GBps: > 0 } ? r : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>The remembered record when it was measured on a machine like this one (same CPU model and core count).</summary>
    public static RememberedBandwidth? LoadFor(string path, string? cpuModel, int logicalCores) =>
        Load(path) is { } r && r.CpuModel == cpuModel && r.LogicalCores == logicalCores ? r : null;
}
