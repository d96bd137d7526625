using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Inference.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// Golden transcripts per template family: a reply written in the family's real format (the one the named template in
/// ../shared/testdata/chat-templates/llama.cpp writes for an assistant's calls, and asks the model for), parsed by the
/// parser that template gets (<see cref="ChatFormatter.CreateReplyParser"/>: format detected from the template, thinking
/// opened or not as its generation prompt ends) — whole, in 1-character pieces and in random pieces (several seeds) —
/// gives the expected content, reasoning and tool calls (names, JSON-equal arguments) every time; and it streams:
/// the text before a call goes out before the call's marker is complete, a call's name before its arguments end, and
/// the arguments in several fragments.
/// </summary>
public class ToolCallGoldenTests
{
    private const string Sep = "<｜tool▁sep｜>", CallBegin = "<｜tool▁call▁begin｜>", CallEnd = "<｜tool▁call▁end｜>",
        CallsBegin = "<｜tool▁calls▁begin｜>", CallsEnd = "<｜tool▁calls▁end｜>";

    private static readonly ChatTool[] Tools =
    [
        new("get_weather", "Current weather", """{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}"""),
        new("get_time", "Current time", """{"type":"object","properties":{"zone":{"type":"string"}},"required":["zone"]}"""),
    ];

    private const string Weather = """{"city": "Paris", "days": 3}""", Time = """{"zone": "0100"}""";

    /// <param name="Marker">where the first call begins in <see cref="Reply"/> (the text before it must stream before the marker ends)</param>
    public sealed record Golden(string Template, ToolCallFormat Format, bool OpensThinking, string Reply, string Marker,
        string Content, string? Reasoning, (string Name, string Args, string? Id)[] Calls);

