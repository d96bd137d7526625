using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using ToolChoice = Anthropic.Models.Messages.ToolChoice;

namespace OpenWeights.Tests.Server;

/// <summary>
/// The Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) with the official Anthropic .NET SDK and
/// raw HTTP. A random-weight model cannot be asked for a given reply, so tests that need one force it: the server's
/// tool-call constraint hook (tool_choice any) is replaced by one that forces the exact tokens of a reply.
/// </summary>
public class AnthropicApiTests
{
    internal const string WeatherCall = """<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>""";
    private const string WeatherSchema = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""";

    /// <summary>tiny-qwen2; with <paramref name="forced"/>, tool_choice any/tool makes the model write exactly that text.</summary>
    internal static OwFactory Server(string? forced = null, string? apiKey = null, string? model = null) => new(new ServerOptions
    {
        ModelPath = model ?? TinyModels.Qwen, Parallel = 2, ContextSize = 1024, Threads = 2, ApiKey = apiKey,
        ToolCallConstraintFactory = forced is null ? OpenWeights.Inference.Chat.ToolCallConstraint.Create
            : (f, _, _) => new ForcedTokens(f.Tokenizer.Encode(forced, addSpecial: false, parseSpecial: model is not null)),
    });

    internal static AnthropicClient Client(HttpClient http, string apiKey = "unused") => new(new ClientOptions
    {
        BaseUrl = http.BaseAddress!.ToString().TrimEnd('/'), ApiKey = apiKey, HttpClient = http, MaxRetries = 0, Timeout = TimeSpan.FromSeconds(60),
    });

    private static ToolUnion WeatherTool() => new Tool
    {
        Name = "get_weather", Description = "Current weather",
        InputSchema = new InputSchema(JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(WeatherSchema)!),
    };

    private static MessageCreateParams Ask(string text, long maxTokens = 16, bool forceTool = false) => new()
    {
        Model = "claude-any", MaxTokens = maxTokens,
        Messages = [new UserMessageParam(text)],
        Tools = forceTool ? [WeatherTool()] : null,
        ToolChoice = forceTool ? new ToolChoice(new ToolChoiceAny()) : null,
    };

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>The events of a stream as (event name, data), checking each names its data's type.</summary>
    internal static async Task<List<(string Event, JsonNode Data)>> Events(HttpResponseMessage resp)
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
            list.Add((name, data));
        }
        return list;
    }

    private static string Text(Message m) => string.Concat(m.Content.Select(b => b.TryPickText(out var t) ? t.Text : ""));

    [Fact]
    public async Task Create_returns_a_text_message_whose_usage_matches_count_tokens()
    {
        using var f = Server();
        var client = Client(f.CreateClient());
        var m = await client.Messages.Create(Ask("Hello there", maxTokens: 6) with { System = "Answer briefly." });
        Assert.StartsWith("msg_", m.ID);
        Assert.Equal(f.ModelHost.ModelId, m.Model.Raw());
        var block = Assert.Single(m.Content);
        Assert.True(block.TryPickText(out _));
        Assert.InRange(m.Usage.OutputTokens, 1, 6);
        Assert.Equal(m.Usage.OutputTokens == 6 ? StopReason.MaxTokens : StopReason.EndTurn, m.StopReason!.Value());
        var count = await client.Messages.CountTokens(new MessageCountTokensParams { Model = "claude-any", Messages = [new UserMessageParam("Hello there")], System = "Answer briefly." });
        Assert.Equal(count.InputTokens, m.Usage.InputTokens);
        var shorter = await client.Messages.CountTokens(new MessageCountTokensParams { Model = "claude-any", Messages = [new UserMessageParam("Hello there")] });
        Assert.True(shorter.InputTokens < count.InputTokens, "the system prompt is part of the prompt");
    }

    [Fact]
    public async Task Streaming_with_the_SDK_gives_the_same_forced_text_as_create()
    {
        const string reply = "The sky is blue today.";
        using var f = Server(reply);
        var client = Client(f.CreateClient());
        var whole = await client.Messages.Create(Ask("Colour of the sky?", 64, forceTool: true));
        Assert.Equal(reply, Text(whole));
        Assert.Equal(StopReason.EndTurn, whole.StopReason!.Value());

        var sb = new StringBuilder();
        var types = new List<string>();
        StopReason? stop = null;
        long outputTokens = 0;
        await foreach (var ev in client.Messages.CreateStreaming(Ask("Colour of the sky?", 64, forceTool: true)))
        {
            types.Add(ev.Type.Raw());
            if (ev.TryPickContentBlockDelta(out var d) && d.Delta.TryPickText(out var td)) sb.Append(td.Text);
            if (ev.TryPickDelta(out var md)) { stop = md.Delta.StopReason?.Value(); outputTokens = md.Usage.OutputTokens; }
        }
        Assert.Equal(reply, sb.ToString());
        Assert.Equal(StopReason.EndTurn, stop);
        Assert.Equal(whole.Usage.OutputTokens, outputTokens);
        Assert.Equal("message_start", types[0]);
        Assert.Equal(["message_delta", "message_stop"], types[^2..]);
    }

    [Fact]
    public async Task Raw_stream_follows_Anthropics_event_sequence()
    {
        using var f = Server("Hi there");
        var http = f.CreateClient();
        var resp = await http.PostAsync("/v1/messages", Json("""
            {"model":"x","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hi"}],
             "tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"metadata":{"user_id":"u1"}}
            """));
        var events = await Events(resp);
        var names = events.Select(e => e.Event).ToList();
        Assert.Equal("message_start", names[0]);
        Assert.Equal("ping", names[1]);
        Assert.Equal("content_block_start", names[2]);
        Assert.All(names[3..^3], n => Assert.Equal("content_block_delta", n));
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], names[^3..]);
        var start = events[0].Data["message"]!;
        Assert.Equal("assistant", start["role"]!.GetValue<string>());
        Assert.Empty(start["content"]!.AsArray());
        Assert.Null(start["stop_reason"]);
        Assert.True(start["usage"]!["input_tokens"]!.GetValue<int>() > 0);
        Assert.Equal("text", events[2].Data["content_block"]!["type"]!.GetValue<string>());
        Assert.All(events.Where(e => e.Event.StartsWith("content_block")), e => Assert.Equal(0, e.Data["index"]!.GetValue<int>()));
        Assert.Equal("Hi there", string.Concat(events.Where(e => e.Event == "content_block_delta").Select(e => e.Data["delta"]!["text"]!.GetValue<string>())));
        Assert.All(events.Where(e => e.Event == "content_block_delta"), e => Assert.Equal("text_delta", e.Data["delta"]!["type"]!.GetValue<string>()));
        var delta = events[^2].Data;
        Assert.Equal("end_turn", delta["delta"]!["stop_reason"]!.GetValue<string>());
        Assert.Null(delta["delta"]!["stop_sequence"]);
        Assert.True(delta["usage"]!["output_tokens"]!.GetValue<int>() > 0);
    }

    [Fact]
    public async Task A_tool_call_round_trips_through_the_SDK()
    {
        using var f = Server(WeatherCall);
        var client = Client(f.CreateClient());
        var first = await client.Messages.Create(Ask("Weather in Paris?", 64, forceTool: true));
        Assert.Equal(StopReason.ToolUse, first.StopReason!.Value());
        var use = Assert.Single(first.Content, b => b.TryPickToolUse(out _)).Value as ToolUseBlock;
        Assert.NotNull(use);
        Assert.Equal("get_weather", use.Name);
        Assert.Equal("Paris", use.Input["city"].GetString());

        // the same call streamed: a tool_use block whose input_json_delta pieces add up to the arguments
        var json = new StringBuilder();
        string? startedName = null;
        StopReason? stop = null;
        await foreach (var ev in client.Messages.CreateStreaming(Ask("Weather in Paris?", 64, forceTool: true)))
        {
            if (ev.TryPickContentBlockStart(out var s) && s.ContentBlock.TryPickToolUse(out var tu)) startedName = tu.Name;
            if (ev.TryPickContentBlockDelta(out var d) && d.Delta.TryPickInputJson(out var ij)) json.Append(ij.PartialJson);
            if (ev.TryPickDelta(out var md)) stop = md.Delta.StopReason?.Value();
        }
        Assert.Equal("get_weather", startedName);
        Assert.Equal("Paris", JsonNode.Parse(json.ToString())!["city"]!.GetValue<string>());
        Assert.Equal(StopReason.ToolUse, stop);

        // the result goes back as a tool_result block; the next turn is answered, and the result is in the prompt
        List<MessageParam> convo =
        [
            new UserMessageParam("Weather in Paris?"),
            new AssistantMessageParam(new List<ContentBlockParam> { new ToolUseBlockParam { ID = use.ID, Name = use.Name, Input = use.Input } }),
            new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(use.ID) { Content = "Sunny and 21 degrees in Paris, a fine day for a walk along the river." } }),
        ];
        var second = await client.Messages.Create(new MessageCreateParams { Model = "x", MaxTokens = 4, Messages = convo, Tools = [WeatherTool()] });
        Assert.Single(second.Content, b => b.TryPickText(out _));
        var before = await client.Messages.CountTokens(new MessageCountTokensParams { Model = "x", Messages = convo[..2], Tools = [new Tool { Name = "get_weather", InputSchema = new InputSchema() }] });
        Assert.True(second.Usage.InputTokens > before.InputTokens + 10, $"the tool result is rendered ({second.Usage.InputTokens} vs {before.InputTokens} tokens)");
    }

    [Fact]
    public async Task Stop_sequences_end_the_reply_and_are_reported()
    {
        using var f = Server("Hello world, and goodbye.");
        var http = f.CreateClient();
        var resp = await http.PostAsync("/v1/messages", Json("""
            {"model":"x","max_tokens":64,"stop_sequences":["world"],"messages":[{"role":"user","content":"hi"}],
             "tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}
            """));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var m = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        Assert.Equal("Hello ", m["content"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("stop_sequence", m["stop_reason"]!.GetValue<string>());
        Assert.Equal("world", m["stop_sequence"]!.GetValue<string>());
    }

    [Fact]
    public async Task Errors_are_Anthropic_shaped_with_the_right_status()
    {
        using var f = Server();
        var http = f.CreateClient();
        async Task<(HttpStatusCode, JsonNode)> Post(string body)
        {
            var r = await http.PostAsync("/v1/messages", Json(body));
            return (r.StatusCode, JsonNode.Parse(await r.Content.ReadAsStringAsync())!);
        }
        var (status, e) = await Post("""{"model":"x","messages":[{"role":"user","content":"hi"}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("error", e["type"]!.GetValue<string>());
        Assert.Equal("invalid_request_error", e["error"]!["type"]!.GetValue<string>());
        Assert.Contains("max_tokens", e["error"]!["message"]!.GetValue<string>());

        (status, e) = await Post("""{"model":"x","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("text only", e["error"]!["message"]!.GetValue<string>());

        (status, e) = await Post("""{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"tool","name":"nope"}}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("nope", e["error"]!["message"]!.GetValue<string>());

        (status, e) = await Post("{not json");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_request_error", e["error"]!["type"]!.GetValue<string>());

        var missing = await http.PostAsync("/v1/messages/batches", Json("{}"));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("not_found_error", JsonNode.Parse(await missing.Content.ReadAsStringAsync())!["error"]!["type"]!.GetValue<string>());

        // the SDK turns them into its typed exceptions, with the server's message
        var client = Client(http);
        var ex = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(new MessageCreateParams
        {
            Model = "x", MaxTokens = 5,
            Messages = [new UserMessageParam(new List<ContentBlockParam> { new ImageBlockParam(new Base64ImageSource { Data = "AAAA", MediaType = MediaType.ImagePng }) })],
        }));
        Assert.Contains("text only", ex.ResponseBody);
    }

    [Fact]
    public async Task The_API_key_is_accepted_as_x_api_key_and_as_a_bearer_token()
    {
        using var f = Server(apiKey: "sekret");
        var http = f.CreateClient();
        var ok = await Client(http, "sekret").Messages.CountTokens(new MessageCountTokensParams { Model = "x", Messages = [new UserMessageParam("hi")] });
        Assert.True(ok.InputTokens > 0);
        await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => Client(http, "wrong").Messages.CountTokens(new MessageCountTokensParams { Model = "x", Messages = [new UserMessageParam("hi")] }));

        var raw = new HttpRequestMessage(HttpMethod.Post, "/v1/messages/count_tokens") { Content = Json("""{"model":"x","messages":[{"role":"user","content":"hi"}]}""") };
        raw.Headers.Add("anthropic-version", "2023-06-01");
        raw.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sekret");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(raw)).StatusCode);

        var none = await http.PostAsync("/v1/messages/count_tokens", Json("""{"model":"x","messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        var body = JsonNode.Parse(await none.Content.ReadAsStringAsync())!;
        Assert.Equal("authentication_error", body["error"]!["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task Requests_are_counted_in_metrics_under_their_route()
    {
        using var f = Server();
        var http = f.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("/v1/messages/count_tokens", Json("""{"model":"x","messages":[{"role":"user","content":"hi"}]}"""))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("/v1/messages", Json("""{"model":"x","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}"""))).StatusCode);
        string metrics = await http.GetStringAsync("/metrics");
        Assert.Contains("endpoint=\"/v1/messages\"", metrics);
        Assert.Contains("endpoint=\"/v1/messages/count_tokens\"", metrics);
    }
}

