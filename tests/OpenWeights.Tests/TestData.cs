namespace OpenWeights.Tests;

/// <summary>Locates ../shared/testdata (beside the repository root) for tests that need real files.</summary>
public static class TestData
{
    private static readonly Lazy<string?> root = new(Find);

    /// <summary>The testdata folder, or null when it is absent.</summary>
    public static string? Root => root.Value;

    /// <summary>Full path of a file under testdata; skips the calling test (with the reason) when it is missing.</summary>
    public static string Require(string relative)
    {
        if (Root is null) Assert.Skip("../shared/testdata is absent: this test needs real data from it");
        var p = Path.Combine(Root, relative);
        if (!File.Exists(p) && !Directory.Exists(p)) Assert.Skip($"../shared/testdata/{relative} is absent");
        return p;
    }

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("OPENWEIGHTS_TESTDATA");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx")))
            {
                var p = Path.Combine(d.FullName, "..", "shared", "testdata");
                return Directory.Exists(p) ? Path.GetFullPath(p) : null;
            }
        }
        return null;
    }
}

/// <summary>A temporary directory removed when disposed.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ow-test-" + Guid.NewGuid().ToString("N")[..12]);
    public TempDir() => Directory.CreateDirectory(Path);
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