    public static readonly Dictionary<string, Golden> Cases = new()
    {
        ["hermes-qwen2.5"] = new("Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat.Hermes, false,
            "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather + "}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": " + Time + "}\n</tool_call>",
            "<tool_call>", "Let me check both.", null, [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["hermes-3-llama"] = new("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallFormat.Hermes, false,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather + "}\n</tool_call>",
            "<tool_call>", "", null, [("get_weather", Weather, null)]),
        ["qwen3-thinking"] = new("Qwen-Qwen3-0.6B.jinja", ToolCallFormat.Hermes, false,
            "<think>\nThe user wants the weather in Paris.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather + "}\n</tool_call>",
            "<tool_call>", "", "The user wants the weather in Paris.", [("get_weather", Weather, null)]),
        ["qwen3-coder-xml"] = new("Qwen3-Coder.jinja", ToolCallFormat.Hermes, false,
            "I'll look it up.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n"
            + "<tool_call>\n<function=get_time>\n<parameter=zone>\n0100\n</parameter>\n</function>\n</tool_call>",
            "<tool_call>", "I'll look it up.", null, [("get_weather", Weather, null), ("get_time", Time, null)]), // "0100": a string by the schema
        ["llama3.2-json"] = new("meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallFormat.Llama3, false,
            "{\"name\": \"get_weather\", \"parameters\": " + Weather + "}",
            "{", "", null, [("get_weather", Weather, null)]),
        ["llama3.1-python-tag"] = new("meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat.Llama3, false,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": " + Weather + "}; {\"name\": \"get_time\", \"parameters\": " + Time + "}",
            "<|python_tag|>", "", null, [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["mistral-nemo-array"] = new("mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat.Mistral, false,
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": " + Weather + ", \"id\": \"a1b2c3d4e\"}, {\"name\": \"get_time\", \"arguments\": " + Time + ", \"id\": \"f5g6h7i8j\"}]",
            "[TOOL_CALLS]", "", null, [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["mistral-small-3.2-call-id"] = new("Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallFormat.Mistral, false,
            "Checking.[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]" + Weather + "[TOOL_CALLS]get_time[CALL_ID]f5g6h7i8j[ARGS]" + Time,
            "[TOOL_CALLS]", "Checking.", null, [("get_weather", Weather, "a1b2c3d4e"), ("get_time", Time, "f5g6h7i8j")]),
        ["devstral-args"] = new("unsloth-mistral-Devstral-Small-2507.jinja", ToolCallFormat.Mistral, false,
            "[TOOL_CALLS]get_weather[ARGS]" + Weather + "[TOOL_CALLS]get_time[ARGS]" + Time,
            "[TOOL_CALLS]", "", null, [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["deepseek-r1-distill"] = new("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", ToolCallFormat.DeepSeek, true,
            "The user wants the weather; I have a tool.\n</think>\n\nI will check." + CallsBegin + CallBegin + "function" + Sep + "get_weather\n```json\n" + Weather + "\n```" + CallEnd
            + "\n" + CallBegin + "function" + Sep + "get_time\n```json\n" + Time + "\n```" + CallEnd + CallsEnd,
            CallsBegin, "I will check.", "The user wants the weather; I have a tool.", [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["deepseek-v3.1"] = new("deepseek-ai-DeepSeek-V3.1.jinja", ToolCallFormat.DeepSeek, false,
            "Sure." + CallsBegin + CallBegin + "get_weather" + Sep + Weather + CallEnd + CallBegin + "get_time" + Sep + Time + CallEnd + CallsEnd,
            CallsBegin, "Sure.", null, [("get_weather", Weather, null), ("get_time", Time, null)]),
        ["gpt-oss-harmony"] = new("openai-gpt-oss-120b.jinja", ToolCallFormat.Harmony, false,
            "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>" + Weather,
            "<|channel|>commentary", "", "Need the weather.", [("get_weather", Weather, null)]),
    };

    public static TheoryData<string> Names => [.. Cases.Keys];

    private static readonly Lazy<Tokenizer> tokenizer = new(() => Tokenizer.FromGguf(TinyModels.Qwen));

    private static (ChatFormatter F, string Prompt) Formatter(Golden g)
    {
        var f = new ChatFormatter(tokenizer.Value, File.ReadAllText(TestData.Require("chat-templates/llama.cpp/" + g.Template)));
        string prompt = f.Render([ChatTurn.User("Weather and time in Paris?")], Tools);
        return (f, prompt);
    }

    /// <summary>What a parser's deltas add up to, and when (in characters pushed) each kind of piece came.</summary>
    private sealed class Transcript
    {
        public readonly StringBuilder Content = new(), Reasoning = new();
        public readonly List<(string Name, string? Id, StringBuilder Args, int Fragments, int StartedAt)> Calls = [];
        public int LastContentAt = -1, Pushed;

        public void Take(IEnumerable<ReplyDelta> deltas)
        {
            foreach (var d in deltas)
                switch (d.Kind)
                {
                    case ReplyDeltaKind.Content: Content.Append(d.Text); LastContentAt = Pushed; break;
                    case ReplyDeltaKind.Reasoning: Reasoning.Append(d.Text); break;
                    case ReplyDeltaKind.ToolCallStart:
                        Assert.Equal(Calls.Count, d.ToolIndex);
                        Calls.Add((d.Text, d.ToolCallId, new StringBuilder(), 0, Pushed));
                        break;
                    case ReplyDeltaKind.ToolCallArguments:
                        var c = Calls[d.ToolIndex];
                        c.Args.Append(d.Text);
                        Calls[d.ToolIndex] = c with { Fragments = c.Fragments + 1 };
                        break;
                }
        }
    }

    private static Transcript Run(IReplyParser p, IEnumerable<string> pieces)
    {
        var t = new Transcript();
        foreach (var piece in pieces) { t.Pushed += piece.Length; t.Take(p.Push(piece)); }
        t.Take(p.Complete());
        // the deltas add up to the parser's result
        var r = p.Result;
        Assert.Equal(r.Content, t.Content.ToString());
        Assert.Equal(r.Reasoning ?? "", t.Reasoning.ToString());
        Assert.Equal(r.ToolCalls.Count, t.Calls.Count);
        for (int i = 0; i < r.ToolCalls.Count; i++)
        {
            Assert.Equal(r.ToolCalls[i].Name, t.Calls[i].Name);
            Assert.Equal(r.ToolCalls[i].Id, t.Calls[i].Id);
            AssertJsonEqual(r.ToolCalls[i].Arguments, t.Calls[i].Args.ToString());
        }
        return t;
    }

    internal static IEnumerable<string> RandomPieces(string text, int seed, int max = 12)
    {
        var rng = new Random(seed);
        for (int i = 0; i < text.Length;)
        {
            int n = Math.Min(text.Length - i, rng.Next(1, max + 1));
            yield return text.Substring(i, n);
            i += n;
        }
    }

    private static void AssertJsonEqual(string expected, string actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(actual)), $"arguments {actual}, expected {expected}");

    private static void AssertGolden(Golden g, ParsedReply r)
    {
        Assert.Equal(g.Content, r.Content);
        Assert.Equal(g.Reasoning, r.Reasoning);
        Assert.Equal(g.Calls.Select(c => c.Name), r.ToolCalls.Select(c => c.Name));
        for (int i = 0; i < g.Calls.Length; i++)
        {
            AssertJsonEqual(g.Calls[i].Args, r.ToolCalls[i].Arguments);
            if (g.Calls[i].Id is { } id) Assert.Equal(id, r.ToolCalls[i].Id);
            else Assert.False(string.IsNullOrEmpty(r.ToolCalls[i].Id));
        }
        Assert.Equal(r.ToolCalls.Count, r.ToolCalls.Select(c => c.Id).Distinct().Count());
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void The_template_writes_this_format_and_its_parser_is_chosen(string name)
    {
        var g = Cases[name];
        var (f, prompt) = Formatter(g);
        Assert.Equal(g.Format, f.ToolFormat);
        Assert.Equal(g.OpensThinking, ThinkReplyParser.OpensThinking(prompt) && f.IsThinking);
        // the markers of the golden reply are the template's own
        string source = f.Template.Source;
        foreach (var marker in new[] { "<tool_call>", "<function=", "<parameter=", "[TOOL_CALLS]", "[CALL_ID]", "[ARGS]", "<|python_tag|>", CallsBegin, Sep, "```json", " to=", "functions.", "<|channel|>commentary " })
            if (g.Reply.Contains(marker, StringComparison.Ordinal)) Assert.Contains(marker, source);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Whole_and_streamed_in_any_pieces_give_the_golden_reply(string name)
    {
        var g = Cases[name];
        var (f, prompt) = Formatter(g);
        IReplyParser New() => f.CreateReplyParser(prompt, toolCalls: true, tools: Tools);

        var whole = New();
        Run(whole, [g.Reply]);
        AssertGolden(g, whole.Result);
        AssertGolden(g, f.ParseReply(g.Reply, prompt, tools: Tools));

        var one = New();
        var t = Run(one, g.Reply.Select(c => c.ToString()));
        AssertGolden(g, one.Result);
        // it streams: the text before the first call is out before that call's marker is complete ...
        if (g.Content.Length > 0) Assert.True(t.LastContentAt < g.Reply.IndexOf(g.Marker, StringComparison.Ordinal) + g.Marker.Length,
            $"the content came out only after {t.LastContentAt} characters");
        // ... each call's name before its arguments are complete, and the arguments in several fragments
        for (int i = 0; i < t.Calls.Count; i++)
        {
            Assert.True(t.Calls[i].Fragments >= 2, $"call {i}'s arguments came in {t.Calls[i].Fragments} fragment(s)");
            int argsEnd = g.Reply.IndexOf(g.Calls[i].Args.Contains("zone") ? "0100" : "3", t.Calls[i].StartedAt, StringComparison.Ordinal);
            Assert.True(argsEnd >= 0, $"call {i} started at {t.Calls[i].StartedAt}, after its arguments");
        }

        foreach (int seed in new[] { 1, 2, 3, 4, 5, 17, 42 })
        {
            var p = New();
            Run(p, RandomPieces(g.Reply, seed));
            AssertGolden(g, p.Result);
        }
    }

    /// <summary>The old whole-reply parser (<see cref="ToolCallParser"/>) agrees on the formats it knows: a second reading of the same transcripts.</summary>
    [Theory]
    [InlineData("hermes-qwen2.5")]
    [InlineData("hermes-3-llama")]
    [InlineData("llama3.2-json")]
    [InlineData("llama3.1-python-tag")]
    [InlineData("mistral-nemo-array")]
    [InlineData("mistral-small-3.2-call-id")]
    [InlineData("devstral-args")]
    [InlineData("deepseek-v3.1")]
    [InlineData("gpt-oss-harmony")]
    public void The_whole_reply_parser_reads_the_same_calls(string name)
    {
        var g = Cases[name];
        var old = ToolCallParser.Parse(g.Reply, g.Format);
        Assert.Equal(g.Calls.Select(c => c.Name), old.ToolCalls.Select(c => c.Name));
        for (int i = 0; i < g.Calls.Length; i++) AssertJsonEqual(g.Calls[i].Args, old.ToolCalls[i].Arguments);
    }
}
