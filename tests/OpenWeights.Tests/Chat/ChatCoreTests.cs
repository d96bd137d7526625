using OpenWeights.Cli.Commands;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

public class ChatCoreTests
{
    [Fact]
    public void ChatMlTemplateRendersAndStopsOnImEnd()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        string text = f.Render([ChatTurn.System("be kind"), ChatTurn.User("hi")]);
        Assert.Equal("<|im_start|>system\nbe kind<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", text);
        Assert.Contains("<|im_end|>", f.StopStrings);
        Assert.Contains(tok.TokenToId("<|im_end|>"), f.StopTokens);
        var ids = f.Encode(text);
        Assert.Equal(tok.TokenToId("<|im_start|>"), ids[0]); // special tokens parsed, no BOS added (the model does not want one)
        var opts = f.ForReply(new GenerationOptions { StopStrings = ["xyz"] });
        Assert.Contains("xyz", opts.StopStrings);
        Assert.Contains("<|im_end|>", opts.StopStrings);
    }

    [Fact]
    public void Llama3TemplateWritesBosOnceAndStopsOnEotId()
    {
        using var m = DecoderModel.Load(TinyModels.Llama);
        var tok = Tokenizer.FromGguf(m.Source);
        Assert.True(tok.AddBos);
        var f = new ChatFormatter(tok);
        var ids = f.EncodeConversation([ChatTurn.User("hello there")]);
        Assert.Equal(tok.Bos, ids[0]);
        Assert.NotEqual(tok.Bos, ids[1]);
        Assert.Equal(1, ids.Count(i => i == tok.Bos));
        Assert.Contains(tok.TokenToId("<|eot_id|>"), f.StopTokens);
        // a template that does not write the BOS gets one from the tokenizer
        var g = new ChatFormatter(tok, "{% for m in messages %}{{ m['content'] }}{% endfor %}");
        var ids2 = g.EncodeConversation([ChatTurn.User("hello")]);
        Assert.Equal(tok.Bos, ids2[0]);
        Assert.Equal(1, ids2.Count(i => i == tok.Bos));
    }

    [Fact]
    public void MissingTemplateIsAClearError()
    {
        var p = TestData.Require("models/stories260K.gguf");
        using var m = DecoderModel.Load(p);
        var tok = Tokenizer.FromGguf(m.Source);
        var e = Assert.Throws<OpenWeightsException>(() => new ChatFormatter(tok));
        Assert.Contains("no chat template", e.Message); // the library names no CLI flag; `chat` adds --chat-template FILE
        var f = new ChatFormatter(tok, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:");
        Assert.Equal("user: hi\nassistant:", f.Render([ChatTurn.User("hi")]));
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", ToolCallFormat.Hermes)]
    [InlineData("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", ToolCallFormat.Llama3)]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", ToolCallFormat.Llama3)]
    [InlineData("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123xyz\"}]", ToolCallFormat.Mistral)]
    [InlineData("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}", ToolCallFormat.Mistral)]
    [InlineData("[TOOL_CALLS]get_weather[CALL_ID]abc123xyz[ARGS]{\"city\": \"Paris\"}", ToolCallFormat.Mistral)]
    [InlineData("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", ToolCallFormat.Mistral)]
    [InlineData("<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}</tool_call>", ToolCallFormat.Generic)]
    public void ParsesToolCalls(string reply, ToolCallFormat format)
    {
        var r = ToolCallParser.Parse(reply, format);
        var call = Assert.Single(r.ToolCalls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", System.Text.Json.JsonDocument.Parse(call.Arguments).RootElement.GetProperty("city").GetString());
        Assert.Equal("", r.Content);
        Assert.False(string.IsNullOrEmpty(call.Id));
    }

    [Fact]
    public async Task KeptSpecialTokensStayInTheReplyText()
    {
        using var m = DecoderModel.Load(TinyModels.Llama);
        var tok = Tokenizer.FromGguf(m.Source);
        int header = tok.TokenToId("<|start_header_id|>"); // a control token, as Mistral's [TOOL_CALLS] is in its vocabulary
        Assert.True(tok.IsControl(header));
        int[] ids = [header, .. tok.Encode("ab", addSpecial: false)];
        var drop = new StreamingDecoder(tok, skipSpecial: true);
        Assert.Equal("ab", string.Concat(ids.Select(drop.Push)) + drop.Flush());
        var keep = new StreamingDecoder(tok, skipSpecial: true, new HashSet<int> { header });
        Assert.Equal("<|start_header_id|>ab", string.Concat(ids.Select(keep.Push)) + keep.Flush());
        // through the generation path
        var session = new InferenceSession(m, 256, 2);
        var prompt = tok.Encode("hi", addSpecial: true);
        var baseOptions = new GenerationOptions { MaxTokens = 10, Sampling = new SamplingOptions { Temperature = 0 } };
        var (dropped, _, _) = await Generator.GenerateTextAsync(session, tok, prompt, baseOptions with { Constraint = new ForcedTokens(ids) });
        var (kept, _, _) = await Generator.GenerateTextAsync(session, tok, prompt, baseOptions with { Constraint = new ForcedTokens(ids), KeepSpecialTokens = new HashSet<int> { header } });
        Assert.Equal("ab", dropped);
        Assert.Equal("<|start_header_id|>ab", kept);
        // Mistral Small 3.2 writes the call id between name and arguments
        var r = ToolCallParser.Parse("[TOOL_CALLS]get_weather[CALL_ID]abc123xyz[ARGS]{\"city\": \"Paris\"}", ToolCallFormat.Mistral);
        Assert.Equal(("get_weather", "abc123xyz"), (r.ToolCalls.Single().Name, r.ToolCalls.Single().Id));
    }

    [Fact]
    public void ParsesSeveralCallsAndKeepsText()
    {
        var r = ToolCallParser.Parse("Let me check.\n<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"b\",\"arguments\":{\"x\":1}}</tool_call>", ToolCallFormat.Hermes);
        Assert.Equal(["a", "b"], r.ToolCalls.Select(c => c.Name));
        Assert.Equal("Let me check.", r.Content);
        var plain = ToolCallParser.Parse("The weather is {nice}.", ToolCallFormat.Generic);
        Assert.Empty(plain.ToolCalls);
        Assert.Equal("The weather is {nice}.", plain.Content);
        var broken = ToolCallParser.Parse("<tool_call>{\"name\": \"a\", \"argu", ToolCallFormat.Hermes);
        Assert.Empty(broken.ToolCalls);
    }

    [Fact]
    public void RealTemplatesRenderToolsAndToolCalls()
    {
        var dir = TestData.Require("chat-templates/llama.cpp");
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var tool = new ChatTool("get_weather", "Current weather", """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""");
        var convo = new List<ChatTurn>
        {
            ChatTurn.User("Weather in Paris?"),
            new("assistant", null, [new ChatToolCall("abc123xyz", "get_weather", """{"city":"Paris"}""")]), // Mistral wants 9 alphanumerics
            ChatTurn.Tool("abc123xyz", "sunny", "get_weather"),
        };
        foreach (var (file, format) in new[]
        {
            ("Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat.Hermes), ("Qwen-Qwen3-0.6B.jinja", ToolCallFormat.Hermes),
            ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallFormat.Hermes),
            ("meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat.Llama3), ("mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat.Mistral),
        })
        {
            var f = new ChatFormatter(tok, File.ReadAllText(Path.Combine(dir, file)));
            Assert.Equal(format, f.ToolFormat);
            string text = f.Render(convo, [tool]);
            Assert.Contains("get_weather", text);
            Assert.Contains("Paris", text);
            Assert.Contains("sunny", text);
        }
    }

    [Fact]
    public async Task ConstraintForcesTokensAndEndsGeneration()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var forced = ForcedTokens.Text(tok, "{\"a\": 1}");
        var session = new InferenceSession(m, 256, 2);
        var prompt = tok.Encode("hello", addSpecial: true);
        var (text, finish, stats) = await Generator.GenerateTextAsync(session, tok, prompt,
            new GenerationOptions { MaxTokens = 50, Sampling = new SamplingOptions { Temperature = 1, Seed = 3 }, Constraint = forced });
        Assert.Equal("{\"a\": 1}", text);
        Assert.Equal(FinishReason.Stop, finish);
        Assert.Equal(forced.Accepted, stats.GeneratedTokens);
    }

    [Fact]
    public async Task LogprobsReportChosenTokenAndAlternatives()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var session = new InferenceSession(m, 256, 2);
        var prompt = tok.Encode("hello world", addSpecial: true);
        var all = new List<TokenLogprob>();
        var ids = new List<int>();
        await foreach (var c in Generator.GenerateAsync(session, tok, prompt,
            new GenerationOptions { MaxTokens = 6, IgnoreEos = true, Sampling = SamplingOptions.Greedy, Logprobs = true, TopLogprobs = 3 }))
            if (c.Logprobs is { } lp) all.AddRange(lp);
        Assert.Equal(6, all.Count);
        foreach (var t in all)
        {
            Assert.True(t.Logprob <= 0);
            Assert.Equal(3, t.Top.Count);
            Assert.Equal(t.TokenId, t.Top[0].TokenId); // greedy: the chosen token is the most likely
            Assert.Equal(t.Logprob, t.Top[0].Logprob);
            Assert.True(t.Top[0].Logprob >= t.Top[1].Logprob && t.Top[1].Logprob >= t.Top[2].Logprob);
        }
    }

    [Fact]
    public async Task ChatLoopPipesStdinWithCommandsAndExitsOnEof()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        var session = new InferenceSession(m, 512, 2);
        var loop = new ChatLoop(session, f, new GenerationOptions { MaxTokens = 8, Sampling = SamplingOptions.Greedy }, "You are terse.");
        var input = new StringReader("hello\nhow are you\n/system Be loud.\nhi\n/reset\n/bogus\nagain\n");
        var output = new StringWriter();
        await loop.RunAsync(input, output);
        string o = output.ToString();
        Assert.Contains("(system message set; conversation cleared)", o);
        Assert.Contains("(conversation cleared)", o);
        Assert.Contains("commands:", o);
        Assert.DoesNotContain("<|im_end|>", o);
        Assert.DoesNotContain("<|im_start|>", o);
        Assert.Single(loop.History, t => t.Role == "user"); // only "again" after /reset
        Assert.Equal(2, loop.History.Count);
    }

    [Fact]
    public async Task ChatLoopCancelStopsReplyButNotTheLoop()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var session = new InferenceSession(m, 512, 2);
        var loop = new ChatLoop(session, new ChatFormatter(tok), new GenerationOptions { MaxTokens = 12, IgnoreEos = true, Sampling = SamplingOptions.Greedy }, null);
        var output = new StringWriter();
        int replies = 0;
        await loop.RunAsync(new StringReader("one\ntwo\n/exit\nthree\n"), output, () =>
        {
            var cts = new CancellationTokenSource();
            if (replies++ == 0) cts.Cancel(); // Ctrl-C during the first reply
            return cts;
        });
        Assert.Contains("(stopped)", output.ToString());
        Assert.Equal(4, loop.History.Count); // both replies recorded, /exit stopped before "three"
        Assert.Equal("two", loop.History[2].Content);
    }

    [Fact]
    public void ChatCommandRejectsMissingTemplateFile()
    {
        var (code, _, err) = OpenWeights.Tests.Cli.CliTests.Run("chat", TinyModels.Qwen, "--chat-template", "/nonexistent.jinja");
        Assert.Equal(1, code);
        Assert.Contains("chat template file not found", err);
    }
}

public class ServeCommandTests
{
    [Fact]
    public void ServeRejectsBadArgumentsInOneLine()
    {
        var (code, _, err) = OpenWeights.Tests.Cli.CliTests.Run("serve", TinyModels.Qwen, "--host", "example.com", "--port", "0");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: --host example.com must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost", err.Trim());
        (code, _, err) = OpenWeights.Tests.Cli.CliTests.Run("serve", TinyModels.Qwen, "--parallel", "0");
        Assert.Equal(1, code);
        Assert.Contains("--parallel must be at least 1", err);
        (code, _, err) = OpenWeights.Tests.Cli.CliTests.Run("serve", "/nonexistent.gguf");
        Assert.Equal(1, code);
        Assert.Contains("model file not found", err);
    }
}
