using System.Text.Json;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Models;

/// <summary>Greedy continuations of the real stories260K model against the independently computed expectations.</summary>
public class Stories260KGenerationTests
{
    private static (int[] Prompt, int[] Output, string Text) Case(string name)
    {
        var json = JsonDocument.Parse(File.ReadAllText(TestData.Require("models/stories260K.expected.json")));
        var c = json.RootElement.GetProperty("cases").GetProperty(name);
        return (c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("text").GetString()!);
    }

    [Theory]
    [InlineData("prompt_once_upon_a_time")]
    [InlineData("bos_only")]
    public void GreedyTokensEqualExpected(string name)
    {
        var (prompt, expected, _) = Case(name);
        // llama2.c stops at BOS (a new story); compare up to there.
        int end = Array.IndexOf(expected, 1, 1);
        if (end < 0) end = expected.Length;
        using var model = DecoderModel.Load(TestData.Require("models/stories260K.gguf"));
        var session = new InferenceSession(model, 512, threads: 2);
        var logits = session.EvaluatePrompt(prompt).ToArray();
        var ids = new List<int>(prompt);
        while (ids.Count < end)
        {
            int next = Sampler.ArgMax(logits);
            ids.Add(next);
            if (ids.Count < end) logits = session.Evaluate([next]).ToArray();
        }
        Assert.Equal(expected[..end], ids);
    }

    [Fact]
    public async Task GeneratorStreamsTheExpectedText()
    {
        var (prompt, expected, _) = Case("prompt_once_upon_a_time");
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var tok = Tokenizer.FromGguf(model.Source);
        Assert.Equal(prompt, tok.Encode("Once upon a time"));
        var session = new InferenceSession(model, 512, threads: 2);
        var options = new GenerationOptions { MaxTokens = expected.Length - prompt.Length, Sampling = SamplingOptions.Greedy };
        var (text, finish, stats) = await Generator.GenerateTextAsync(session, tok, prompt, options);
        Assert.Equal(tok.Decode(expected.AsSpan(prompt.Length)), text);
        Assert.Equal(FinishReason.Length, finish);
        Assert.Equal(expected.Length - prompt.Length, stats.GeneratedTokens);
        Assert.StartsWith(", there was a little girl named Lily.", text);
    }

    [Fact]
    public async Task StopStringEndsGenerationAndNeverLeaks()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var tok = Tokenizer.FromGguf(model.Source);
        var session = new InferenceSession(model, 512, threads: 2);
        var options = new GenerationOptions { MaxTokens = 60, Sampling = SamplingOptions.Greedy, StopStrings = ["Lily"] };
        var (text, finish, _) = await Generator.GenerateTextAsync(session, tok, tok.Encode("Once upon a time"), options);
        Assert.Equal(", there was a little girl named ", text);
        Assert.Equal(FinishReason.Stop, finish);
    }

    [Fact]
    public async Task SameSeedSameOutputDifferentSeedDifferentOutput()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var tok = Tokenizer.FromGguf(model.Source);
        async Task<string> Gen(ulong seed)
        {
            var session = new InferenceSession(model, 512, threads: 2);
            var o = new GenerationOptions { MaxTokens = 40, Sampling = new SamplingOptions { Temperature = 1.0f, Seed = seed, TopK = 0, TopP = 1, MinP = 0 } };
            return (await Generator.GenerateTextAsync(session, tok, tok.Encode("Once upon a time"), o)).Text;
        }
        Assert.Equal(await Gen(7), await Gen(7));
        Assert.NotEqual(await Gen(7), await Gen(8));
    }

    [Fact]
    public async Task CancellationStopsGeneration()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var tok = Tokenizer.FromGguf(model.Source);
        var session = new InferenceSession(model, 512, threads: 1);
        using var cts = new CancellationTokenSource();
        int chunks = 0;
        FinishReason? finish = null;
        await foreach (var c in Generator.GenerateAsync(session, tok, tok.Encode("Once upon a time"), new GenerationOptions { MaxTokens = 400, Sampling = SamplingOptions.Greedy }, cts.Token))
        {
            if (++chunks == 3) cts.Cancel();
            finish = c.Finish ?? finish;
        }
        Assert.Equal(FinishReason.Cancelled, finish);
        Assert.True(chunks < 10);
    }
}
