using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using OpenWeights.Evaluation;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>
/// `openweights eval MODEL [--lora A ...] --data FILE [--json]`: perplexity on text, or exact-match / contains scores on
/// prompt/expected JSONL, for the base model and each adapter side by side (<see cref="EvalRun"/>).
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var lora = new Option<string[]>("--lora") { Description = "An adapter to evaluate beside the base, FILE[:SCALE] (repeatable: one column each)", AllowMultipleArgumentsPerToken = false };
        var data = new Option<string>("--data") { Description = "Text (.txt, or .jsonl of {\"text\"}) for perplexity; .jsonl of {\"prompt\",\"expected\"} for exact-match/contains", Required = true };
        var window = new Option<int>("--ctx", "-c") { Description = "Perplexity window in tokens (default: the model's context, at most 4096)" };
        var stride = new Option<int>("--stride") { Description = "Perplexity: tokens between window starts (default: half the window)" };
        var maxTokens = new Option<int>("-n", "--max-tokens") { Description = "Most tokens per answer (prompt/expected data)", DefaultValueFactory = _ => 128 };
        var raw = new Option<bool>("--raw") { Description = "Prompt/expected data: continue the prompt as plain text (no chat template)" };
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("eval", "Measure a model on your data (perplexity, or exact-match/contains), the base and each --lora adapter side by side")
        {
            model, lora, data, window, stride, maxTokens, raw, threads, json,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            var settings = new EvalSettings
            {
                Window = pr.GetValue(window), Stride = pr.GetValue(stride), MaxTokens = pr.GetValue(maxTokens), Raw = pr.GetValue(raw), Threads = pr.GetValue(threads),
            };
            if (settings.Window < 0 || settings.Stride < 0 || settings.MaxTokens < 1) throw new OpenWeightsException("--ctx and --stride must be >= 0, --max-tokens >= 1");
            using var m = DecoderModel.LoadOwned(CommonOptions.OpenSource(path));
            var tok = Tokenizer.FromGguf(m.Source);
            var report = await EvalRun.RunAsync(m, tok, pr.GetValue(lora) ?? [], pr.GetValue(data)!, settings, ct);
            var output = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json)) output.WriteLine(ToJson(report).ToJsonString(CliJson.Options));
            else Print(report, output);
            return 0;
        });
        return cmd;
    }

    public static JsonObject ToJson(EvalReport r) => new()
    {
        ["data"] = r.Data,
        ["kind"] = r.Kind == EvalKind.Perplexity ? "perplexity" : "answers",
        ["columns"] = new JsonArray([.. r.Columns.Select(c => (JsonNode)(c.Perplexity is { } p
            ? new JsonObject { ["name"] = c.Name, ["perplexity"] = p.Perplexity, ["mean_nll"] = p.MeanNll, ["tokens"] = p.ScoredTokens, ["window"] = p.Window, ["stride"] = p.Stride }
            : new JsonObject { ["name"] = c.Name, ["exact_match"] = c.Answers!.ExactMatch, ["contains"] = c.Answers.Contains, ["items"] = c.Answers.Items }))]),
    };

    /// <summary>A table: one row per measure, one column per model (base, then each adapter).</summary>
    public static void Print(EvalReport r, TextWriter output)
    {
        var inv = CultureInfo.InvariantCulture;
        var rows = new List<string[]>();
        rows.Add(["", .. r.Columns.Select(c => c.Name)]);
        if (r.Kind == EvalKind.Perplexity)
        {
            rows.Add(["perplexity", .. r.Columns.Select(c => c.Perplexity!.Perplexity.ToString("F4", inv))]);
            rows.Add(["mean NLL (nats)", .. r.Columns.Select(c => c.Perplexity!.MeanNll.ToString("F5", inv))]);
            rows.Add(["tokens scored", .. r.Columns.Select(c => c.Perplexity!.ScoredTokens.ToString(inv))]);
        }
        else
        {
            rows.Add(["exact match", .. r.Columns.Select(c => c.Answers!.ExactMatch.ToString("F3", inv))]);
            rows.Add(["contains", .. r.Columns.Select(c => c.Answers!.Contains.ToString("F3", inv))]);
            rows.Add(["items", .. r.Columns.Select(c => c.Answers!.Items.ToString(inv))]);
        }
        int cols = rows[0].Length;
        var width = Enumerable.Range(0, cols).Select(i => rows.Max(row => row[i].Length)).ToArray();
        foreach (var row in rows) output.WriteLine(string.Join("  ", row.Select((cell, i) => i == 0 ? cell.PadRight(width[i]) : cell.PadLeft(width[i]))).TrimEnd());
        if (r.Columns.FirstOrDefault()?.Perplexity is { } p) output.WriteLine($"(sliding windows of {p.Window} tokens, stride {p.Stride})");
    }
}