/// <summary>gpt-oss's harmony replies through the Anthropic API: the analysis channel is a thinking block.</summary>
public class AnthropicHarmonyTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";
    private const string Reply = "<|channel|>analysis<|message|>" + Thinking + "<|end|><|start|>assistant<|channel|>final<|message|>" + Answer + "<|return|>";

    [Fact]
    public async Task Reasoning_comes_back_as_thinking_blocks_whole_and_streamed()
    {
        using var f = AnthropicApiTests.Server(Reply, model: HarmonyTinyModel.Path);
        var http = f.CreateClient();
        const string body = """
            {"model":"x","max_tokens":300,"messages":[{"role":"user","content":"What is 2+2?"}],
             "tools":[{"name":"t","description":"a tool","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}STREAM}
            """;
        var resp = await http.PostAsync("/v1/messages", new StringContent(body.Replace("STREAM", ""), Encoding.UTF8, "application/json"));
        Assert.True(resp.StatusCode == HttpStatusCode.OK, await resp.Content.ReadAsStringAsync());
        var m = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        var content = m["content"]!.AsArray();
        Assert.Equal(2, content.Count);
        Assert.Equal("thinking", content[0]!["type"]!.GetValue<string>());
        Assert.Equal(Thinking, content[0]!["thinking"]!.GetValue<string>());
        Assert.Equal("text", content[1]!["type"]!.GetValue<string>());
        Assert.Equal(Answer, content[1]!["text"]!.GetValue<string>());
        Assert.Equal("end_turn", m["stop_reason"]!.GetValue<string>());

        var streamed = await http.PostAsync("/v1/messages", new StringContent(body.Replace("STREAM", ",\"stream\":true"), Encoding.UTF8, "application/json"));
        var events = await AnthropicApiTests.Events(streamed);
        var starts = events.Where(e => e.Event == "content_block_start").Select(e => e.Data["content_block"]!["type"]!.GetValue<string>()).ToList();
        Assert.Equal(["thinking", "text"], starts);
        string Concat(string type, string field) => string.Concat(events.Where(e => e.Event == "content_block_delta" && e.Data["delta"]!["type"]!.GetValue<string>() == type)
            .Select(e => e.Data["delta"]![field]!.GetValue<string>()));
        Assert.Equal(Thinking, Concat("thinking_delta", "thinking"));
        Assert.Equal(Answer, Concat("text_delta", "text"));
        // blocks never overlap: each start is followed by its stop before the next start
        int open = -1;
        foreach (var (name, data) in events)
        {
            if (name == "content_block_start") { Assert.Equal(-1, open); open = data["index"]!.GetValue<int>(); }
            else if (name == "content_block_delta") Assert.Equal(open, data["index"]!.GetValue<int>());
            else if (name == "content_block_stop") { Assert.Equal(open, data["index"]!.GetValue<int>()); open = -1; }
        }

        // the SDK reads the thinking block
        var sdk = await AnthropicApiTests.Client(http).Messages.Create(new MessageCreateParams
        {
            Model = "x", MaxTokens = 300, Messages = [new UserMessageParam("What is 2+2?")],
            Tools = [new Tool { Name = "t", Description = "a tool", InputSchema = new InputSchema() }], ToolChoice = new ToolChoice(new ToolChoiceAny()),
        });
        Assert.True(sdk.Content[0].TryPickThinking(out var th));
        Assert.Equal(Thinking, th.Thinking);
    }
}
