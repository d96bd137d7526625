using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OllamaSharp;
using OllamaSharp.Models;
using OllamaSharp.Models.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// The Ollama API (/api/chat, /api/generate, /api/embed, /api/tags, /api/show, /api/ps, /api/version) with the official
/// OllamaSharp client and raw HTTP (NDJSON lines). Replies that must be exact are forced through the server's
/// constrained-decoding hook for <c>format</c> (the factory is replaced by one that forces the reply's tokens).
/// </summary>
public class OllamaApiTests
{
    /// <summary>tiny-qwen2; with <paramref name="forced"/>, format "json" makes the model write exactly that text.</summary>
    internal static OwFactory Server(string? forced = null, string? model = null, int context = 1024) => new(new ServerOptions
    {
        ModelPath = model ?? TinyModels.Qwen, Parallel = 2, ContextSize = context, Threads = 2,
        JsonConstraintFactory = forced is null ? OpenWeights.Inference.Constraints.JsonConstraint.Create
            : (tok, _) => new ForcedTokens(tok.Encode(forced, addSpecial: false, parseSpecial: model is not null)),
    });

    private static OllamaApiClient Client(OwFactory f) => new(f.CreateClient(), f.ModelHost.ModelId);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>NDJSON lines: every one an object, done false until the last.</summary>
    private static async Task<List<JsonNode>> Lines(HttpResponseMessage resp)
    {
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("application/x-ndjson", resp.Content.Headers.ContentType!.MediaType);
        string text = await resp.Content.ReadAsStringAsync();
        Assert.EndsWith("\n", text);
        var lines = text.TrimEnd('\n').Split('\n').Select(l => JsonNode.Parse(l)!).ToList();
        Assert.All(lines[..^1], l => Assert.False(l["done"]!.GetValue<bool>()));
        Assert.True(lines[^1]["done"]!.GetValue<bool>());
        return lines;
    }

