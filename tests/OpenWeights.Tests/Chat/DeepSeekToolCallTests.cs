using OpenWeights.Inference.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// DeepSeek's tool-call blocks (<see cref="ToolCallFormat.DeepSeek"/>): the V3 / R1 form (type, separator, name, a fenced JSON
/// block) and the V3.1 / V3.2 form (name, separator, arguments); detected from the real templates; what a template writes
/// for an assistant's call parses back to that call; malformed blocks stay text.
/// </summary>
public class DeepSeekToolCallTests
{
    private const string Begin = "<｜tool▁calls▁begin｜>", End = "<｜tool▁calls▁end｜>", CallBegin = "<｜tool▁call▁begin｜>", CallEnd = "<｜tool▁call▁end｜>", Sep = "<｜tool▁sep｜>";

    private static string Template(string file) => File.ReadAllText(TestData.Require("chat-templates/llama.cpp/" + file));

    [Fact]
    public void V3_form_with_a_fenced_json_block_parses_and_keeps_the_text_before()
    {
        string reply = "Let me look." + Begin + CallBegin + "function" + Sep + "get_weather\n```json\n{\"city\": \"Paris\"}\n```" + CallEnd
            + CallBegin + "function" + Sep + "get_time\n```json\n{}\n```" + CallEnd + End;
        var p = ToolCallParser.Parse(reply, ToolCallFormat.DeepSeek);
        Assert.Equal("Let me look.", p.Content);
        Assert.Equal(["get_weather", "get_time"], p.ToolCalls.Select(c => c.Name));
        Assert.Equal("{\"city\": \"Paris\"}", p.ToolCalls[0].Arguments);
        Assert.Equal("{}", p.ToolCalls[1].Arguments);
        Assert.NotEqual(p.ToolCalls[0].Id, p.ToolCalls[1].Id);
        Assert.Equal(2, ToolCallParser.Parse(reply).ToolCalls.Count); // the generic parser knows the form too
    }

    [Fact]
    public void V31_form_with_the_arguments_after_the_separator_parses()
    {
        var p = ToolCallParser.Parse(Begin + CallBegin + "get_weather" + Sep + "{\"city\":\"Paris\"}" + CallEnd + End, ToolCallFormat.DeepSeek);
        Assert.Equal("", p.Content);
        Assert.Equal("get_weather", Assert.Single(p.ToolCalls).Name);
        Assert.Equal("{\"city\":\"Paris\"}", p.ToolCalls[0].Arguments);
        // tojson of a string holding the object (V3.1's template writes arguments | tojson)
        var q = ToolCallParser.Parse(Begin + CallBegin + "f" + Sep + "\"{\\\"a\\\": 1}\"" + CallEnd + End, ToolCallFormat.DeepSeek);
        Assert.Equal("{\"a\": 1}", Assert.Single(q.ToolCalls).Arguments);
    }

    [Theory]
    [InlineData("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather{\"city\":\"Paris\"}<｜tool▁call▁end｜>")] // no separator
    [InlineData("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":<｜tool▁call▁end｜>")] // broken JSON
    [InlineData("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜><｜tool▁sep｜>{}<｜tool▁call▁end｜>")] // no name
    [InlineData("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}")] // unclosed fence
    public void Malformed_blocks_stay_text(string reply)
    {
        var p = ToolCallParser.Parse(reply, ToolCallFormat.DeepSeek);
        Assert.Empty(p.ToolCalls);
        Assert.Equal(reply, p.Content);
    }

    [Theory]
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja")]
    [InlineData("llama-cpp-deepseek-r1.jinja")]
    public void Templates_are_detected_and_what_they_write_for_a_call_parses_back(string file)
    {
        var f = new ChatFormatter(Tokenizer.FromGguf(TinyModels.Qwen), Template(file));
        Assert.Equal(ToolCallFormat.DeepSeek, f.ToolFormat);
        var call = new ChatToolCall("call_1", "get_weather", "{\"city\":\"Paris\"}");
        string rendered = f.Render([ChatTurn.User("Weather in Paris?"), new ChatTurn("assistant", null, [call]),
            new ChatTurn("tool", "{\"temp\": 21}", ToolCallId: "call_1"), ChatTurn.User("Thanks")]);
        int b = rendered.IndexOf(Begin, StringComparison.Ordinal), e = rendered.IndexOf(End, StringComparison.Ordinal);
        Assert.True(b >= 0 && e > b, rendered);
        var p = ToolCallParser.Parse(rendered[b..(e + End.Length)], f.ToolFormat);
        var back = Assert.Single(p.ToolCalls);
        Assert.Equal("get_weather", back.Name);
        Assert.Equal("Paris", System.Text.Json.Nodes.JsonNode.Parse(back.Arguments)!["city"]!.GetValue<string>());
    }
}
