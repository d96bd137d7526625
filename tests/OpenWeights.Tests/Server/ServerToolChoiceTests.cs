using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatTool = OpenAI.Chat.ChatTool;
using OaChatMessage = OpenAI.Chat.ChatMessage;

namespace OpenWeights.Tests.Server;

/// <summary>
/// tool_choice "required" and a named function force a call: a random-weight model, which answers in text when left
/// alone, returns a tool call in its template's format, parsed into tool_calls, with arguments valid for the schema.
/// </summary>
public class ServerToolChoiceTests
{
    internal const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer"},"unit":{"enum":["celsius","fahrenheit"]}},
         "required":["city","days","unit"],"additionalProperties":false}
        """;
    internal const string TimeSchema = """{"type":"object","properties":{"zone":{"type":"string","maxLength":8}},"required":["zone"]}""";

    private static ChatCompletionOptions Options(ChatToolChoice? choice)
    {
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 200, Temperature = 0, ToolChoice = choice };
        o.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString(WeatherSchema)));
        o.Tools.Add(ChatTool.CreateFunctionTool("get_time", "Current time", BinaryData.FromString(TimeSchema)));
        return o;
    }

    internal static AIFunctionDeclaration Declaration(string name, string schema) =>
        AIFunctionFactory.CreateDeclaration(name, "a tool", JsonDocument.Parse(schema).RootElement);

    internal static void AssertValidArguments(string name, string arguments)
    {
        string schema = name switch { "get_weather" => WeatherSchema, "get_time" => TimeSchema, _ => throw new InvalidOperationException(name) };
        using var doc = JsonDocument.Parse(arguments);
        Assert.True(JsonSchema.FromText(schema).Evaluate(doc.RootElement).IsValid, $"{name} arguments {arguments} do not validate");
    }

    [Theory]
    [InlineData("qwen", "Qwen-Qwen2.5-7B-Instruct.jinja")]
    [InlineData("llama", "meta-llama-Llama-3.1-8B-Instruct.jinja")]
    public async Task RequiredAndNamedToolChoiceForceACall(string model, string template)
    {
        var tpl = File.ReadAllText(TestData.Require("chat-templates/llama.cpp/" + template));
        using var f = new OwFactory(new ServerOptions { ModelPath = model == "qwen" ? TinyModels.Qwen : TinyModels.Llama, ChatTemplate = tpl, Parallel = 2, ContextSize = 2048, Threads = 2 });
        var client = new ChatClient(f.ModelHost.ModelId, Creds.Key(), f.SdkOptions());
        OaChatMessage[] msgs = [new UserChatMessage("What is the weather in Oslo for the next 3 days?")];

        // left alone (auto), the random model answers in text
        var auto = (await client.CompleteChatAsync(msgs, Options(null))).Value;
        Assert.Empty(auto.ToolCalls);
        Assert.NotEqual(ChatFinishReason.ToolCalls, auto.FinishReason);

        // required: some tool is called
        var req = (await client.CompleteChatAsync(msgs, Options(ChatToolChoice.CreateRequiredChoice()))).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, req.FinishReason);
        var any = Assert.Single(req.ToolCalls);
        Assert.Contains(any.FunctionName, new[] { "get_weather", "get_time" });
        AssertValidArguments(any.FunctionName, any.FunctionArguments.ToString());
        Assert.False(string.IsNullOrEmpty(any.Id));

        // named: that function is called, also when the model would pick another
        foreach (var name in new[] { "get_weather", "get_time" })
        {
            var r = (await client.CompleteChatAsync(msgs, Options(ChatToolChoice.CreateFunctionChoice(name)))).Value;
            Assert.Equal(ChatFinishReason.ToolCalls, r.FinishReason);
            var call = Assert.Single(r.ToolCalls);
            Assert.Equal(name, call.FunctionName);
            AssertValidArguments(name, call.FunctionArguments.ToString());
        }

        // streaming: the same call arrives as one tool_calls delta
        var names = new List<string>();
        var args = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var u in client.CompleteChatStreamingAsync(msgs, Options(ChatToolChoice.CreateFunctionChoice("get_weather"))))
        {
            foreach (var t in u.ToolCallUpdates) { if (t.FunctionName is { } n) names.Add(n); args.Append(t.FunctionArgumentsUpdate?.ToString()); }
            finish ??= u.FinishReason;
        }
        Assert.Equal(["get_weather"], names);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        AssertValidArguments("get_weather", args.ToString());

        // Microsoft.Extensions.AI through the OpenAI client: ToolMode RequireSpecific becomes tool_choice
        IChatClient ai = client.AsIChatClient();
        var ar = await ai.GetResponseAsync([new AiChatMessage(ChatRole.User, "Time in Oslo?")], new ChatOptions
        {
            MaxOutputTokens = 200, Temperature = 0, ToolMode = ChatToolMode.RequireSpecific("get_time"),
            Tools = [Declaration("get_time", TimeSchema), Declaration("get_weather", WeatherSchema)],
        });
        var fc = Assert.Single(ar.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_time", fc.Name);
        AssertValidArguments("get_time", JsonSerializer.Serialize(fc.Arguments));
    }

    [Theory]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}""")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}""")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function"}}""")]
    [InlineData("""{"model":"M","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"always"}""")]
    public async Task BadToolChoiceIs400(string body)
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 2 });
        var resp = await f.CreateClient().PostAsync("/v1/chat/completions", new StringContent(body.Replace("\"M\"", $"\"{f.ModelHost.ModelId}\""), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        var err = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("invalid_value", err["code"]!.GetValue<string>());
        Assert.Equal("tool_choice", err["param"]!.GetValue<string>());
    }
}
