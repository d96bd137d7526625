using OpenWeights.Cli.Commands;
using Xunit;

namespace OpenWeights.Tests.Cli;

/// <summary>serve's --lora NAME=FILE (per request) vs FILE (every request), and --memory-budget sizes.</summary>
public class ServeModelsOptionsTests
{
    [Fact]
    public void NamedAndUnnamedLoras()
    {
        using var dir = new TempDir();
        var odd = dir.File("a=b.gguf"); // an existing file whose name holds '=' stays a path
        File.WriteAllText(odd, "");
        var (named, unnamed) = ServeCommand.SplitLoras(["sql=/x/sql.gguf:0.5", "/x/all.gguf", "chat=/y/peft", odd, "bad name=/z.gguf"]);
        Assert.Equal(new Dictionary<string, string> { ["sql"] = "/x/sql.gguf:0.5", ["chat"] = "/y/peft" }, named);
        Assert.Equal(["/x/all.gguf", odd, "bad name=/z.gguf"], unnamed);
        Assert.Throws<OpenWeightsException>(() => ServeCommand.SplitLoras(["a=/1.gguf", "a=/2.gguf"]));
    }

    [Theory]
    [InlineData("8G", 8L << 30)]
    [InlineData("512M", 512L << 20)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("1000000", 1000000L)]
    public void MemoryBudgetSizes(string text, long bytes) => Assert.Equal(bytes, ServeCommand.ParseBytes(text));

    [Theory]
    [InlineData("lots")]
    [InlineData("-1G")]
    [InlineData("0")]
    public void BadMemoryBudget(string text) => Assert.Throws<OpenWeightsException>(() => ServeCommand.ParseBytes(text));
}
