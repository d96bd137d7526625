using OpenWeights.Inference.Constraints;

namespace OpenWeights.Tests.Constraints;

public class JsonGrammarTests
{
    private const string Person = """
        {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":5},"age":{"type":"integer"},
         "tags":{"type":"array","items":{"type":"string"},"maxItems":2},"ok":{"type":"boolean"}},
         "required":["name","age"],"additionalProperties":false}
        """;

    [Theory]
    // json_object mode (null schema): any object
    [InlineData(null, "{}", true)]
    [InlineData(null, "{\"a\":1}", true)]
    [InlineData(null, "{\"a\":[1,2.5,-3e10,true,false,null,\"x\",{}]}", true)]
    [InlineData(null, "{ \"a\" : { \"b\" : [ ] } }", true)]
    [InlineData(null, "{\n  \"a\": \"\\u00e9\\n\\\"\"\n}", true)]
    [InlineData(null, "{\"é\":\"日本語 😀\"}", true)]
    [InlineData(null, "[]", false)]
    [InlineData(null, "1", false)]
    [InlineData(null, " {}", false)]
    [InlineData(null, "{}x", false)]
    [InlineData(null, "{\"a\":01}", false)]
    [InlineData(null, "{\"a\":1.}", false)]
    [InlineData(null, "{\"a\":.5}", false)]
    [InlineData(null, "{\"a\":1e}", false)]
    [InlineData(null, "{\"a\":-}", false)]
    [InlineData(null, "{\"a\":tru}", false)]
    [InlineData(null, "{\"a\":1,}", false)]
    [InlineData(null, "{\"a\" 1}", false)]
    [InlineData(null, "{\"a\":\"\\x\"}", false)]
    [InlineData(null, "{\"a\":\"\\ud800\"}", false)]
    [InlineData(null, "{\"a\":\"tab\there\"}", false)]
    [InlineData(null, "{\"a\":[1 2]}", false)]
    [InlineData(null, "{", false)]
    // person
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":42}", true)]
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":-1,\"tags\":[\"a\",\"b\"],\"ok\":true}", true)]
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1,\"ok\":false}", true)]
    [InlineData(Person, "{\"name\":\"\",\"age\":1}", false)]           // minLength
    [InlineData(Person, "{\"name\":\"Bobbyy\",\"age\":1}", false)]     // maxLength
    [InlineData(Person, "{\"name\":\"日本語日本\",\"age\":1}", true)]      // 5 code points
    [InlineData(Person, "{\"name\":\"Bob\"}", false)]                 // required
    [InlineData(Person, "{\"age\":1,\"name\":\"Bob\"}", false)]       // schema order
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1.5}", false)]     // integer
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1e3}", false)]
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1,\"x\":1}", false)] // additionalProperties
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1,\"tags\":[\"a\",\"b\",\"c\"]}", false)] // maxItems
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1,\"tags\":[1]}", false)]
    [InlineData(Person, "{\"name\":\"Bob\",\"age\":1,\"ok\":null}", false)]
    // enum / const / unions
    [InlineData("""{"enum":["red","green",1,12,null]}""", "\"red\"", true)]
    [InlineData("""{"enum":["red","green",1,12,null]}""", "12", true)]
    [InlineData("""{"enum":["red","green",1,12,null]}""", "1", true)]
    [InlineData("""{"enum":["red","green",1,12,null]}""", "123", false)]
    [InlineData("""{"enum":["red","green",1,12,null]}""", "\"blue\"", false)]
    [InlineData("""{"const":{"a":[1,"x"]}}""", "{\"a\":[1,\"x\"]}", true)]
    [InlineData("""{"type":["string","null"]}""", "null", true)]
    [InlineData("""{"type":["string","null"]}""", "\"s\"", true)]
    [InlineData("""{"type":["string","null"]}""", "0", false)]
    [InlineData("""{"anyOf":[{"type":"integer"},{"type":"object","properties":{"a":{"const":1}},"required":["a"]}]}""", "{\"a\":1}", true)]
    [InlineData("""{"anyOf":[{"type":"integer"},{"type":"object","properties":{"a":{"const":1}},"required":["a"]}]}""", "-7", true)]
    [InlineData("""{"anyOf":[{"type":"integer"},{"type":"object","properties":{"a":{"const":1}},"required":["a"]}]}""", "{\"a\":2}", false)]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"x":{"type":"number"}},"required":["x"],"additionalProperties":false},{"type":"object","properties":{"y":{"type":"number"}},"required":["y"],"additionalProperties":false}]}""", "{\"y\":0.5}", true)]
    [InlineData("""{"type":"number"}""", "-0.5e+12", true)]
    [InlineData("""{"type":"number"}""", "1E-2", true)]
    [InlineData("""{"type":"integer"}""", "-0", true)]
    [InlineData("""{"type":"integer"}""", "00", false)]
    [InlineData("""{"type":"boolean"}""", "true", true)]
    [InlineData("""{"type":"null"}""", "null", true)]
    // arrays
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2,3,4]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[ 1 , 2 ]", true)]
    [InlineData("""{"type":"array"}""", "[1,\"a\",[{}]]", true)]
    // $ref, recursion, free-form objects
    [InlineData("""{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}}}""", "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}", true)]
    [InlineData("""{"type":"object","properties":{"p":{"$ref":"#/definitions/p"}},"definitions":{"p":{"type":"string"}}}""", "{\"p\":\"x\"}", true)]
    [InlineData("""{"type":"object","properties":{"p":{"$ref":"#/definitions/p"}},"definitions":{"p":{"type":"string"}}}""", "{}", true)]
    [InlineData("""{"type":"object","additionalProperties":{"type":"integer"}}""", "{\"a\":1,\"b\":2}", true)]
    [InlineData("""{"type":"object","additionalProperties":{"type":"integer"}}""", "{\"a\":\"x\"}", false)]
    [InlineData("""{"type":"object","additionalProperties":false}""", "{}", true)]
    [InlineData("""{"type":"object","additionalProperties":false}""", "{\"a\":1}", false)]
    [InlineData("""{"type":"object","required":["a"]}""", "{\"a\":[true]}", true)]
    [InlineData("""{"type":"string","format":"date-time","description":"ignored"}""", "\"x\"", true)]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "\"x\"", true)]
    [InlineData("""true""", "[1]", true)]
    [InlineData("""{"properties":{"a":false,"b":{"type":"null"}}}""", "{\"b\":null}", true)]
    [InlineData("""{"properties":{"a":false,"b":{"type":"null"}}}""", "{\"a\":null}", false)]
    [InlineData("""{"type":"object","properties":{"a\"b":{"const":"é"}},"required":["a\"b"]}""", "{\"a\\\"b\":\"é\"}", true)]
    public void AcceptsOrRejects(string? schema, string doc, bool expected)
    {
        var g = JsonGrammar.Compile(schema);
        Assert.Equal(expected, g.Accepts(doc));
    }

    [Fact]
    public void WhitespaceIsBounded()
    {
        var g = JsonGrammar.Compile(null);
        Assert.True(g.Accepts("{ }"));
        Assert.True(g.Accepts("{\n" + new string(' ', JsonGrammar.MaxIndent) + "\"a\": 1\n}"));
        Assert.False(g.Accepts("{\n" + new string(' ', JsonGrammar.MaxIndent + 1) + "\"a\": 1\n}"));
        Assert.False(g.Accepts("{  }"));
        Assert.False(g.Accepts("{ \n}"));
        Assert.False(g.Accepts("{\t}"));
        Assert.False(g.Accepts("{\r\n}"));
    }

    [Fact]
    public void NumbersAreBounded()
    {
        var g = JsonGrammar.Compile("""{"type":"integer"}""");
        Assert.True(g.Accepts(new string('9', JsonGrammar.MaxIntDigits)));
        Assert.False(g.Accepts(new string('9', JsonGrammar.MaxIntDigits + 1)));
    }

    [Fact]
    public void Utf8IsCheckedBytewise()
    {
        var g = JsonGrammar.Compile("""{"type":"string"}""");
        Assert.True(g.Accepts([(byte)'"', 0xE6, 0x97, 0xA5, (byte)'"']));
        Assert.False(g.Accepts([(byte)'"', 0xE6, 0x97, (byte)'"']));       // truncated sequence
        Assert.False(g.Accepts([(byte)'"', 0xC0, 0x80, (byte)'"']));       // overlong
        Assert.False(g.Accepts([(byte)'"', 0xED, 0xA0, 0x80, (byte)'"'])); // surrogate
        Assert.False(g.Accepts([(byte)'"', 0xFF, (byte)'"']));
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a"}""", "unsupported schema keyword 'pattern'")]
    [InlineData("""{"type":"object","properties":{"n":{"type":"number","minimum":0}}}""", "unsupported schema keyword 'minimum' (at #/properties/n)")]
    [InlineData("""{"type":"array","uniqueItems":true}""", "unsupported schema keyword 'uniqueItems'")]
    [InlineData("""{"type":"strin"}""", "unknown type 'strin'")]
    [InlineData("""{"type":"object",""", "not valid JSON")]
    [InlineData("""{"$ref":"http://example.com/s.json"}""", "only local $ref")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "does not resolve")]
    [InlineData("""{"$ref":"#"}""", "$ref cycle")]
    [InlineData("""{"type":"string","minLength":5,"maxLength":2}""", "minLength 5 is greater than maxLength 2")]
    [InlineData("""{"type":"object","properties":{},"required":["a"],"additionalProperties":false}""", "required property 'a'")]
    [InlineData("""{"enum":[1,2],"type":"string"}""", "'enum' allows no value")]
    [InlineData("""{"anyOf":[{"type":"string"}],"type":"string"}""", "'anyOf' combined with 'type'")]
    [InlineData("""{"allOf":[{"type":"string"},{"maxLength":3}]}""", "'allOf' is supported only with exactly one schema")]
    [InlineData("""false""", "allows no value")]
    [InlineData("""42""", "must be an object or a boolean")]
    public void BadSchemasGiveOneLineErrors(string schema, string expected)
    {
        var e = Assert.ThrowsAny<OpenWeightsException>(() => JsonConstraint.Validate(schema));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith("JSON schema: ", e.Message);
    }
}
