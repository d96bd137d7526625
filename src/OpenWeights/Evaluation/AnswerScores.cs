using System.Text.Json;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Evaluation;

/// <summary>One prompt and the answer expected for it (a line {"prompt": ..., "expected": ...} of an eval file).</summary>
public sealed record EvalItem(string Prompt, string Expected);

/// <summary>Scores on prompt/expected items: exact match (the reply equals the expected text, both trimmed) and contains
/// (the reply contains it, ordinal), each the fraction of items; and every reply, for a report.</summary>
public sealed record AnswerScoresResult(double ExactMatch, double Contains, int Items, IReadOnlyList<string> Replies);

/// <summary>
/// Greedy answers to a list of prompts (temperature 0: no seed involved) through the model's chat template, one user
/// message each (or the prompt continued as plain text with <c>raw</c>, or when the model has no template), at most
/// <c>maxTokens</c> tokens each, then scored against the expected answers.
/// </summary>
public static class AnswerScores
{
    public static async Task<AnswerScoresResult> MeasureAsync(DecoderModel model, Tokenizer tok, IReadOnlyList<EvalItem> items, bool raw, int maxTokens,
        int context, int threads, CancellationToken ct = default)
    {
        var formatter = raw || tok.ChatTemplate is null ? null : new ChatFormatter(tok);
        var session = new InferenceSession(model, context, threads, cacheTypes: OpenWeights.Models.Common.KvCacheTypes.F32);
        var replies = new List<string>();
        int exact = 0, contains = 0;
        foreach (var item in items)
        {
            var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy };
            int[] ids;
            if (formatter is not null)
            {
                ids = formatter.Encode(formatter.Render([ChatTurn.User(item.Prompt)]));
                options = formatter.ForReply(options);
            }
            else
            {
                ids = tok.Encode(item.Prompt, addSpecial: true);
                if (tok.Bos >= 0 && !tok.EndOfGeneration.Contains(tok.Bos)) options = options with { StopTokens = new HashSet<int> { tok.Bos } };
            }
            if (ids.Length >= session.ContextSize) throw new OpenWeightsException($"a prompt has {ids.Length} tokens but the context holds {session.ContextSize}");
            session.Reset();
            var (text, _, _) = await Generator.GenerateTextAsync(session, tok, ids, options, ct);
            replies.Add(text);
            if (text.Trim() == item.Expected.Trim()) exact++;
            if (text.Contains(item.Expected, StringComparison.Ordinal)) contains++;
        }
        return new AnswerScoresResult((double)exact / items.Count, (double)contains / items.Count, items.Count, replies);
    }

    /// <summary>Reads a JSONL file of {"prompt","expected"} objects (blank lines skipped); a line without both strings is an error naming it.</summary>
    public static IReadOnlyList<EvalItem> ReadItems(string path)
    {
        var items = new List<EvalItem>();
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (line.Trim().Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                if (r.ValueKind == JsonValueKind.Object && r.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String
                    && r.TryGetProperty("expected", out var e) && e.ValueKind == JsonValueKind.String)
                    items.Add(new EvalItem(p.GetString()!, e.GetString()!));
                else throw new OpenWeightsException($"{path}:{n}: expected {{\"prompt\": \"...\", \"expected\": \"...\"}}");
            }
            catch (JsonException ex) { throw new OpenWeightsException($"{path}:{n}: not JSON ({ex.Message})"); }
        }
        return items.Count > 0 ? items : throw new OpenWeightsException($"{path} has no items");
    }
}
