using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using OllamaSharp;
using OllamaSharp.Models.Chat;
using OpenWeights.Tests.Chat;
using OllamaMessage = OllamaSharp.Models.Chat.Message;

namespace OpenWeights.Tests.Cli;

/// <summary>
/// The real `openweights serve` process on a real port speaks the Anthropic and Ollama APIs to their official clients,
/// with the API key checked for both (x-api-key for Anthropic, a bearer header for Ollama).
/// </summary>
public class ServeApisProcessTests
{
    [Fact]
    public async Task Serve_answers_the_Anthropic_and_Ollama_clients()
    {
        using var serve = ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--api-key", "sekret");
        string baseUrl = serve.BaseUri.ToString().TrimEnd('/');

        var anthropic = new AnthropicClient(new ClientOptions { BaseUrl = baseUrl, ApiKey = "sekret", MaxRetries = 0, Timeout = TimeSpan.FromSeconds(60) });
        var message = await anthropic.Messages.Create(new MessageCreateParams { Model = "any", MaxTokens = 4, Messages = [new UserMessageParam("Hello")] });
        Assert.StartsWith("msg_", message.ID);
        Assert.InRange(message.Usage.OutputTokens, 1, 4);
        var events = new List<string>();
        await foreach (var ev in anthropic.Messages.CreateStreaming(new MessageCreateParams { Model = "any", MaxTokens = 4, Messages = [new UserMessageParam("Hello")] }))
            events.Add(ev.Type.Raw());
        Assert.Equal("message_start", events[0]);
        Assert.Equal("message_stop", events[^1]);
        var wrongKey = new AnthropicClient(new ClientOptions { BaseUrl = baseUrl, ApiKey = "wrong", MaxRetries = 0 });
        await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => wrongKey.Messages.Create(new MessageCreateParams { Model = "any", MaxTokens = 4, Messages = [new UserMessageParam("Hello")] }));

        using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "sekret");
        var ollama = new OllamaApiClient(http, "any");
        Assert.Contains(await ollama.ListLocalModelsAsync(), m => m.Name == "tiny-qwen2");
        int evals = -1;
        await foreach (var c in ollama.ChatAsync(new ChatRequest { Model = "any", Messages = [new OllamaMessage(ChatRole.User, "Hello")], Options = new() { NumPredict = 4 } }))
            if (c is ChatDoneResponseStream done) evals = done.EvalCount;
        Assert.InRange(evals, 1, 4);
        var embed = await ollama.EmbedAsync("hello");
        Assert.Single(embed.Embeddings);
        Assert.False(serve.Process.HasExited, serve.Stderr);
    }
}
