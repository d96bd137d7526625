using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// &lt;think&gt; replies through the Anthropic and Ollama APIs: the thinking is a <c>thinking</c> block / field, the
/// answer alone is text / content, the tags never reach the client; Ollama's <c>think</c> and Anthropic's
/// <c>thinking.type</c> reach a template's switch (Qwen3's <c>enable_thinking</c>). The model is tiny-qwen2 as an R1
/// distill (<see cref="ThinkTinyModel"/>: R1's template opens the thinking in the prompt).
/// </summary>
public class ApiThinkTests
{
    private const string Thinking = "The user asks for two plus two. That is four.";
    private const string Answer = "Two plus two is four.";
    private const string Reply = Thinking + "\n</think>\n\n" + Answer; // R1: the prompt opened the thinking

    private static OwFactory Server(string? forced = null, string? template = null) => new(new ServerOptions
    {
        ModelPath = ThinkTinyModel.Path, Parallel = 2, ContextSize = 2048, Threads = 2, ChatTemplate = template,
        JsonConstraintFactory = forced is null ? OpenWeights.Inference.Constraints.JsonConstraint.Create
            : (tok, _) => new ForcedTokens(tok.Encode(forced, addSpecial: false, parseSpecial: true)),
    });

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task<JsonNode> Object(HttpResponseMessage resp)
    {
        string body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.OK, body);
        return JsonNode.Parse(body)!;
    }

    [Fact]
    public async Task Ollama_chat_and_generate_give_the_thinking_apart_from_the_answer()
    {
        using var f = Server(Reply);
        var http = f.CreateClient();
        var m = (await Object(await http.PostAsync("/api/chat", Json("""{"model":"m","stream":false,"format":"json","messages":[{"role":"user","content":"What is 2+2?"}]}""")))
            )["message"]!;
        Assert.Equal(Thinking, m["thinking"]!.GetValue<string>());
        Assert.Equal(Answer, m["content"]!.GetValue<string>());

        // streamed: the pieces add up to the same, no line's content holds a tag
        var lines = (await (await http.PostAsync("/api/chat", Json("""{"model":"m","format":"json","messages":[{"role":"user","content":"What is 2+2?"}]}""")))
            .Content.ReadAsStringAsync()).TrimEnd('\n').Split('\n').Select(l => JsonNode.Parse(l)!).ToList();
        string Concat(string field) => string.Concat(lines.Select(l => l["message"]?[field] is JsonValue v ? v.GetValue<string>() : ""));
        Assert.Equal(Thinking, Concat("thinking"));
        Assert.Equal(Answer, Concat("content"));

        // think false: the thinking is not shown, the answer still alone
        var hidden = (await Object(await http.PostAsync("/api/chat", Json("""{"model":"m","stream":false,"think":false,"format":"json","messages":[{"role":"user","content":"What is 2+2?"}]}""")))
            )["message"]!;
        Assert.Null(hidden["thinking"]);
        Assert.Equal(Answer, hidden["content"]!.GetValue<string>());

        var g = await Object(await http.PostAsync("/api/generate", Json("""{"model":"m","stream":false,"format":"json","prompt":"What is 2+2?"}""")));
        Assert.Equal(Thinking, g["thinking"]!.GetValue<string>());
        Assert.Equal(Answer, g["response"]!.GetValue<string>());
    }

    [Fact]
    public async Task Ollama_think_and_Anthropic_thinking_type_reach_the_templates_switch()
    {
        string qwen3 = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"));
        using var f = Server(Answer, qwen3);
        var http = f.CreateClient();
        // Qwen3 with enable_thinking false writes an empty, closed thinking into the prompt: more prompt tokens
        async Task<int> OllamaPrompt(string think) => (await Object(await http.PostAsync("/api/chat",
            Json($$"""{"model":"m","stream":false,"format":"json"{{think}},"messages":[{"role":"user","content":"What is 2+2?"}]}"""))))["prompt_eval_count"]!.GetValue<int>();
        int on = await OllamaPrompt(",\"think\":true"), off = await OllamaPrompt(",\"think\":false"), unset = await OllamaPrompt("");
        Assert.True(off > on, $"think false: {off} prompt tokens, true: {on}");
        Assert.Equal(on, unset); // Qwen3 thinks by default

        async Task<int> AnthropicPrompt(string thinking) => (await Object(await http.PostAsync("/v1/messages/count_tokens",
            Json($$"""{"model":"m"{{thinking}},"messages":[{"role":"user","content":"What is 2+2?"}]}"""))))["input_tokens"]!.GetValue<int>();
        Assert.True(await AnthropicPrompt(",\"thinking\":{\"type\":\"disabled\"}") > await AnthropicPrompt(",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}"));

        var bad = await http.PostAsync("/v1/messages", Json("""{"model":"m","max_tokens":5,"thinking":{"type":"maybe"},"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("thinking.type", await bad.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Anthropic_reply_inside_an_opened_thinking_is_a_thinking_block_never_text()
    {
        using var f = Server();
        var http = f.CreateClient();
        // R1's prompt opens the thinking; the random model never closes it within 12 tokens: all of it is thinking
        var m = await Object(await http.PostAsync("/v1/messages", Json("""{"model":"m","max_tokens":12,"temperature":0,"messages":[{"role":"user","content":"What is 2+2?"}]}""")));
        var blocks = m["content"]!.AsArray();
        Assert.Equal("thinking", blocks[0]!["type"]!.GetValue<string>());
        Assert.NotEmpty(blocks[0]!["thinking"]!.GetValue<string>());
        Assert.All(blocks, b => Assert.DoesNotContain("think>", b!.ToJsonString()));
        Assert.Equal("max_tokens", m["stop_reason"]!.GetValue<string>());
    }
}
