using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using OpenWeights.Tokenizers;

namespace OpenWeights.Inference;

public enum FinishReason { Stop, Length, Cancelled }

/// <summary>What to generate and when to stop.</summary>
public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Text that ends generation; it is not part of the output.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Extra token ids that end generation (besides the tokenizer's end-of-generation set).</summary>
    public IReadOnlySet<int>? StopTokens { get; init; }
    public bool IgnoreEos { get; init; }
}

/// <summary>A piece of streamed output. The last chunk carries <see cref="Finish"/> and the statistics.</summary>
public sealed record GenerationChunk(string Text, int TokenId, FinishReason? Finish = null, GenerationStats? Stats = null);

public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan PrefillTime, TimeSpan DecodeTime)
{
    public double PrefillTokensPerSecond => PrefillTime.TotalSeconds > 0 ? PromptTokens / PrefillTime.TotalSeconds : 0;
    public double DecodeTokensPerSecond => DecodeTime.TotalSeconds > 0 ? GeneratedTokens / DecodeTime.TotalSeconds : 0;
}

/// <summary>
/// The one generation path: evaluate the prompt, sample, stream text that never splits a UTF-8
/// character, stop on end-of-generation tokens, stop strings (never leaked) or the token limit.
/// </summary>
public static class Generator
{
    public static async IAsyncEnumerable<GenerationChunk> GenerateAsync(
        InferenceSession session, Tokenizer tokenizer, int[] prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        if (options.MaxTokens < 0) throw new OpenWeightsException($"max tokens {options.MaxTokens} must be >= 0");
        if (prompt.Length >= session.ContextSize)
            throw new OpenWeightsException($"the prompt has {prompt.Length} tokens but the context holds {session.ContextSize}");
        var sampler = new Sampler(options.Sampling, session.Model.Config.VocabSize);
        var decoder = new StreamingDecoder(tokenizer, skipSpecial: true);
        var stopper = new StopStringFilter(options.StopStrings);
        var logits = new float[session.Model.Config.VocabSize];
        var history = new List<int>(prompt.Length + Math.Min(options.MaxTokens, session.ContextSize) + 1);
        history.AddRange(prompt);
        var one = new int[1]; // the token to evaluate next, reused every step
        var sw = Stopwatch.StartNew();

        await Task.Yield();
        session.EvaluatePrompt(prompt, ct).CopyTo(logits);
        var prefill = sw.Elapsed; sw.Restart();
        int generated = 0;
        FinishReason finish = FinishReason.Length;
        int lastId = -1;
        while (generated < options.MaxTokens)
        {
            if (ct.IsCancellationRequested) { finish = FinishReason.Cancelled; break; }
            int id = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            lastId = id;
            bool eog = !options.IgnoreEos && (tokenizer.EndOfGeneration.Contains(id) || options.StopTokens?.Contains(id) == true);
            if (eog) { finish = FinishReason.Stop; break; }
            generated++;
            history.Add(id);
            var (text, hit) = stopper.Push(decoder.Push(id));
            if (text.Length > 0) yield return new GenerationChunk(text, id);
            if (hit) { finish = FinishReason.Stop; break; }
            if (generated >= options.MaxTokens || session.Remaining < 1) { finish = FinishReason.Length; break; }
            one[0] = id;
            session.Evaluate(one, CancellationToken.None).CopyTo(logits); // cancellation is checked at the top of the loop
        }
        string tail = finish == FinishReason.Stop && stopper.Hit ? "" : stopper.Flush(decoder.Flush());
        var stats = new GenerationStats(prompt.Length, generated, prefill, sw.Elapsed);
        yield return new GenerationChunk(tail, lastId, finish, stats);
    }

    /// <summary>Collects a whole generation into one string.</summary>
    public static async Task<(string Text, FinishReason Finish, GenerationStats Stats)> GenerateTextAsync(
        InferenceSession session, Tokenizer tokenizer, int[] prompt, GenerationOptions options, CancellationToken ct = default)
    {
        var sb = new StringBuilder();
        await foreach (var c in GenerateAsync(session, tokenizer, prompt, options, ct))
        {
            sb.Append(c.Text);
            if (c.Finish is { } f) return (sb.ToString(), f, c.Stats!);
        }
        throw new InvalidOperationException("generation ended without a final chunk");
    }
}

/// <summary>
/// Holds back text that might be the start of a stop string, so a stop string is never emitted, even
/// when it arrives split across tokens.
/// </summary>
public sealed class StopStringFilter(IReadOnlyList<string> stops)
{
    private readonly string[] stops = stops.Where(s => s.Length > 0).ToArray();
    private readonly StringBuilder pending = new();
    public bool Hit { get; private set; }

    /// <summary>Adds text; returns what can be emitted now and whether a stop string was found.</summary>
    public (string Text, bool Hit) Push(string text)
    {
        if (Hit) return ("", true);
        if (stops.Length == 0) return (text, false);
        pending.Append(text);
        string p = pending.ToString();
        int first = -1;
        foreach (var s in stops)
        {
            int i = p.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        if (first >= 0) { Hit = true; pending.Clear(); return (p[..first], true); }
        int keep = 0;
        foreach (var s in stops)
            for (int k = Math.Min(s.Length - 1, p.Length); k > keep; k--)
                if (p.AsSpan(p.Length - k).SequenceEqual(s.AsSpan(0, k))) { keep = k; break; }
        pending.Clear().Append(p, p.Length - keep, keep);
        return (p[..^keep], false);
    }

    /// <summary>Releases whatever is held back at the end of generation.</summary>
    public string Flush(string last = "")
    {
        var (t, hit) = Push(last);
        if (hit) return t;
        string rest = pending.ToString();
        pending.Clear();
        return t + rest;
    }
}
