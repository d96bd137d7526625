using System.Text.RegularExpressions;

namespace OpenWeights.Tests.Models;

/// <summary>
/// The folders of src/OpenWeights depend one way (issue 12, DESIGN.md): file formats know no models, models know no catalog
/// or hardware, the hardware probe knows no catalog. Read from the sources: a <c>using</c>, a fully qualified name or a name
/// relative to the parent namespace (<c>Models.X</c> inside <c>OpenWeights.Formats</c>) all count.
/// </summary>
public class DependencyDirectionTests
{
    private static string SourceRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx"))) return Path.Combine(d.FullName, "src", "OpenWeights");
        throw new DirectoryNotFoundException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
    }

    [Theory]
    [InlineData("Formats", "Models")]
    [InlineData("Formats", "Catalog")]
    [InlineData("Formats", "Hardware")]
    [InlineData("Models", "Catalog")]
    [InlineData("Models", "Hardware")]
    [InlineData("Hardware", "Catalog")]
    public void Folder_does_not_reference(string folder, string forbidden)
    {
        var dir = Path.Combine(SourceRoot(), folder);
        Assert.True(Directory.Exists(dir), dir);
        var pattern = new Regex($@"(\bOpenWeights\.{forbidden}\b|(?<![\w.]){forbidden}\.[A-Z])");
        var offenders = new List<string>();
        foreach (var file in Directory.EnumerateFiles(dir, "*.cs", SearchOption.AllDirectories))
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string code = lines[i].TrimStart();
                if (code.StartsWith("//", StringComparison.Ordinal)) continue; // prose may name a folder
                if (pattern.IsMatch(code)) offenders.Add($"{Path.GetRelativePath(SourceRoot(), file)}:{i + 1}: {code}");
            }
        }
        Assert.True(offenders.Count == 0, $"{folder} must not depend on {forbidden}:\n" + string.Join("\n", offenders));
    }

    [Fact]
    public void The_check_sees_a_reference_when_there_is_one()
    {
        // the same pattern on the folder that legitimately uses Formats: it must find references (the test can fail)
        var pattern = new Regex(@"(\bOpenWeights\.Formats\b|(?<![\w.])Formats\.[A-Z])");
        var hits = Directory.EnumerateFiles(Path.Combine(SourceRoot(), "Models"), "*.cs", SearchOption.AllDirectories)
            .SelectMany(File.ReadAllLines).Count(l => pattern.IsMatch(l));
        Assert.True(hits > 5, $"only {hits} references of Models to Formats found: the pattern is broken");
    }
}
