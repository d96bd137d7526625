using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Readiness apart from liveness, on a real Kestrel port with the model loading in the background
/// (<see cref="ServerOptions.LoadInBackground"/>): while it loads, GET /health is 503 {"status":"loading"}, GET /livez is
/// 200, and every API request is a 503 in its own API's shape; once loaded, /health is 200 and requests are served; a failed
/// load leaves both probes at 503. The load is held back by a gate in place of the model host's registration.
/// </summary>
public class ServerReadinessTests
{
    private sealed class Server(WebApplication app, HttpClient http) : IAsyncDisposable
    {
        public HttpClient Http { get; } = http;
        public async ValueTask DisposeAsync() { Http.Dispose(); await app.StopAsync(); await app.DisposeAsync(); }
    }

    // the server's own pipeline, but the model host comes from `load` (run on the background loader's thread)
    private static async Task<Server> Start(Func<ServerOptions, ModelHost> load, string? apiKey = null)
    {
        var options = new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 512, Threads = 2, LoadInBackground = true, ApiKey = apiKey };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddOpenWeightsServer(options);
        builder.Services.AddSingleton(_ => load(options)); // replaces the registration that loads at once
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.UseOpenWeightsServer();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", apiKey);
        return new Server(app, http);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");
    private const string Chat = """{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}""";

    private static async Task<JsonNode> Body(HttpResponseMessage resp, HttpStatusCode status)
    {
        string body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == status, $"{resp.StatusCode}: {body}");
        return JsonNode.Parse(body)!;
    }

    [Fact]
    public async Task Loading_is_not_ready_but_alive_and_the_apis_answer_503_in_their_own_shape_until_the_model_serves()
    {
        using var gate = new ManualResetEventSlim();
        await using var s = await Start(o => { gate.Wait(TimeSpan.FromMinutes(2)); return new ModelHost(o); });
        var http = s.Http;
        Assert.Equal("loading", (await Body(await http.GetAsync("/health"), HttpStatusCode.ServiceUnavailable))["status"]!.GetValue<string>());
        var live = await Body(await http.GetAsync("/livez"), HttpStatusCode.OK);
        Assert.Equal(("alive", false), (live["status"]!.GetValue<string>(), live["model_ready"]!.GetValue<bool>()));

        var chat = await http.PostAsync("/v1/chat/completions", Json(Chat));
        Assert.Equal("model_loading", (await Body(chat, HttpStatusCode.ServiceUnavailable))["error"]!["code"]!.GetValue<string>());
        Assert.Equal("5", chat.Headers.GetValues("Retry-After").Single());
        var anthropic = await Body(await http.PostAsync("/v1/messages", Json("""{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"Hi"}]}""")), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("overloaded_error", anthropic["error"]!["type"]!.GetValue<string>());
        var ollama = await Body(await http.GetAsync("/api/tags"), HttpStatusCode.ServiceUnavailable);
        Assert.Contains("loading", ollama["error"]!.GetValue<string>());
        var models = await Body(await http.GetAsync("/v1/models"), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("model_loading", models["error"]!["code"]!.GetValue<string>());

        gate.Set();
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        HttpResponseMessage health;
        while ((health = await http.GetAsync("/health")).StatusCode != HttpStatusCode.OK && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Equal("ok", (await Body(health, HttpStatusCode.OK))["status"]!.GetValue<string>());
        Assert.True((await Body(await http.GetAsync("/livez"), HttpStatusCode.OK))["model_ready"]!.GetValue<bool>());
        Assert.Equal("chat.completion", (await Body(await http.PostAsync("/v1/chat/completions", Json(Chat)), HttpStatusCode.OK))["object"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_failed_load_fails_both_probes_and_every_request_says_why()
    {
        await using var s = await Start(_ => throw new OpenWeightsException("model file not found: /nowhere.gguf"));
        var http = s.Http;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while ((await http.GetAsync("/livez")).StatusCode == HttpStatusCode.OK && DateTime.UtcNow < deadline) await Task.Delay(20);
        var ready = await Body(await http.GetAsync("/health"), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("failed", ready["status"]!.GetValue<string>());
        Assert.Contains("model file not found", ready["error"]!.GetValue<string>());
        Assert.Equal("failed", (await Body(await http.GetAsync("/livez"), HttpStatusCode.ServiceUnavailable))["status"]!.GetValue<string>());
        var chat = await Body(await http.PostAsync("/v1/chat/completions", Json(Chat)), HttpStatusCode.ServiceUnavailable);
        Assert.Equal("model_load_failed", chat["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_probes_need_no_API_key_while_the_API_does()
    {
        using var gate = new ManualResetEventSlim();
        await using var s = await Start(_ => { gate.Wait(TimeSpan.FromMinutes(2)); throw new OpenWeightsException("never loads"); }, apiKey: "sekret");
        using var anonymous = new HttpClient { BaseAddress = s.Http.BaseAddress };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/livez")).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await anonymous.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsync("/v1/chat/completions", Json(Chat))).StatusCode); // the key before readiness
        gate.Set();
    }
}
