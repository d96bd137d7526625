using System.Text;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// <see cref="StreamingToolCallParser"/> at its edges: what is held back (only the beginning of a marker, and whitespace
/// that may stand before a call), text that looks like a call and is not, replies cut off inside a call, and
/// Qwen3-Coder's parameter typing by the tool's schema.
/// </summary>
public class StreamingToolCallParserTests
{
    private static string Content(IEnumerable<ReplyDelta> ds) => string.Concat(ds.Where(d => d.Kind == ReplyDeltaKind.Content).Select(d => d.Text));

    [Fact]
    public void Only_the_beginning_of_a_marker_is_held_back()
    {
        var p = new StreamingToolCallParser(ToolCallFormat.Hermes);
        Assert.Equal("Let me", Content(p.Push("Let me")));
        Assert.Equal(" check.", Content(p.Push(" check.\n<tool"))); // "\n<tool" may begin a call
        var ds = p.Push("_call>\n{\"name\": \"f\", \"arguments\": {\"a\": ");
        Assert.Equal("", Content(ds));
        var start = Assert.Single(ds, d => d.Kind == ReplyDeltaKind.ToolCallStart);
        Assert.Equal("f", start.Text);
        Assert.Equal("{\"a\": ", string.Concat(ds.Where(d => d.Kind == ReplyDeltaKind.ToolCallArguments).Select(d => d.Text)));
        p.Push("1}}\n</tool_call>");
        p.Complete();
        Assert.Equal("Let me check.", p.Result.Content);
        Assert.Equal("{\"a\": 1}", Assert.Single(p.Result.ToolCalls).Arguments);
    }

    [Fact]
    public void A_marker_that_does_not_complete_is_content()
    {
        var p = new StreamingToolCallParser(ToolCallFormat.Hermes);
        var ds = new List<ReplyDelta>(p.Push("a <tool"));
        ds.AddRange(p.Push("box> b"));
        ds.AddRange(p.Complete());
        Assert.Equal("a <toolbox> b", Content(ds));
        Assert.False(p.HasToolCalls);
    }

    [Theory]
    [InlineData(ToolCallFormat.Llama3, "{\"answer\": 42}")]                           // JSON, but no call object
    [InlineData(ToolCallFormat.Hermes, "<tool_call>not json</tool_call> ok")]          // a marker with no call in it
    [InlineData(ToolCallFormat.Mistral, "[TOOL_CALLS] is how I would say it")]         // no name[ARGS]
    [InlineData(ToolCallFormat.DeepSeek, "<｜tool▁call▁begin｜>no separator\n and more")]
    [InlineData(ToolCallFormat.Generic, "The weather is {nice}.")]
    public void Text_that_only_looks_like_a_call_is_content(ToolCallFormat format, string reply)
    {
        foreach (var pieces in new[] { new[] { reply }, reply.Select(c => c.ToString()).ToArray() })
        {
            var p = new StreamingToolCallParser(format);
            var ds = new List<ReplyDelta>();
            foreach (var s in pieces) ds.AddRange(p.Push(s));
            ds.AddRange(p.Complete());
            Assert.False(p.HasToolCalls);
            Assert.Equal(reply, Content(ds));
            Assert.Equal(reply, p.Result.Content);
        }
    }

    [Fact]
    public void A_reply_cut_off_inside_the_arguments_keeps_the_call_with_what_came()
    {
        var p = new StreamingToolCallParser(ToolCallFormat.Hermes);
        p.Push("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\"");
        p.Complete();
        var call = Assert.Single(p.Result.ToolCalls);
        Assert.Equal("f", call.Name);
        Assert.Equal("{\"a\": 1, \"b\"", call.Arguments);
    }

    [Fact]
    public void Arguments_before_the_name_come_whole_once_the_name_is_known()
    {
        var p = new StreamingToolCallParser(ToolCallFormat.Hermes);
        Assert.Empty(p.Push("<tool_call>{\"arguments\": {\"a\": 1}, "));
        var ds = p.Push("\"name\": \"f\"}</tool_call>");
        Assert.Equal([ReplyDeltaKind.ToolCallStart, ReplyDeltaKind.ToolCallArguments], ds.Select(d => d.Kind));
        Assert.Equal("{\"a\": 1}", ds[1].Text);
    }

    [Fact]
    public void Arguments_written_as_a_json_string_are_unwrapped()
    {
        var r = StreamingToolCallParser.Parse("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>", ToolCallFormat.Hermes);
        Assert.Equal("{\"a\": 1}", Assert.Single(r.ToolCalls).Arguments);
    }

