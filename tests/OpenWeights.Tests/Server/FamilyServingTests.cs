using System.Text;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using OpenAI.Embeddings;
using OpenWeights.Extensions.AI;
using OpenWeights.Models;
using OpenWeights.Server;
using OpenWeights.Tests.Cli;
using OpenWeights.Tokenizers;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiFinishReason = Microsoft.Extensions.AI.ChatFinishReason;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>
/// Issue 12 from the outside: every supported family served, with the official OpenAI .NET client (chat, streaming chat,
/// embeddings); gemma3 also as a `serve` process on a real port and through the Microsoft.Extensions.AI chat client.
/// </summary>
public class FamilyServingTests
{
    private const string Question = "Hello! Tell me about cats.";

    private static ChatCompletionOptions Greedy(int max) => new() { Temperature = 0, MaxOutputTokenCount = max };

    /// <summary>A greedy reply of at most 8 tokens, non-streaming then streaming, and an embedding, checked against the model.</summary>
    private static async Task<string> ChatAndEmbed(OpenAI.OpenAIClientOptions sdk, string modelId, string modelPath, int dim)
    {
        var chat = new ChatClient(modelId, Creds.Key(), sdk);
        OaChatMessage[] msgs = [new UserChatMessage(Question)];
        var r = (await chat.CompleteChatAsync(msgs, Greedy(8))).Value;
        string text = r.Content.Count > 0 ? r.Content[0].Text : "";
        Assert.True(text.Length > 0, $"{modelId}: empty reply (finish {r.FinishReason}, {r.Usage.OutputTokenCount} tokens)");
        Assert.Equal(ChatMessageRole.Assistant, r.Role);
        Assert.Equal(TinyFamilies.ChatPromptTokens(modelPath, Question), r.Usage.InputTokenCount); // the chat template applied
        Assert.InRange(r.Usage.OutputTokenCount, 1, 8);
        Assert.Equal(r.Usage.InputTokenCount + r.Usage.OutputTokenCount, r.Usage.TotalTokenCount);
        Assert.True(r.FinishReason is ChatFinishReason.Stop or ChatFinishReason.Length, $"finish {r.FinishReason}");
        if (r.FinishReason == ChatFinishReason.Length) Assert.Equal(8, r.Usage.OutputTokenCount);

        var sb = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (var u in chat.CompleteChatStreamingAsync(msgs, Greedy(8)))
        {
            foreach (var part in u.ContentUpdate) sb.Append(part.Text);
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.Equal(text, sb.ToString());
        Assert.Equal(r.FinishReason, finish);
        Assert.NotNull(usage);
        Assert.Equal((r.Usage.InputTokenCount, r.Usage.OutputTokenCount), (usage.InputTokenCount, usage.OutputTokenCount));

        var embeddings = new EmbeddingClient(modelId, Creds.Key(), sdk);
        var e = (await embeddings.GenerateEmbeddingAsync("The quick brown fox")).Value.ToFloats().ToArray();
        Assert.Equal(dim, e.Length);
        Assert.Equal(1.0, Math.Sqrt(e.Sum(x => (double)x * x)), 3);
        using var m = DecoderModel.Load(modelPath);
        Assert.Equal(m.Embed(Tokenizer.FromGguf(m.Source).Encode("The quick brown fox", addSpecial: true), 2), e);
        return text;
    }

    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public async Task ChatStreamingChatAndEmbeddingsWithTheOpenAiClient(string arch)
    {
        string model = TinyFamilies.Model(arch);
        using var f = new OwFactory(new ServerOptions { ModelPath = model, Parallel = 1, ContextSize = 256, Threads = 2 });
        var reply = await ChatAndEmbed(f.SdkOptions(), f.ModelHost.ModelId, model, TinyFamilies.PresetFor(arch).Dim);
        Assert.DoesNotContain("<end_of_turn>", reply);
        Assert.DoesNotContain("<|im_end|>", reply);
        Assert.DoesNotContain("<|end|>", reply);
    }

    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public async Task TheTemplatesTurnEndStopsTheReplyWithoutLeaking(string arch)
    {
        string model = TinyFamilies.Model(arch);
        var (endId, endText) = TinyFamilies.TurnEnd(model);
        Assert.True(endId >= 0, $"{arch}: the turn end {endText} is not a token");
        using var f = new OwFactory(new ServerOptions { ModelPath = model, Parallel = 1, ContextSize = 256, Threads = 2 });
        var options = Greedy(8);
        options.LogitBiases.Add(endId, 100); // the model ends its turn at once
        var r = (await new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions()).CompleteChatAsync([new UserChatMessage(Question)], options)).Value;
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
        Assert.Equal("", r.Content.Count > 0 ? r.Content[0].Text : "");
        Assert.InRange(r.Usage.OutputTokenCount, 0, 1);
    }

