using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatResponseFormat = OpenAI.Chat.ChatResponseFormat;
using ChatTool = OpenAI.Chat.ChatTool;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>One in-process server (tiny-qwen2, 4 slots) shared by the tests of this class.</summary>
public sealed class QwenServerFixture : IDisposable
{
    public OwFactory Factory { get; } = new(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 4, ContextSize = 512, Threads = 2 });
    public HttpClient Http { get; }
    public string ModelId => Factory.ModelHost.ModelId;
    public QwenServerFixture() { Http = Factory.CreateClient(); }
    public void Dispose() { Http.Dispose(); Factory.Dispose(); }
}

public class ServerTests(QwenServerFixture fx) : IClassFixture<QwenServerFixture>
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private ChatClient Sdk() => new(fx.ModelId, Creds.Key(), fx.Factory.SdkOptions());

    private static ChatCompletionOptions Greedy(int max) => new() { Temperature = 0, MaxOutputTokenCount = max };

    [Fact]
    public async Task ChatWithOpenAiSdk()
    {
        var r = (await Sdk().CompleteChatAsync([new SystemChatMessage("be brief"), new UserChatMessage("Hello!")], Greedy(8))).Value;
        Assert.Equal(ChatMessageRole.Assistant, r.Role);
        Assert.True(r.FinishReason is ChatFinishReason.Stop or ChatFinishReason.Length);
        Assert.True(r.Usage.InputTokenCount > 5);
        Assert.InRange(r.Usage.OutputTokenCount, 0, 8);
        Assert.DoesNotContain("<|im_end|>", r.Content.Count > 0 ? r.Content[0].Text : "");
        Assert.Equal(fx.ModelId, r.Model);
    }

    [Fact]
    public async Task StreamingEqualsNonStreaming()
    {
        var client = Sdk();
        OaChatMessage[] msgs = [new UserChatMessage("Tell me a story about a cat.")];
        var full = (await client.CompleteChatAsync(msgs, Greedy(16))).Value;
        var sb = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        var opts = Greedy(16);
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, opts))
        {
            foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.Equal(full.Content.Count > 0 ? full.Content[0].Text : "", sb.ToString());
        Assert.Equal(full.FinishReason, finish);
        Assert.NotNull(usage); // the SDK asks for stream_options.include_usage
        Assert.Equal(full.Usage.OutputTokenCount, usage.OutputTokenCount);
    }

    [Fact]
    public async Task RawSseEndsWithDoneAndUsage()
    {
        var body = $$$"""{"model":"{{{fx.ModelId}}}","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""";
        var resp = await fx.Http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("text/event-stream", resp.Content.Headers.ContentType!.MediaType);
        var events = (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var last = JsonNode.Parse(events[^2]["data: ".Length..])!;
        Assert.Empty(last["choices"]!.AsArray());
        Assert.True(last["usage"]!["prompt_tokens"]!.GetValue<int>() > 0);
        Assert.All(events[..^1], e => Assert.StartsWith("data: {", e));
    }

    [Fact]
    public async Task ChatWithMicrosoftExtensionsAi()
    {
        IChatClient client = Sdk().AsIChatClient();
        var r = await client.GetResponseAsync([new AiChatMessage(ChatRole.User, "Hi there")], new ChatOptions { Temperature = 0, MaxOutputTokens = 6 });
        Assert.Single(r.Messages);
        Assert.Equal(ChatRole.Assistant, r.Messages[0].Role);
        var sb = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync([new AiChatMessage(ChatRole.User, "Hi there")], new ChatOptions { Temperature = 0, MaxOutputTokens = 6 }))
            sb.Append(u.Text);
        Assert.Equal(r.Text, sb.ToString());
    }

    [Fact]
    public async Task EmbeddingsWithSdkAndRaw()
    {
        var client = new EmbeddingClient(fx.ModelId, Creds.Key(), fx.Factory.SdkOptions());
        var e = (await client.GenerateEmbeddingAsync("The quick brown fox")).Value.ToFloats().ToArray(); // the SDK asks for base64
        Assert.Equal(256, e.Length);
        Assert.Equal(1.0, Math.Sqrt(e.Sum(x => (double)x * x)), 3);
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var direct = m.Embed(tok.Encode("The quick brown fox", addSpecial: true), 2);
        Assert.Equal(direct, e);

        var raw = await fx.Http.PostAsync("/v1/embeddings", Json($$"""{"model":"{{fx.ModelId}}","input":["a","b c"]}"""));
        var j = JsonNode.Parse(await raw.Content.ReadAsStringAsync())!;
        Assert.Equal(2, j["data"]!.AsArray().Count);
        Assert.Equal(256, j["data"]![1]!["embedding"]!.AsArray().Count);
        IEmbeddingGenerator<string, Embedding<float>> gen = client.AsIEmbeddingGenerator();
        var ge = await gen.GenerateAsync(["The quick brown fox"]);
        Assert.Equal(direct, ge[0].Vector.ToArray());
    }

    [Fact]
    public async Task TextCompletionsAndModelsAndHealthAndMetrics()
    {
        var resp = await fx.Http.PostAsync("/v1/completions", Json($$"""{"model":"{{fx.ModelId}}","prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":2}"""));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var j = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        Assert.Equal("text_completion", j["object"]!.GetValue<string>());
        var choice = j["choices"]![0]!;
        Assert.Equal(choice["logprobs"]!["tokens"]!.AsArray().Count, j["usage"]!["completion_tokens"]!.GetValue<int>());

        var models = JsonNode.Parse(await fx.Http.GetStringAsync("/v1/models"))!;
        Assert.Equal(fx.ModelId, models["data"]![0]!["id"]!.GetValue<string>());
        var health = JsonNode.Parse(await fx.Http.GetStringAsync("/health"))!;
        Assert.Equal("ok", health["status"]!.GetValue<string>());
        string metrics = await fx.Http.GetStringAsync("/metrics");
        Assert.Contains("openweights_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", metrics);
        Assert.Contains("openweights_generated_tokens_total", metrics);
        Assert.Contains("openweights_queue_depth 0", metrics);
        Assert.Contains("openweights_decode_tokens_per_second", metrics);
    }

    [Fact]
    public async Task LogprobsNAndStopParameters()
    {
        var body = $$"""{"model":"{{fx.ModelId}}","messages":[{"role":"user","content":"count"}],"max_tokens":4,"temperature":0.9,"seed":7,"n":3,"logprobs":true,"top_logprobs":2,"presence_penalty":0.5,"frequency_penalty":0.5,"logit_bias":{"5":-100},"stop":["zzz","qqq"],"user":"u1"}""";
        var resp = await fx.Http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var j = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        var choices = j["choices"]!.AsArray();
        Assert.Equal(3, choices.Count);
        Assert.Equal([0, 1, 2], choices.Select(c => c!["index"]!.GetValue<int>()));
        foreach (var c in choices)
            foreach (var t in c!["logprobs"]!["content"]!.AsArray())
            {
                Assert.Equal(2, t!["top_logprobs"]!.AsArray().Count);
                Assert.True(t["logprob"]!.GetValue<float>() <= 0);
            }
        // same seed, same output
        var again = JsonNode.Parse(await (await fx.Http.PostAsync("/v1/chat/completions", Json(body))).Content.ReadAsStringAsync())!;
        Assert.Equal(choices.Select(c => c!["message"]!["content"]!.GetValue<string>()), again["choices"]!.AsArray().Select(c => c!["message"]!["content"]!.GetValue<string>()));
    }

    [Theory]
    [InlineData("{not json", 400, "invalid_json", null)]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"temperature":3}""", 400, "invalid_value", "temperature")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"top_p":0}""", 400, "invalid_value", "top_p")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"n":0}""", 400, "invalid_value", "n")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"max_tokens":-1}""", 400, "invalid_value", "max_tokens")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"logit_bias":{"99999":1}}""", 400, "invalid_value", "logit_bias")]
    [InlineData("""{"model":"M","messages":[{"role":"wizard","content":"x"}]}""", 400, "invalid_value", "messages[0].role")]
    [InlineData("""{"model":"M"}""", 400, "invalid_value", "messages")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a+"}}}}""", 400, "invalid_value", "response_format.json_schema.schema")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}""", 400, "invalid_value", "response_format.type")]
    public async Task ErrorsHaveOpenAiShape(string body, int status, string code, string? param)
    {
        var resp = await fx.Http.PostAsync("/v1/chat/completions", Json(body.Replace("\"M\"", $"\"{fx.ModelId}\"")));
        Assert.Equal(status, (int)resp.StatusCode);
        var err = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(code, err["code"]!.GetValue<string>());
        Assert.Equal(param, err["param"]?.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(err["message"]!.GetValue<string>()));
        Assert.Equal(status == 404 ? "not_found_error" : "invalid_request_error", err["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task JsonSchemaResponseFormatIsEnforced()
    {
        var schema = BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":12},"rainy":{"type":"boolean"},"days":{"type":"array","items":{"type":"integer"},"maxItems":3}},"required":["city","rainy","days"],"additionalProperties":false}""");
        var opts = new ChatCompletionOptions
        {
            MaxOutputTokenCount = 300, Temperature = 0.8f,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("weather", schema, jsonSchemaIsStrict: true),
        };
        var r = (await Sdk().CompleteChatAsync([new UserChatMessage("weather in Oslo as JSON")], opts)).Value;
        var doc = System.Text.Json.JsonDocument.Parse(r.Content[0].Text).RootElement;
        Assert.True(doc.GetProperty("city").GetString()!.EnumerateRunes().Count() <= 12); // maxLength counts code points
        Assert.True(doc.GetProperty("rainy").ValueKind is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False);
        Assert.True(doc.GetProperty("days").GetArrayLength() <= 3);
        Assert.Equal(3, doc.EnumerateObject().Count());
    }

    [Fact]
    public async Task ContextOverflowIs400()
    {
        string longText = string.Join(" ", Enumerable.Repeat("hello world", 400));
        var resp = await fx.Http.PostAsync("/v1/chat/completions", Json(new JsonObject
        {
            ["model"] = fx.ModelId, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = longText }),
        }.ToJsonString()));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Equal("context_length_exceeded", JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        var sdk = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => Sdk().CompleteChatAsync([new UserChatMessage(longText)]));
        Assert.Equal(400, sdk.Status);
    }

    /// <summary>
    /// Continuous batching is exact: 10 concurrent streaming requests on 4 slots (mixed prefill and decode in the same
    /// forward passes) give, token for token, what each request gives alone through the plain Generator.
    /// </summary>
    [Fact]
    public async Task ConcurrentStreamsEqualSingleGreedyRuns()
    {
        const int clients = 10, maxTokens = 16;
        var prompts = Enumerable.Range(0, clients).Select(i => $"Request {i}: " + string.Join(" ", Enumerable.Repeat($"word{i}", 1 + i % 5))).ToArray();
        var tasks = prompts.Select(async p =>
        {
            var body = new JsonObject
            {
                ["model"] = fx.ModelId, ["stream"] = true, ["max_tokens"] = maxTokens, ["temperature"] = 0,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = p }),
            }.ToJsonString();
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(body) };
            using var resp = await fx.Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
            var sb = new StringBuilder();
            string? finish = null; bool done = false;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") { done = true; break; }
                var c = JsonNode.Parse(line[6..])!["choices"]![0]!;
                sb.Append(c["delta"]?["content"]?.GetValue<string>());
                finish = c["finish_reason"]?.GetValue<string>() ?? finish;
            }
            Assert.True(done);
            Assert.NotNull(finish);
            return sb.ToString();
        }).ToArray();
        var outputs = await Task.WhenAll(tasks);

        using var m = DecoderModel.Load(TinyModels.Qwen);
        var tok = Tokenizer.FromGguf(m.Source);
        var f = new ChatFormatter(tok);
        var session = new InferenceSession(m, 512, 2);
        for (int i = 0; i < clients; i++)
        {
            var prompt = f.EncodeConversation([ChatTurn.User(prompts[i])]);
            var (text, _, _) = await Generator.GenerateTextAsync(session, tok, prompt,
                f.ForReply(new GenerationOptions { MaxTokens = maxTokens, Sampling = new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1, MinP = 0 } }));
            Assert.Equal(text, outputs[i]);
        }
        Assert.True(SpinWait.SpinUntil(() => fx.Factory.ModelHost.Scheduler.ActiveSlots == 0, 5000));
    }
}

