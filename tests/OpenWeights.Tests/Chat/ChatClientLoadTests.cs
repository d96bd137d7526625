using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using OpenWeights.Extensions.AI;
using OpenWeights.Hub;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>The library surface: Load resolves what the CLI resolves, template files, errors without CLI flags, the DI helper.</summary>
public class ChatClientLoadTests
{
    private static readonly ChatOptions Short = new() { Temperature = 0, MaxOutputTokens = 3 };

    /// <summary>A local store (huggingface_hub layout) holding the tiny Qwen model as org/tiny-GGUF.</summary>
    private static HubSettings StoreWithTinyModel(TempDir dir)
    {
        var store = new HubStore(dir.File("hub"));
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        Directory.CreateDirectory(store.BlobsDir("org/tiny-GGUF"));
        File.Copy(TinyModels.Qwen, store.BlobPath("org/tiny-GGUF", "abc123"));
        store.LinkSnapshot("org/tiny-GGUF", commit, "tiny-Q8_0.gguf", "abc123");
        store.WriteRef("org/tiny-GGUF", "main", commit);
        return new HubSettings { CacheDir = store.CacheDir };
    }

    [Fact]
    public async Task LoadResolvesStoreSpecsLikeTheCli()
    {
        using var dir = new TempDir();
        var hub = StoreWithTinyModel(dir);
        foreach (var spec in new[] { "org/tiny-GGUF", "org/tiny-GGUF:Q8_0" })
        {
            using var client = OpenWeightsChatClient.Load(spec, new OpenWeightsChatClientOptions { Hub = hub, ContextSize = 256, Threads = 1 });
            Assert.Equal("tiny-Q8_0", client.GetService<ChatClientMetadata>()!.DefaultModelId);
            var r = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], Short);
            Assert.NotNull(r.Usage);
        }
        var e = Assert.Throws<OpenWeightsException>(() => OpenWeightsChatClient.Load("org/absent", new OpenWeightsChatClientOptions { Hub = hub }));
        Assert.Contains("not in the local store", e.Message);
        e = Assert.Throws<OpenWeightsException>(() => OpenWeightsChatClient.Load("qwen2.5-0.5b-instruct", new OpenWeightsChatClientOptions { Hub = hub }));
        Assert.Contains("not in the local store", e.Message); // a catalog id, looked up in the store
        e = Assert.Throws<OpenWeightsException>(() => OpenWeightsChatClient.Load(dir.File("absent.gguf")));
        Assert.Equal("model file not found: " + dir.File("absent.gguf"), e.Message);
    }

    [Fact]
    public void ChatTemplateFileOverloadAndAPathPassedAsTemplateText()
    {
        using var dir = new TempDir();
        string file = dir.File("chatml.jinja");
        File.WriteAllText(file, "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
        using (var client = OpenWeightsChatClient.Load(TinyModels.Qwen, contextSize: 256, threads: 1, chatTemplateFile: file))
            Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", client.Formatter.Render([ChatTurn.User("hi")]));
        var e = Assert.Throws<OpenWeightsException>(() => OpenWeightsChatClient.Load(TinyModels.Qwen, chatTemplate: file));
        Assert.Contains("is a file path, not template text", e.Message);
        Assert.Contains(file, e.Message);
        // the same check guards every ChatFormatter (server, CLI): a path would otherwise render as the prompt itself
        using var m = DecoderModel.Load(TinyModels.Qwen);
        Assert.Throws<OpenWeightsException>(() => new ChatFormatter(Tokenizer.FromGguf(m.Source), file));
        Assert.Throws<OpenWeightsException>(() => OpenWeightsChatClient.Load(TinyModels.Qwen, new OpenWeightsChatClientOptions { ChatTemplate = "{{ x }}", ChatTemplateFile = file }));
        e = Assert.Throws<OpenWeightsException>(() => ChatTemplateSource.FromFile(dir.File("absent.jinja")));
        Assert.Equal("chat template file not found: " + dir.File("absent.jinja"), e.Message);
        Assert.Equal("just text", ChatTemplateSource.Check("just text")); // not a file: a (trivial) template
    }

    [Fact]
    public void LibraryErrorsDoNotMentionCliFlags()
    {
        var p = TestData.Require("models/stories260K.gguf"); // a model without a chat template
        using var m = DecoderModel.Load(p);
        var e = Assert.Throws<OpenWeightsException>(() => new OpenWeightsChatClient(m));
        Assert.Contains("no chat template", e.Message);
        Assert.DoesNotMatch(@"(^|\s)--?[a-z]", e.Message);
        using var dir = new TempDir();
        foreach (var bad in new[] { dir.File("absent.gguf"), dir.Path, "nobody/nothing", "no such model" })
        {
            var x = Assert.ThrowsAny<Exception>(() => OpenWeightsChatClient.Load(bad, new OpenWeightsChatClientOptions { Hub = new HubSettings { CacheDir = dir.File("hub") } }));
            Assert.IsType<OpenWeightsException>(x);
            Assert.False(Regex.IsMatch(x.Message, @"(^|\s)--[a-z]"), x.Message);
        }
    }

    [Fact]
    public async Task AddOpenWeightsChatClientComposesWithTheMicrosoftExtensionsAiBuilder()
    {
        var services = new ServiceCollection();
        bool loaded = false;
        services.AddOpenWeightsChatClient(TinyModels.Qwen, o => { o.ContextSize = 256; o.Threads = 1; o.ModelId = "tiny"; loaded = true; })
            .UseFunctionInvocation();
        Assert.True(loaded); // configure runs at registration; the model loads on first use
        OpenWeightsChatClient inner;
        await using (var provider = services.BuildServiceProvider())
        {
            var client = provider.GetRequiredService<IChatClient>();
            Assert.NotNull(client.GetService<FunctionInvokingChatClient>());
            inner = client.GetService<OpenWeightsChatClient>()!;
            Assert.Same(inner, provider.GetRequiredService<IChatClient>().GetService<OpenWeightsChatClient>()); // one model per container
            Assert.Equal("tiny", client.GetService<ChatClientMetadata>()!.DefaultModelId);
            var text = new System.Text.StringBuilder();
            await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "hi")], Short)) text.Append(u.Text);
            var whole = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], Short);
            Assert.Equal(whole.Text, text.ToString());
        }
        // disposed with the container: the semaphore is gone
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await inner.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], Short));
    }

    [Fact]
    public void AnUnknownNameSuggestsTheClosestCatalogId()
    {
        using var dir = new TempDir();
        var settings = new HubSettings { CacheDir = dir.File("hub") };
        var e = Assert.Throws<OpenWeightsException>(() => ModelLocator.Resolve("llama3.2", settings));
        Assert.Contains("did you mean llama-3.2-1b-instruct?", e.Message);
        var far = Assert.Throws<OpenWeightsException>(() => ModelLocator.Resolve("zzzz-qqqq-nothing", settings));
        Assert.DoesNotContain("did you mean", far.Message);
    }
}
