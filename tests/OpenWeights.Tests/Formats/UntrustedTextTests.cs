using OpenWeights.Formats;

namespace OpenWeights.Tests.Formats;

public class UntrustedTextTests
{
    [Fact]
    public void Plain_text_is_only_quoted()
    {
        Assert.Equal("'general.name'", UntrustedText.Quote("general.name"));
        Assert.Equal("'naïve 日本 😀'", UntrustedText.Quote("naïve 日本 😀"));
        Assert.Equal("null", UntrustedText.Quote(null));
        Assert.Equal("''", UntrustedText.Quote(""));
    }

    [Fact]
    public void Control_and_invisible_characters_are_escaped()
    {
        Assert.Equal(@"'\x1B[31mred\x1B]0;title\x07'", UntrustedText.Quote("\u001b[31mred\u001b]0;title\u0007"));
        Assert.Equal(@"'a\nb\r\tc\x00\x7F\x9B'", UntrustedText.Quote("a\nb\r\tc\0\u007f\u009b"));
        Assert.Equal(@"'it\'s a \\ b'", UntrustedText.Quote(@"it's a \ b"));
        // bidi override, zero-width joiner, line separator, lone surrogate, a tag character (U+E0041, a surrogate pair)
        Assert.Equal(@"'\u202Eabc\u200D\u2028\uD800\U000E0041'", UntrustedText.Quote("\u202Eabc\u200D\u2028\ud800\U000E0041"));
    }

    [Fact]
    public void Long_text_is_cut_with_a_count_of_what_was_left_out()
    {
        string s = new string('k', 9000);
        string q = UntrustedText.Quote(s);
        Assert.Equal("'" + new string('k', 80) + "…(8920 more)'", q);
        Assert.Equal("'ab…(1 more)'", UntrustedText.Quote("abc", 2));
        // a surrogate pair is never split
        Assert.Equal("'a…(2 more)'", UntrustedText.Quote("a😀", 2));
        Assert.DoesNotContain('\n', UntrustedText.Quote(string.Concat(Enumerable.Repeat("\n\u001b", 5000))));
    }
}