public class ServerAuthAndToolTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    [Fact]
    public async Task ApiKeyIsRequired()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, ApiKey = "sekret", Parallel = 1, ContextSize = 256, Threads = 2 });
        var http = f.CreateClient();
        string body = $$"""{"model":"{{f.ModelHost.ModelId}}","messages":[{"role":"user","content":"x"}],"max_tokens":2}""";
        var none = await http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("invalid_api_key", JsonNode.Parse(await none.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        var wrong = new ChatClient(f.ModelHost.ModelId, Creds.Key("nope"), f.SdkOptions());
        var ex = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => wrong.CompleteChatAsync([new UserChatMessage("x")]));
        Assert.Equal(401, ex.Status);
        var right = new ChatClient(f.ModelHost.ModelId, Creds.Key("sekret"), f.SdkOptions());
        Assert.NotNull((await right.CompleteChatAsync([new UserChatMessage("x")], new ChatCompletionOptions { MaxOutputTokenCount = 2 })).Value);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode); // health stays open for probes
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task ToolCallsComeBackStructured()
    {
        var template = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
        const string call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        // the random model cannot choose a tool, so a constraint forces the call it would write
        using var f = new OwFactory(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, ChatTemplate = template, Parallel = 2, ContextSize = 1024, Threads = 2,
            JsonConstraintFactory = (tok, _) => ForcedTokens.Text(tok, call),
        });
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        var opts = new ChatCompletionOptions { MaxOutputTokenCount = 100, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        opts.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""")));
        OaChatMessage[] msgs = [new UserChatMessage("Weather in Paris?")];
        var r = (await client.CompleteChatAsync(msgs, opts)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
        var tc = Assert.Single(r.ToolCalls);
        Assert.Equal("get_weather", tc.FunctionName);
        Assert.Equal("Paris", JsonDocument.Parse(tc.FunctionArguments.ToString()).RootElement.GetProperty("city").GetString());

        // streaming: the call arrives as a tool_calls delta
        var names = new List<string>();
        var args = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, opts))
        {
            foreach (var t in u.ToolCallUpdates) { if (t.FunctionName is { } n) names.Add(n); args.Append(t.FunctionArgumentsUpdate?.ToString()); }
            finish ??= u.FinishReason;
        }
        Assert.Equal(["get_weather"], names);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);

        // the tool result goes back through the template; MEAI sees a FunctionCallContent
        IChatClient ai = client.AsIChatClient();
        var options = new ChatOptions
        {
            ResponseFormat = Microsoft.Extensions.AI.ChatResponseFormat.Json, MaxOutputTokens = 100,
            Tools = [AIFunctionFactory.Create((string city) => "sunny", "get_weather", "Current weather")],
        };
        var ar = await ai.GetResponseAsync([new AiChatMessage(ChatRole.User, "Weather in Paris?")], options);
        var fc = Assert.IsType<FunctionCallContent>(Assert.Single(ar.Messages[0].Contents, c => c is FunctionCallContent));
        Assert.Equal("get_weather", fc.Name);
        Assert.Equal("Paris", fc.Arguments!["city"]!.ToString());
        var follow = new List<AiChatMessage>
        {
            new(ChatRole.User, "Weather in Paris?"), ar.Messages[0],
            new(ChatRole.Tool, [new FunctionResultContent(fc.CallId, "sunny")]),
        };
        var fr = await ai.GetResponseAsync(follow, new ChatOptions { MaxOutputTokens = 1, Temperature = 0 });
        Assert.NotNull(fr.Text);
    }
}

public class KestrelServerTests
{
    [Fact]
    public async Task RealPortSdkChatDisconnectAndQueueLimit()
    {
        await using var server = await KestrelServer.StartAsync(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, MaxQueue = 0, ContextSize = 2048, Threads = 2 });
        Assert.Equal("127.0.0.1", server.BaseUri.Host);
        var host = server.ModelHost;
        var client = new ChatClient(host.ModelId, Creds.Key(), server.SdkOptions());
        var r = (await client.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 })).Value;
        Assert.True(r.Usage.InputTokenCount > 0);
        IChatClient ai = client.AsIChatClient();
        Assert.NotNull((await ai.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 3 })).Text);

        // a long streaming reply (end-of-turn tokens banned) holds the only slot
        var tok = host.Tokenizer;
        var bias = new JsonObject();
        foreach (var id in tok.EndOfGeneration.Append(tok.TokenToId("<|im_end|>")).Where(i => i >= 0).Distinct()) bias[id.ToString()] = -100;
        var body = new JsonObject
        {
            ["model"] = host.ModelId, ["stream"] = true, ["max_tokens"] = 1900, ["temperature"] = 0, ["logit_bias"] = bias,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Go on forever" }),
        }.ToJsonString();
        // MaxResponseDrainSize = 0: disposing an unfinished response closes the connection (by default the handler would
        // quietly read up to 1 MB of the rest to reuse it, and the server would never see the client leave)
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseUri };
        // The tiny model writes 1900 tokens in well under a second, so on a starved test machine the reply can finish before
        // this thread sends the second request or disconnects; such an attempt proves nothing and is repeated (at most 6):
        // the 429 is checked until once seen while the reply held the slot, the disconnect until once seen mid-reply.
        bool exercised = false, saw429 = false;
        for (int attempt = 0; attempt < 6 && !(exercised && saw429); attempt++)
        {
            long generatedBefore = host.Metrics.GeneratedTokens, cancelledBefore = host.Metrics.Cancelled;
            var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
            var stream = await resp.Content.ReadAsStreamAsync();
            var reader = new StreamReader(stream);
            for (int seen = 0; seen < 3;) if ((await reader.ReadLineAsync())!.StartsWith("data: ", StringComparison.Ordinal)) seen++;

            if (!saw429)
            {
                // the queue holds nothing more: 429 (while the long reply still holds the only slot)
                var busy = await http.PostAsync("/v1/chat/completions", new StringContent(
                    $$"""{"model":"{{host.ModelId}}","messages":[{"role":"user","content":"x"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
                if (host.Scheduler.ActiveSlots == 1 || busy.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    Assert.Equal(HttpStatusCode.TooManyRequests, busy.StatusCode);
                    Assert.Equal("rate_limit_error", JsonNode.Parse(await busy.Content.ReadAsStringAsync())!["error"]!["type"]!.GetValue<string>());
                    saw429 = true;
                }
            }

            // the client goes away: its slot frees at once, long before 1900 tokens
            resp.Dispose();
            Assert.True(SpinWait.SpinUntil(() => host.Scheduler.ActiveSlots == 0, 10000), "the slot was not freed");
            if (host.Metrics.GeneratedTokens - generatedBefore >= 1900 && host.Metrics.Cancelled == cancelledBefore) continue; // finished first
            Assert.Equal(cancelledBefore + 1, host.Metrics.Cancelled);
            Assert.True(host.Metrics.GeneratedTokens - generatedBefore < 1900);
            exercised = true;
        }
        Assert.True(saw429, "in 6 attempts the reply always finished before the second request arrived");
        Assert.True(exercised, "in 6 attempts the 1900-token reply always finished before the client disconnected");
        var after = (await client.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 })).Value;
        Assert.Equal(r.Content.Count > 0 ? r.Content[0].Text : "", after.Content.Count > 0 ? after.Content[0].Text : "");
    }
}
