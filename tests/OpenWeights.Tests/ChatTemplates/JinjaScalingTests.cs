using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.ChatTemplates;

/// <summary>
/// Rendering is linear in the conversation. Templates build their output with <c>{% set ns.out = ns.out ~ ... %}</c>
/// (Reka-Edge) and grew faster than quadratically: 20,000 messages took 34.6 s. The checks count interpreter steps,
/// which are deterministic (copies count as steps, a quadratic copy shows up as a quadratic count), and render a
/// large conversation within the default budget, which a quadratic render exceeds.
/// </summary>
public class JinjaScalingTests(ITestOutputHelper output)
{
    // the accumulating pattern of real templates, in a template of our own (runs without ../shared)
    private const string Accumulating = """
        {%- set ns = namespace(out="", system="") -%}
        {%- for m in messages -%}
            {%- if m.role == "system" -%}{%- set ns.system = ns.system + m.content -%}
            {%- else -%}
                {%- set ns.out = ns.out ~ m.role ~ ": " ~ m.content ~ "\n" -%}
                {%- if not ns.out.endswith("\n") -%}{{ raise_exception("lost a newline") }}{%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {{- ns.system ~ ns.out -}}
        """;

    private static List<IReadOnlyDictionary<string, object?>> Conversation(int n) =>
        Enumerable.Range(0, n).Select(i => (IReadOnlyDictionary<string, object?>)ChatTemplate.Message(
            i % 2 == 0 ? "user" : "assistant", $"message number {i} with some text")).ToList();

    private static (string Text, long Steps) Render(string template, int n)
    {
        var ctx = new Dictionary<string, object?>
        {
            ["messages"] = Conversation(n), ["add_generation_prompt"] = true, ["bos_token"] = "", ["eos_token"] = "",
            ["tools"] = null, ["documents"] = null,
        };
        var text = JinjaTemplate.Parse(template).Render(ctx, CancellationToken.None, out var steps);
        return (text, steps);
    }

    private void AssertLinear(string template, int n)
    {
        var (a, stepsN) = Render(template, n);
        var (b, steps2N) = Render(template, 2 * n);
        Assert.True(b.Length > 1.9 * a.Length, $"output {a.Length} → {b.Length}");
        var ratio = (double)steps2N / stepsN;
        output.WriteLine($"{n} messages: {stepsN} steps, {2 * n}: {steps2N} (ratio {ratio:F2})");
        Assert.True(ratio < 2.2, $"steps for {n} messages: {stepsN}, for {2 * n}: {steps2N} (ratio {ratio:F2}; linear is 2)");
    }

    [Fact]
    public void AccumulatingTemplateIsLinear() => AssertLinear(Accumulating, 10_000);

    [Fact]
    public void AccumulatedStringReadsBackWhole()
    {
        var (text, _) = Render(Accumulating, 3);
        Assert.Equal("user: message number 0 with some text\nassistant: message number 1 with some text\nuser: message number 2 with some text\n", text);
    }

    [Fact(Timeout = 60_000)]
    public async Task RekaEdgeRendersTwentyThousandMessagesLinearly()
    {
        var src = File.ReadAllText(TestData.Require(Path.Combine("chat-templates", "llama.cpp", "Reka-Edge.jinja")));
        await Task.Run(() =>
        {
            AssertLinear(src, 10_000);
            // 20,000 messages within the default budget (a quadratic render exceeds it)
            var text = new ChatTemplate(src).Render(Conversation(20_000));
            Assert.StartsWith("human: message number 0 with some text<sep>assistant: message number 1", text);
            Assert.EndsWith("assistant: message number 19999 with some text\n\n<sep>", text);
        });
    }
}
