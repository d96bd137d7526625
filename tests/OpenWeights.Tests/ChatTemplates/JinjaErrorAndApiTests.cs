using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.ChatTemplates;

public class JinjaErrorAndApiTests
{
    private static string R(string template, object? context = null)
    {
        var ctx = context is null ? new Dictionary<string, object?>() : ToCtx(context);
        return JinjaTemplate.Parse(template).Render(ctx);
    }

    private static Dictionary<string, object?> ToCtx(object context) =>
        (Dictionary<string, object?>)JinjaValue.FromJson(JsonSerializer.Serialize(context))!;

    [Fact]
    public void RaiseExceptionCarriesMessageAndLine()
    {
        var ex = Assert.Throws<TemplateException>(() => R("line one\n{% if true %}\n  {{ raise_exception('Roles must alternate!') }}\n{% endif %}"));
        Assert.Equal("Roles must alternate!", ex.Reason);
        Assert.True(ex.RaisedByTemplate);
        Assert.Equal(3, ex.Line);
        Assert.Contains("line 3", ex.Message);
        Assert.DoesNotContain("\n", ex.Message);
        Assert.IsAssignableFrom<OpenWeightsException>(ex);
    }

    [Theory]
    [InlineData("a\nb\n{% for x in %}", 3)]
    [InlineData("{% if x %}\nno end", 2)]
    [InlineData("ok\n{{ 1 + }}", 2)]
    [InlineData("\n\n{% frobnicate %}", 3)]
    [InlineData("x\n{{ 'unterminated }}", 2)]
    [InlineData("{% endfor %}", 1)]
    [InlineData("x\n{{ y | no_such_filter }}", 2)]
    [InlineData("x\n\n{{ y is no_such_test }}", 3)]
    public void SyntaxErrorsNameTheLine(string template, int line)
    {
        var ex = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(template));
        Assert.Equal(line, ex.Line);
        Assert.StartsWith($"chat template line {line}", ex.Message);
    }

    [Fact]
    public void UnknownFilterInsideIfFailsOnlyWhenRun()
    {
        var t = JinjaTemplate.Parse("{% if x %}{{ x | from_json }}{% endif %}ok");
        Assert.Equal("ok", t.Render(new Dictionary<string, object?> { ["x"] = false }));
        var ex = Assert.Throws<TemplateException>(() => t.Render(new Dictionary<string, object?> { ["x"] = "1" }));
        Assert.Equal("No filter named 'from_json'.", ex.Reason);
    }

    [Theory]
    [InlineData("{{ d.a.b }}", "'dict object' has no attribute 'a'", 1)]
    [InlineData("x\n{{ missing.attr }}", "'missing' is undefined", 2)]
    [InlineData("{{ missing + 1 }}", "'missing' is undefined", 1)]
    [InlineData("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str", 1)]
    [InlineData("{{ 1 / 0 }}", "division by zero", 1)]
    [InlineData("{% for x in none %}{% endfor %}", "'NoneType' object is not iterable", 1)]
    [InlineData("{{ l.append(1) }}", "access to attribute 'append' of 'list' object is unsafe.", 1)]
    [InlineData("{{ missing() }}", "'missing' is undefined", 1)]
    [InlineData("{{ [1]|tojson }}{{ (x|map('upper'))|tojson }}", "Object of type generator is not JSON serializable", 1)]
    [InlineData("{% set a, b = [1, 2, 3] %}", "too many values to unpack (expected 2)", 1)]
    public void RuntimeErrorsMatchJinja(string template, string reason, int line)
    {
        var ex = Assert.Throws<TemplateException>(() => R(template, new { d = new { }, l = new[] { 1 }, x = new[] { "a" } }));
        Assert.Equal(reason, ex.Reason);
        Assert.Equal(line, ex.Line);
    }

    [Fact]
    public void ErrorInsideMacroNamesTheMacroLine()
    {
        var ex = Assert.Throws<TemplateException>(() => R("{% macro m(x) %}\n{{ x.a.b }}\n{% endmacro %}\n{{ m({}) }}"));
        Assert.Equal(2, ex.Line);
    }

    [Fact]
    public void UnsandboxedAllowsListMutation()
    {
        var t = JinjaTemplate.Parse("{% set l = [1] %}{% set _ = l.append(2) %}{{ l.pop(0) }}{{ l }}", new JinjaTemplateOptions { Sandboxed = false });
        Assert.Equal("1[2]", t.Render());
    }

    [Fact]
    public void RenderDoesNotMutateCallerObjects()
    {
        var list = new List<object?> { 1L };
        JinjaTemplate.Parse("{{ l.append(2) }}", new JinjaTemplateOptions { Sandboxed = false }).Render(new Dictionary<string, object?> { ["l"] = list });
        Assert.Single(list);
    }

    [Fact]
    public void AcceptsJsonElementJsonNodeAndPlainValues()
    {
        const string tpl = "{{ m.role }}:{{ m.content }}:{{ m.n + 1 }}:{{ m.f }}:{{ m.list|length }}:{{ m.flag }}";
        using var doc = JsonDocument.Parse("""{"role":"user","content":"hi","n":41,"f":0.5,"list":[1,2],"flag":true}""");
        var expected = "user:hi:42:0.5:2:True";
        Assert.Equal(expected, JinjaTemplate.Parse(tpl).Render(new Dictionary<string, object?> { ["m"] = doc.RootElement }));
        Assert.Equal(expected, JinjaTemplate.Parse(tpl).Render(new Dictionary<string, object?> { ["m"] = JsonNode.Parse(doc.RootElement.GetRawText()) }));
        var plain = new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi", ["n"] = 41, ["f"] = 0.5f, ["list"] = new[] { 1, 2 }, ["flag"] = true };
        Assert.Equal(expected, JinjaTemplate.Parse(tpl).Render(new Dictionary<string, object?> { ["m"] = plain }));
    }

    [Fact]
    public void FromJsonGivesPlainOrderedValues()
    {
        var v = (Dictionary<string, object?>)JinjaValue.FromJson("""{"b":1,"a":[2.5,"x",null,false]}""")!;
        Assert.Equal(["b", "a"], v.Keys);
        Assert.Equal(1L, v["b"]);
        Assert.Equal(new List<object?> { 2.5, "x", null, false }, (List<object?>)v["a"]!);
        Assert.Equal("{\"b\": 1, \"a\": [2.5, \"x\", null, false]}", JinjaTemplate.Parse("{{ v|tojson }}").Render(new Dictionary<string, object?> { ["v"] = v }));
    }

    [Fact]
    public void ChatTemplateSetsHfVariables()
    {
        const string src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}"
            + "{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}{{ eos_token }}{{ enable_thinking }}";
        var msgs = new List<Dictionary<string, object?>> { ChatTemplate.Message("system", "s"), ChatTemplate.Message("user", "u") };
        var outText = new ChatTemplate(src).Render(msgs, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>",
            extra: new Dictionary<string, object?> { ["enable_thinking"] = false });
        Assert.Equal("<s>[system|s][user|u]TrueTrueTrue</s>False", outText);

        var tools = new List<object?> { new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "f" } } };
        Assert.Equal("f", ChatTemplate.Render("{{ tools[0].function.name }}", msgs, tools: tools));
    }

    [Fact]
    public void ToolCallArgumentsAsDictRenderWithTojson()
    {
        var msg = new Dictionary<string, object?>
        {
            ["role"] = "assistant",
            ["content"] = null,
            ["tool_calls"] = new List<object?>
            {
                new Dictionary<string, object?> { ["type"] = "function", ["function"] = new Dictionary<string, object?> { ["name"] = "get", ["arguments"] = new Dictionary<string, object?> { ["city"] = "Paris", ["n"] = 2 } } },
            },
        };
        var s = ChatTemplate.Render("{% for tc in messages[0].tool_calls %}{{ tc.function.name }}({{ tc.function.arguments|tojson }}){% endfor %}{{ messages[0].content }}", [msg]);
        Assert.Equal("get({\"city\": \"Paris\", \"n\": 2})None", s);
    }

    [Fact]
    public void StrftimeNowUsesInjectedClock()
    {
        var t = JinjaTemplate.Parse("{{ strftime_now('%d %b %Y') }}", new JinjaTemplateOptions { Now = () => new DateTime(2024, 7, 26) });
        Assert.Equal("26 Jul 2024", t.Render());
    }

    [Fact]
    public void DeepRecursionIsAnErrorNotACrash()
    {
        var ex = Assert.Throws<TemplateException>(() => R("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"));
        Assert.Contains("recursion", ex.Reason);
    }
}

public class JinjaHostileInputTests
{
    [Fact]
    public void DeeplyNestedExpressionIsAnErrorNotACrash()
    {
        var src = "{{ " + new string('(', 200_000) + "1" + new string(')', 200_000) + " }}";
        var ex = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(src));
        Assert.Contains("nested too deeply", ex.Reason);
    }

    [Fact]
    public void DeeplyNestedBlocksAreAnErrorNotACrash()
    {
        var src = string.Concat(Enumerable.Repeat("{% if true %}", 100_000)) + "x" + string.Concat(Enumerable.Repeat("{% endif %}", 100_000));
        Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(src));
    }

    [Fact]
    public void HugeRangeIsRefused()
    {
        var ex = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse("{% for i in range(10**9) %}{% endfor %}").Render());
        Assert.Contains("Range too big", ex.Reason);
    }
}
