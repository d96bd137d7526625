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
/// &lt;think&gt; replies through the OpenAI API, with the official OpenAI .NET client and raw SSE: the thinking comes back
/// as <c>reasoning_content</c> (message and streamed deltas, before the answer), the answer alone as content; a reply's
/// <c>reasoning_content</c> sent back renders as the template's <c>reasoning_content</c>; <c>chat_template_kwargs</c> and
/// <c>reasoning_effort: "none"</c> turn thinking off where the template has the switch. The model is tiny-qwen2 as an R1
/// distill (<see cref="ThinkTinyModel"/>: R1's template opens the thinking in the prompt); a constraint forces the reply.
/// </summary>
public class ServerThinkTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";
    private const string Reply = Thinking + "\n</think>\n\n" + Answer; // R1: the prompt opened the thinking

    private static ForcedTokens Forced(Tokenizer tok, string text) => new(tok.Encode(text, addSpecial: false, parseSpecial: true));

    private static OwFactory Server(Func<string> reply, string? template = null) => new(new ServerOptions
    {
        ModelPath = ThinkTinyModel.Path, Parallel = 2, ContextSize = 2048, Threads = 2, ChatTemplate = template,
        JsonConstraintFactory = (tok, _) => Forced(tok, reply()), // response_format json_object is the hook that forces the reply
    });

    private static ChatCompletionOptions Options() =>
        new() { MaxOutputTokenCount = 300, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };

    private static StringContent Body(string extra, string content = "What is 2+2?") => new(
        $$"""{"model":"m","messages":[{"role":"user","content":"{{content}}"}],"max_tokens":300,"response_format":{"type":"json_object"}{{extra}}}""",
        Encoding.UTF8, "application/json");

    private static async Task<List<JsonNode>> Sse(HttpResponseMessage resp)
    {
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var events = (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        return events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
    }

    private static List<JsonNode> Deltas(List<JsonNode> events) =>
        events.SelectMany(e => e["choices"]!.AsArray()).Select(c => c!["delta"]!).ToList();

    private static string Concat(IEnumerable<JsonNode> deltas, string field) =>
        string.Concat(deltas.Select(d => d[field] is JsonValue v ? v.GetValue<string>() : ""));

    private static async Task<JsonNode> Message(HttpResponseMessage resp)
    {
        string body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.OK, body);
        return JsonNode.Parse(body)!;
    }

    [Fact]
    public async Task ThinkingIsReasoningContentAndTheAnswerIsContent()
    {
        using var f = Server(() => Reply);
        Assert.True(f.ModelHost.Formatter.IsThinking);
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        OaChatMessage[] msgs = [new UserChatMessage("What is 2+2?")];
        var result = await client.CompleteChatAsync(msgs, Options());
        var r = result.Value;
        Assert.Equal(Answer, Assert.Single(r.Content).Text); // the answer only: no tags, no thinking
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
        var raw = JsonNode.Parse(result.GetRawResponse().Content.ToString())!["choices"]![0]!["message"]!;
        Assert.Equal(Thinking, raw["reasoning_content"]!.GetValue<string>());

        // streamed with the OpenAI client: content deltas add up to the answer alone
        var sb = new StringBuilder();
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, Options()))
            foreach (var part in u.ContentUpdate) sb.Append(part.Text);
        Assert.Equal(Answer, sb.ToString());

        // raw SSE: reasoning_content deltas stream (several, all before the first content), content never holds a tag
        var events = await Sse(await f.CreateClient().PostAsync("/v1/chat/completions", Body(",\"stream\":true")));
        var deltas = Deltas(events);
        Assert.Equal(Thinking, Concat(deltas, "reasoning_content"));
        Assert.Equal(Answer, Concat(deltas, "content"));
        int reasoningDeltas = deltas.Count(d => d["reasoning_content"] is not null);
        Assert.True(reasoningDeltas > 3, $"reasoning came in {reasoningDeltas} deltas: it should stream token by token");
        int firstContent = deltas.FindIndex(d => d["content"] is JsonValue v && v.GetValue<string>().Length > 0);
        Assert.True(deltas.FindLastIndex(d => d["reasoning_content"] is not null) < firstContent, "reasoning after content");
        Assert.DoesNotContain(deltas, d => d["content"] is JsonValue v && v.GetValue<string>().Contains("think>", StringComparison.Ordinal));
        Assert.Equal("stop", events.SelectMany(e => e["choices"]!.AsArray()).Last()!["finish_reason"]!.GetValue<string>());
    }

    /// <summary>A reply cut off by max_tokens inside the thinking: reasoning_content, and an empty content (never the thinking).</summary>
    [Fact]
    public async Task AReplyCutOffWhileThinkingLeaksNothingIntoContent()
    {
        using var f = Server(() => Reply);
        var msg = (await Message(await f.CreateClient().PostAsync("/v1/chat/completions", Body(",\"max_completion_tokens\":5"))))["choices"]![0]!;
        Assert.Equal("length", msg["finish_reason"]!.GetValue<string>());
        Assert.Equal("", msg["message"]!["content"]!.GetValue<string>());
        Assert.StartsWith(msg["message"]!["reasoning_content"]!.GetValue<string>(), Thinking);
    }

    /// <summary>The reply's reasoning_content sent back in the next request reaches the template (Qwen3's keeps the current exchange's thinking).</summary>
    [Fact]
    public async Task ReasoningContentSentBackReachesTheTemplate()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        using var f = Server(() => "<think>\nhm\n</think>\n\nok", qwen3);
        var body = new JsonObject
        {
            ["model"] = "m", ["max_tokens"] = 50, ["response_format"] = new JsonObject { ["type"] = "json_object" },
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = "What is 2+2?" },
                new JsonObject
                {
                    ["role"] = "assistant", ["content"] = null, ["reasoning_content"] = Thinking,
                    ["tool_calls"] = new JsonArray(new JsonObject
                    {
                        ["id"] = "c1", ["type"] = "function", ["function"] = new JsonObject { ["name"] = "add", ["arguments"] = "{\"a\":2,\"b\":2}" },
                    }),
                },
                new JsonObject { ["role"] = "tool", ["tool_call_id"] = "c1", ["content"] = "4" }),
        };
        var resp = await Message(await f.CreateClient().PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json")));
        var fmt = f.ModelHost.Formatter;
        string rendered = fmt.Render([
            ChatTurn.User("What is 2+2?"),
            new("assistant", null, [new OpenWeights.Inference.Chat.ChatToolCall("c1", "add", "{\"a\":2,\"b\":2}")], Reasoning: Thinking),
            ChatTurn.Tool("c1", "4"),
        ]);
        Assert.Contains("<think>\n" + Thinking + "\n</think>", rendered);
        Assert.Equal(fmt.Encode(rendered).Length, resp["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(("hm", "ok"), (resp["choices"]![0]!["message"]!["reasoning_content"]!.GetValue<string>(), resp["choices"]![0]!["message"]!["content"]!.GetValue<string>()));
    }

    /// <summary>
    /// Qwen3's template: chat_template_kwargs {"enable_thinking": false} (llama.cpp's and vLLM's way) and reasoning_effort
    /// "none" (what OpenAI's clients send) render the prompt with the thinking closed; the reply is then all content.
    /// </summary>
    [Fact]
#pragma warning disable OPENAI001 // reasoning_effort is "for evaluation" in the OpenAI client
    public async Task ThinkingCanBeTurnedOffPerRequest()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        string reply = "<think>\nhm\n</think>\n\nHello!";
        using var f = Server(() => reply, qwen3);
        var fmt = f.ModelHost.Formatter;
        int on = fmt.Encode(fmt.Render([ChatTurn.User("Hi")])).Length;
        int off = fmt.Encode(fmt.Render([ChatTurn.User("Hi")], extra: ChatFormatter.ThinkingVariables(false))).Length;
        Assert.True(off > on);
        var http = f.CreateClient();

        var thinking = await Message(await http.PostAsync("/v1/chat/completions", Body("", "Hi")));
        Assert.Equal(on, thinking["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal("hm", thinking["choices"]![0]!["message"]!["reasoning_content"]!.GetValue<string>());

        reply = "Hello!";
        var kwargs = await Message(await http.PostAsync("/v1/chat/completions", Body(",\"chat_template_kwargs\":{\"enable_thinking\":false}", "Hi")));
        Assert.Equal(off, kwargs["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal("Hello!", kwargs["choices"]![0]!["message"]!["content"]!.GetValue<string>());
        Assert.Null(kwargs["choices"]![0]!["message"]!["reasoning_content"]);

        // the OpenAI client's reasoning effort "none"
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var o = Options();
        o.ReasoningEffortLevel = new ChatReasoningEffortLevel("none");
        var none = (await client.CompleteChatAsync([new UserChatMessage("Hi")], o)).Value;
        Assert.Equal(off, none.Usage.InputTokenCount);
        Assert.Equal("Hello!", Assert.Single(none.Content).Text);

        // bad values: 400 naming the parameter
        foreach (var (extra, param) in new[]
        {
            (",\"chat_template_kwargs\":[1]", "chat_template_kwargs"),
            (",\"chat_template_kwargs\":{\"messages\":[]}", "chat_template_kwargs.messages"),
            (",\"reasoning_effort\":\"extreme\"", "reasoning_effort"),
        })
        {
            var bad = await http.PostAsync("/v1/chat/completions", Body(extra, "Hi"));
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Equal(param, JsonNode.Parse(await bad.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());
        }
    }
#pragma warning restore OPENAI001

    /// <summary>tool_choice naming a function on an R1 template (whose prompt opened the thinking): the call is forced from the first token and parses as a call, not as reasoning.</summary>
    [Fact]
    public async Task ForcedToolCallAfterAnOpenedThinkingIsACall()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = ThinkTinyModel.Path, Parallel = 1, ContextSize = 2048, Threads = 2 });
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 200, Temperature = 0, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather") };
        o.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""")));
        var result = await client.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], o);
        Assert.True(ThinkReplyParser.OpensThinking(f.ModelHost.Formatter.Render([ChatTurn.User("Weather in Paris?")])));
        Assert.Equal(ChatFinishReason.ToolCalls, result.Value.FinishReason);
        Assert.Equal("get_weather", Assert.Single(result.Value.ToolCalls).FunctionName);
        Assert.Null(JsonNode.Parse(result.GetRawResponse().Content.ToString())!["choices"]![0]!["message"]!["reasoning_content"]);
    }

    /// <summary>Qwen3 thinks, then calls a tool: reasoning_content streams, the call comes as tool_calls, no content.</summary>
    [Fact]
    public async Task ThinkingThenAToolCall()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        const string reply = "<think>\nNeed the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        using var f = Server(() => reply, qwen3);
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var o = Options();
        o.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}}}""")));
        var result = await client.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], o);
        Assert.Equal(ChatFinishReason.ToolCalls, result.Value.FinishReason);
        var call = Assert.Single(result.Value.ToolCalls);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments.ToString()).RootElement.GetProperty("city").GetString());
        Assert.Empty(result.Value.Content);
        Assert.Equal("Need the weather.", JsonNode.Parse(result.GetRawResponse().Content.ToString())!["choices"]![0]!["message"]!["reasoning_content"]!.GetValue<string>());

        var names = new List<string>();
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync([new UserChatMessage("Weather in Paris?")], o))
        {
            foreach (var t in u.ToolCallUpdates) if (t.FunctionName is { } n) names.Add(n);
            Assert.DoesNotContain(u.ContentUpdate, p => p.Text.Length > 0);
            finish ??= u.FinishReason;
        }
        Assert.Equal(["get_weather"], names);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }
}
