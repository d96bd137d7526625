namespace OpenWeights.Tests.Oracle;

public class OracleSmokeTests
{
    [Fact]
    public void LlamaCppLoadsStories260K()
    {
        var path = TestData.Require("models/stories260K.gguf");
        var ids = LlamaCpp.Tokenize(path, "Once upon a time", addBos: true, special: false);
        Assert.Equal([1, 403, 407, 261, 378], ids);
        var logits = LlamaCpp.Logits(path, ids);
        Assert.Equal(512, logits[^1].Length);
    }
}
