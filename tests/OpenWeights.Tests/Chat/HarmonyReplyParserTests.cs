using System.Text;
using System.Text.Json;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// gpt-oss harmony replies (the text after the prompt's <c>&lt;|start|&gt;assistant</c>) split into reasoning, content
/// and tool calls, whole and streamed: every chunking (one character at a time, random sizes) gives the whole-text
/// result, the pieces arrive while the reply is generated, and malformed or cut-off replies never throw.
/// </summary>
public class HarmonyReplyParserTests
{
    public sealed record Case(string Name, string Text, string? Reasoning, string Content, params string[] Calls); // calls: "name args"

    private static readonly Case[] All =
    [
        new("analysis then final", "<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.",
            "User asks 2+2. Answer 4.", "2 + 2 = 4."),
        new("final ends at <|return|>", "<|channel|>final<|message|>Hi there<|return|>", null, "Hi there"),
        new("tool call with <|constrain|>", "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}",
            "Need the weather.", "", "get_weather {\"city\":\"Paris\"}"),
        new("recipient before the channel", "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Oslo\"}<|call|>",
            "x", "", "get_weather {\"city\": \"Oslo\"}"),
        new("recipient in the first header", " to=functions.lookup<|channel|>commentary json<|message|>{}", null, "", "lookup {}"),
        new("preamble then call", "<|channel|>commentary<|message|>Checking the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Rome\"}",
            null, "Checking the weather.", "get_weather {\"city\":\"Rome\"}"),
        new("two calls", "<|channel|>commentary to=functions.a <|constrain|>json<|message|>{\"x\":1}<|call|><|start|>assistant<|channel|>commentary to=functions.b <|constrain|>json<|message|>{\"y\":2}",
            null, "", "a {\"x\":1}", "b {\"y\":2}"),
        new("builtin tool recipient", "<|channel|>analysis<|message|>t<|end|><|start|>assistant<|channel|>commentary to=browser.search <|constrain|>json<|message|>{\"query\":\"x\"}",
            "t", "", "browser.search {\"query\":\"x\"}"),
        new("plain text is content", "Hello, I am not harmony.", null, "Hello, I am not harmony."),
        new("plain text with a marker later", "Sure thing <|channel|>final<|message|>x", null, "Sure thing <|channel|>final<|message|>x"),
        new("unterminated analysis", "<|channel|>analysis<|message|>thinking still", "thinking still", ""),
        new("unterminated header", "<|channel|>analy", null, ""),
        new("header with a newline is content", "<|channel|>analysis\nfoo<|message|>bar", null, "<|channel|>analysis\nfoo<|message|>bar"),
        new("missing <|end|> before <|start|>", "<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>ok", "think", "ok"),
        new("missing <|end|><|start|> before <|channel|>", "<|channel|>analysis<|message|>think<|channel|>final<|message|>ok", "think", "ok"),
        new("angle brackets in content", "<|channel|>final<|message|>a < b, x<|y and <|x|> stay <|", null, "a < b, x<|y and <|x|> stay <|"),
        new("stray text between messages", "<|channel|>analysis<|message|>t<|end|>oops<|start|>assistant<|channel|>final<|message|>ok", "t", "oops\nok"),
        new("two analysis messages", "<|channel|>analysis<|message|>one<|end|><|start|>assistant<|channel|>analysis<|message|>two<|end|><|start|>assistant<|channel|>final<|message|>done",
            "one\ntwo", "done"),
        new("unterminated call arguments", "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": [1, 2", null, "", "f {\"a\": [1, 2"),
        new("empty", "", null, ""),
        new("empty final", "<|channel|>final<|message|>", null, ""),
        new("unicode", "<|channel|>analysis<|message|>Привет 🦙<|end|><|start|>assistant<|channel|>final<|message|>東京 ½", "Привет 🦙", "東京 ½"),
    ];

    public static TheoryData<string> Names() => new(All.Select(c => c.Name));

    private static Case Get(string name) => All.Single(c => c.Name == name);

    [Theory]
    [MemberData(nameof(Names))]
    public void WholeReplyParses(string name)
    {
        var c = Get(name);
        var r = HarmonyReplyParser.Parse(c.Text);
        Assert.Equal(c.Reasoning, r.Reasoning);
        Assert.Equal(c.Content, r.Content);
        Assert.Equal(c.Calls, r.ToolCalls.Select(t => t.Name + " " + t.Arguments));
        Assert.All(r.ToolCalls, t => Assert.False(string.IsNullOrEmpty(t.Id)));
        Assert.Equal(r.ToolCalls.Select(t => t.Id).Distinct().Count(), r.ToolCalls.Count);
        // the same through the formatter's entry point
        var viaParser = ToolCallParser.Parse(c.Text, ToolCallFormat.Harmony);
        Assert.Equal((r.Content, r.Reasoning), (viaParser.Content, viaParser.Reasoning));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void StreamedInAnyChunksGivesTheWholeResult(string name)
    {
        var c = Get(name);
        var whole = HarmonyReplyParser.Parse(c.Text);
        var chunkings = new List<List<string>> { c.Text.Select(ch => ch.ToString()).ToList() }; // one UTF-16 unit at a time
        for (int seed = 0; seed < 20; seed++)
        {
            var rng = new Random(seed);
            var parts = new List<string>();
            for (int i = 0; i < c.Text.Length;) { int n = Math.Min(rng.Next(1, 12), c.Text.Length - i); parts.Add(c.Text.Substring(i, n)); i += n; }
            chunkings.Add(parts);
        }
        foreach (var parts in chunkings)
        {
            var p = new HarmonyReplyParser();
            var deltas = new List<ReplyDelta>();
            foreach (var part in parts) deltas.AddRange(p.Push(part));
            deltas.AddRange(p.Complete());
            var r = p.Result;
            Assert.Equal((whole.Content, whole.Reasoning), (r.Content, r.Reasoning));
            Assert.Equal(whole.ToolCalls.Select(t => (t.Name, t.Arguments)), r.ToolCalls.Select(t => (t.Name, t.Arguments)));
            // the deltas add up to the result: reasoning, content, and per call its start then its argument fragments
            Assert.Equal(r.Reasoning ?? "", string.Concat(deltas.Where(d => d.Kind == ReplyDeltaKind.Reasoning).Select(d => d.Text)));
            Assert.Equal(r.Content, string.Concat(deltas.Where(d => d.Kind == ReplyDeltaKind.Content).Select(d => d.Text)));
            var starts = deltas.Where(d => d.Kind == ReplyDeltaKind.ToolCallStart).ToList();
            Assert.Equal(r.ToolCalls.Select(t => (t.Id, t.Name)), starts.Select(s => (s.ToolCallId!, s.Text)));
            for (int k = 0; k < starts.Count; k++)
            {
                int startAt = deltas.IndexOf(starts[k]);
                var args = deltas.Select((d, i) => (d, i)).Where(x => x.d.Kind == ReplyDeltaKind.ToolCallArguments && x.d.ToolIndex == k).ToList();
                Assert.All(args, a => Assert.True(a.i > startAt, "arguments before their call's start"));
                string streamed = string.Concat(args.Select(a => a.d.Text)).Trim();
                Assert.Equal(r.ToolCalls[k].Arguments, streamed.Length > 0 ? streamed : "{}");
            }
            Assert.Empty(p.Complete()); // once
        }
    }

    [Fact]
    public void PiecesArriveWhileTheReplyIsGenerated()
    {
        var p = new HarmonyReplyParser();
        Assert.Empty(p.Push("<|channel|>analysis<|mess")); // a header is held until it is complete
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, "User asks")], p.Push("age|>User asks"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, " 2+2.")], p.Push(" 2+2.<|e")); // "<|e" may be <|end|>: held
        Assert.Empty(p.Push("nd|><|start|>assistant<|channel|>final<|message|>"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, "4")], p.Push("4"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, " <|x")], p.Push(" <|x")); // "<|x" is no marker's beginning
        Assert.Empty(p.Push("<|"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, "<|")], p.Complete()); // held back, released at the end

        var q = new HarmonyReplyParser();
        var start = Assert.Single(q.Push("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"));
        Assert.Equal((ReplyDeltaKind.ToolCallStart, "get_weather", 0), (start.Kind, start.Text, start.ToolIndex));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.ToolCallArguments, "{\"city\":", 0)], q.Push("{\"city\":"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.ToolCallArguments, " \"Oslo\"}", 0)], q.Push(" \"Oslo\"}"));
        Assert.True(q.HasToolCalls);
        Assert.Empty(q.Complete());
        Assert.Equal("Oslo", JsonDocument.Parse(q.Result.ToolCalls[0].Arguments).RootElement.GetProperty("city").GetString());
    }

    /// <summary>Random byte soup around harmony markers: never throws, and streaming agrees with the whole parse.</summary>
    [Fact]
    public void RandomTextNeverThrows()
    {
        string[] atoms = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>", "assistant", "analysis", "final",
            "commentary", " to=functions.f", " to=", "json", " ", "\n", "{", "}", "<", "|", ">", "<|", "x", "é", "🦙"];
        var rng = new Random(5);
        for (int i = 0; i < 500; i++)
        {
            var sb = new StringBuilder();
            for (int k = rng.Next(0, 30); k > 0; k--) sb.Append(atoms[rng.Next(atoms.Length)]);
            string text = sb.ToString();
            var whole = HarmonyReplyParser.Parse(text);
            var p = new HarmonyReplyParser();
            foreach (var ch in text) p.Push(ch.ToString());
            p.Complete();
            Assert.Equal((whole.Content, whole.Reasoning, whole.ToolCalls.Count), (p.Result.Content, p.Result.Reasoning, p.Result.ToolCalls.Count));
        }
    }

    [Fact]
    public void WholeReplyParserOfOtherFormatsHoldsTheReplyAndParsesItAtTheEnd()
    {
        var p = new WholeReplyParser(ToolCallFormat.Hermes);
        Assert.Empty(p.Push("Let me see.\n<tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1}}"));
        Assert.Empty(p.Push("</tool_call>"));
        var d = p.Complete();
        Assert.Equal([ReplyDeltaKind.Content, ReplyDeltaKind.ToolCallStart, ReplyDeltaKind.ToolCallArguments], d.Select(x => x.Kind));
        Assert.True(p.HasToolCalls);
        Assert.Equal("f", p.Result.ToolCalls[0].Name);
    }
}
