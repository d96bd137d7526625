namespace OpenWeights.Tests.Cli;

/// <summary>The CLI's error line cannot carry terminal escape sequences or run on for kilobytes, whatever the message holds.</summary>
public class ErrorLineTests
{
    [Fact]
    public void ControlCharactersInAnErrorAreEscapedAndTheLineIsCapped()
    {
        var err = new StringWriter();
        int code = OpenWeights.Cli.Cli.ReportError(new OpenWeightsException("bad key \u001b]0;pwned\u0007 " + new string('k', 5000)), err);
        Assert.Equal(1, code);
        string line = err.ToString().TrimEnd('\n', '\r');
        Assert.DoesNotContain('\n', line);
        Assert.DoesNotContain('\u001b', line);
        Assert.DoesNotContain('\u0007', line);
        Assert.Contains("bad key \\x1B]0;pwned\\x07 ", line);
        Assert.EndsWith("…(4019 more)", line);
        Assert.True(line.Length < 1100, $"{line.Length} characters");
    }
}

/// <summary>`info` prints strings from the file; they must not reach the terminal as escape sequences.</summary>
public class InfoTerminalSafetyTests
{
    [Fact]
    public void InfoEscapesControlCharactersInTheModelName()
    {
        using var dir = new TempDir();
        string plain = dir.File("plain.gguf"), hostile = dir.File("hostile.gguf");
        var (code, _, err) = CliTests.Run("synth", "--preset", "tiny-llama", "-q", "q8_0", "-o", plain, "--threads", "1");
        Assert.True(code == 0, err);
        using (var src = OpenWeights.Formats.Gguf.GgufFile.Open(plain))
            OpenWeights.Formats.Gguf.GgufWriter.CopyOf(src).Set("general.name", "evil\u001b[2J\u001b]0;title\u0007name").Write(hostile);
        (code, var outp, err) = CliTests.Run("info", hostile);
        Assert.True(code == 0, err);
        var name = outp.Split('\n').Single(l => l.StartsWith("name", StringComparison.Ordinal));
        Assert.DoesNotContain('\u001b', outp);
        Assert.Contains("evil\\x1B[2J\\x1B]0;title\\x07name", name);
    }
}
