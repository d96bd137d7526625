#pragma warning disable OPENAI001 // the OpenAI SDK's Responses client is marked experimental
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI.Responses;
using OpenWeights.Inference.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Server;

/// <summary>
/// The OpenAI Responses API (POST /v1/responses, GET/DELETE /v1/responses/{id}) with the official OpenAI .NET SDK
/// (2.15.0, <see cref="ResponsesClient"/>) against a real Kestrel port, and raw HTTP for the error shapes and event order.
/// A random-weight model cannot be asked for a given reply, so tests that need one force it: text.format json_object
/// (the JSON constraint hook) or tool_choice required (the tool-call hook) makes the model write exactly that text.
/// </summary>
public class ResponsesApiTests
{
    private const string WeatherCall = AnthropicApiTests.WeatherCall; // tiny-qwen2's Hermes format
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""";

    private static ForcedTokens Forced(Tokenizer tok, string text, bool special) => new(tok.Encode(text, addSpecial: false, parseSpecial: special));

    /// <summary>
    /// A server on a Kestrel port: tiny-qwen2 (or <paramref name="model"/>); text.format json forces <paramref name="text"/>,
    /// tool_choice required forces <paramref name="call"/>.
    /// </summary>
    private static Task<KestrelServer> Start(string? text = null, string? call = null, string? model = null, int stored = 1000) => KestrelServer.StartAsync(new ServerOptions
    {
        ModelPath = model ?? TinyModels.Qwen, Parallel = 2, ContextSize = 2048, Threads = 2, MaxStoredResponses = stored,
        JsonConstraintFactory = text is null ? OpenWeights.Inference.Constraints.JsonConstraint.Create : (tok, _) => Forced(tok, text, model is not null),
        ToolCallConstraintFactory = call is null ? ToolCallConstraint.Create : (fm, _, _) => Forced(fm.Tokenizer, call, model is not null),
    });

    private static ResponsesClient Client(KestrelServer s) => new(Creds.Key(), new ResponsesClientOptions
    {
        Endpoint = new Uri(s.BaseUri, "/v1"),
        Transport = new HttpClientPipelineTransport(new HttpClient { Timeout = TimeSpan.FromSeconds(60) }),
        RetryPolicy = new ClientRetryPolicy(0),
        NetworkTimeout = TimeSpan.FromSeconds(60),
    });

    private static HttpClient Http(KestrelServer s) => new() { BaseAddress = s.BaseUri, Timeout = TimeSpan.FromSeconds(60) };

    private static CreateResponseOptions Ask(string text, int maxTokens = 16, bool forceText = false) => new()
    {
        Model = "gpt-any", MaxOutputTokenCount = maxTokens, InputItems = { ResponseItem.CreateUserMessageItem(text) },
        TextOptions = forceText ? new ResponseTextOptions { TextFormat = ResponseTextFormat.CreateJsonObjectFormat() } : null,
    };

    private static CreateResponseOptions Streamed(CreateResponseOptions o) { o.StreamingEnabled = true; return o; }

    private static CreateResponseOptions AskWeather(string text = "Weather in Paris?") => new()
    {
        Model = "gpt-any", MaxOutputTokenCount = 64, InputItems = { ResponseItem.CreateUserMessageItem(text) },
        Tools = { ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString(WeatherSchema), strictModeEnabled: false, "Current weather") },
        ToolChoice = ResponseToolChoice.CreateRequiredChoice(),
    };

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>The prompt's token count for a conversation, as the server renders it (no tools).</summary>
    private static int PromptTokens(KestrelServer s, params ChatTurn[] turns) => s.ModelHost.Formatter.Encode(s.ModelHost.Formatter.Render(turns)).Length;

    /// <summary>The events of a stream as (event name, data), checking each names its data's type and that sequence numbers count up from 0.</summary>
    private static async Task<List<(string Event, JsonNode Data)>> Events(HttpResponseMessage resp)
    {
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("text/event-stream", resp.Content.Headers.ContentType!.MediaType);
        var list = new List<(string, JsonNode)>();
        foreach (var block in (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("event: ", lines[0]);
            Assert.StartsWith("data: ", lines[1]);
            string name = lines[0]["event: ".Length..];
            var data = JsonNode.Parse(lines[1]["data: ".Length..])!;
            Assert.Equal(name, data["type"]!.GetValue<string>());
            Assert.Equal(list.Count, data["sequence_number"]!.GetValue<int>());
            list.Add((name, data));
        }
        return list;
    }

    private static async Task<JsonNode> Error(HttpResponseMessage resp, HttpStatusCode status)
    {
        string body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == status, $"{resp.StatusCode}: {body}");
        Assert.Equal("application/json", resp.Content.Headers.ContentType!.MediaType);
        var error = JsonNode.Parse(body)!["error"]!;
        Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));
        Assert.DoesNotContain("   at ", body); // never a stack trace
        return error;
    }

    [Fact]
    public async Task Create_returns_a_message_whose_usage_counts_the_instructions()
    {
        await using var s = await Start();
        var client = Client(s);
        var r = (await client.CreateResponseAsync(Ask("Hello there", maxTokens: 6))).Value;
        Assert.StartsWith("resp_", r.Id);
        Assert.Equal(s.ModelHost.ModelId, r.Model);
        var msg = Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(r.OutputItems));
        Assert.Equal(MessageRole.Assistant, msg.Role);
        Assert.Equal(r.GetOutputText(), Assert.Single(msg.Content).Text);
        Assert.InRange(r.Usage.OutputTokenCount, 1, 6);
        Assert.Equal(r.Usage.InputTokenCount + r.Usage.OutputTokenCount, r.Usage.TotalTokenCount);
        Assert.Equal(r.Usage.OutputTokenCount == 6 ? ResponseStatus.Incomplete : ResponseStatus.Completed, r.Status);
        Assert.Equal(PromptTokens(s, ChatTurn.User("Hello there")), r.Usage.InputTokenCount);

        var opts = Ask("Hello there", maxTokens: 2);
        opts.Instructions = "Answer briefly.";
        var ri = (await client.CreateResponseAsync(opts)).Value;
        Assert.Equal(PromptTokens(s, ChatTurn.System("Answer briefly."), ChatTurn.User("Hello there")), ri.Usage.InputTokenCount);
        Assert.Equal(ResponseStatus.Incomplete, ri.Status); // 2 tokens: cut at max_output_tokens
        Assert.Equal("max_output_tokens", ri.IncompleteStatusDetails.Reason!.Value.ToString());
    }

    [Fact]
    public async Task Streaming_with_the_SDK_gives_the_same_text_as_create_and_the_events_in_order()
    {
        const string reply = "The sky is blue today.";
        await using var s = await Start(text: reply);
        var client = Client(s);
        var whole = (await client.CreateResponseAsync(Ask("Colour of the sky?", 64, forceText: true))).Value;
        Assert.Equal(reply, whole.GetOutputText());
        Assert.Equal(ResponseStatus.Completed, whole.Status);

        var sb = new StringBuilder();
        var kinds = new List<StreamingResponseUpdateKind>();
        ResponseResult? completed = null;
        string? doneText = null;
        await foreach (var u in await client.CreateResponseStreamingAsync(Streamed(Ask("Colour of the sky?", 64, forceText: true))))
        {
            kinds.Add(u.Kind);
            if (u is StreamingResponseOutputTextDeltaUpdate d) sb.Append(d.Delta);
            if (u is StreamingResponseOutputTextDoneUpdate td) doneText = td.Text;
            if (u is StreamingResponseCompletedUpdate c) completed = c.Response;
        }
        Assert.Equal(reply, sb.ToString());
        Assert.Equal(reply, doneText);
        Assert.NotNull(completed);
        Assert.Equal(reply, completed.GetOutputText());
        Assert.Equal(whole.Usage.OutputTokenCount, completed.Usage.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount, completed.Usage.InputTokenCount);
        Assert.True(kinds.Count(k => k == StreamingResponseUpdateKind.ResponseOutputTextDelta) > 3, "the text should stream token by token");
        var order = kinds.Where(k => k != StreamingResponseUpdateKind.ResponseOutputTextDelta).ToList();
        Assert.Equal([
            StreamingResponseUpdateKind.ResponseCreated, StreamingResponseUpdateKind.ResponseInProgress,
            StreamingResponseUpdateKind.ResponseOutputItemAdded, StreamingResponseUpdateKind.ResponseContentPartAdded,
            StreamingResponseUpdateKind.ResponseOutputTextDone, StreamingResponseUpdateKind.ResponseContentPartDone,
            StreamingResponseUpdateKind.ResponseOutputItemDone, StreamingResponseUpdateKind.ResponseCompleted], order);
    }

    [Fact]
    public async Task A_function_call_round_trip_by_previous_response_id_and_by_explicit_items()
    {
        await using var s = await Start(call: WeatherCall);
        var client = Client(s);
        var r1 = (await client.CreateResponseAsync(AskWeather())).Value;
        var call = Assert.IsAssignableFrom<FunctionCallResponseItem>(Assert.Single(r1.OutputItems));
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonNode.Parse(call.FunctionArguments.ToString())!["city"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(call.CallId));
        Assert.StartsWith("fc_", call.Id);

        // the tool's answer continues the stored response
        var next = new CreateResponseOptions
        {
            Model = "gpt-any", MaxOutputTokenCount = 4, PreviousResponseId = r1.Id,
            InputItems = { ResponseItem.CreateFunctionCallOutputItem(call.CallId, "18C and sunny") },
        };
        var r2 = (await client.CreateResponseAsync(next)).Value;
        Assert.Equal(r1.Id, r2.PreviousResponseId);

        // the same conversation given as items: the same prompt
        var explicitItems = new CreateResponseOptions
        {
            Model = "gpt-any", MaxOutputTokenCount = 4,
            InputItems =
            {
                ResponseItem.CreateUserMessageItem("Weather in Paris?"),
                ResponseItem.CreateFunctionCallItem(call.CallId, "get_weather", call.FunctionArguments),
                ResponseItem.CreateFunctionCallOutputItem(call.CallId, "18C and sunny"),
            },
        };
        var r3 = (await client.CreateResponseAsync(explicitItems)).Value;
        Assert.Equal(r3.Usage.InputTokenCount, r2.Usage.InputTokenCount);

        // the input items, listed newest first by the SDK, a page at a time by hand
        var listed = new List<ResponseItem>();
        await foreach (var item in client.GetResponseInputItemsAsync(r3.Id)) listed.Add(item);
        Assert.Equal(3, listed.Count);
        Assert.IsAssignableFrom<FunctionCallOutputResponseItem>(listed[0]);
        Assert.Equal("get_weather", Assert.IsAssignableFrom<FunctionCallResponseItem>(listed[1]).FunctionName);
        Assert.Equal("Weather in Paris?", Assert.Single(Assert.IsAssignableFrom<MessageResponseItem>(listed[2]).Content).Text);
        var http = Http(s);
        var page = JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{r3.Id}/input_items?limit=2&order=asc"))!;
        Assert.Equal(["message", "function_call"], page["data"]!.AsArray().Select(i => i!["type"]!.GetValue<string>()));
        Assert.True(page["has_more"]!.GetValue<bool>());
        var rest = JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{r3.Id}/input_items?order=asc&after={page["last_id"]!.GetValue<string>()}"))!;
        Assert.Equal("function_call_output", Assert.Single(rest["data"]!.AsArray())!["type"]!.GetValue<string>());
        Assert.False(rest["has_more"]!.GetValue<bool>());
        Assert.Equal(PromptTokens(s, ChatTurn.User("Weather in Paris?"),
            new ChatTurn("assistant", null, [new ChatToolCall(call.CallId, "get_weather", call.FunctionArguments.ToString())]),
            ChatTurn.Tool(call.CallId, "18C and sunny", "get_weather")), r3.Usage.InputTokenCount);

        // streamed: the argument deltas add up to the call's arguments
        var args = new StringBuilder();
        FunctionCallResponseItem? done = null;
        string? doneName = null;
        await foreach (var u in await client.CreateResponseStreamingAsync(Streamed(AskWeather())))
        {
            if (u is StreamingResponseFunctionCallArgumentsDeltaUpdate d) args.Append(d.Delta.ToString());
            if (u is StreamingResponseFunctionCallArgumentsDoneUpdate fd) doneName = fd.FunctionName;
            if (u is StreamingResponseOutputItemDoneUpdate { Item: FunctionCallResponseItem fc }) done = fc;
        }
        Assert.NotNull(done);
        Assert.Equal("get_weather", done.FunctionName);
        Assert.Equal("get_weather", doneName);
        Assert.Equal(done.FunctionArguments.ToString(), args.ToString());
        Assert.Equal(call.FunctionArguments.ToString(), args.ToString());
    }

    [Fact]
    public async Task Previous_response_id_continues_the_conversation_and_get_returns_the_stored_response()
    {
        await using var s = await Start();
        var client = Client(s);
        var o1 = Ask("Hello there", maxTokens: 5);
        o1.Instructions = "Be terse.";
        var r1 = (await client.CreateResponseAsync(o1)).Value;
        var o2 = Ask("And again?", maxTokens: 3);
        o2.PreviousResponseId = r1.Id;
        var r2 = (await client.CreateResponseAsync(o2)).Value;
        // the instructions are not carried over; the first reply is the assistant's turn
        Assert.Equal(PromptTokens(s, ChatTurn.User("Hello there"), ChatTurn.Assistant(r1.GetOutputText()), ChatTurn.User("And again?")), r2.Usage.InputTokenCount);

        var got = (await client.GetResponseAsync(r1.Id)).Value;
        Assert.Equal(r1.Id, got.Id);
        Assert.Equal(r1.GetOutputText(), got.GetOutputText());
        Assert.Equal(r1.Usage.OutputTokenCount, got.Usage.OutputTokenCount);

        // deleted: gone for GET and for previous_response_id
        var deleted = (await client.DeleteResponseAsync(r1.Id)).Value;
        Assert.True(deleted.Deleted);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync(r1.Id));
        Assert.Equal(404, e.Status);
        var e2 = await Assert.ThrowsAsync<ClientResultException>(() => client.CreateResponseAsync(o2));
        Assert.Equal(400, e2.Status);
        Assert.Contains("previous_response_not_found", e2.Message);
    }

    [Fact]
    public async Task Store_false_keeps_nothing_and_the_store_forgets_the_least_recently_used()
    {
        await using var s = await Start(stored: 2);
        var http = Http(s);
        async Task<string> Create(string extra)
        {
            var resp = await http.PostAsync("/v1/responses", Json($$"""{"model":"m","input":"Hi","max_output_tokens":1{{extra}}}"""));
            string body = await resp.Content.ReadAsStringAsync();
            Assert.True(resp.StatusCode == HttpStatusCode.OK, body);
            return JsonNode.Parse(body)!["id"]!.GetValue<string>();
        }
        string unstored = await Create(",\"store\":false");
        await Error(await http.GetAsync($"/v1/responses/{unstored}"), HttpStatusCode.NotFound);
        string a = await Create(""), b = await Create("");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"/v1/responses/{a}")).StatusCode); // a is now the most recently used
        string c = await Create("");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"/v1/responses/{a}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"/v1/responses/{c}")).StatusCode);
        var gone = await Error(await http.GetAsync($"/v1/responses/{b}"), HttpStatusCode.NotFound);
        Assert.Equal("invalid_request_error", gone["type"]!.GetValue<string>());
        Assert.Equal(2, s.ModelHost.Responses.Count);
    }

    [Fact]
    public async Task Bad_input_is_an_OpenAI_shaped_400_naming_the_field()
    {
        await using var s = await Start();
        var http = Http(s);
        async Task<JsonNode> Bad(string body, string? param, HttpStatusCode status = HttpStatusCode.BadRequest)
        {
            var error = await Error(await http.PostAsync("/v1/responses", Json(body)), status);
            if (param is not null) Assert.Equal(param, error["param"]?.GetValue<string>());
            return error;
        }
        Assert.Equal("invalid_json", (await Bad("""{"model":"m","input":""", null))["code"]!.GetValue<string>());
        await Bad("""{"model":"m"}""", "input");
        await Bad("""{"input":"hi"}""", "model");
        await Bad("""{"model":"m","input":[]}""", "input");
        await Bad("""{"model":"m","input":42}""", "input");
        await Bad("""{"model":"m","input":[{"role":"robot","content":"hi"}]}""", "input[0].role");
        await Bad("""{"model":"m","input":[{"type":"message","role":"user","content":[{"type":"input_image","image_url":"http://x/y.png"}]}]}""", "input[0].content[0]");
        await Bad("""{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}""", "input[0].call_id");
        await Bad("""{"model":"m","input":"hi","tools":[{"type":"web_search"}]}""", "tools[0].type");
        await Bad("""{"model":"m","input":"hi","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}""", "tool_choice.name");
        await Bad("""{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x"}}}""", "text.format.schema");
        await Bad("""{"model":"m","input":"hi","reasoning":{"effort":"extreme"}}""", "reasoning.effort");
        await Bad("""{"model":"m","input":"hi","max_output_tokens":0}""", "max_output_tokens");
        await Bad("""{"model":"m","input":"hi","temperature":"hot"}""", "temperature");
        var unknown = await Bad("""{"model":"m","input":"hi","previous_response_id":"resp_nope"}""", "previous_response_id");
        Assert.Equal("previous_response_not_found", unknown["code"]!.GetValue<string>());
        await Error(await http.GetAsync("/v1/responses/resp_nope"), HttpStatusCode.NotFound);
        await Error(await http.DeleteAsync("/v1/responses/resp_nope"), HttpStatusCode.NotFound);
        await Error(await http.GetAsync("/v1/responses/resp_nope/input_items"), HttpStatusCode.NotFound);
        string stored = JsonNode.Parse(await (await http.PostAsync("/v1/responses", Json("""{"model":"m","input":"hi","max_output_tokens":1}"""))).Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        Assert.Equal("limit", (await Error(await http.GetAsync($"/v1/responses/{stored}/input_items?limit=0"), HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("order", (await Error(await http.GetAsync($"/v1/responses/{stored}/input_items?order=up"), HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        Assert.Equal("after", (await Error(await http.GetAsync($"/v1/responses/{stored}/input_items?after=msg_x"), HttpStatusCode.BadRequest))["param"]!.GetValue<string>());
        await Error(await http.PutAsync("/v1/responses", Json("{}")), HttpStatusCode.NotFound); // as every route the server does not have
    }

    [Fact]
    public async Task Text_format_json_schema_reaches_the_constraint_flat()
    {
        string? seen = null;
        await using var s = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 1024, Threads = 2,
            JsonConstraintFactory = (tok, schema) => { seen = schema; return Forced(tok, """{"city":"Paris"}""", false); },
        });
        var opts = Ask("Where?", 32);
        opts.TextOptions = new ResponseTextOptions { TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("place", BinaryData.FromString(WeatherSchema)) };
        var r = (await Client(s).CreateResponseAsync(opts)).Value;
        Assert.Equal("""{"city":"Paris"}""", r.GetOutputText());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(WeatherSchema), JsonNode.Parse(seen!)));
        Assert.Equal(ResponseTextFormatKind.JsonSchema, r.TextOptions.TextFormat.Kind);
    }

    [Fact]
    public async Task A_thinking_model_returns_a_reasoning_item_before_the_message()
    {
        const string thinking = "The user asks for two plus two. That is four.";
        const string answer = "Two plus two is four.";
        await using var s = await Start(text: thinking + "\n</think>\n\n" + answer, model: ThinkTinyModel.Path); // R1: the prompt opened the thinking
        var client = Client(s);
        var result = await client.CreateResponseAsync(Ask("What is 2+2?", 300, forceText: true));
        var r = result.Value;
        Assert.Equal(2, r.OutputItems.Count);
        Assert.IsAssignableFrom<ReasoningResponseItem>(r.OutputItems[0]);
        Assert.Equal(answer, r.GetOutputText());
        var raw = JsonNode.Parse(result.GetRawResponse().Content.ToString())!["output"]![0]!;
        Assert.Equal("reasoning", raw["type"]!.GetValue<string>());
        Assert.Equal(thinking, raw["content"]![0]!["text"]!.GetValue<string>());

        // streamed: reasoning_text deltas, then the answer's; the reasoning sent back reaches the next prompt
        var events = await Events(await Http(s).PostAsync("/v1/responses",
            Json("""{"model":"m","input":"What is 2+2?","max_output_tokens":300,"stream":true,"text":{"format":{"type":"json_object"}}}""")));
        Assert.Equal(thinking, string.Concat(events.Where(e => e.Event == "response.reasoning_text.delta").Select(e => e.Data["delta"]!.GetValue<string>())));
        Assert.Equal(answer, string.Concat(events.Where(e => e.Event == "response.output_text.delta").Select(e => e.Data["delta"]!.GetValue<string>())));
        Assert.True(events.FindLastIndex(e => e.Event == "response.reasoning_text.delta") < events.FindIndex(e => e.Event == "response.output_text.delta"));
        var completed = events[^1].Data["response"]!;
        Assert.Equal("response.completed", events[^1].Event);
        Assert.Equal(["reasoning", "message"], completed["output"]!.AsArray().Select(i => i!["type"]!.GetValue<string>()));
        Assert.Equal([0, 1], events.Where(e => e.Event == "response.output_item.done").Select(e => e.Data["output_index"]!.GetValue<int>()));
    }
    /// <summary>
    /// gpt-oss (harmony): the analysis channel is a reasoning item, the commentary call a function_call item; the next turn
    /// renders the same prompt whether it continues by previous_response_id or by sending the output items back.
    /// </summary>
    [Fact]
    public async Task A_gpt_oss_call_is_a_reasoning_item_then_a_function_call_and_continues_either_way()
    {
        const string thinking = "Need the weather in Paris; call get_weather.";
        const string reply = "<|channel|>analysis<|message|>" + thinking + "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>";
        await using var s = await Start(text: reply, model: HarmonyTinyModel.Path);
        var client = Client(s);
        var ask = AskWeather();
        ask.ToolChoice = null;
        ask.MaxOutputTokenCount = 300;
        ask.TextOptions = new ResponseTextOptions { TextFormat = ResponseTextFormat.CreateJsonObjectFormat() };
        var r1 = (await client.CreateResponseAsync(ask)).Value;
        Assert.Equal(2, r1.OutputItems.Count);
        Assert.IsAssignableFrom<ReasoningResponseItem>(r1.OutputItems[0]);
        var call = Assert.IsAssignableFrom<FunctionCallResponseItem>(r1.OutputItems[1]);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonNode.Parse(call.FunctionArguments.ToString())!["city"]!.GetValue<string>());

        var byId = new CreateResponseOptions
        {
            Model = "gpt-any", MaxOutputTokenCount = 2, PreviousResponseId = r1.Id,
            InputItems = { ResponseItem.CreateFunctionCallOutputItem(call.CallId, "18C") },
        };
        var byItems = new CreateResponseOptions { Model = "gpt-any", MaxOutputTokenCount = 2, InputItems = { ResponseItem.CreateUserMessageItem("Weather in Paris?") } };
        foreach (var item in r1.OutputItems) byItems.InputItems.Add(item);
        byItems.InputItems.Add(ResponseItem.CreateFunctionCallOutputItem(call.CallId, "18C"));
        // the tools are part of the prompt: both requests show them
        byId.Tools.Add(ask.Tools[0]);
        byItems.Tools.Add(ask.Tools[0]);
        var r2 = (await client.CreateResponseAsync(byId)).Value;
        var r3 = (await client.CreateResponseAsync(byItems)).Value;
        Assert.Equal(r3.Usage.InputTokenCount, r2.Usage.InputTokenCount);
        var f = s.ModelHost.Formatter;
        var expected = f.Encode(f.Render([ChatTurn.User("Weather in Paris?"),
            new ChatTurn("assistant", null, [new ChatToolCall(call.CallId, "get_weather", call.FunctionArguments.ToString())], Reasoning: thinking),
            ChatTurn.Tool(call.CallId, "18C", "get_weather")], [new OpenWeights.Inference.Chat.ChatTool("get_weather", "Current weather", WeatherSchema)])).Length;
        Assert.Equal(expected, r2.Usage.InputTokenCount);
    }
    /// <summary>A generation failing mid-stream ends the stream with an error event (its sequence number next); unstreamed, a 500 in OpenAI's shape.</summary>
    [Fact]
    public async Task A_failure_mid_stream_is_an_error_event_and_unstreamed_a_500()
    {
        await using var s = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 512, Threads = 2,
            JsonConstraintFactory = (tok, _) => new ProbeConstraint(tok, failAfter: 3),
        });
        var http = Http(s);
        const string body = """{"model":"m","input":"hi","max_output_tokens":20,"text":{"format":{"type":"json_object"}}STREAM}""";
        var events = await Events(await http.PostAsync("/v1/responses", Json(body.Replace("STREAM", ",\"stream\":true"))));
        Assert.Equal("response.created", events[0].Event);
        Assert.Equal("error", events[^1].Event);
        Assert.Equal("generation_failed", events[^1].Data["code"]!.GetValue<string>());
        Assert.Contains("probe failure", events[^1].Data["message"]!.GetValue<string>());
        Assert.DoesNotContain(events, e => e.Event == "response.completed");

        var error = await Error(await http.PostAsync("/v1/responses", Json(body.Replace("STREAM", ""))), HttpStatusCode.InternalServerError);
        Assert.Equal("server_error", error["type"]!.GetValue<string>());
        Assert.Equal("generation_failed", error["code"]!.GetValue<string>());
    }
    /// <summary>reasoning.effort "none" turns a Qwen3 template's thinking off, as chat's reasoning_effort does (the prompt shows it).</summary>
    [Fact]
    public async Task Reasoning_effort_none_sets_the_templates_thinking_switch()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        await using var s = await KestrelServer.StartAsync(new ServerOptions { ModelPath = ThinkTinyModel.Path, Parallel = 1, ContextSize = 2048, Threads = 2, ChatTemplate = qwen3 });
        var client = Client(s);
        var f = s.ModelHost.Formatter;
        int Tokens(bool? thinking) => f.Encode(f.Render([ChatTurn.User("What is 2+2?")], extra: thinking is { } on ? ChatFormatter.ThinkingVariables(on) : null)).Length;
        Assert.NotEqual(Tokens(false), Tokens(null)); // the switch changes the prompt

        var off = Ask("What is 2+2?", maxTokens: 1);
        off.ReasoningOptions = new ResponseReasoningOptions { ReasoningEffortLevel = new ResponseReasoningEffortLevel("none") };
        Assert.Equal(Tokens(false), (await client.CreateResponseAsync(off)).Value.Usage.InputTokenCount);
        var high = Ask("What is 2+2?", maxTokens: 1);
        high.ReasoningOptions = new ResponseReasoningOptions { ReasoningEffortLevel = ResponseReasoningEffortLevel.High };
        var r = (await client.CreateResponseAsync(high)).Value;
        Assert.Equal(Tokens(true), r.Usage.InputTokenCount);
        Assert.Equal(ResponseReasoningEffortLevel.High, r.ReasoningOptions.ReasoningEffortLevel);
    }
}
