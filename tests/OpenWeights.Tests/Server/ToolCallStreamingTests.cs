using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Anthropic;
using Anthropic.Models.Messages;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatTool = OpenAI.Chat.ChatTool;
using OaChatMessage = OpenAI.Chat.ChatMessage;
using ToolChoice = Anthropic.Models.Messages.ToolChoice;
using ChatResponseFormat = OpenAI.Chat.ChatResponseFormat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Tool calls stream as they are generated, to the real clients on a real Kestrel port: the text before the calls
/// first, then each call's id and name, then its arguments in fragments — OpenAI 2.15.0's
/// <see cref="StreamingChatToolCallUpdate"/>s, Anthropic 13.14.0's <c>input_json_delta</c>, the Responses API's
/// <c>response.function_call_arguments.delta</c> — and Microsoft.Extensions.AI's <see cref="FunctionInvokingChatClient"/>
/// completes a round-trip over streaming. tiny-qwen2 with its Hermes template; a constraint makes it write the reply
/// (response_format json_object and tool_choice required are the hooks).
/// </summary>
public class ToolCallStreamingTests
{
    private const string Weather = """{"city": "Paris", "days": 3}""", Time = """{"zone": "CET"}""";
    private const string Preamble = "Let me check both.";
    private const string TwoCalls = Preamble + "\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather + "}\n</tool_call>\n"
        + "<tool_call>\n{\"name\": \"get_time\", \"arguments\": " + Time + "}\n</tool_call>";
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}""";
    private const string TimeSchema = """{"type":"object","properties":{"zone":{"type":"string"}},"required":["zone"]}""";

    /// <param name="replies">what the model writes, request after request (the last one repeats)</param>
    private static Task<KestrelServer> Start(params string[] replies)
    {
        int next = 0;
        string Reply() => replies[Math.Min(Interlocked.Increment(ref next) - 1, replies.Length - 1)];
        return KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 2048, Threads = 2,
            JsonConstraintFactory = (tok, _) => new ForcedTokens(tok.Encode(Reply(), addSpecial: false, parseSpecial: false)),
            ToolCallConstraintFactory = (f, _, _) => new ForcedTokens(f.Tokenizer.Encode(Reply(), addSpecial: false, parseSpecial: false)),
        });
    }

    private static void AssertJsonEqual(string expected, string actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(actual)), $"arguments {actual}, expected {expected}");

    [Fact]
    public async Task OpenAI_client_sees_the_text_first_then_each_call_in_fragments()
    {
        await using var s = await Start(TwoCalls);
        var client = new ChatClient(s.ModelHost.ModelId, Creds.Key(), s.SdkOptions());
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 300, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        options.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString(WeatherSchema)));
        options.Tools.Add(ChatTool.CreateFunctionTool("get_time", "Current time", BinaryData.FromString(TimeSchema)));

        var text = new StringBuilder();
        int update = 0, lastText = -1, firstTool = -1, textUpdates = 0;
        var calls = new SortedDictionary<int, (string? Id, string? Name, StringBuilder Args, int ArgUpdates, int NameUpdates)>();
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage("Weather and time in Paris?")], options))
        {
            update++;
            foreach (var part in u.ContentUpdate) if (part.Text.Length > 0) { text.Append(part.Text); lastText = update; textUpdates++; }
            foreach (var t in u.ToolCallUpdates)
            {
                if (firstTool < 0) firstTool = update;
                var c = calls.TryGetValue(t.Index, out var had) ? had : (null, null, new StringBuilder(), 0, 0);
                if (t.ToolCallId is { } id) c.Id = id;
                if (t.FunctionName is { } name) { c.Name = name; c.NameUpdates++; }
                string frag = t.FunctionArgumentsUpdate?.ToString() ?? "";
                if (frag.Length > 0) { c.Args.Append(frag); c.ArgUpdates++; }
                calls[t.Index] = c;
            }
            finish ??= u.FinishReason;
        }
        Assert.Equal(Preamble, text.ToString());
        Assert.True(textUpdates > 1, $"the text came in {textUpdates} update(s): it should stream");
        Assert.True(lastText < firstTool, "text after a tool call");
        Assert.Equal([0, 1], calls.Keys);
        Assert.Equal(["get_weather", "get_time"], calls.Values.Select(c => c.Name));
        Assert.All(calls.Values, c => Assert.False(string.IsNullOrEmpty(c.Id)));
        Assert.All(calls.Values, c => Assert.Equal(1, c.NameUpdates)); // the name once, in the call's first update
        Assert.All(calls.Values, c => Assert.True(c.ArgUpdates > 1, $"{c.Name}'s arguments came in {c.ArgUpdates} update(s)"));
        AssertJsonEqual(Weather, calls[0].Args.ToString());
        AssertJsonEqual(Time, calls[1].Args.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Anthropic_client_sees_a_text_block_then_tool_use_blocks_with_input_json_deltas()
    {
        await using var s = await Start(TwoCalls);
        var client = AnthropicApiTests.Client(new HttpClient { BaseAddress = s.BaseUri, Timeout = TimeSpan.FromSeconds(60) });
        ToolUnion Tool(string name, string schema) => new Tool
        {
            Name = name, InputSchema = new InputSchema(JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(schema)!),
        };
        var ask = new MessageCreateParams
        {
            Model = "claude-any", MaxTokens = 300, Messages = [new UserMessageParam("Weather and time in Paris?")],
            Tools = [Tool("get_weather", WeatherSchema), Tool("get_time", TimeSchema)], ToolChoice = new ToolChoice(new ToolChoiceAny()),
        };
        var order = new List<string>();
        var text = new StringBuilder();
        var blocks = new Dictionary<long, (string Name, StringBuilder Json, int Deltas)>();
        StopReason? stop = null;
        await foreach (var ev in client.Messages.CreateStreaming(ask))
        {
            if (ev.TryPickContentBlockStart(out var st))
            {
                if (st.ContentBlock.TryPickToolUse(out var tu)) { blocks[st.Index] = (tu.Name, new StringBuilder(), 0); order.Add("tool_use"); }
                else if (st.ContentBlock.TryPickText(out _)) order.Add("text");
            }
            if (ev.TryPickContentBlockDelta(out var d))
            {
                if (d.Delta.TryPickInputJson(out var ij)) { var b = blocks[d.Index]; b.Json.Append(ij.PartialJson); blocks[d.Index] = b with { Deltas = b.Deltas + 1 }; }
                else if (d.Delta.TryPickText(out var td)) text.Append(td.Text);
            }
            if (ev.TryPickDelta(out var md)) stop = md.Delta.StopReason?.Value();
        }
        Assert.Equal(["text", "tool_use", "tool_use"], order);
        Assert.Equal(Preamble, text.ToString());
        var tools = blocks.OrderBy(b => b.Key).Select(b => b.Value).ToList();
        Assert.Equal(["get_weather", "get_time"], tools.Select(b => b.Name));
        Assert.All(tools, b => Assert.True(b.Deltas > 1, $"{b.Name}'s input came in {b.Deltas} input_json_delta(s)"));
        AssertJsonEqual(Weather, tools[0].Json.ToString());
        AssertJsonEqual(Time, tools[1].Json.ToString());
        Assert.Equal(StopReason.ToolUse, stop);
    }

    [Fact]
    public async Task Responses_stream_adds_a_function_call_item_then_argument_deltas()
    {
        await using var s = await Start(TwoCalls);
        using var http = new HttpClient { BaseAddress = s.BaseUri, Timeout = TimeSpan.FromSeconds(60) };
        string body = $$"""
            {"model":"m","input":"Weather and time in Paris?","stream":true,"tool_choice":"required","max_output_tokens":300,
             "tools":[{"type":"function","name":"get_weather","parameters":{{WeatherSchema}}},{"type":"function","name":"get_time","parameters":{{TimeSchema}}}]}
            """;
        var resp = await http.PostAsync("/v1/responses", new StringContent(body, Encoding.UTF8, "application/json"));
        string sse = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.OK, sse);
        var events = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e.Split('\n').First(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..])
            .Select(d => JsonNode.Parse(d)!).ToList();
        string Type(JsonNode e) => e["type"]!.GetValue<string>();
        var added = events.Where(e => Type(e) == "response.output_item.added" && e["item"]!["type"]!.GetValue<string>() == "function_call").ToList();
        Assert.Equal(["get_weather", "get_time"], added.Select(e => e["item"]!["name"]!.GetValue<string>()));
        foreach (var (item, expected) in added.Zip(new[] { Weather, Time }))
        {
            int output = item["output_index"]!.GetValue<int>();
            int at = events.IndexOf(item);
            var deltas = events.Where(e => Type(e) == "response.function_call_arguments.delta" && e["output_index"]!.GetValue<int>() == output).ToList();
            Assert.True(deltas.Count > 1, $"arguments came in {deltas.Count} delta(s)");
            Assert.True(events.IndexOf(deltas[0]) > at, "a delta before its item was added");
            AssertJsonEqual(expected, string.Concat(deltas.Select(d => d["delta"]!.GetValue<string>())));
            var done = Assert.Single(events, e => Type(e) == "response.function_call_arguments.done" && e["output_index"]!.GetValue<int>() == output);
            AssertJsonEqual(expected, done["arguments"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task FunctionInvokingChatClient_completes_a_tool_round_trip_over_streaming()
    {
        const string Answer = "It is sunny in Paris.";
        await using var s = await Start(Preamble + "\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather + "}\n</tool_call>", Answer);
        var seen = new List<(string City, int Days)>();
        var weather = AIFunctionFactory.Create((string city, int days) => { seen.Add((city, days)); return "sunny, 21 degrees"; }, "get_weather", "Current weather");
        IChatClient ai = new ChatClient(s.ModelHost.ModelId, Creds.Key(), s.SdkOptions()).AsIChatClient()
            .AsBuilder().UseFunctionInvocation().Build();
        var options = new ChatOptions { MaxOutputTokens = 300, Tools = [weather], ResponseFormat = Microsoft.Extensions.AI.ChatResponseFormat.Json };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in ai.GetStreamingResponseAsync([new AiChatMessage(ChatRole.User, "Weather in Paris?")], options)) updates.Add(u);
        Assert.Equal([("Paris", 3)], seen);
        var response = updates.ToChatResponse();
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        var result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.EndsWith(Answer, response.Text);
    }
}
