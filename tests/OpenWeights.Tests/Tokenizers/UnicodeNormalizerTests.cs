using System.Text;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// Our managed NFC/NFD (the project runs with invariant globalization, where string.Normalize does nothing) against
/// Python's unicodedata (Unicode 14.0), which gave every expected value here.
/// </summary>
public sealed class UnicodeNormalizerTests
{
    public static TheoryData<string, string, string> Cases => new()
    {
        // input, NFC, NFD (code points in hex)
        { "0065 0301", "00E9", "0065 0301" },                       // composes
        { "212B", "00C5", "0041 030A" },                            // singleton decomposition (Angstrom sign)
        { "1100 1161 11A8", "AC01", "1100 1161 11A8" },             // Hangul L V T
        { "AC00 11A8", "AC01", "1100 1161 11A8" },                  // Hangul LV + T
        { "1100 AC00 11A8", "1100 AC01", "1100 1100 1161 11A8" },
        { "0958", "0915 093C", "0915 093C" },                       // composition exclusion
        { "0061 0302 0323", "1EAD", "0061 0323 0302" },             // canonical reordering, then composition
        { "1E0B 0323", "1E0D 0307", "0064 0323 0307" },             // decompose, reorder, recompose differently
        { "0071 0307 0323", "0071 0323 0307", "0071 0323 0307" },   // reordered, nothing to compose
        { "0344", "0308 0301", "0308 0301" },                       // non-starter decomposition
        { "00E9 0301", "00E9 0301", "0065 0301 0301" },             // second accent is blocked
        { "0301 0065", "0301 0065", "0301 0065" },                  // leading non-starter
        { "1D15E", "1D157 1D165", "1D157 1D165" },                  // supplementary, excluded
        { "0F73", "0F71 0F72", "0F71 0F72" },
        { "05B8 05B9 05B1 0591 05C3 05B0 05AC 059F", "05B1 05B8 05B9 0591 05C3 05B0 05AC 059F", "05B1 05B8 05B9 0591 05C3 05B0 05AC 059F" },
        { "FF76 FF9E", "FF76 FF9E", "FF76 FF9E" },                  // compatibility only: untouched by NFC/NFD
        { "00C5 0300", "00C5 0300", "0041 030A 0300" },
        { "0048 0069 0020 4F60 0020 1F600", "0048 0069 0020 4F60 0020 1F600", "0048 0069 0020 4F60 0020 1F600" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Nfc_and_nfd_match_python_unicodedata(string input, string nfc, string nfd)
    {
        string text = FromHex(input);
        Assert.Equal(nfc, ToHex(UnicodeNormalizer.Normalize(text, NormalizationForm.FormC)));
        Assert.Equal(nfd, ToHex(UnicodeNormalizer.Normalize(text, NormalizationForm.FormD)));
        // NFC is idempotent and NFD(NFC(x)) = NFD(x)
        Assert.Equal(nfc, ToHex(UnicodeNormalizer.Normalize(FromHex(nfc), NormalizationForm.FormC)));
        Assert.Equal(nfd, ToHex(UnicodeNormalizer.Normalize(FromHex(nfc), NormalizationForm.FormD)));
    }

    [Fact]
    public void A_lone_surrogate_becomes_the_replacement_character()
    {
        Assert.Equal("a\uFFFD\u00E9", UnicodeNormalizer.Normalize("a\uD800e\u0301", NormalizationForm.FormC));
    }

    [Fact]
    public void Text_below_U0300_is_returned_as_is()
    {
        const string s = "plain ASCII and Latin-1: caf\u00E9";
        Assert.Same(s, UnicodeNormalizer.Normalize(s, NormalizationForm.FormC));
    }

    private static string FromHex(string hex) => string.Concat(hex.Split(' ').Select(h => char.ConvertFromUtf32(Convert.ToInt32(h, 16))));
    private static string ToHex(string s) => string.Join(' ', s.EnumerateRunes().Select(r => r.Value.ToString("X4")));
}
