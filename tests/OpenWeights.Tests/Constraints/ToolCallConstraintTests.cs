using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using OpenWeights.Inference.Chat;
using OpenWeights.Inference.Constraints;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Constraints;

/// <summary>Sequence constraints (exact tokens + JSON, alternatives) and the forced tool call built on them, at the token level.</summary>
public class ToolCallConstraintTests(TinyVocabFixture tiny) : IClassFixture<TinyVocabFixture>
{
    internal const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer"},"unit":{"enum":["celsius","fahrenheit"]}},
         "required":["city","days","unit"],"additionalProperties":false}
        """;
    // two tools whose parameters use the same local $ref name for different schemas
    private const string MoveSchema = """
        {"type":"object","properties":{"to":{"$ref":"#/$defs/pt"}},"required":["to"],"$defs":{"pt":{"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}},"required":["x","y"],"additionalProperties":false}}}
        """;
    private const string TagSchema = """
        {"type":"object","properties":{"tag":{"$ref":"#/$defs/pt"}},"required":["tag"],"$defs":{"pt":{"type":"string","maxLength":5}}}
        """;

    private static readonly ChatTool[] Tools =
    [
        new("get_weather", "Weather", WeatherSchema),
        new("move", "Move", MoveSchema),
        new("tag", "Tag", TagSchema),
        new("ping", "No parameters", null),
    ];

    private static List<int> Allowed(ITokenConstraint c, int vocab)
    {
        var logits = new float[vocab];
        c.MaskLogits(logits);
        return Enumerable.Range(0, vocab).Where(i => !float.IsNegativeInfinity(logits[i])).ToList();
    }

    /// <summary>Samples random allowed tokens until the constraint is complete (then it must allow end-of-generation only).</summary>
    private static List<int> RandomRun(ITokenConstraint c, TokenTrie trie, Random rng)
    {
        var ids = new List<int>();
        var eog = trie.EndOfGeneration.ToHashSet();
        for (int step = 0; step < 3000; step++)
        {
            var allowed = Allowed(c, trie.VocabSize);
            Assert.Equal(c.IsComplete, allowed.Any(eog.Contains));
            var tokens = allowed.Where(i => !eog.Contains(i)).ToList();
            if (c.IsComplete)
            {
                Assert.Empty(tokens); // an object value and the closing are all: nothing may follow but the end
                return ids;
            }
            Assert.NotEmpty(tokens);
            var closing = tokens.Where(i => trie.Bytes[i].AsSpan().IndexOfAny("\"}]"u8) >= 0).ToList();
            var pool = closing.Count > 0 && rng.NextDouble() < (step < 20 ? 0.3 : 0.9) ? closing : tokens;
            int id = pool[rng.Next(pool.Count)];
            c.Accept(id);
            ids.Add(id);
        }
        Assert.Fail("the constraint did not complete in 3000 tokens");
        return ids;
    }

    // the reply text as the generator streams it: every token's bytes (control tokens as their text)
    private string Text(IEnumerable<int> ids) => System.Text.Encoding.UTF8.GetString(ids.SelectMany(tiny.Tokenizer.TokenBytes).ToArray());

    private static void AssertArgumentsValid(ChatToolCall call, IReadOnlyList<ChatTool> tools)
    {
        var tool = tools.Single(t => t.Name == call.Name);
        var args = JsonNode.Parse(call.Arguments);
        Assert.IsType<JsonObject>(args);
        if (tool.ParametersJson is null) { Assert.Empty(args!.AsObject()); return; }
        var r = JsonSchema.FromText(tool.ParametersJson).Evaluate(JsonDocument.Parse(call.Arguments).RootElement);
        Assert.True(r.IsValid, $"arguments {call.Arguments} do not validate against {tool.ParametersJson}");
    }

    [Fact]
    public void ExactTokensAreForcedOneByOneThenTheJsonThenTheEnd()
    {
        var tok = tiny.Tokenizer;
        var trie = TokenTrie.For(tok);
        int header = tok.TokenToId("<|start_header_id|>"); // a control token: never part of JSON, fine as an exact token
        Assert.True(header >= 0 && tok.IsControl(header));
        int[] open = [header, .. tok.Encode("ab", addSpecial: false)];
        int[] close = tok.Encode("\nzz", addSpecial: false);
        var c = SequenceConstraint.Create(trie, [[ConstraintPart.Exact(open), ConstraintPart.Json("""{"type":"object","properties":{"k":{"const":1}},"required":["k"]}"""), ConstraintPart.Exact(close)]]);
        foreach (var id in open)
        {
            Assert.Equal([id], Allowed(c, trie.VocabSize));
            Assert.False(c.IsComplete);
            Assert.Throws<OpenWeightsException>(() => c.Accept(id == header ? tok.Encode("a", addSpecial: false)[0] : header));
            c.Accept(id);
        }
        // the JSON part: '{' starts it; the closing tokens and the end are not allowed yet
        var allowed = Allowed(c, trie.VocabSize);
        Assert.Contains(tok.Encode("{", addSpecial: false)[0], allowed);
        Assert.DoesNotContain(close[0], allowed);
        Assert.DoesNotContain(allowed, i => tok.EndOfGeneration.Contains(i));
        foreach (var id in tok.Encode("{\"k\": 1}", addSpecial: false)) { Assert.Contains(id, Allowed(c, trie.VocabSize)); c.Accept(id); }
        // the value is complete: only the closing may come, token by token
        foreach (var id in close)
        {
            Assert.False(c.IsComplete);
            Assert.Equal([id], Allowed(c, trie.VocabSize));
            c.Accept(id);
        }
        Assert.True(c.IsComplete);
        Assert.Equal(tok.EndOfGeneration.Order(), Allowed(c, trie.VocabSize));
        c.Accept(tok.EndOfGeneration.First());
        Assert.Throws<OpenWeightsException>(() => c.Accept(close[0]));
    }

    [Fact]
    public void AlternativesShareAPrefixAndDivergeLater()
    {
        var tok = tiny.Tokenizer;
        var trie = TokenTrie.For(tok);
        int a = tok.Encode("a", addSpecial: false).Single(), b = tok.Encode("b", addSpecial: false).Single(), x = tok.Encode("x", addSpecial: false).Single();
        var c = SequenceConstraint.Create(trie,
        [
            [ConstraintPart.Exact(a, b), ConstraintPart.Json("""{"const":true}""")],
            [ConstraintPart.Exact(a, x), ConstraintPart.Json("""{"type":"integer"}""")],
        ]);
        Assert.Equal([a], Allowed(c, trie.VocabSize));
        c.Accept(a);
        Assert.Equal(new[] { b, x }.Order(), Allowed(c, trie.VocabSize));
        c.Accept(x);
        // only the integer alternative is left: digits, no 't' of true
        var allowed = Allowed(c, trie.VocabSize);
        Assert.Contains(tok.Encode("7", addSpecial: false)[0], allowed);
        Assert.DoesNotContain(tok.Encode("t", addSpecial: false)[0], allowed);
        c.Accept(tok.Encode("7", addSpecial: false)[0]);
        Assert.True(c.IsComplete); // an integer may end here, or go on
        Assert.Contains(tok.Encode("3", addSpecial: false)[0], Allowed(c, trie.VocabSize));
    }

    [Fact]
    public void EndOfGenerationTokensCannotBeExactParts()
    {
        var tok = tiny.Tokenizer;
        Assert.Throws<ArgumentException>(() => SequenceConstraint.Create(TokenTrie.For(tok), [[ConstraintPart.Exact(tok.EndOfGeneration.First())]]));
        Assert.Throws<ArgumentException>(() => SequenceConstraint.Create(TokenTrie.For(tok), []));
    }

    public static TheoryData<string, string, ToolCallFormat> Templates => new()
    {
        { "qwen2.5", "chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat.Hermes },
        { "hermes3", "chat-templates/llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallFormat.Hermes },
        { "llama3.1", "chat-templates/llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat.Llama3 },
        { "mistral-nemo", "chat-templates/llama.cpp/mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat.Mistral },
        { "mistral-small-3.2", "chat-templates/llama.cpp/Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallFormat.Mistral },
        { "devstral", "chat-templates/llama.cpp/unsloth-mistral-Devstral-Small-2507.jinja", ToolCallFormat.Mistral },
        { "gpt-oss", "chat-templates/llama.cpp/openai-gpt-oss-120b.jinja", ToolCallFormat.Harmony },
        { "generic", "", ToolCallFormat.Generic },
    };

    /// <summary>
    /// Whatever tokens a model picks among the allowed ones, the reply is one tool call in the template's format: it parses
    /// with the template's parser, names an offered tool (the required one when named), and its arguments validate.
    /// </summary>
    [Theory]
    [MemberData(nameof(Templates))]
    public void RandomForcedCallsParseAndValidate(string label, string template, ToolCallFormat format)
    {
        var src = template.Length == 0 ? "{% for m in messages %}{{ m['content'] }}{% endfor %}" : File.ReadAllText(TestData.Require(template));
        var f = new ChatFormatter(tiny.Tokenizer, src);
        Assert.Equal(format, f.ToolFormat);
        var trie = TokenTrie.For(tiny.Tokenizer);
        var rng = new Random(label.Length * 31 + 7);
        var seen = new HashSet<string>();
        for (int run = 0; run < 24; run++)
        {
            string? name = run % 3 == 0 ? Tools[run / 3 % Tools.Length].Name : null;
            var c = ToolCallConstraint.Create(f, Tools, name);
            var ids = RandomRun(c, trie, rng);
            string text = Text(ids);
            var parsed = f.ParseReply(text);
            var call = Assert.Single(parsed.ToolCalls);
            Assert.Equal("", parsed.Content);
            if (name is not null) Assert.Equal(name, call.Name);
            AssertArgumentsValid(call, Tools);
            seen.Add(call.Name);
            // JSON whitespace is at most one space, as templates write calls: no newlines (JSON strings hold them escaped)
            string json = label is "qwen2.5" or "hermes3" ? text["<tool_call>\n".Length..^"\n</tool_call>".Length] : text;
            Assert.DoesNotContain('\n', json);
            switch (label)
            {
                case "qwen2.5" or "hermes3": Assert.StartsWith("<tool_call>\n{", text); Assert.EndsWith("}\n</tool_call>", text); Assert.Contains("\"arguments\"", text); break;
                case "llama3.1": Assert.StartsWith("{", text); Assert.Contains("\"parameters\"", text); break;
                case "mistral-nemo": Assert.StartsWith("[TOOL_CALLS][", text); Assert.EndsWith("]", text); break;
                case "mistral-small-3.2" or "devstral": Assert.StartsWith($"[TOOL_CALLS]{call.Name}[ARGS]{{", text); break;
                case "gpt-oss": Assert.StartsWith($"<|channel|>commentary to=functions.{call.Name} <|constrain|>json<|message|>{{", text); break;
                default: Assert.StartsWith("{", text); Assert.Contains("\"arguments\"", text); break;
            }
        }
        Assert.True(seen.Count >= 3, $"'required' should reach several tools, got {string.Join(", ", seen)}");
    }

    [Fact]
    public void UnknownRequiredFunctionOrNoToolsIsAClearError()
    {
        var f = new ChatFormatter(tiny.Tokenizer, "{{ messages[0]['content'] }}<tool_call>");
        var e = Assert.Throws<OpenWeightsException>(() => ToolCallConstraint.Create(f, Tools, "launch"));
        Assert.Contains("'launch'", e.Message);
        Assert.Throws<OpenWeightsException>(() => ToolCallConstraint.Create(f, [], null));
    }

    [Fact]
    public void ParametersBeyondTheSubsetAreRelaxedNotRejected()
    {
        var trie = TokenTrie.For(tiny.Tokenizer);
        // 'minimum' and 'pattern' are not enforced, the rest is: an object with both keys, an integer and a string
        const string schema = """{"type":"object","properties":{"n":{"type":"integer","minimum":1},"s":{"type":"string","pattern":"^a","maxLength":4}},"required":["n","s"],"additionalProperties":false}""";
        const string relaxed = """{"type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string","maxLength":4}},"required":["n","s"],"additionalProperties":false}""";
        var rng = new Random(5);
        for (int i = 0; i < 10; i++)
        {
            var c = SequenceConstraint.Create(trie, [[ConstraintPart.ToolArguments(schema)]]);
            var doc = Text(RandomRun(c, trie, rng));
            Assert.True(JsonSchema.FromText(relaxed).Evaluate(JsonDocument.Parse(doc).RootElement).IsValid, doc);
        }
        // a schema that is not an object schema, or cannot compile at all, gives any object
        foreach (var odd in new[] { """{"type":"string"}""", """{"allOf":[{"type":"object"},{"required":["a"]}]}""", "not json" })
        {
            var c = SequenceConstraint.Create(trie, [[ConstraintPart.ToolArguments(odd)]]);
            var doc = Text(RandomRun(c, trie, rng));
            Assert.IsType<JsonObject>(JsonNode.Parse(doc));
        }
    }
}
