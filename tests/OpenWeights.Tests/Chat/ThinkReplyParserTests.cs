using System.Text;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// Replies of &lt;think&gt; models (R1, Qwen3, DeepSeek-V3.1, Kimi K2 Thinking) split into reasoning and answer, whole
/// and streamed: every chunking (one character at a time, random sizes) gives the whole-text result, the reasoning
/// arrives before the answer and while it is generated, a reply that begins inside a thinking the prompt opened has
/// no opening tag, an unclosed thinking is reasoning to the end, and the reasoning never leaks into the answer.
/// </summary>
public class ThinkReplyParserTests
{
    public sealed record Case(string Name, string Text, bool Open, string? Reasoning, string Content);

    private static readonly Case[] All =
    [
        new("R1: the prompt opened the thinking", "Okay, 2 + 2 is 4.\n</think>\n\nThe answer is **4**.", true, "Okay, 2 + 2 is 4.", "The answer is **4**."),
        new("Qwen3: the model opens the thinking", "<think>\nLet me think.\n</think>\n\nHello!", false, "Let me think.", "Hello!"),
        new("the model opens it after whitespace", "\n\n<think>x</think>y", false, "x", "y"),
        new("empty thinking", "<think>\n\n</think>\n\nHi", false, null, "Hi"),
        new("no thinking: all of it is the answer", "Just an answer.", false, null, "Just an answer."),
        new("no thinking: leading whitespace is the answer's", "\n Hi <think>", false, null, "\n Hi <think>"),
        new("a <think> later in the answer is text", "Sure. <think>x</think> ok", false, null, "Sure. <think>x</think> ok"),
        new("a </think> without an opening is text", "Answer </think> more", false, null, "Answer </think> more"),
        new("a tag-like start that is no tag", "<thinking>no</thinking>", false, null, "<thinking>no</thinking>"),
        new("unclosed, opened by the prompt", "still thinking about it\n", true, "still thinking about it", ""),
        new("unclosed, opened by the model", "<think>hmm, a < b", false, "hmm, a < b", ""),
        new("unclosed, a tag's beginning at the end", "<think>a </thi", false, "a </thi", ""),
        new("only an opening", "<think>", false, null, ""),
        new("an opening tag cut short", "<thi", false, null, "<thi"),
        new("tag-like text inside the thinking", "<think>a < b, </th and </thinking> are not it </think>ok", false, "a < b, </th and </thinking> are not it", "ok"),
        new("whitespace inside the reasoning is kept", "<think> a\n\nb  \n</think>c  \n", false, "a\n\nb", "c  \n"),
        new("nothing after the thinking", "<think>a</think>\n\n", false, "a", ""),
        new("the prompt opened it and the model opens it again", "<think>\nx\n</think>\n\ny", true, "x", "y"),
        new("opened by the prompt, closed at once", "</think>\n\nHi", true, null, "Hi"),
        new("empty reply", "", false, null, ""),
        new("empty reply inside the thinking", "", true, null, ""),
        new("unicode", "<think>Привет 🦙 ½</think>東京 🗼", false, "Привет 🦙 ½", "東京 🗼"),
    ];

    public static TheoryData<string> Names() => new(All.Select(c => c.Name));

    private static Case Get(string name) => All.Single(c => c.Name == name);

