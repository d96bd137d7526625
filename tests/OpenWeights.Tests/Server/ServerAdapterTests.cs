using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tests.Lora;
using Xunit;

namespace OpenWeights.Tests.Server;

/// <summary>Per-request adapters over a real port: selection by model name or field, run-time loading, mixed batches.</summary>
public class ServerAdapterTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private static string Adapter(TempDir dir, string name, int seed, int rank)
    {
        var path = dir.File(name + ".gguf");
        using var m = DecoderModel.Load(TinyModels.Qwen, repack: false);
        GgufLoraAdapter.Write(LoraTestUtil.Random(m.Config, rank: rank, alpha: 8, seed: seed, amp: 0.5f), path, m.Config);
        return path;
    }

    private static string Chat(string model, string? adapter, string text) =>
        new JsonObject
        {
            ["model"] = model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text }),
            ["max_tokens"] = 12, ["temperature"] = 0, ["logprobs"] = true, ["top_logprobs"] = 3,
        }.Also(o => { if (adapter is not null) o["adapter"] = adapter; }).ToJsonString();

    // the reply's text and its tokens' logprobs, as JSON text (bit-identical logits give identical text)
    private static async Task<string> Reply(HttpClient http, Uri baseUri, string body)
    {
        using var r = await http.PostAsync(new Uri(baseUri, "/v1/chat/completions"), Json(body));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, text);
        var choice = JsonNode.Parse(text)!["choices"]![0]!;
        return choice["message"]!["content"]!.ToJsonString() + "\u0001" + choice["logprobs"]!.ToJsonString();
    }

    [Fact]
    public async Task MixedAdapterRequestsEachGiveWhatTheyGiveAlone()
    {
        using var dir = new TempDir();
        string one = Adapter(dir, "one", 1, 4), two = Adapter(dir, "two", 2, 8), other = dir.File("llama-lora.gguf");
        using (var l = DecoderModel.Load(TinyModels.Llama, repack: false)) GgufLoraAdapter.Write(LoraTestUtil.Random(l.Config), other, l.Config);
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 8, ContextSize = 256, Threads = 2,
            Adapters = new Dictionary<string, string> { ["one"] = one },
        });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        string id = server.ModelHost.ModelId;

        // run-time loading: validated, then listed
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/adapters"), Json($$"""{"name":"two","path":"{{two}}"}""")))
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/adapters"), Json($$"""{"name":"gone","path":"{{dir.File("nope.gguf")}}"}""")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("adapter_not_found", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/adapters"), Json($$"""{"name":"llama","path":"{{other}}"}""")))
        {
            string text = await r.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("invalid_adapter", (string?)JsonNode.Parse(text)!["error"]!["code"]);
            Assert.Contains("LoRA for", text); // an adapter of another base model, named as such
        }
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/adapters"), Json($$"""{"name":"one","path":"{{two}}"}""")))
            Assert.Equal(HttpStatusCode.Conflict, r.StatusCode);
        var models = JsonNode.Parse(await http.GetStringAsync(new Uri(server.BaseUri, "/v1/models")))!["data"]!.AsArray().Select(m => (string?)m!["id"]).ToList();
        Assert.Equal([id, $"{id}:one", $"{id}:two"], models);
        var listed = JsonNode.Parse(await http.GetStringAsync(new Uri(server.BaseUri, "/v1/adapters")))!["data"]!.AsArray().Select(a => (string?)a!["name"]).ToList();
        Assert.Equal(["one", "two"], listed);

        // each request alone, one after the other
        string[] bodies =
        [
            Chat($"{id}:one", null, "Tell me a story about a cat."),
            Chat("gpt-4o", null, "Tell me a story about a cat."),
            Chat(id, "two", "Write a poem about the sea."),
            Chat($"{id}:two", null, "Tell me a story about a cat."),
            Chat("gpt-4o", "one", "Write a poem about the sea."),
            Chat(id, null, "Write a poem about the sea."),
        ];
        var alone = new List<string>();
        foreach (var b in bodies) alone.Add(await Reply(http, server.BaseUri, b));
        Assert.NotEqual(alone[0], alone[1]); // the adapter changes the reply
        Assert.NotEqual(alone[0], alone[3]); // and the two adapters differ
        Assert.NotEqual(alone[4], alone[5]);

        // all together, twice over: steps mix adapters and none
        var together = await Task.WhenAll(bodies.Concat(bodies).Select(b => Reply(http, server.BaseUri, b)));
        for (int i = 0; i < together.Length; i++) Assert.Equal(alone[i % bodies.Length], together[i]);
        Assert.True(server.ModelHost.Scheduler.MixedAdapterSteps > 0, "no step mixed adapters");

        // the OpenAI client names the adapter as the model
        var sdk = new ChatClient($"{id}:one", Creds.Key(), server.SdkOptions());
        var c = (await sdk.CompleteChatAsync([new UserChatMessage("Tell me a story about a cat.")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 })).Value;
        Assert.Equal((string?)JsonNode.Parse(alone[0].Split('\u0001')[0]), c.Content[0].Text);

        // unknown adapters, in each API's own error shape
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/chat/completions"), Json(Chat(id, "nope", "hi"))))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Equal("adapter_not_found", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/messages"), Json($$"""{"model":"{{id}}:nope","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}""")))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Equal("error", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["type"]);
        }

        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/embeddings"), Json($$"""{"model":"{{id}}:one","input":"hi"}""")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("adapter_not_supported", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }

        // unloading: refused while a request holds it, then gone
        using (var lease = server.ModelHost.Adapters.Acquire("two"))
        {
            using var r = await http.DeleteAsync(new Uri(server.BaseUri, "/v1/adapters/two"));
            Assert.Equal(HttpStatusCode.Conflict, r.StatusCode);
            Assert.Equal("adapter_in_use", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        using (var r = await http.DeleteAsync(new Uri(server.BaseUri, "/v1/adapters/two"))) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using (var r = await http.DeleteAsync(new Uri(server.BaseUri, "/v1/adapters/two"))) Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/chat/completions"), Json(bodies[3]))) Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        // a reloaded adapter under the same name gives the same replies (a new id: no stale cached prefix)
        using (var r = await http.PostAsync(new Uri(server.BaseUri, "/v1/adapters"), Json($$"""{"name":"two","path":"{{two}}"}"""))) Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        Assert.Equal(alone[3], await Reply(http, server.BaseUri, bodies[3]));
        Assert.Equal(alone[1], await Reply(http, server.BaseUri, bodies[1]));
    }
}

internal static class JsonObjectExtensions
{
    public static JsonObject Also(this JsonObject o, Action<JsonObject> f) { f(o); return o; }
}
