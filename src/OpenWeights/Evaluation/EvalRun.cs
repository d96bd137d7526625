using System.Text.Json;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Evaluation;

/// <summary>What an eval file holds: text for perplexity (.txt, or .jsonl lines with "text") or prompt/expected pairs (.jsonl).</summary>
public enum EvalKind { Perplexity, Answers }

/// <summary>One column of an evaluation: the base model ("base") or the base with one adapter.</summary>
public sealed record EvalColumn(string Name, PerplexityResult? Perplexity, AnswerScoresResult? Answers);

public sealed record EvalReport(EvalKind Kind, string Data, IReadOnlyList<EvalColumn> Columns);

/// <summary>How <see cref="EvalRun"/> measures: window and stride for perplexity (0: the model's context capped at 4,096, half of it), answer length, threads.</summary>
public sealed record EvalSettings
{
    public int Window { get; init; }
    public int Stride { get; init; }
    public int MaxTokens { get; init; } = 128;
    public bool Raw { get; init; }
    public int Threads { get; init; } = Environment.ProcessorCount;
}

/// <summary>
/// `openweights eval`: the same data measured on the base model and on the base with each adapter in turn (one model
/// loaded; adapters attached and detached), so a fine-tune's effect is read side by side.
/// </summary>
public static class EvalRun
{
    public static async Task<EvalReport> RunAsync(DecoderModel model, Tokenizer tok, IReadOnlyList<string> adapters, string dataPath, EvalSettings settings,
        CancellationToken ct = default)
    {
        if (!File.Exists(dataPath)) throw new OpenWeightsException($"eval data not found: {dataPath}");
        var (kind, texts, items) = Read(dataPath);
        int window = settings.Window > 0 ? settings.Window : Math.Min(model.Config.ContextLength, 4096);
        int stride = settings.Stride > 0 ? settings.Stride : Math.Max(1, window / 2);
        var columns = new List<EvalColumn>();
        foreach (var adapter in adapters.Prepend(null))
        {
            OpenWeights.Lora.LoraLoader.Detach(model);
            if (adapter is not null) OpenWeights.Lora.LoraLoader.Attach(model, [adapter]);
            string name = adapter ?? "base";
            if (kind == EvalKind.Perplexity)
            {
                double sum = 0; int scored = 0;
                foreach (var text in texts!)
                {
                    var ids = tok.Encode(text, addSpecial: true);
                    if (ids.Length < 2) continue;
                    var r = Perplexity.Measure(model, ids, window, stride, settings.Threads, ct);
                    sum += r.MeanNll * r.ScoredTokens; scored += r.ScoredTokens;
                }
                if (scored == 0) throw new OpenWeightsException($"{dataPath} has no text of 2 tokens or more");
                columns.Add(new EvalColumn(name, new PerplexityResult(sum / scored, scored, window, stride), null));
            }
            else
            {
                int context = Math.Min(model.Config.ContextLength, 4096);
                columns.Add(new EvalColumn(name, null, await AnswerScores.MeasureAsync(model, tok, items!, settings.Raw, settings.MaxTokens, context, settings.Threads, ct)));
            }
        }
        OpenWeights.Lora.LoraLoader.Detach(model);
        return new EvalReport(kind, dataPath, columns);
    }

    /// <summary>A .jsonl file whose first object has "prompt" and "expected" is answers; one with "text", text; anything else (.txt) is one text.</summary>
    private static (EvalKind, IReadOnlyList<string>?, IReadOnlyList<EvalItem>?) Read(string path)
    {
        if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return (EvalKind.Perplexity, [File.ReadAllText(path)], null);
        string? first = File.ReadLines(path).FirstOrDefault(l => l.Trim().Length > 0) ?? throw new OpenWeightsException($"{path} is empty");
        bool answers;
        try { using var d = JsonDocument.Parse(first); answers = d.RootElement.ValueKind == JsonValueKind.Object && d.RootElement.TryGetProperty("expected", out _); }
        catch (JsonException e) { throw new OpenWeightsException($"{path}:1: not JSON ({e.Message})"); }
        if (answers) return (EvalKind.Answers, null, AnswerScores.ReadItems(path));
        var texts = new List<string>();
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (line.Trim().Length == 0) continue;
            try
            {
                using var d = JsonDocument.Parse(line);
                if (d.RootElement.ValueKind == JsonValueKind.Object && d.RootElement.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String) texts.Add(t.GetString()!);
                else throw new OpenWeightsException($"{path}:{n}: expected {{\"text\": \"...\"}} (or {{\"prompt\", \"expected\"}} on every line)");
            }
            catch (JsonException e) { throw new OpenWeightsException($"{path}:{n}: not JSON ({e.Message})"); }
        }
        return (EvalKind.Perplexity, texts, null);
    }
}
