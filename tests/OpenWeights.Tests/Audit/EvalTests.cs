using System.Text.Json.Nodes;
using OpenWeights.Evaluation;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Tests.Oracle;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Audit;

/// <summary>`openweights eval`: perplexity against llama.cpp's logits; exact-match and contains against our own greedy answers.</summary>
public class EvalTests
{
    // held out: written for this test, not from the TinyStories training set
    private const string HeldOut =
        "Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Sue. " +
        "One day, they found a big red ball under a tree. They played with the ball all day and were very happy. " +
        "When the sun went down, Max and Sue walked home. Mom gave them warm milk and a hug.";

    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = global::OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>
    /// The windows <see cref="Perplexity"/> documents, computed here from llama.cpp's logits (LLamaSharp, F32 KV cache, each
    /// window a fresh context): window 32, stride 16 over the held-out text, so several windows overlap.
    /// </summary>
    [Fact]
    public void Eval_perplexity_of_stories260K_matches_llama_cpp_logits()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var dir = new TempDir();
        File.WriteAllText(dir.File("held.txt"), HeldOut);
        const int Window = 32, Stride = 16;
        int[] ids;
        using (var m = DecoderModel.LoadOwned(ModelSources.Open(path))) ids = Tokenizer.FromGguf(m.Source).Encode(HeldOut, addSpecial: true);
        Assert.Equal(LlamaCpp.Tokenize(path, HeldOut, addBos: true, special: false), ids);
        Assert.True(ids.Length > 3 * Window, $"{ids.Length} tokens");

        double sum = 0; int scored = 0, end = 0;
        for (int start = 0; ; start += Stride)
        {
            int n = Math.Min(Window, ids.Length - start);
            var logits = LlamaCpp.Logits(path, ids[start..(start + n)], threads: 1, contextSize: 64);
            for (int t = Math.Max(end, start + 1); t < start + n; t++)
            {
                var x = logits[t - start - 1];
                double max = x.Max(), lse = max + Math.Log(x.Sum(v => Math.Exp(v - max)));
                sum += lse - x[ids[t]]; scored++;
            }
            end = start + n;
            if (end >= ids.Length) break;
        }
        double expected = Math.Exp(sum / scored);

        var (code, stdout, stderr) = Cli("eval", path, "--data", dir.File("held.txt"), "--ctx", $"{Window}", "--stride", $"{Stride}", "--json", "-t", "1");
        Assert.True(code == 0, stderr);
        var col = JsonNode.Parse(stdout)!["columns"]![0]!;
        Assert.Equal("base", col["name"]!.GetValue<string>());
        Assert.Equal(ids.Length - 1, col["tokens"]!.GetValue<int>()); // every token but the first, once
        Assert.Equal(scored, col["tokens"]!.GetValue<int>());
        double ours = col["perplexity"]!.GetValue<double>();
        Assert.True(Math.Abs(ours - expected) <= 1e-3 * expected, $"ours {ours}, llama.cpp {expected}");
        Assert.InRange(ours, 1.5, 50); // a trained model on a story: a real perplexity, not a uniform 512
    }

    [Fact]
    public async Task Eval_exact_match_and_contains_score_our_own_greedy_answers()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var dir = new TempDir();
        string[] prompts = ["Once upon a time", "Lily and Tom went to the", "The cat saw a big"];
        const int MaxTokens = 12;
        var answers = new List<string>();
        using (var m = DecoderModel.LoadOwned(ModelSources.Open(path)))
        {
            var tok = Tokenizer.FromGguf(m.Source);
            foreach (var p in prompts)
            {
                var session = new InferenceSession(m, 128, 1, cacheTypes: OpenWeights.Models.Common.KvCacheTypes.F32);
                var o = new GenerationOptions { MaxTokens = MaxTokens, Sampling = SamplingOptions.Greedy, StopTokens = new HashSet<int> { tok.Bos } };
                answers.Add((await Generator.GenerateTextAsync(session, tok, tok.Encode(p, addSpecial: true), o)).Text);
            }
        }
        static string Item(string p, string e) => new JsonObject { ["prompt"] = p, ["expected"] = e }.ToJsonString();
        File.WriteAllLines(dir.File("right.jsonl"), prompts.Select((p, i) => Item(p, answers[i])));
        var right = JsonNode.Parse(Cli("eval", path, "--data", dir.File("right.jsonl"), "--raw", "-n", $"{MaxTokens}", "--json", "-t", "1").Out)!["columns"]![0]!;
        Assert.Equal((1.0, 1.0, 3), (right["exact_match"]!.GetValue<double>(), right["contains"]!.GetValue<double>(), right["items"]!.GetValue<int>()));

        // one answer wrong, one only a part of the reply (contains, not exact)
        File.WriteAllLines(dir.File("mixed.jsonl"), [Item(prompts[0], answers[0]), Item(prompts[1], "a purple elephant"), Item(prompts[2], answers[2].Trim()[..5])]);
        var mixed = JsonNode.Parse(Cli("eval", path, "--data", dir.File("mixed.jsonl"), "--raw", "-n", $"{MaxTokens}", "--json", "-t", "1").Out)!["columns"]![0]!;
        Assert.Equal(1.0 / 3, mixed["exact_match"]!.GetValue<double>(), 9);
        Assert.Equal(2.0 / 3, mixed["contains"]!.GetValue<double>(), 9);
    }

    [Fact]
    public void Eval_puts_the_base_and_an_adapter_side_by_side()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var dir = new TempDir();
        File.WriteAllText(dir.File("train.txt"), string.Concat(Enumerable.Repeat(HeldOut + "\n", 8)));
        File.WriteAllText(dir.File("held.txt"), HeldOut);
        var (code, stdout, stderr) = Cli("tune", path, "--data", dir.File("train.txt"), "-o", dir.File("run"), "--max-steps", "4", "--ctx", "32",
            "--lr", "1e-2", "-t", "1", "--eval-data", dir.File("held.txt"));
        Assert.True(code == 0, stderr);
        Assert.Contains("eval on", stdout);
        var report = JsonNode.Parse(Cli("eval", path, "--lora", Path.Combine(dir.File("run"), "adapter.gguf"), "--data", dir.File("held.txt"), "--json", "-t", "1").Out)!;
        var cols = report["columns"]!.AsArray();
        Assert.Equal(2, cols.Count);
        double baseP = cols[0]!["perplexity"]!.GetValue<double>(), tuned = cols[1]!["perplexity"]!.GetValue<double>();
        Assert.True(tuned < baseP, $"trained on the text itself: base {baseP}, adapter {tuned}");
    }
}
