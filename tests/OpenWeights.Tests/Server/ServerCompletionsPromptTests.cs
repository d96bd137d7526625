using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>
/// /v1/completions takes its prompt as OpenAI does: a string, a list of strings, a list of token ids or a list of token-id
/// lists; with several prompts and n choices each, choice k continues prompt k / n. <c>echo</c> puts the prompt before each
/// choice's text (whole and streamed). Greedy sampling makes the same prompt give the same text, whatever its form.
/// </summary>
public class ServerCompletionsPromptTests
{
    private static OwFactory Server() => new(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 4, ContextSize = 512, Threads = 2 });

    private static async Task<JsonNode> Complete(HttpClient http, string fields, int maxTokens = 5)
    {
        var resp = await http.PostAsync("/v1/completions", new StringContent($$"""{"model":"m","temperature":0,"max_tokens":{{maxTokens}},{{fields}}}""", Encoding.UTF8, "application/json"));
        string body = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.OK, body);
        return JsonNode.Parse(body)!;
    }

    private static string Text(JsonNode r, int k) => r["choices"]![k]!["text"]!.GetValue<string>();

    private static string Ids(int[] ids) => "[" + string.Join(",", ids) + "]";

    [Fact]
    public async Task Token_ids_give_what_their_text_gives_and_several_prompts_number_their_choices()
    {
        using var f = Server();
        var http = f.CreateClient();
        var tok = f.ModelHost.Tokenizer;
        int[] a = tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false), b = tok.Encode("The weather", addSpecial: true, parseSpecial: false);

        var fromText = await Complete(http, "\"prompt\":\"Once upon a time\"");
        var fromIds = await Complete(http, $"\"prompt\":{Ids(a)}");
        Assert.Equal(Text(fromText, 0), Text(fromIds, 0));
        Assert.Equal(a.Length, fromIds["usage"]!["prompt_tokens"]!.GetValue<int>());

        var other = await Complete(http, "\"prompt\":\"The weather\"");
        // two prompts (one as text, one as ids), two choices each: 0,1 continue the first, 2,3 the second
        var both = await Complete(http, $"\"prompt\":[{Ids(a)},{Ids(b)}],\"n\":2");
        var choices = both["choices"]!.AsArray();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c!["index"]!.GetValue<int>()));
        Assert.Equal([Text(fromText, 0), Text(fromText, 0), Text(other, 0), Text(other, 0)], choices.Select(c => c!["text"]!.GetValue<string>()));
        Assert.Equal(a.Length + b.Length, both["usage"]!["prompt_tokens"]!.GetValue<int>()); // each prompt once
        var mixed = await Complete(http, "\"prompt\":[\"Once upon a time\",\"The weather\"]");
        Assert.Equal([Text(fromText, 0), Text(other, 0)], mixed["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()));
    }

    /// <summary>
    /// echo with logprobs scores the prompt itself: its first token has none, each other token its logprob given those before;
    /// at the prompt's last position the most likely token is what greedy generation from the prompt without it picks, with
    /// the logprob generation reports (the prompt is long enough to be scored in more than one chunk).
    /// </summary>
    [Fact]
    public async Task Echo_with_logprobs_scores_the_prompt_as_generation_would()
    {
        using var f = Server();
        var http = f.CreateClient();
        var ids = f.ModelHost.Tokenizer.Encode(string.Join(" ", Enumerable.Range(0, 90).Select(i => $"word{i % 7}")), addSpecial: false, parseSpecial: false);
        Assert.True(ids.Length > 70, $"{ids.Length} tokens: the prompt should need two chunks");
        var echoed = (await Complete(http, $"\"prompt\":{Ids(ids)},\"echo\":true,\"logprobs\":1", maxTokens: 1))["choices"]![0]!["logprobs"]!;
        var tokens = echoed["tokens"]!.AsArray();
        var lps = echoed["token_logprobs"]!.AsArray();
        Assert.Equal(ids.Length + 1, tokens.Count); // the prompt's tokens, then the one generated
        Assert.Null(lps[0]);
        Assert.Null(echoed["top_logprobs"]![0]);
        Assert.All(lps.Skip(1), lp => Assert.InRange(lp!.GetValue<float>(), -1000f, 0f));
        var offsets = echoed["text_offset"]!.AsArray().Select(o => o!.GetValue<int>()).ToList();
        Assert.Equal(offsets.Order(), offsets);

        var shorter = (await Complete(http, $"\"prompt\":{Ids(ids[..^1])},\"logprobs\":1", maxTokens: 1))["choices"]![0]!["logprobs"]!;
        string generated = shorter["tokens"]![0]!.GetValue<string>();
        float generatedLp = shorter["token_logprobs"]![0]!.GetValue<float>();
        var best = Assert.Single(echoed["top_logprobs"]![ids.Length - 1]!.AsObject());
        Assert.Equal(generated, best.Key);
        Assert.Equal(generatedLp, best.Value!.GetValue<float>(), 0.02f);
    }

    [Fact]
    public async Task Echo_puts_the_prompt_before_the_text_whole_and_streamed()
    {
        using var f = Server();
        var http = f.CreateClient();
        var plain = Text(await Complete(http, "\"prompt\":\"Once upon a time\""), 0);
        Assert.Equal("Once upon a time" + plain, Text(await Complete(http, "\"prompt\":\"Once upon a time\",\"echo\":true"), 0));
        var ids = f.ModelHost.Tokenizer.Encode("Once upon a time", addSpecial: false, parseSpecial: false);
        Assert.Equal(f.ModelHost.Tokenizer.Decode(ids) + Text(await Complete(http, $"\"prompt\":{Ids(ids)}"), 0),
            Text(await Complete(http, $"\"prompt\":{Ids(ids)},\"echo\":true"), 0));

        var resp = await http.PostAsync("/v1/completions", new StringContent(
            """{"model":"m","temperature":0,"max_tokens":5,"prompt":"Once upon a time","echo":true,"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"));
        var events = (await resp.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal("Once upon a time", chunks[0]["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("Once upon a time" + plain, string.Concat(chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => c!["text"]!.GetValue<string>())));
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.InRange(chunks[^1]["usage"]!["completion_tokens"]!.GetValue<int>(), 1, 5);
    }
}
