using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>A generation failing mid-stream ends an Anthropic stream with an error event and an Ollama stream with an error line.</summary>
public class ApiStreamFailureTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private static OwFactory Server() => new(new ServerOptions
    {
        ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 256, Threads = 2,
        JsonConstraintFactory = (tok, _) => new ProbeConstraint(tok, failAfter: 3),      // Ollama's format
        ToolCallConstraintFactory = (f, _, _) => new ProbeConstraint(f.Tokenizer, failAfter: 3), // Anthropic's tool_choice any
    });

    [Fact]
    public async Task Anthropic_stream_ends_with_an_error_event()
    {
        using var f = Server();
        var resp = await f.CreateClient().PostAsync("/v1/messages", Json("""
            {"model":"x","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}],
             "tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}
            """));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var events = (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("event: message_start\n", events[0]);
        var last = events[^1].Split('\n');
        Assert.Equal("event: error", last[0]);
        var err = JsonNode.Parse(last[1]["data: ".Length..])!;
        Assert.Equal("error", err["type"]!.GetValue<string>());
        Assert.Equal("api_error", err["error"]!["type"]!.GetValue<string>());
        Assert.Contains("probe failure", err["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task Ollama_stream_ends_with_an_error_line()
    {
        using var f = Server();
        var resp = await f.CreateClient().PostAsync("/api/chat", Json("""{"model":"x","format":"json","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":20}}"""));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var lines = (await resp.Content.ReadAsStringAsync()).TrimEnd('\n').Split('\n').Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Contains("probe failure", lines[^1]["error"]!.GetValue<string>());
        Assert.All(lines[..^1], l => Assert.False(l["done"]!.GetValue<bool>()));
    }
}