    [Theory]
    [MemberData(nameof(TinyFamilies.All), MemberType = typeof(TinyFamilies))]
    public async Task ParallelChoicesPastTheSlidingWindowEqualTheSingleReply(string arch)
    {
        // a prompt longer than the tiny Gemmas' 64-key window; three greedy choices decoded side by side in three slots
        string model = TinyFamilies.Model(arch);
        string longQuestion = string.Join(" ", Enumerable.Repeat("tell me about cats and dogs", 12));
        Assert.True(TinyFamilies.ChatPromptTokens(model, longQuestion) > 100);
        string single;
        using (var one = new OwFactory(new ServerOptions { ModelPath = model, Parallel = 1, ContextSize = 512, Threads = 2 }))
            single = (await new ChatClient(one.ModelHost.ModelId, Creds.Key(), one.SdkOptions()).CompleteChatAsync([new UserChatMessage(longQuestion)], Greedy(12))).Value.Content[0].Text;
        using var f = new OwFactory(new ServerOptions { ModelPath = model, Parallel = 3, ContextSize = 512, Threads = 2 });
        using var http = f.CreateClient();
        var body = System.Text.Json.JsonSerializer.Serialize(new { model = f.ModelHost.ModelId, messages = new[] { new { role = "user", content = longQuestion } }, max_tokens = 12, temperature = 0, n = 3 });
        var resp = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var j = System.Text.Json.Nodes.JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        Assert.True(resp.IsSuccessStatusCode, j.ToJsonString());
        var texts = j["choices"]!.AsArray().Select(c => c!["message"]!["content"]!.GetValue<string>()).ToList();
        Assert.Equal([single, single, single], texts);
    }

    [Fact]
    public async Task Gemma3ServedAsAProcessOnARealPort()
    {
        string model = TinyFamilies.Model("gemma3");
        using var serve = ServeCommandTests.ServeProcess.Start(model);
        var sdk = OwFactory.SdkOptions(new HttpClient { Timeout = TimeSpan.FromSeconds(60) }, new Uri(serve.BaseUri, "/v1"));
        await ChatAndEmbed(sdk, "tiny-gemma3", model, TinyFamilies.PresetFor("gemma3").Dim);
        Assert.True(serve.WaitForStderr("POST /v1/embeddings 200", TimeSpan.FromSeconds(10)), serve.Stderr);
        Assert.Contains("POST /v1/chat/completions 200", serve.Stderr);
    }

    [Fact]
    public async Task Gemma3ThroughTheExtensionsAiChatClientStreams()
    {
        string model = TinyFamilies.Model("gemma3");
        using var client = OpenWeightsChatClient.Load(model, contextSize: 256, threads: 2);
        IChatClient chat = client;
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 8 };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync([new AiChatMessage(ChatRole.User, Question)], options)) updates.Add(u);
        Assert.True(updates.Count > 1, "one update: not streamed");
        string text = string.Concat(updates.Select(u => u.Text));
        Assert.True(text.Length > 0, "empty reply");
        Assert.DoesNotContain("<end_of_turn>", text);
        var finish = updates.Select(u => u.FinishReason).Last(x => x is not null);
        Assert.True(finish == AiFinishReason.Stop || finish == AiFinishReason.Length, $"finish {finish}");
        var usage = updates.SelectMany(u => u.Contents).OfType<UsageContent>().Single().Details;
        Assert.Equal(TinyFamilies.ChatPromptTokens(model, Question), usage.InputTokenCount);
        Assert.InRange(usage.OutputTokenCount ?? 0, 1, 8);

        // the same chat core as the server: the same greedy reply
        using var f = new OwFactory(new ServerOptions { ModelPath = model, Parallel = 1, ContextSize = 256, Threads = 2 });
        var served = (await new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions()).CompleteChatAsync([new UserChatMessage(Question)], Greedy(8))).Value;
        Assert.Equal(served.Content[0].Text, text);
        Assert.Equal(served.Usage.OutputTokenCount, usage.OutputTokenCount);
    }
}
