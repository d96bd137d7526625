using System.Text.Json;
using System.Text.RegularExpressions;
using OpenWeights.Inference.Chat;
using OpenWeights.Inference.ChatTemplates;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.ChatTemplates;

/// <summary>
/// gpt-oss's chat template (harmony) against Python Jinja2 in Hugging Face's environment on conversations that use
/// what the format has (expected/harmony-renders.json, written by render_harmony_expected.py): developer messages,
/// reasoning_effort, model_identity, builtin tools, function tools in their TypeScript-like namespace form for every
/// parameter shape the template knows, tool calls with and without their thinking, tool results, the training-style
/// last turn, and the template's own errors. Byte-for-byte equality; where Jinja2 raised, we raise the same message.
/// The same conversations go through <see cref="ChatFormatter"/> too (our chat turns with <see cref="ChatTurn.Reasoning"/>).
/// </summary>
public partial class HarmonyTemplateTests
{
    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(ExpectedFile())));

    private static string ExpectedFile()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx")))
                return Path.Combine(d.FullName, "tests", "OpenWeights.Tests", "ChatTemplates", "expected", "harmony-renders.json");
        throw new FileNotFoundException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
    }

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var r in Expected.Value.RootElement.GetProperty("results").EnumerateArray()) data.Add(r.GetProperty("conversation").GetString()!);
        return data;
    }

    private static (JsonElement Conv, JsonElement Result) Case(string name)
    {
        var root = Expected.Value.RootElement;
        var result = root.GetProperty("results").EnumerateArray().Single(r => r.GetProperty("conversation").GetString() == name);
        return (root.GetProperty("conversations").GetProperty(name), result);
    }

    private static Dictionary<string, object?>? Extra(JsonElement conv) =>
        conv.TryGetProperty("extra", out var x) ? (Dictionary<string, object?>)JinjaValue.FromJson(x.GetRawText())! : null;

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(string conversation)
    {
        string source = HarmonyTinyModel.Template;
        var (conv, result) = Case(conversation);
        var root = Expected.Value.RootElement;
        var messages = ((List<object?>)JinjaValue.FromJson(conv.GetProperty("messages").GetRawText())!).Cast<IReadOnlyDictionary<string, object?>>().ToList();
        var tools = conv.TryGetProperty("tools", out var t) ? (List<object?>)JinjaValue.FromJson(t.GetRawText())! : null;
        var options = new JinjaTemplateOptions { Now = () => DateTime.Parse(root.GetProperty("fixed_now").GetString()!, System.Globalization.CultureInfo.InvariantCulture) };
        string Render() => new ChatTemplate(source, options).Render(messages, conv.GetProperty("add_generation_prompt").GetBoolean(),
            root.GetProperty("bos_token").GetString(), root.GetProperty("eos_token").GetString(), tools, Extra(conv));
        if (result.TryGetProperty("error", out var err))
        {
            var ex = Assert.Throws<TemplateException>(Render);
            string e = err.GetString()!;
            Assert.Equal(e[(e.IndexOf(": ", StringComparison.Ordinal) + 2)..], ex.Reason);
            return;
        }
        Assert.Equal(result.GetProperty("output").GetString(), Render());
    }

    /// <summary>
    /// The conversation as our chat turns (thinking as <see cref="ChatTurn.Reasoning"/>, tools as <see cref="ChatTool"/>)
    /// through <see cref="ChatFormatter"/> renders what Jinja2 renders (the date line aside: the formatter uses the clock).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void ChatFormatterRendersLikeJinja2(string conversation)
    {
        var (conv, result) = Case(conversation);
        var f = new ChatFormatter(Tokenizer.FromGguf(HarmonyTinyModel.Path));
        Assert.True(f.IsHarmony);
        var turns = conv.GetProperty("messages").EnumerateArray().Select(Turn).ToList();
        var tools = conv.TryGetProperty("tools", out var t)
            ? t.EnumerateArray().Select(x => x.GetProperty("function")).Select(fn => new ChatTool(fn.GetProperty("name").GetString()!,
                fn.TryGetProperty("description", out var d) ? d.GetString() : null, fn.TryGetProperty("parameters", out var p) ? p.GetRawText() : null)).ToList()
            : null;
        string Render() => f.Render(turns, tools, conv.GetProperty("add_generation_prompt").GetBoolean(), Extra(conv));
        if (result.TryGetProperty("error", out _)) { Assert.Throws<TemplateException>(Render); return; }
        Assert.Equal(Undated(result.GetProperty("output").GetString()!), Undated(Render()));
    }

    private static ChatTurn Turn(JsonElement m)
    {
        string? S(string k) => m.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        List<ChatToolCall>? calls = m.TryGetProperty("tool_calls", out var tc)
            ? tc.EnumerateArray().Select(c => new ChatToolCall(c.GetProperty("id").GetString()!, c.GetProperty("function").GetProperty("name").GetString()!,
                c.GetProperty("function").GetProperty("arguments").GetRawText())).ToList()
            : null;
        return new ChatTurn(S("role")!, S("content"), calls, S("tool_call_id"), S("name"), S("thinking"));
    }

    [GeneratedRegex(@"Current date: \d{4}-\d{2}-\d{2}")]
    private static partial Regex DateLine();

    private static string Undated(string s) => DateLine().Replace(s, "Current date: (date)");

    /// <summary>
    /// What the formatter knows of a harmony template: replies are harmony, &lt;|end|&gt; ends a message (the analysis)
    /// and not the reply, &lt;|return|&gt; and &lt;|call|&gt; end it; the markers are single tokens written as text.
    /// </summary>
    [Fact]
    public void FormatterStopsAtReturnAndCallNotAtEnd()
    {
        var tok = Tokenizer.FromGguf(HarmonyTinyModel.Path);
        var f = new ChatFormatter(tok);
        Assert.Equal(ToolCallFormat.Harmony, f.ToolFormat);
        int end = tok.TokenToId("<|end|>"), ret = tok.TokenToId("<|return|>"), call = tok.TokenToId("<|call|>");
        Assert.DoesNotContain("<|end|>", f.StopStrings);
        Assert.Contains("<|return|>", f.StopStrings);
        Assert.Contains("<|call|>", f.StopStrings);
        Assert.DoesNotContain(end, f.StopTokens);
        Assert.False(tok.IsEndOfGeneration(end)); // llama.cpp's rule: with <|return|> and <|call|> present, <|end|> is not end of generation
        Assert.True(tok.IsEndOfGeneration(ret) && tok.IsEndOfGeneration(call));
        foreach (var m in HarmonyTinyModel.Markers)
        {
            int id = tok.TokenToId(m);
            Assert.Equal([id], tok.Encode(m, addSpecial: false, parseSpecial: true));
        }
        foreach (var m in new[] { "<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|end|>" })
            Assert.Equal(m, tok.Decode([tok.TokenToId(m)], skipSpecial: true)); // written as text: the reply parser sees them
        // a template without channels is not harmony
        Assert.NotEqual(ToolCallFormat.Harmony, new ChatFormatter(tok, "{% for m in messages %}{{ m.content }}<|end|>{% endfor %}").ToolFormat);
    }
}