    [Fact]
    public async Task Model_listing_endpoints_answer_the_client()
    {
        using var f = Server();
        var client = Client(f);
        Assert.True(await client.IsRunningAsync());
        Assert.Equal(OllamaEndpoints.ApiVersion, await client.GetVersionAsync());
        var tags = (await client.ListLocalModelsAsync()).ToList();
        var model = Assert.Single(tags);
        Assert.Equal(f.ModelHost.ModelId, model.Name);
        Assert.Equal(new FileInfo(TinyModels.Qwen).Length, model.Size);
        Assert.Equal("gguf", model.Details.Format);
        var running = Assert.Single(await client.ListRunningModelsAsync());
        Assert.Equal(1024, running.ContextLength);
        var show = await client.ShowModelAsync(f.ModelHost.ModelId);
        Assert.Contains("completion", show.Capabilities!);
        Assert.Contains("im_start", show.Template);
        var missing = await f.CreateClient().PostAsync("/api/show", Json("""{"model":"no-such-model"}"""));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("not found", JsonNode.Parse(await missing.Content.ReadAsStringAsync())!["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task Chat_streams_the_forced_reply_and_ends_with_the_counts()
    {
        const string reply = """{"colour": "blue"}""";
        using var f = Server(reply);
        var client = Client(f);
        var sb = new StringBuilder();
        ChatDoneResponseStream? done = null;
        int chunks = 0;
        await foreach (var c in client.ChatAsync(new ChatRequest
        {
            Model = f.ModelHost.ModelId, Format = "json", Options = new RequestOptions { Temperature = 0.5f, NumPredict = 64 },
            Messages = [new Message(ChatRole.System, "Answer in JSON."), new Message(ChatRole.User, "Colour of the sky?")],
        }))
        {
            chunks++;
            sb.Append(c!.Message.Content);
            if (c is ChatDoneResponseStream d) done = d;
        }
        Assert.Equal(reply, sb.ToString());
        Assert.True(chunks > 2, "streamed in pieces");
        Assert.NotNull(done);
        Assert.Equal("stop", done.DoneReason);
        Assert.Equal(f.ModelHost.Tokenizer.Encode(reply, addSpecial: false).Length, done.EvalCount);
        Assert.True(done.PromptEvalCount > 5);
        Assert.True(done.TotalDuration >= done.EvalDuration && done.EvalDuration > 0, $"total {done.TotalDuration} ns, eval {done.EvalDuration} ns");
    }

    [Fact]
    public async Task Raw_chat_is_NDJSON_by_default_and_one_object_with_stream_false()
    {
        using var f = Server();
        var http = f.CreateClient();
        var lines = await Lines(await http.PostAsync("/api/chat", Json("""{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5,"seed":7}}""")));
        var last = lines[^1];
        Assert.Equal("length", last["done_reason"]!.GetValue<string>());
        Assert.Equal(5, last["eval_count"]!.GetValue<int>());
        foreach (var key in new[] { "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration" }) Assert.NotNull(last[key]);
        Assert.True(last["total_duration"]!.GetValue<long>() > 1_000, "nanoseconds");
        Assert.All(lines, l => Assert.Equal("assistant", l["message"]!["role"]!.GetValue<string>()));
        Assert.True(DateTimeOffset.TryParse(lines[0]["created_at"]!.GetValue<string>(), out _));
        string streamed = string.Concat(lines.Select(l => l["message"]!["content"]!.GetValue<string>()));

        // the same seed without streaming: one object, the same text
        var one = await http.PostAsync("/api/chat", Json("""{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5,"seed":7}}"""));
        Assert.Equal("application/json", one.Content.Headers.ContentType!.MediaType);
        var whole = JsonNode.Parse(await one.Content.ReadAsStringAsync())!;
        Assert.True(whole["done"]!.GetValue<bool>());
        Assert.Equal(streamed, whole["message"]!["content"]!.GetValue<string>());
        Assert.Equal(5, whole["eval_count"]!.GetValue<int>());
    }

    [Fact]
    public async Task Generate_answers_a_prompt_through_the_template_or_raw()
    {
        const string reply = """{"a": 1}""";
        using var f = Server(reply);
        var client = Client(f);
        var sb = new StringBuilder();
        GenerateDoneResponseStream? done = null;
        await foreach (var c in client.GenerateAsync(new GenerateRequest { Model = "m", Prompt = "Give JSON", System = "Be terse.", Format = "json" }))
        {
            sb.Append(c!.Response);
            if (c is GenerateDoneResponseStream d) done = d;
        }
        Assert.Equal(reply, sb.ToString());
        Assert.Equal("stop", done!.DoneReason);

        var http = f.CreateClient();
        var templated = JsonNode.Parse(await (await http.PostAsync("/api/generate", Json("""{"model":"m","prompt":"Give JSON","stream":false,"options":{"num_predict":3}}"""))).Content.ReadAsStringAsync())!;
        var raw = JsonNode.Parse(await (await http.PostAsync("/api/generate", Json("""{"model":"m","prompt":"Give JSON","raw":true,"stream":false,"options":{"num_predict":3}}"""))).Content.ReadAsStringAsync())!;
        Assert.True(templated["prompt_eval_count"]!.GetValue<int>() > raw["prompt_eval_count"]!.GetValue<int>(), "the template wraps the prompt; raw sends it as it is");
        Assert.Equal(f.ModelHost.Tokenizer.Encode("Give JSON", addSpecial: true).Length, raw["prompt_eval_count"]!.GetValue<int>());

        // an empty prompt loads the model (already loaded): done at once
        var load = JsonNode.Parse(await (await http.PostAsync("/api/generate", Json("""{"model":"m"}"""))).Content.ReadAsStringAsync())!;
        Assert.Equal("load", load["done_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Tool_calls_come_back_as_objects_and_results_go_back_in()
    {
        using var f = Server(AnthropicApiTests.WeatherCall);
        var client = Client(f);
        var tool = new Tool
        {
            Type = "function",
            Function = new Function
            {
                Name = "get_weather", Description = "Current weather",
                Parameters = new Parameters { Type = "object", Properties = new Dictionary<string, Property> { ["city"] = new Property { Type = "string" } }, Required = ["city"] },
            },
        };
        var calls = new List<Message.ToolCall>();
        await foreach (var c in client.ChatAsync(new ChatRequest { Model = "m", Format = "json", Tools = [tool], Messages = [new Message(ChatRole.User, "Weather in Paris?")] }))
            if (c?.Message.ToolCalls is { } tc) calls.AddRange(tc);
        var call = Assert.Single(calls);
        Assert.Equal("get_weather", call.Function!.Name);
        Assert.Equal("Paris", call.Function.Arguments!["city"]!.ToString());

        // the result goes back as a tool message: it is rendered into the prompt
        var http = f.CreateClient();
        async Task<int> PromptTokens(string messages) =>
            JsonNode.Parse(await (await http.PostAsync("/api/chat", Json($$"""{"model":"m","stream":false,"options":{"num_predict":1},"messages":{{messages}}}"""))).Content.ReadAsStringAsync())!["prompt_eval_count"]!.GetValue<int>();
        const string asked = """[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]}""";
        int without = await PromptTokens(asked + "]");
        int with = await PromptTokens(asked + """,{"role":"tool","tool_name":"get_weather","content":"Sunny and 21 degrees in Paris, a fine day for a walk along the river."}]""");
        Assert.True(with > without + 10, $"the tool result is rendered ({with} vs {without} tokens)");
    }

    [Fact]
    public async Task Embed_gives_the_same_vectors_as_the_OpenAI_endpoint()
    {
        using var f = Server();
        var client = Client(f);
        var e = await client.EmbedAsync(new EmbedRequest { Model = "m", Input = ["hello world", "goodbye"] });
        Assert.Equal(2, e.Embeddings.Count);
        Assert.All(e.Embeddings, v => Assert.Equal(f.ModelHost.Model.Config.Dim, v.Length));
        Assert.True(e.PromptEvalCount > 2);
        var openAi = JsonNode.Parse(await (await f.CreateClient().PostAsync("/v1/embeddings", Json("""{"model":"m","input":"hello world"}"""))).Content.ReadAsStringAsync())!;
        var reference = openAi["data"]![0]!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        Assert.Equal(reference, e.Embeddings[0]);
    }

    [Fact]
    public async Task Options_are_checked_and_errors_are_Ollama_shaped()
    {
        using var f = Server(context: 256);
        var http = f.CreateClient();
        async Task<string> Error(string path, string body, HttpStatusCode status = HttpStatusCode.BadRequest)
        {
            var r = await http.PostAsync(path, Json(body));
            Assert.Equal(status, r.StatusCode);
            var o = JsonNode.Parse(await r.Content.ReadAsStringAsync())!.AsObject();
            Assert.Single(o);
            return o["error"]!.GetValue<string>();
        }
        Assert.Contains("num_ctx", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":100000}}"""));
        Assert.Contains("256", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":100000}}"""));
        Assert.Contains("context", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_ctx":4}}"""));
        Assert.Contains("mystery", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"mystery":1}}"""));
        Assert.Contains("model", await Error("/api/chat", """{"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Contains("text only", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi","images":["AAAA"]}]}"""));
        Assert.Contains("format", await Error("/api/chat", """{"model":"m","messages":[{"role":"user","content":"hi"}],"format":42}"""));
        Assert.Contains("no route", await Error("/api/pull", """{"model":"m"}""", HttpStatusCode.NotFound));
        // runner settings are accepted and change nothing
        var ok = await http.PostAsync("/api/chat", Json("""{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_gpu":99,"num_thread":8,"num_predict":2}}"""));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);

        // OllamaSharp surfaces the server's message
        var ex = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await foreach (var _ in Client(f).ChatAsync(new ChatRequest { Model = "m", Messages = [new Message(ChatRole.User, "hi")], Options = new RequestOptions { NumCtx = 100000 } })) { }
        });
        Assert.Contains("num_ctx", ex.Message);
    }
}

