using Microsoft.Extensions.AI;
using OpenWeights.Extensions.AI;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

public class ChatClientTests
{
    [Fact]
    public async Task ResponseEqualsStreamingAndTheGenerator()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        using IChatClient client = new OpenWeightsChatClient(m, contextSize: 512, threads: 2, modelId: "tiny");
        var opts = new ChatOptions { Temperature = 0, MaxOutputTokens = 10, TopK = 0, TopP = 1 };
        ChatMessage[] msgs = [new(ChatRole.System, "be brief"), new(ChatRole.User, "Hello")];
        var r = await client.GetResponseAsync(msgs, opts);
        Assert.Equal(ChatRole.Assistant, r.Messages.Single().Role);
        Assert.NotNull(r.Usage);
        Assert.True(r.Usage!.InputTokenCount > 5);
        var s = new System.Text.StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync(msgs, opts)) s.Append(u.Text);
        Assert.Equal(r.Text, s.ToString());

        var f = new ChatFormatter(Tokenizer.FromGguf(m.Source));
        var (text, _, _) = await Generator.GenerateTextAsync(new InferenceSession(m, 512, 2), f.Tokenizer,
            f.EncodeConversation([ChatTurn.System("be brief"), ChatTurn.User("Hello")]),
            f.ForReply(new GenerationOptions { MaxTokens = 10, Sampling = new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1 } }));
        Assert.Equal(text, r.Text);
        Assert.Equal("tiny", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        // A JSON schema is enforced by constrained decoding: even a random-weight model answers with a valid object.
        var schema = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"answer":{"enum":["yes","no"]},"n":{"type":"integer"}},"required":["answer","n"],"additionalProperties":false}""").RootElement;
        var json = await client.GetResponseAsync(msgs, new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema, "reply"), MaxOutputTokens = 200, Temperature = 0 });
        var doc = System.Text.Json.JsonDocument.Parse(json.Text).RootElement;
        Assert.Contains(doc.GetProperty("answer").GetString(), new[] { "yes", "no" });
        Assert.Equal(System.Text.Json.JsonValueKind.Number, doc.GetProperty("n").ValueKind);
    }

    [Fact]
    public async Task ToolCallsBecomeFunctionCallContent()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var template = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
        using var client = new OpenWeightsChatClient(m, template, 1024, 2)
        {
            JsonConstraintFactory = (tok, _) => ForcedTokens.Text(tok, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"),
        };
        var opts = new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.Json, MaxOutputTokens = 100,
            Tools = [AIFunctionFactory.Create((string city) => "rain", "get_weather", "Current weather")],
        };
        var r = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")], opts);
        Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
        var call = Assert.Single(r.Messages.SelectMany(x => x.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Oslo", call.Arguments!["city"]!.ToString());
        // the call and its result render back through the template
        var turns = OpenWeightsChatClient.ToTurns([new ChatMessage(ChatRole.User, "Weather in Oslo?"), r.Messages[0],
            new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, "rain")])]);
        string rendered = client.Formatter.Render(turns);
        Assert.Contains("<tool_call>", rendered);
        Assert.Contains("rain", rendered);
    }

    [Fact]
    public async Task RequiredToolModeForcesACall()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        var template = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
        using var client = new OpenWeightsChatClient(m, template, 1024, 2);
        AITool[] tools = [Server.ServerToolChoiceTests.Declaration("get_weather", Server.ServerToolChoiceTests.WeatherSchema),
            Server.ServerToolChoiceTests.Declaration("get_time", Server.ServerToolChoiceTests.TimeSchema)];
        ChatMessage[] msgs = [new(ChatRole.User, "Weather in Oslo?")];
        // left alone, the random model answers in text
        var auto = await client.GetResponseAsync(msgs, new ChatOptions { MaxOutputTokens = 60, Temperature = 0, Tools = tools });
        Assert.Empty(auto.Messages.SelectMany(x => x.Contents).OfType<FunctionCallContent>());
        foreach (var (mode, want) in new (ChatToolMode, string?)[] { (ChatToolMode.RequireAny, null), (ChatToolMode.RequireSpecific("get_time"), "get_time"), (ChatToolMode.RequireSpecific("get_weather"), "get_weather") })
        {
            var r = await client.GetResponseAsync(msgs, new ChatOptions { MaxOutputTokens = 200, Temperature = 0, Tools = tools, ToolMode = mode });
            Assert.True(r.FinishReason == ChatFinishReason.ToolCalls, $"{r.FinishReason}: {r.Text}");
            var call = Assert.Single(r.Messages.SelectMany(x => x.Contents).OfType<FunctionCallContent>());
            if (want is not null) Assert.Equal(want, call.Name);
            Server.ServerToolChoiceTests.AssertValidArguments(call.Name, System.Text.Json.JsonSerializer.Serialize(call.Arguments));
        }
        var e = await Assert.ThrowsAsync<OpenWeightsException>(() => client.GetResponseAsync(msgs, new ChatOptions { Tools = tools, ToolMode = ChatToolMode.RequireSpecific("launch") }));
        Assert.Contains("'launch'", e.Message);
    }

    [Fact]
    public async Task EmbeddingGeneratorMatchesModel()
    {
        using var m = DecoderModel.Load(TinyModels.Qwen);
        IEmbeddingGenerator<string, Embedding<float>> gen = new OpenWeightsEmbeddingGenerator(m, 2, "tiny");
        var e = await gen.GenerateAsync(["hello world", "other"]);
        Assert.Equal(2, e.Count);
        Assert.Equal(m.Embed(Tokenizer.FromGguf(m.Source).Encode("hello world", addSpecial: true), 2), e[0].Vector.ToArray());
        Assert.Equal(256, gen.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
    }
}
