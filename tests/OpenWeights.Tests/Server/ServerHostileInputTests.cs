using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>One in-process server (tiny-qwen2, 2 slots, 256-token context, 1 MB body limit) for the hostile-input suite.</summary>
public sealed class HostileServerFixture : IDisposable
{
    public OwFactory Factory { get; } = new(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 256, Threads = 2, MaxRequestBodyBytes = 1 << 20 });
    public HttpClient Http { get; }
    public string ModelId => Factory.ModelHost.ModelId;
    public HostileServerFixture() { Http = Factory.CreateClient(); }
    public void Dispose() { Http.Dispose(); Factory.Dispose(); }
}

/// <summary>
/// Bad and hostile requests get a 4xx with an OpenAI-shaped body ({"error":{"message","type","param","code"}}),
/// never a 500 or an empty body, and the server goes on answering /health and a normal request after each.
/// </summary>
public class ServerHostileInputTests(HostileServerFixture fx) : IClassFixture<HostileServerFixture>
{
    private const string Chat = "/v1/chat/completions", Text = "/v1/completions", Embed = "/v1/embeddings";
    private const string Msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";

    /// <summary>A request and what it must get. "M" in the body stands for the served model's id.</summary>
    public sealed record Case(string Endpoint, byte[] Body, int Status, string? Code, string? Param, string ContentType = "application/json");

