using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.ChatTemplates;

/// <summary>
/// A chat template comes from a downloaded model file: renders are bounded in steps, output and list sizes, and
/// stop on cancellation. Each case here ran unbounded before (hung, took gigabytes, or overflowed the stack).
/// The Timeout turns a hang into a failure instead of a stuck test run.
/// </summary>
public class JinjaLimitTests
{
    private static Task<string> Render(string template, TemplateLimits? limits = null, CancellationToken ct = default,
        IDictionary<string, object?>? context = null) =>
        Task.Run(() => JinjaTemplate.Parse(template, new JinjaTemplateOptions { Limits = limits ?? TemplateLimits.Default })
            .Render(context ?? new Dictionary<string, object?>(), ct));

    private static async Task<TemplateLimitException> Refused(string template, string limit, TemplateLimits? limits = null)
    {
        var ex = await Assert.ThrowsAsync<TemplateLimitException>(() => Render(template, limits));
        Assert.Equal(limit, ex.Limit);
        Assert.Contains(limit, ex.Message);
        Assert.DoesNotContain("\n", ex.Message);
        return ex;
    }

    [Fact(Timeout = 20_000)]
    public async Task PowerIsBySquaring()
    {
        Assert.Equal("1", await Render("{{ 1 ** 9223372036854775807 }}"));
        Assert.Equal("-1", await Render("{{ (-1) ** 9223372036854775807 }}"));
        Assert.Equal("0", await Render("{{ 0 ** 9223372036854775807 }}"));
        Assert.Equal("4611686018427387904", await Render("{{ 2 ** 62 }}"));
        Assert.Equal("4052555153018976267", await Render("{{ 3 ** 39 }}"));
        Assert.Equal("0.25", await Render("{{ 2 ** -2 }}"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData("{{ 2 ** 64 }}")]
    [InlineData("{{ 3 ** 40 }}")]
    [InlineData("{{ 2 ** 9223372036854775807 }}")]
    [InlineData("{{ 9223372036854775807 + 1 }}")]
    [InlineData("{{ -9223372036854775807 - 2 }}")]
    [InlineData("{{ 4294967296 * 4294967296 }}")]
    public async Task IntegersBeyond64BitsAreRefusedNotWrapped(string template)
    {
        var ex = await Assert.ThrowsAsync<TemplateException>(() => Render(template));
        Assert.Contains("integer overflow", ex.Reason);
    }

    [Fact(Timeout = 30_000)]
    public async Task NestedRangesRunOutOfSteps()
    {
        var ex = await Refused("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "MaxSteps",
            TemplateLimits.Default with { MaxSteps = 1_000_000 });
        Assert.Equal(1_000_000, ex.Value);
        Assert.Equal(1, ex.Line);
    }

    [Fact(Timeout = 30_000)]
    public async Task RangeBuiltInALoopCountsItsItems()
    {
        // found by the fuzzer: one step per iteration, but each builds a 100,000-item list
        var ex = await Refused("{% for i in range(100000) %}{% if range(100000) %}{% endif %}{% endfor %}", "MaxSteps",
            TemplateLimits.Default with { MaxSteps = 2_000_000 });
        Assert.Equal(2_000_000, ex.Value);
    }

    [Theory(Timeout = 20_000)]
    [InlineData("{{ 'x' * 10**9 }}", "MaxOutputLength")]
    [InlineData("{{ 'x' * 9223372036854775807 }}", "MaxOutputLength")]
    [InlineData("{{ 10**9 * 'ab' }}", "MaxOutputLength")]
    [InlineData("{{ ('x' | safe) * 10**9 }}", "MaxOutputLength")]
    [InlineData("{{ ([1] * 10**9) | length }}", "MaxItems")]
    [InlineData("{{ ((1, 2) * 10**9) | length }}", "MaxItems")]
    [InlineData("{{ (([0] * 600000) + ([0] * 600000)) | length }}", "MaxItems")]
    [InlineData("{{ ('x' * 1000000).replace('', 'yyyyyyyyyyyyyyyyyyyy') }}", "MaxOutputLength")]
    [InlineData("{{ ('x' * 1000000).replace('x', 'yyyyyyyyyyyyyyyyyyyy') }}", "MaxOutputLength")]
    [InlineData("{{ 'x'.center(10**9) }}", "MaxOutputLength")]
    [InlineData("{{ 'x'.ljust(10**9) }}", "MaxOutputLength")]
    [InlineData("{{ 'x'.zfill(10**9) }}", "MaxOutputLength")]
    [InlineData("{{ 'x' | center(10**9) }}", "MaxOutputLength")]
    [InlineData("{{ 'a\nb' | indent(10**9) }}", "MaxOutputLength")]
    [InlineData("{{ '%1000000000d' % 1 }}", "MaxOutputLength")]
    [InlineData("{{ '%.900000000f' % 1.5 }}", "MaxOutputLength")]
    [InlineData("{{ '{:>1000000000}'.format('x') }}", "MaxOutputLength")]
    [InlineData("{{ [1, [2]] | tojson(indent=10**9) }}", "MaxOutputLength")]
    [InlineData("{{ 'x' | list | batch(10**9, 0) | list }}", "MaxItems")]
    [InlineData("{{ 'x' | slice(10**9) | list }}", "MaxItems")]
    public async Task AmplifyingOperationsAreRefused(string template, string limit) => await Refused(template, limit);

    [Theory(Timeout = 20_000)]
    [InlineData("{% set s = 'x' * 1000000 %}{{ ([s] * 100000) | join }}")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ ([s] * 100000) | join(', ') }}")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ ''.join([s] * 100000) }}")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ [s] * 100000 }}")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ ([s] * 100000) | tojson }}")]
    [InlineData("{% set s = 'x' * 1000000 %}{{ '%s' % ([s] * 100000,) }}")]
    public async Task HugeJoinsAndReprsAreRefused(string template) => await Refused(template, "MaxOutputLength");

    [Fact(Timeout = 20_000)]
    public async Task OutputIsBounded()
    {
        await Refused("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "MaxOutputLength");
        await Refused("{% for i in range(100000) %}yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy{% endfor %}",
            "MaxOutputLength", TemplateLimits.Default with { MaxOutputLength = 1_000_000 });
        // a macro's or a set block's text is bounded the same way
        await Refused("{% set x %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}", "MaxOutputLength");
    }

    [Fact(Timeout = 20_000)]
    public async Task DoublingAStringIsStopped()
    {
        await Refused("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "MaxOutputLength");
        await Refused("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "MaxOutputLength");
        await Refused("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "MaxItems");
        await Refused("{% set ns = namespace(s='x' | safe) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "MaxOutputLength");
        // an accumulated string meeting Markup mid-chain
        await Refused("{% set ns = namespace(s='') %}{% set ns.s = ns.s ~ ('x' * 10000000) %}{% set ns.s = ns.s ~ '' %}{% set ns.s = ns.s + ('y' | safe) + ns.s %}",
            "MaxOutputLength");
    }

    [Theory(Timeout = 20_000)]
    [InlineData("{{ ns.l }}")]
    [InlineData("{{ ns.l | tojson }}")]
    [InlineData("{{ ns.l == ns.l }}")]
    [InlineData("{{ ns.l < ns.l }}")]
    public async Task DeeplyNestedValuesFailCleanly(string use)
    {
        // a loop can nest a value deeper than any recursion over it can go; like Python, 1,000 levels is the limit
        var ex = await Assert.ThrowsAsync<TemplateException>(() => Render(
            "{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = [ns.l] %}{% endfor %}" + use));
        Assert.Equal("maximum recursion depth exceeded", ex.Reason);
    }

    [Fact]
    public void LimitExceptionIsATemplateExceptionNamingLimitAndValue()
    {
        var ex = Assert.Throws<TemplateLimitException>(() => JinjaTemplate.Parse("a\n{{ 'x' * 5000 }}",
            new JinjaTemplateOptions { Limits = TemplateLimits.Default with { MaxOutputLength = 4096, InputScale = 0 } }).Render());
        Assert.IsAssignableFrom<TemplateException>(ex);
        Assert.IsAssignableFrom<OpenWeightsException>(ex);
        Assert.Equal("MaxOutputLength", ex.Limit);
        Assert.Equal(4096, ex.Value);
        Assert.Equal(2, ex.Line);
        Assert.StartsWith("chat template line 2, column ", ex.Message);
        Assert.EndsWith(": the template exceeded its output size limit (MaxOutputLength = 4096)", ex.Message);
    }

    [Fact]
    public void BudgetsGrowWithTheInput()
    {
        // 1,000 steps are not enough for 300 messages, but the budget scales with the input
        const string t = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
        var messages = Enumerable.Range(0, 300).Select(i => (object?)new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi" }).ToList();
        var ctx = new Dictionary<string, object?> { ["messages"] = messages };
        var tight = new JinjaTemplateOptions { Limits = TemplateLimits.Default with { MaxSteps = 1_000, InputScale = 0 } };
        Assert.Throws<TemplateLimitException>(() => JinjaTemplate.Parse(t, tight).Render(ctx));
        var scaled = new JinjaTemplateOptions { Limits = TemplateLimits.Default with { MaxSteps = 1_000, InputScale = 16 } };
        Assert.Equal(300 * "user: hi\n".Length, JinjaTemplate.Parse(t, scaled).Render(ctx).Length);
        Assert.Equal("ok", JinjaTemplate.Parse("{% for i in range(100000) %}{% endfor %}ok",
            new JinjaTemplateOptions { Limits = TemplateLimits.None }).Render());
    }

    [Fact(Timeout = 20_000)]
    public async Task CancellationStopsARender()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}", TemplateLimits.None, cts.Token));
    }

    [Fact]
    public void CancelledTokenStopsBeforeRendering()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => new ChatTemplate("{{ messages[0].content }}").Render(
            [ChatTemplate.Message("user", "hi")], cancellationToken: cts.Token));
    }

    [Fact(Timeout = 30_000)]
    public async Task ChatFormatterPassesCancellationToTheRender()
    {
        // what the server and the IChatClient do with the request's token: an abandoned request stops rendering
        using var m = OpenWeights.Models.DecoderModel.Load(OpenWeights.Tests.Chat.TinyModels.Qwen);
        var tok = OpenWeights.Tokenizers.Tokenizer.FromGguf(m.Source);
        // ~10^10 steps with the step limit lifted: only a token that reaches the render can end it (OperationCanceledException);
        // without it the 60 s guard fails the test (with the default limit a loaded machine once hit the limit first)
        var f = new OpenWeights.Inference.Chat.ChatFormatter(tok,
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[0].content }}",
            new TemplateLimits { MaxSteps = long.MaxValue / 2 });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.Run(() =>
            f.EncodeConversation([OpenWeights.Inference.Chat.ChatTurn.User("x")], null, cts.Token)).WaitAsync(TimeSpan.FromSeconds(60)));
    }

    [Theory]
    [InlineData("{% set ns = namespace(s='a') %}{% macro m() %}{% set ns.s = ns.s ~ 'X' %}{% endmacro %}{% for i in range(3) %}{% set ns.s = ns.s ~ m() ~ 'b' %}{% endfor %}{{ ns.s }}", "abbb")]
    [InlineData("{% set ns = namespace(s='a') %}{% for i in range(3) %}{% set ns.s = ns.s + 'b' + i|string %}{% endfor %}{{ ns.s }}|{{ ns }}", "ab0b1b2|<Namespace {'s': 'ab0b1b2'}>")]
    [InlineData("{% set ns = namespace(s='a') %}{% for i in range(3) %}{% set ns.s = ns.s + 'b' + ('<'|safe) + '<' %}{% endfor %}{{ ns.s }}", "ab<&lt;b<&lt;b<&lt;")]
    [InlineData("{% set ns = namespace(s='a') %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}{% set t = ns.s %}{% set ns.s = ns.s ~ t %}{% endfor %}{{ ns.s }}", "a0a01a0a012a0a01a0a012")]
    [InlineData("{% set ns = namespace(s=1) %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}", "1012")]
    [InlineData("{% set ns = namespace() %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}", "012")]
    public void AppendingToANamespaceInPlaceKeepsJinjaSemantics(string template, string expected) =>
        // expected outputs from Python Jinja2 3.1.6
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render());

    [Fact]
    public void AppendingANonStringKeepsPythonsError()
    {
        var ex = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(
            "{% set ns = namespace(s='a') %}{% for i in range(3) %}\n{% set ns.s = ns.s + i %}{% endfor %}").Render());
        Assert.Equal("can only concatenate str (not \"int\") to str", ex.Reason);
        Assert.Equal(2, ex.Line);
    }
}
