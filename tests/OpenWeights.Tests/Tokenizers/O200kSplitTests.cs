using System.Globalization;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// gpt-oss's pre-tokenizer (o200k, <c>tokenizer.ggml.pre</c> "gpt-4o"): its regex names letter subcategories and marks,
/// so the splitter runs it over a finer collapse (one representative per general category). The real tokenizer's ids
/// are checked in <see cref="RealTokenizerTests"/>; here the pieces themselves, without npm.
/// </summary>
public class O200kSplitTests
{
    [Fact]
    public void FineRepresentativesHaveTheirCategory()
    {
        foreach (var (category, rep) in RegexSplitter.FineRep)
            Assert.Equal(category, CharUnicodeInfo.GetUnicodeCategory(rep));
    }

    private static List<string> Split(string text)
    {
        var words = new List<(int Offset, int Length)>();
        new RegexSplitter([PreTokenizers.O200k]).Split(text, words);
        return words.Select(w => text.Substring(w.Offset, w.Length)).ToList();
    }

    [Theory]
    [InlineData("HelloWorld", new[] { "Hello", "World" })]                    // an upper run then lower letters starts a word
    [InlineData("getHTTPResponse", new[] { "get", "HTTPResponse" })]
    [InlineData("ÉcoleÀPARIS", new[] { "École", "ÀPARIS" })]                   // non-ASCII case counts (llama.cpp's approximation: one word)
    [InlineData("हिन्दी भाषा", new[] { "हिन्दी", " भाषा" })]                   // vowel signs and virama (marks) stay in the word
    [InlineData("e\u0301te\u0301", new[] { "e\u0301te\u0301" })]              // combining accents too
    [InlineData("ǅungla", new[] { "ǅungla" })]                                // a titlecase letter opens a word like an upper-case one
    [InlineData("don't STOP'S 12345", new[] { "don't", " STOP'S", " ", "123", "45" })]
    [InlineData("𝐀𝐁cd 東京", new[] { "𝐀𝐁cd", " 東京" })]                         // supplementary letters (Lu) by their category
    public void SplitsLikeTheRealRegex(string text, string[] pieces) => Assert.Equal(pieces, Split(text));

    [Fact]
    public void Gpt4oSelectsO200k() => Assert.Equal([PreTokenizers.O200k], PreTokenizers.For("gpt-4o")!.Regexes);

    [Fact]
    public void NormalizedFormDoesNotMatterToTheSplitWhereTheRegexSaysSo()
    {
        // a precomposed and a decomposed é both stay inside one word
        Assert.Single(Split("caf\u00E9"));
        Assert.Single(Split("cafe\u0301"));
        Assert.Equal("cafe\u0301", string.Concat(Split("cafe\u0301")));
    }
}
