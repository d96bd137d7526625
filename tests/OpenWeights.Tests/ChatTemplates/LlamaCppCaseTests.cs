using System.Text.Json;
using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.ChatTemplates;

/// <summary>
/// The chat-template cases from llama.cpp's tests/test-chat-template.cpp, with outputs computed by Python Jinja2
/// (HF settings). Every case must render exactly like Jinja2, or raise where Jinja2 raised.
/// </summary>
public class LlamaCppCaseTests
{
    private const string CasesFile = "chat-templates/llama.cpp-test-chat-template-cases.json";

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        var root = TestData.Root;
        var path = root is null ? null : Path.Combine(root, CasesFile);
        if (path is null || !File.Exists(path)) { data.Add("(testdata absent)"); return data; }
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void RendersLikeJinja2(string name)
    {
        var path = TestData.Require(CasesFile);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var c = root.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
        var messages = new List<object?>();
        foreach (var m in root.GetProperty("base_messages").EnumerateArray()) messages.Add(JinjaValue.FromJson(m.GetRawText()));
        foreach (var m in c.GetProperty("extra_messages").EnumerateArray()) messages.Add(JinjaValue.FromJson(m.GetRawText()));
        var ctx = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["bos_token"] = c.GetProperty("bos_token").GetString(),
            ["eos_token"] = c.GetProperty("eos_token").GetString(),
            ["add_generation_prompt"] = c.GetProperty("add_generation_prompt").GetBoolean(),
        };
        var template = c.GetProperty("template").GetString()!;
        var error = c.TryGetProperty("python_jinja2_error", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
        if (error is not null)
        {
            var ex = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(template).Render(ctx));
            // Jinja2 reports "TemplateError: <msg>" or "UndefinedError: <msg>"; we keep the message part.
            var expectedMsg = error[(error.IndexOf(": ", StringComparison.Ordinal) + 2)..];
            Assert.Equal(expectedMsg, ex.Reason);
            return;
        }
        var expected = c.GetProperty("python_jinja2_output").GetString();
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(ctx));
    }
}
