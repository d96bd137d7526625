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