    [Theory]
    [MemberData(nameof(Names))]
    public void WholeReplyParses(string name)
    {
        var c = Get(name);
        var r = ThinkReplyParser.Parse(c.Text, c.Open);
        Assert.Equal(c.Reasoning, r.Reasoning);
        Assert.Equal(c.Content, r.Content);
        Assert.Empty(r.ToolCalls);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void StreamedInAnyChunksGivesTheWholeResult(string name)
    {
        var c = Get(name);
        var chunkings = new List<List<string>> { c.Text.Select(ch => ch.ToString()).ToList() }; // one UTF-16 unit at a time
        for (int seed = 0; seed < 20; seed++)
        {
            var rng = new Random(seed);
            var parts = new List<string>();
            for (int i = 0; i < c.Text.Length;) { int n = Math.Min(rng.Next(1, 9), c.Text.Length - i); parts.Add(c.Text.Substring(i, n)); i += n; }
            chunkings.Add(parts);
        }
        foreach (var parts in chunkings)
        {
            var p = new ThinkReplyParser(c.Open);
            var deltas = new List<ReplyDelta>();
            foreach (var part in parts) deltas.AddRange(p.Push(part));
            deltas.AddRange(p.Complete());
            Assert.Equal((c.Content, c.Reasoning), (p.Result.Content, p.Result.Reasoning));
            // the deltas add up to the result, the reasoning before the answer
            Assert.Equal(c.Reasoning ?? "", string.Concat(deltas.Where(d => d.Kind == ReplyDeltaKind.Reasoning).Select(d => d.Text)));
            Assert.Equal(c.Content, string.Concat(deltas.Where(d => d.Kind == ReplyDeltaKind.Content).Select(d => d.Text)));
            int firstContent = deltas.FindIndex(d => d.Kind == ReplyDeltaKind.Content);
            Assert.True(firstContent < 0 || deltas.FindLastIndex(d => d.Kind == ReplyDeltaKind.Reasoning) < firstContent, "reasoning after the answer");
            Assert.All(deltas, d => Assert.NotEqual("", d.Text));
            Assert.Empty(p.Complete()); // once
            Assert.Throws<InvalidOperationException>(() => p.Push("x"));
        }
    }

    [Fact]
    public void PiecesArriveWhileTheReplyIsGenerated()
    {
        var p = new ThinkReplyParser(startsInThinking: true);
        Assert.Empty(p.Push("\n"));                                          // whitespace before the reasoning: dropped
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, "Okay,")], p.Push("Okay, "));  // the trailing space may end the reasoning: held
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, " so")], p.Push("so\n</th"));   // "\n</th" may be the end: held
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, "\n</thus")], p.Push("us"));    // it was not
        Assert.Empty(p.Push("\n</think>\n"));
        Assert.Empty(p.Push("\n"));                                          // whitespace before the answer: dropped
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, "4")], p.Push("4"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, " </think> ")], p.Push(" </think> ")); // the answer streams as it is
        Assert.Empty(p.Complete());
        Assert.Equal(("Okay, so\n</thus", "4 </think> "), (p.Result.Reasoning, p.Result.Content));

        var q = new ThinkReplyParser();
        Assert.Empty(q.Push(" <thi"));                                        // may be <think>: held
        Assert.Empty(q.Push("nk>"));
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Reasoning, "a")], q.Push("a"));
        var r = new ThinkReplyParser();
        Assert.Equal([new ReplyDelta(ReplyDeltaKind.Content, "<b>hi")], r.Push("<b>hi")); // not <think>: the answer at once
    }

    /// <summary>The answer after the thinking goes through a tool-call parser when one is given: Qwen3 thinks, then calls.</summary>
    [Fact]
    public void TheAnswerGoesThroughTheContentParser()
    {
        const string text = "<think>\nI need the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        var p = new ThinkReplyParser(false, new WholeReplyParser(ToolCallFormat.Hermes));
        var deltas = new List<ReplyDelta>();
        foreach (var ch in text) deltas.AddRange(p.Push(ch.ToString()));
        Assert.False(p.HasToolCalls); // the answer is held whole until the end
        Assert.Equal("I need the weather.", string.Concat(deltas.Select(d => d.Text)));
        var end = p.Complete();
        Assert.True(p.HasToolCalls);
        Assert.Equal([ReplyDeltaKind.ToolCallStart, ReplyDeltaKind.ToolCallArguments], end.Select(d => d.Kind));
        var call = Assert.Single(p.Result.ToolCalls);
        Assert.Equal(("get_weather", "{\"city\":\"Paris\"}"), (call.Name, call.Arguments));
        Assert.Equal(("I need the weather.", ""), (p.Result.Reasoning, p.Result.Content));
    }

    [Theory]
    [InlineData("<｜User｜>hi<｜Assistant｜><think>\n", true)]    // R1
    [InlineData("<｜User｜>hi<｜Assistant｜><think>", true)]      // DeepSeek-V3.1 thinking
    [InlineData("<｜User｜>hi<｜Assistant｜><think></think>", false)] // DeepSeek-V3.1 not thinking
    [InlineData("<|im_start|>assistant\n", false)]                // Qwen3: the model opens it
    [InlineData("<|im_start|>assistant\n<think>\n\n</think>\n\n", false)] // Qwen3, enable_thinking=false
    [InlineData("", false)]
    public void OpensThinkingReadsThePromptsTail(string prompt, bool open) => Assert.Equal(open, ThinkReplyParser.OpensThinking(prompt));

    /// <summary>Random soup of tags, whitespace and text: never throws, and one character at a time agrees with the whole parse.</summary>
    [Fact]
    public void RandomTextNeverThrows()
    {
        string[] atoms = ["<think>", "</think>", "<", "</", "<th", "</thi", "think", ">", " ", "\n", "x", "é", "🦙", "<tool_call>"];
        var rng = new Random(7);
        for (int i = 0; i < 500; i++)
        {
            var sb = new StringBuilder();
            for (int k = rng.Next(0, 20); k > 0; k--) sb.Append(atoms[rng.Next(atoms.Length)]);
            string text = sb.ToString();
            bool open = rng.Next(2) == 0;
            var whole = ThinkReplyParser.Parse(text, open);
            var p = new ThinkReplyParser(open);
            foreach (var ch in text) p.Push(ch.ToString());
            p.Complete();
            Assert.Equal((whole.Content, whole.Reasoning), (p.Result.Content, p.Result.Reasoning));
            if (open && !text.Contains("</think>", StringComparison.Ordinal)) Assert.Equal("", whole.Content); // an unclosed thinking never leaks
            Assert.True(whole.Content.Length + (whole.Reasoning?.Length ?? 0) <= text.Length);
        }
    }
}