/// <summary>gpt-oss's harmony replies through the Ollama API: the analysis channel is the message's <c>thinking</c>.</summary>
public class OllamaHarmonyTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";
    private const string Reply = "<|channel|>analysis<|message|>" + Thinking + "<|end|><|start|>assistant<|channel|>final<|message|>" + Answer + "<|return|>";

    [Fact]
    public async Task Think_returns_the_reasoning_apart_and_false_leaves_it_out()
    {
        using var f = OllamaApiTests.Server(Reply, model: HarmonyTinyModel.Path);
        var client = new OllamaApiClient(f.CreateClient(), "m");
        var content = new StringBuilder();
        var thinking = new StringBuilder();
        await foreach (var c in client.ChatAsync(new ChatRequest { Model = "m", Format = "json", Think = true, Messages = [new Message(ChatRole.User, "What is 2+2?")] }))
        {
            content.Append(c!.Message.Content);
            thinking.Append(c.Message.Thinking);
        }
        Assert.Equal(Answer, content.ToString());
        Assert.Equal(Thinking, thinking.ToString());

        var http = f.CreateClient();
        var hidden = JsonNode.Parse(await (await http.PostAsync("/api/chat", new StringContent(
            """{"model":"m","stream":false,"format":"json","think":false,"messages":[{"role":"user","content":"What is 2+2?"}]}""", Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        Assert.Equal(Answer, hidden["message"]!["content"]!.GetValue<string>());
        Assert.Null(hidden["message"]!["thinking"]);

        var generated = JsonNode.Parse(await (await http.PostAsync("/api/generate", new StringContent(
            """{"model":"m","stream":false,"format":"json","think":"high","prompt":"What is 2+2?"}""", Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        Assert.Equal(Answer, generated["response"]!.GetValue<string>());
        Assert.Equal(Thinking, generated["thinking"]!.GetValue<string>());
    }
}