    [Theory]
    [InlineData("""{"type":"string"}""", "0100", "\"0100\"")]
    [InlineData("""{"type":"integer"}""", "0100", "\"0100\"")] // not JSON as written: kept as text
    [InlineData("""{"type":"integer"}""", "42", "42")]
    [InlineData("""{"type":"number"}""", "4", "4")]
    [InlineData("""{"type":"boolean"}""", "true", "true")]
    [InlineData("""{"type":"array"}""", "[1, 2]", "[1,2]")]
    [InlineData("""{"type":["string","null"]}""", "x", "\"x\"")]
    [InlineData(null, "42", "42")]                   // no schema: JSON where it is JSON
    [InlineData(null, "Paris", "\"Paris\"")]
    [InlineData(null, "multi\nline", "\"multi\\nline\"")]
    public void Qwen3_coder_parameters_take_their_type_from_the_schema(string? property, string value, string json)
    {
        var tools = property is null ? null : new[] { new ChatTool("f", null, $$$"""{"type":"object","properties":{"p":{{{property}}}}}""") };
        var r = StreamingToolCallParser.Parse($"<tool_call>\n<function=f>\n<parameter=p>\n{value}\n</parameter>\n</function>\n</tool_call>", ToolCallFormat.Hermes, tools);
        Assert.Equal("{\"p\": " + json + "}", Assert.Single(r.ToolCalls).Arguments);
    }
}

/// <summary>
/// Replies stitched at random from the families' markers, JSON pieces, XML pieces and text: every format's parser
/// gives the same result whole, in 1-character pieces and in random pieces (but for a call begun and then malformed,
/// which pieces cannot take back), and never throws.
/// </summary>
public class StreamingToolCallParserFuzzTests
{
    private static readonly string[] Parts =
    [
        "<tool_call>", "</tool_call>", "\n", " ", "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", ", \"arguments\": ", "{\"b\": [1, {\"c\": \"}\"}]}", "}",
        "<function=f>", "<parameter=p>\n7\n</parameter>", "</function>", "[TOOL_CALLS]", "f[ARGS]", "[CALL_ID]abc123xyz", "[{\"name\": \"h\", \"arguments\": {}}]",
        "<|python_tag|>", ";", "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "function<｜tool▁sep｜>f\n```json\n", "\n```", "f<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>",
        "Hello", "text {x}", "\"quoted\\\"", "<", "[", "é", "<tool", "[TOOL_",
    ];

    // Left out: a call object cut off after its name ({"name": "g" then something else). Its start has gone out when
    // the object turns malformed; pieces keep that call and lose the text after it, the whole parse keeps the text.
    [Fact]
    public void Whole_and_pieces_agree_on_random_replies()
    {
        var rng = new Random(7);
        var formats = new[] { ToolCallFormat.Generic, ToolCallFormat.Hermes, ToolCallFormat.Llama3, ToolCallFormat.Mistral, ToolCallFormat.DeepSeek };
        for (int n = 0; n < 400; n++)
        {
            var sb = new StringBuilder();
            int count = rng.Next(1, 10);
            for (int k = 0; k < count; k++) sb.Append(Parts[rng.Next(Parts.Length)]);
            string reply = sb.ToString();
            foreach (var format in formats)
            {
                var whole = StreamingToolCallParser.Parse(reply, format);
                foreach (var pieces in new[] { reply.Select(c => c.ToString()), ToolCallGoldenTests.RandomPieces(reply, n, 5) })
                {
                    var p = new StreamingToolCallParser(format);
                    foreach (var piece in pieces) p.Push(piece);
                    p.Complete();
                    string where = $"{format} on {System.Text.Json.JsonSerializer.Serialize(reply)}";
                    // a call whose name went out cannot be taken back: pieces may hold one more (malformed) call than the whole parse
                    var got = p.Result.ToolCalls.Select(c => c.Name + "(" + c.Arguments + ")").ToList();
                    var want = whole.ToolCalls.Select(c => c.Name + "(" + c.Arguments + ")").ToList();
                    Assert.True(got.Count - want.Count is 0 or 1 && want.SequenceEqual(got.Take(want.Count)),
                        $"calls {string.Join(", ", p.Result.ToolCalls)} vs whole {string.Join(", ", whole.ToolCalls)}: {where}");
                    if (got.Count == want.Count) Assert.True(whole.Content == p.Result.Content, $"content {p.Result.Content} vs whole {whole.Content}: {where}");
                }
            }
        }
    }
}