    private static byte[] U(string s) => Encoding.UTF8.GetBytes(s);
    private static byte[] Raw(string before, byte[] bytes, string after) => [.. U(before), .. bytes, .. U(after)];
    private static Case Bad(string endpoint, string body, string? param, string code = "invalid_value") => new(endpoint, U(body), 400, code, param);
    private static Case ChatWith(string fields, string? param, string code = "invalid_value") => Bad(Chat, $"{{\"model\":\"M\",{Msgs},{fields}}}", param, code);
    private static Case ChatContent(string content, string? param = "messages[0].content") => Bad(Chat, $"{{\"model\":\"M\",\"messages\":[{{\"role\":\"user\",\"content\":{content}}}]}}", param);
    private static Case EmbedInput(string input, string? param = "input", string code = "invalid_value") => Bad(Embed, $"{{\"model\":\"M\",\"input\":{input}}}", param, code);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        // text that is not valid Unicode, in any string field or key
        ["invalid UTF-8 in content"] = new(Chat, Raw("{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"a", [0xFF, 0xFE], "b\"}]}"), 400, "invalid_json", "messages[0].content"),
        ["overlong UTF-8 in content"] = new(Chat, Raw("{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"a", [0xC0, 0xAF], "\"}]}"), 400, "invalid_json", "messages[0].content"),
        ["truncated UTF-8 sequence"] = new(Chat, Raw("{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"a", [0xE2, 0x82], "\"}]}"), 400, "invalid_json", "messages[0].content"),
        ["UTF-8-encoded surrogate"] = new(Chat, Raw("{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"", [0xED, 0xA0, 0x80], "\"}]}"), 400, "invalid_json", "messages[0].content"),
        ["invalid UTF-8 in the model"] = new(Chat, Raw("{\"model\":\"", [0xFF], $"\",{Msgs}}}"), 400, "invalid_json", "model"),
        ["invalid UTF-8 in a key"] = new(Chat, Raw("{\"model\":\"M\",\"x", [0xFF], $"\":1,{Msgs}}}"), 400, "invalid_json", null),
        ["invalid UTF-8 outside strings"] = new(Chat, Raw("{\"model\":\"M\",", [0xFF], $"{Msgs}}}"), 400, "invalid_json", null),
        ["lone high surrogate in content"] = ChatContent("\"\\ud800\"", "messages[0].content") with { Code = "invalid_json" },
        ["lone low surrogate in content"] = ChatContent("\"a\\udc00b\"", "messages[0].content") with { Code = "invalid_json" },
        ["reversed surrogate pair"] = ChatContent("\"\\udc00\\ud800\"", "messages[0].content") with { Code = "invalid_json" },
        ["lone surrogate in the role"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"\\ud800\",\"content\":\"x\"}]}", "messages[0].role", "invalid_json"),
        ["lone surrogate in a key"] = Bad(Chat, $"{{\"model\":\"M\",\"\\ud800\":1,{Msgs}}}", null, "invalid_json"),
        ["lone surrogate in the model"] = Bad(Chat, $"{{\"model\":\"\\ud800\",{Msgs}}}", "model", "invalid_json"),
        ["lone surrogate in a stop string"] = ChatWith("\"stop\":[\"\\ud800\"]", "stop[0]", "invalid_json"),
        ["lone surrogate in a tool name"] = ChatWith("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"\\ud800\"}}]", "tools[0].function.name", "invalid_json"),
        ["lone surrogate in a schema"] = ChatWith("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"\\ud800\":1}}}", "response_format.json_schema.schema", "invalid_json"),
        ["lone surrogate in a prompt"] = Bad(Text, "{\"model\":\"M\",\"prompt\":\"\\ud800\"}", "prompt", "invalid_json"),
        ["lone surrogate in an embedding input"] = EmbedInput("[\"ok\",\"\\ud800\"]", "input[1]", "invalid_json"),
        // JSON that is not one object with each key once
        ["duplicate top-level key"] = Bad(Chat, $"{{\"model\":\"M\",\"model\":\"M\",{Msgs}}}", "model", "invalid_json"),
        ["duplicate key in a message"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]}", "messages[0].role", "invalid_json"),
        ["not JSON"] = Bad(Chat, "{not json", null, "invalid_json"),
        ["truncated JSON"] = Bad(Chat, $"{{\"model\":\"M\",{Msgs}", null, "invalid_json"),
        ["trailing garbage"] = Bad(Chat, $"{{\"model\":\"M\",{Msgs}}} x", null, "invalid_json"),
        ["empty body"] = Bad(Chat, "", null, "invalid_json"),
        ["a list body"] = Bad(Chat, "[]", null, "invalid_json"),
        ["a string body"] = Bad(Chat, "\"hi\"", null, "invalid_json"),
        ["a number body"] = Bad(Chat, "5", null, "invalid_json"),
        ["a null body"] = Bad(Chat, "null", null, "invalid_json"),
        ["deep nesting"] = ChatWith("\"metadata\":" + new string('[', 100) + new string(']', 100), null, "invalid_json"),
        ["very deep nesting"] = Bad(Chat, new string('[', 100_000), null, "invalid_json"),
        ["deep objects"] = ChatWith("\"metadata\":" + string.Concat(Enumerable.Repeat("{\"a\":", 100)) + "1" + new string('}', 100), null, "invalid_json"),
        ["huge number literal"] = ChatWith("\"temperature\":1e999999", "temperature"),
        ["a thousand digits"] = ChatWith("\"max_tokens\":" + new string('9', 1000), "max_tokens"),
        ["body over the limit"] = new(Chat, U($"{{\"model\":\"M\",{Msgs},\"user\":\"" + new string('x', (1 << 20) + 10) + "\"}"), 413, "request_too_large", null),
        // content parts
        ["content part type a number"] = ChatContent("[{\"type\":1}]"),
        ["content part text a number"] = ChatContent("[{\"type\":\"text\",\"text\":5}]"),
        ["content part without text"] = ChatContent("[{\"type\":\"text\"}]"),
        ["content part text null"] = ChatContent("[{\"type\":\"text\",\"text\":null}]"),
        ["content part a number"] = ChatContent("[1]"),
        ["content part null"] = ChatContent("[null]"),
        ["content part type null"] = ChatContent("[{\"type\":null}]"),
        ["content part image"] = ChatContent("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]"),
        ["content a number"] = ChatContent("5"),
        ["content an object"] = ChatContent("{}"),
        ["content true"] = ChatContent("true"),
        // messages and tools
        ["messages a string"] = ChatWith("\"messages\":\"hi\"", "messages", "invalid_json"), // also a duplicate key
        ["messages not a list"] = Bad(Chat, "{\"model\":\"M\",\"messages\":{\"role\":\"user\"}}", "messages"),
        ["messages empty"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[]}", "messages"),
        ["message null"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[null]}", "messages[0]"),
        ["message a string"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[\"hi\"]}", "messages[0]"),
        ["role a number"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":1,\"content\":\"x\"}]}", "messages[0].role"),
        ["role missing"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role"),
        ["content missing"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content"),
        ["name a number"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":5}]}", "messages[0].name"),
        ["tool_call_id a list"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\",\"tool_call_id\":[]}]}", "messages[0].tool_call_id"),
        ["tool_calls a string"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":\"x\"}]}", "messages[0].tool_calls"),
        ["tool call name a number"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":5}}]}]}", "messages[0].tool_calls[0].function.name"),
        ["tool call id a number"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":5,\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}", "messages[0].tool_calls[0].id"),
        ["tool call null"] = Bad(Chat, "{\"model\":\"M\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[null]}]}", "messages[0].tool_calls[0]"),
        ["tools an object"] = ChatWith("\"tools\":{}", "tools"),
        ["tool null"] = ChatWith("\"tools\":[null]", "tools[0]"),
        ["tool description a number"] = ChatWith("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":5}}]", "tools[0].function.description"),
        ["tool parameters a string"] = ChatWith("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":\"x\"}}]", "tools[0].function.parameters"),
        ["tool_choice a number"] = ChatWith("\"tool_choice\":5", "tool_choice"),
        ["tool_choice names nothing"] = ChatWith("\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":5}}", "tool_choice"),
        // parameters of the wrong type or out of range
        ["model a number"] = Bad(Chat, $"{{\"model\":5,{Msgs}}}", "model"),
        ["temperature a string"] = ChatWith("\"temperature\":\"hot\"", "temperature"),
        ["temperature too large"] = ChatWith("\"temperature\":1e308", "temperature"),
        ["top_p a list"] = ChatWith("\"top_p\":[1]", "top_p"),
        ["max_tokens a fraction"] = ChatWith("\"max_tokens\":1.5", "max_tokens"),
        ["max_tokens a string"] = ChatWith("\"max_tokens\":\"5\"", "max_tokens"),
        ["max_tokens huge"] = ChatWith("\"max_tokens\":1e400", "max_tokens"),
        ["max_tokens negative huge"] = ChatWith("\"max_tokens\":-99999999999999999999", "max_tokens"),
        ["n huge"] = ChatWith("\"n\":10000000000", "n"),
        ["seed a fraction"] = ChatWith("\"seed\":0.5", "seed"),
        ["seed too large"] = ChatWith("\"seed\":1e30", "seed"),
        ["seed a string"] = ChatWith("\"seed\":\"x\"", "seed"),
        ["logit_bias a list"] = ChatWith("\"logit_bias\":[]", "logit_bias"),
        ["logit_bias value a string"] = ChatWith("\"logit_bias\":{\"5\":\"x\"}", "logit_bias"),
        ["logit_bias value huge"] = ChatWith("\"logit_bias\":{\"5\":1e400}", "logit_bias"),
        ["logit_bias key negative"] = ChatWith("\"logit_bias\":{\"-1\":1}", "logit_bias"),
        ["logit_bias key huge"] = ChatWith("\"logit_bias\":{\"99999999999999999999\":1}", "logit_bias"),
        ["stop a number"] = ChatWith("\"stop\":5", "stop"),
        ["stop holding a number"] = ChatWith("\"stop\":[1]", "stop"),
        ["stop holding null"] = ChatWith("\"stop\":[null]", "stop"),
        ["stream a string"] = ChatWith("\"stream\":\"yes\"", "stream"),
        ["stream_options a number"] = ChatWith("\"stream_options\":5", "stream_options"),
        ["include_usage a string"] = ChatWith("\"stream_options\":{\"include_usage\":\"y\"}", "stream_options.include_usage"),
        ["logprobs a number"] = ChatWith("\"logprobs\":1", "logprobs"),
        ["top_logprobs too many"] = ChatWith("\"logprobs\":true,\"top_logprobs\":50", "top_logprobs"),
        ["response_format a number"] = ChatWith("\"response_format\":5", "response_format"),
        ["response_format type a number"] = ChatWith("\"response_format\":{\"type\":5}", "response_format"),
        ["json_schema a string"] = ChatWith("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":\"x\"}", "response_format.json_schema"),
        ["schema a number"] = ChatWith("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":5}}", "response_format.json_schema.schema"),
        ["schema with a bad type"] = ChatWith("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":5}}}", "response_format.json_schema.schema"),
        ["user a number"] = ChatWith("\"user\":5", "user"),
        // text completions
        ["prompt a number"] = Bad(Text, "{\"model\":\"M\",\"prompt\":5}", "prompt"),
        ["prompt token ids outside the vocabulary"] = Bad(Text, "{\"model\":\"M\",\"prompt\":[1,99999999]}", "prompt"),
        ["prompt token ids negative"] = Bad(Text, "{\"model\":\"M\",\"prompt\":[1,-2]}", "prompt"),
        ["prompt nested"] = Bad(Text, "{\"model\":\"M\",\"prompt\":[[\"a\"]]}", "prompt[0]"),
        ["prompt an empty list"] = Bad(Text, "{\"model\":\"M\",\"prompt\":[]}", "prompt"),
        ["prompt too many"] = Bad(Text, "{\"model\":\"M\",\"prompt\":[" + string.Join(",", Enumerable.Repeat("\"a\"", 17)) + "]}", "prompt"),
        ["prompts times n too many choices"] = Bad(Text, "{\"model\":\"M\",\"n\":16,\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "n"),
        ["prompt missing"] = Bad(Text, "{\"model\":\"M\"}", "prompt"),
        ["prompt null"] = Bad(Text, "{\"model\":\"M\",\"prompt\":null}", "prompt"),
        ["completion logprobs a string"] = Bad(Text, "{\"model\":\"M\",\"prompt\":\"x\",\"logprobs\":\"x\"}", "logprobs"),
        ["echo a string"] = Bad(Text, "{\"model\":\"M\",\"prompt\":\"x\",\"echo\":\"x\"}", "echo"),
        ["completion prompt too long"] = Bad(Text, "{\"model\":\"M\",\"prompt\":\"" + string.Concat(Enumerable.Repeat("hello world ", 300)) + "\"}", "prompt", "context_length_exceeded"),
        // embeddings
        ["embedding id a fraction"] = EmbedInput("[1.5]"),
        ["embedding id huge"] = EmbedInput("[1e12]"),
        ["embedding id beyond int"] = EmbedInput("[1e400]"),
        ["embedding id negative"] = EmbedInput("[-1]"),
        ["embedding id outside the vocabulary"] = EmbedInput("[99999]"),
        ["embedding ids holding null"] = EmbedInput("[[null]]", "input[0]"),
        ["embedding ids holding a string"] = EmbedInput("[[\"a\"]]", "input[0]"),
        ["embedding ids holding a fraction"] = EmbedInput("[[1.5]]", "input[0]"),
        ["embedding ids holding a list"] = EmbedInput("[[[1]]]", "input[0]"),
        ["embedding ids empty"] = EmbedInput("[[]]"),
        ["embedding input empty"] = EmbedInput("[]"),
        ["embedding input an object"] = EmbedInput("{}"),
        ["embedding input a number"] = EmbedInput("5"),
        ["embedding input true"] = EmbedInput("true"),
        ["embedding input null"] = EmbedInput("null"),
        ["embedding input missing"] = Bad(Embed, "{\"model\":\"M\"}", "input"),
        ["embedding strings and a number"] = EmbedInput("[\"a\",1]", "input[1]"),
        ["embedding number then a string"] = EmbedInput("[1,\"a\"]", "input[0]"),
        ["embedding a null item"] = EmbedInput("[\"a\",null]", "input[1]"),
        ["embedding too many items"] = EmbedInput("[" + string.Join(",", Enumerable.Repeat("\"a\"", 2049)) + "]"),
        ["embedding input too long"] = EmbedInput("[" + string.Join(",", Enumerable.Repeat("5", 300)) + "]", "input", "context_length_exceeded"),
        ["encoding_format a number"] = Bad(Embed, "{\"model\":\"M\",\"input\":\"a\",\"encoding_format\":5}", "encoding_format"),
        ["encoding_format unknown"] = Bad(Embed, "{\"model\":\"M\",\"input\":\"a\",\"encoding_format\":\"int8\"}", "encoding_format"),
        ["dimensions a string"] = Bad(Embed, "{\"model\":\"M\",\"input\":\"a\",\"dimensions\":\"x\"}", "dimensions"),
        // content types: the body is read as JSON whatever the header says (as llama.cpp does; curl -d sends a form type)
        ["JSON sent as text/plain"] = new(Chat, U($"{{\"model\":\"M\",{Msgs},\"max_tokens\":1}}"), 200, null, null, "text/plain"),
        ["JSON sent as a form"] = new(Chat, U($"{{\"model\":\"M\",{Msgs},\"max_tokens\":1}}"), 200, null, null, "application/x-www-form-urlencoded"),
        ["a form sent as a form"] = new(Chat, U("model=M&prompt=hi"), 400, "invalid_json", null, "application/x-www-form-urlencoded"),
        ["JSON sent as UTF-16"] = new(Chat, Encoding.Unicode.GetBytes($"{{\"model\":\"M\",{Msgs}}}"), 400, "invalid_json", null, "application/json; charset=utf-16"),
        // null stands for absent (as OpenAI's API takes it)
        ["optional fields null"] = ChatWith("\"temperature\":null,\"top_p\":null,\"stop\":null,\"tools\":null,\"seed\":null,\"user\":null,\"max_tokens\":1", null) with { Status = 200, Code = null },
    };

    public static TheoryData<string> Names() => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public async Task BadInputGetsAnOpenAiError(string name)
    {
        var c = Cases[name];
        // "M" -> the model id, byte-wise so that the invalid bytes stay as they are
        byte[] body = Replace(c.Body, U("\"M\""), U($"\"{fx.ModelId}\""));
        var content = new ByteArrayContent(body);
        content.Headers.TryAddWithoutValidation("Content-Type", c.ContentType);
        var resp = await fx.Http.PostAsync(c.Endpoint, content);
        string text = await resp.Content.ReadAsStringAsync();
        Assert.True(c.Status == (int)resp.StatusCode, $"{name}: {(int)resp.StatusCode} {text}");
        if (c.Status >= 400)
        {
            Assert.Equal("application/json", resp.Content.Headers.ContentType?.MediaType);
            var err = Assert.IsType<JsonObject>(JsonNode.Parse(text)!["error"]);
            Assert.Equal(["message", "type", "param", "code"], err.Select(kv => kv.Key));
            Assert.False(string.IsNullOrWhiteSpace(err["message"]!.GetValue<string>()));
            Assert.Equal("invalid_request_error", err["type"]!.GetValue<string>());
            Assert.Equal(c.Code, err["code"]?.GetValue<string>());
            Assert.Equal(c.Param, err["param"]?.GetValue<string>());
        }
        await AssertHealthy();
    }

    [Fact]
    public async Task WrongMethodsAndPathsGetOpenAiErrors()
    {
        foreach (var (method, path) in new[] { ("GET", Chat), ("PUT", Embed), ("GET", "/v2/x%ff%0a"), ("DELETE", "/health"), ("GET", "/robots.txt"), ("POST", "/v1/chat/completions/x") })
        {
            var resp = await fx.Http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
            string text = await resp.Content.ReadAsStringAsync();
            Assert.True((int)resp.StatusCode is 404 or 405, $"{method} {path}: {(int)resp.StatusCode} {text}");
            var err = JsonNode.Parse(text)!["error"]!;
            Assert.False(string.IsNullOrWhiteSpace(err["message"]!.GetValue<string>()));
            Assert.DoesNotContain('\n', err["message"]!.GetValue<string>());
        }
        await AssertHealthy();
    }

    private async Task AssertHealthy()
    {
        Assert.Equal("ok", JsonNode.Parse(await fx.Http.GetStringAsync("/health"))!["status"]!.GetValue<string>());
        var ok = await fx.Http.PostAsync(Chat, new StringContent($"{{\"model\":\"{fx.ModelId}\",{Msgs},\"max_tokens\":1}}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    private static byte[] Replace(byte[] s, byte[] find, byte[] with)
    {
        var r = new List<byte>(s.Length);
        for (int i = 0; i < s.Length;)
        {
            if (i + find.Length <= s.Length && s.AsSpan(i, find.Length).SequenceEqual(find)) { r.AddRange(with); i += find.Length; }
            else r.Add(s[i++]);
        }
        return [.. r];
    }
}
