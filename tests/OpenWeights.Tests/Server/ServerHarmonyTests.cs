using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using OpenWeights.Inference.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;
using ChatTool = OpenAI.Chat.ChatTool;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>
/// gpt-oss's harmony replies through the OpenAI API, with the official OpenAI .NET client and raw SSE: the analysis
/// channel comes back as <c>reasoning_content</c> (message and streamed deltas), the final channel alone as content,
/// a commentary call to functions.NAME as tool_calls whose arguments stream in fragments. The model is tiny-qwen2 with
/// a harmony vocabulary and gpt-oss's template (<see cref="HarmonyTinyModel"/>); its random weights cannot write
/// harmony, so a constraint forces the tokens a gpt-oss model writes (its markers as single tokens, stopping at
/// &lt;|return|&gt; / &lt;|call|&gt; as the real one does).
/// </summary>
public class ServerHarmonyTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";
    private const string Reply = "<|channel|>analysis<|message|>" + Thinking + "<|end|><|start|>assistant<|channel|>final<|message|>" + Answer + "<|return|>";
    private const string CallThinking = "Need the weather in Paris; call get_weather.";
    private const string CallReply = "<|channel|>analysis<|message|>" + CallThinking + "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\", \"unit\": \"celsius\"}<|call|>";
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}""";

    private static ForcedTokens Forced(Tokenizer tok, string text) => new(tok.Encode(text, addSpecial: false, parseSpecial: true));

    private static OwFactory Server(string reply) => new(new ServerOptions
    {
        ModelPath = HarmonyTinyModel.Path, Parallel = 2, ContextSize = 2048, Threads = 2,
        JsonConstraintFactory = (tok, _) => Forced(tok, reply), // response_format json_object is the hook that forces the reply
    });

    private static ChatCompletionOptions Options(bool tools = false)
    {
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 300, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        if (tools) o.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString(WeatherSchema)));
        return o;
    }

    private static StringContent Body(OwFactory f, string extra) => new(
        $$"""{"model":"{{f.ModelHost.ModelId}}","messages":[{"role":"user","content":"What is 2+2?"}],"max_tokens":300,"response_format":{"type":"json_object"}{{extra}}}""",
        Encoding.UTF8, "application/json");

    private static async Task<List<JsonNode>> Sse(HttpResponseMessage resp)
    {
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var events = (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        return events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
    }

    private static IEnumerable<JsonNode> Deltas(List<JsonNode> events) =>
        events.SelectMany(e => e["choices"]!.AsArray()).Select(c => c!["delta"]!);

    private static string Concat(IEnumerable<JsonNode> deltas, string field) =>
        string.Concat(deltas.Select(d => d[field] is JsonValue v ? v.GetValue<string>() : ""));

    [Fact]
    public async Task AnalysisIsReasoningContentAndFinalIsContent()
    {
        using var f = Server(Reply);
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        OaChatMessage[] msgs = [new UserChatMessage("What is 2+2?")];
        var result = await client.CompleteChatAsync(msgs, Options());
        var r = result.Value;
        Assert.Equal(Answer, Assert.Single(r.Content).Text); // the final channel only: no markers, no thinking
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);   // stopped at <|return|>
        Assert.Empty(r.ToolCalls);
        var raw = JsonNode.Parse(result.GetRawResponse().Content.ToString())!["choices"]![0]!["message"]!;
        Assert.Equal(Thinking, raw["reasoning_content"]!.GetValue<string>());

        // streamed with the OpenAI client: content deltas add up to the answer alone
        var sb = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, Options()))
        {
            foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            finish ??= u.FinishReason;
        }
        Assert.Equal(Answer, sb.ToString());
        Assert.Equal(ChatFinishReason.Stop, finish);

        // raw SSE: reasoning_content deltas stream (several of them, before the first content), content never holds a marker
        var events = await Sse(await f.CreateClient().PostAsync("/v1/chat/completions", Body(f, ",\"stream\":true")));
        var deltas = Deltas(events).ToList();
        Assert.Equal(Thinking, Concat(deltas, "reasoning_content"));
        Assert.Equal(Answer, Concat(deltas, "content"));
        int reasoningDeltas = deltas.Count(d => d["reasoning_content"] is not null);
        Assert.True(reasoningDeltas > 3, $"reasoning came in {reasoningDeltas} deltas: it should stream token by token");
        int firstContent = deltas.FindIndex(d => d["content"] is JsonValue v && v.GetValue<string>().Length > 0);
        int lastReasoning = deltas.FindLastIndex(d => d["reasoning_content"] is not null);
        Assert.True(lastReasoning < firstContent, "reasoning after content");
        Assert.DoesNotContain(deltas, d => d["content"] is JsonValue v && v.GetValue<string>().Contains("<|", StringComparison.Ordinal));
        Assert.Equal("stop", events.SelectMany(e => e["choices"]!.AsArray()).Last()!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task CommentaryCallToAFunctionIsAToolCall()
    {
        using var f = Server(CallReply);
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        OaChatMessage[] msgs = [new UserChatMessage("Weather in Paris?")];
        var result = await client.CompleteChatAsync(msgs, Options(tools: true));
        var r = result.Value;
        Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
        var call = Assert.Single(r.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.False(string.IsNullOrEmpty(call.Id));
        using (var args = JsonDocument.Parse(call.FunctionArguments.ToString()))
        {
            Assert.Equal("Paris", args.RootElement.GetProperty("city").GetString());
            Assert.Equal("celsius", args.RootElement.GetProperty("unit").GetString());
        }
        Assert.Empty(r.Content);
        var raw = JsonNode.Parse(result.GetRawResponse().Content.ToString())!["choices"]![0]!["message"]!;
        Assert.Equal(CallThinking, raw["reasoning_content"]!.GetValue<string>());

        // streamed with the OpenAI client: one call, its arguments in fragments that add up
        var names = new List<string>();
        var args2 = new StringBuilder();
        int fragments = 0;
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, Options(tools: true)))
        {
            foreach (var t in u.ToolCallUpdates)
            {
                if (t.FunctionName is { } n) names.Add(n);
                if (t.FunctionArgumentsUpdate?.ToString() is { Length: > 0 } a) { args2.Append(a); fragments++; }
            }
            Assert.DoesNotContain(u.ContentUpdate, p => p.Text.Length > 0);
            finish ??= u.FinishReason;
        }
        Assert.Equal(["get_weather"], names);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.True(fragments > 3, $"the arguments came in {fragments} fragments: they should stream");
        Assert.Equal("Paris", JsonDocument.Parse(args2.ToString()).RootElement.GetProperty("city").GetString());

        // the round trip: the call (with its reasoning_content) and the tool's result render back through the template
        var follow = new JsonObject
        {
            ["model"] = f.ModelHost.ModelId, ["max_tokens"] = 300, ["response_format"] = new JsonObject { ["type"] = "json_object" },
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = "Weather in Paris?" },
                new JsonObject
                {
                    ["role"] = "assistant", ["content"] = null, ["reasoning_content"] = CallThinking,
                    ["tool_calls"] = new JsonArray(new JsonObject
                    {
                        ["id"] = call.Id, ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = call.FunctionArguments.ToString() },
                    }),
                },
                new JsonObject { ["role"] = "tool", ["tool_call_id"] = call.Id, ["content"] = "{\"temperature\": 21}" }),
            ["tools"] = new JsonArray(new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = "get_weather", ["description"] = "Current weather", ["parameters"] = JsonNode.Parse(WeatherSchema) },
            }),
        };
        var resp = await f.CreateClient().PostAsync("/v1/chat/completions", new StringContent(follow.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        int promptTokens = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!.GetValue<int>();
        var fmt = f.ModelHost.Formatter;
        var turns = new List<ChatTurn>
        {
            ChatTurn.User("Weather in Paris?"),
            new("assistant", null, [new OpenWeights.Inference.Chat.ChatToolCall(call.Id, "get_weather", call.FunctionArguments.ToString())], Reasoning: CallThinking),
            ChatTurn.Tool(call.Id, "{\"temperature\": 21}"),
        };
        var tools = new List<OpenWeights.Inference.Chat.ChatTool> { new("get_weather", "Current weather", WeatherSchema) };
        string rendered = fmt.Render(turns, tools);
        Assert.Contains("<|start|>assistant<|channel|>analysis<|message|>" + CallThinking + "<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>", rendered);
        Assert.Equal(fmt.Encode(rendered).Length, promptTokens); // the server rendered the reasoning_content as the template's thinking
    }

    [Fact]
#pragma warning disable OPENAI001 // reasoning_effort is "for evaluation" in the OpenAI client
    public async Task ReasoningEffortReachesTheTemplate()
    {
        using var f = Server(Reply);
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var fmt = f.ModelHost.Formatter;
        foreach (var (level, name) in new[] { (ChatReasoningEffortLevel.Low, "low"), (ChatReasoningEffortLevel.High, "high") })
        {
            var o = Options();
            o.ReasoningEffortLevel = level; // the OpenAI client sends reasoning_effort
            var r = (await client.CompleteChatAsync([new UserChatMessage("What is 2+2?")], o)).Value;
            string rendered = fmt.Render([ChatTurn.User("What is 2+2?")], extra: new Dictionary<string, object?> { ["reasoning_effort"] = name });
            Assert.Contains("Reasoning: " + name + "\n", rendered);
            Assert.Equal(fmt.Encode(rendered).Length, r.Usage.InputTokenCount);
        }
        var bad = await f.CreateClient().PostAsync("/v1/chat/completions", Body(f, ",\"reasoning_effort\":\"extreme\""));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("reasoning_effort", JsonNode.Parse(await bad.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());
    }
#pragma warning restore OPENAI001

    /// <summary>tool_choice "required" forces a harmony call (commentary to=functions.NAME, JSON arguments of the schema).</summary>
    [Fact]
    public async Task RequiredToolChoiceForcesAHarmonyCall()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = HarmonyTinyModel.Path, Parallel = 1, ContextSize = 2048, Threads = 2 });
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 200, Temperature = 0, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather") };
        o.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString(WeatherSchema)));
        var r = (await client.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], o)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
        var call = Assert.Single(r.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal(JsonValueKind.String, JsonDocument.Parse(call.FunctionArguments.ToString()).RootElement.GetProperty("city").ValueKind);
    }
}
