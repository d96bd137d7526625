using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using OpenWeights.Inference.Constraints;
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
    /// <summary>Control tokens whose text is part of the output (others are dropped), e.g. tool-call markers like Mistral's [TOOL_CALLS].</summary>
    public IReadOnlySet<int>? KeepSpecialTokens { get; init; }
    public bool IgnoreEos { get; init; }
    /// <summary>Constrained decoding: masks the logits before sampling, sees every chosen token, ends generation when complete.</summary>
    public ITokenConstraint? Constraint { get; init; }
    /// <summary>Report each generated token's log-probability (<see cref="GenerationChunk.Logprobs"/>).</summary>
    public bool Logprobs { get; init; }
    /// <summary>With <see cref="Logprobs"/>: how many most likely alternatives to report per token (0..20).</summary>
    public int TopLogprobs { get; init; }
}

/// <summary>A piece of streamed output. The last chunk carries <see cref="Finish"/> and the statistics.</summary>
/// <param name="Logprobs">when requested: the tokens generated since the previous chunk, with their log-probabilities</param>
/// <param name="StopString">the last chunk of a reply that a stop string ended: that string (the Anthropic API reports it)</param>
public sealed record GenerationChunk(string Text, int TokenId, FinishReason? Finish = null, GenerationStats? Stats = null,
    IReadOnlyList<TokenLogprob>? Logprobs = null, string? StopString = null);

/// <summary>A token's log-probability under the model's distribution (after the constraint's mask; before logit bias, penalties, temperature and truncation).</summary>
public sealed record TokenLogprob(int TokenId, string Token, byte[] Bytes, float Logprob, IReadOnlyList<TokenLogprob> Top);

public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan PrefillTime, TimeSpan DecodeTime)
{
    public double PrefillTokensPerSecond => PrefillTime.TotalSeconds > 0 ? PromptTokens / PrefillTime.TotalSeconds : 0;
    public double DecodeTokensPerSecond => DecodeTime.TotalSeconds > 0 ? GeneratedTokens / DecodeTime.TotalSeconds : 0;
}

/// <summary>
/// The one generation path: evaluate the prompt, sample, stream text that never splits a UTF-8
/// character, stop on end-of-generation tokens, stop strings (never leaked) or the token limit.
/// The per-token logic is <see cref="TokenStream"/>, shared with the server's batched scheduler.
/// </summary>
public static class Generator
{
    public static async IAsyncEnumerable<GenerationChunk> GenerateAsync(
        InferenceSession session, Tokenizer tokenizer, int[] prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        if (prompt.Length >= session.ContextSize)
            throw new OpenWeightsException($"the prompt has {prompt.Length} tokens but the context holds {session.ContextSize}");
        var stream = new TokenStream(tokenizer, session.Model.Config.VocabSize, prompt, options);
        var logits = new float[session.Model.Config.VocabSize];
        var one = new int[1]; // the token to evaluate next, reused every step
        var sw = Stopwatch.StartNew();

        await Task.Yield();
        session.EvaluatePrompt(prompt, ct).CopyTo(logits);
        var prefill = sw.Elapsed; sw.Restart();
        FinishReason finish;
        while (true)
        {
            if (ct.IsCancellationRequested) { finish = FinishReason.Cancelled; break; }
            var step = stream.Next(logits);
            if (step.Chunk is { } chunk) yield return chunk;
            if (step.Finish is { } f) { finish = f; break; }
            if (session.Remaining < 1) { finish = FinishReason.Length; break; }
            one[0] = step.TokenId;
            session.Evaluate(one, CancellationToken.None).CopyTo(logits); // cancellation is checked at the top of the loop
        }
        yield return stream.Final(finish, new GenerationStats(prompt.Length, stream.Generated, prefill, sw.Elapsed));
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
/// One generation's token-by-token state, independent of how logits are computed (one session or a batched
/// scheduler): constraint, sampling, logprobs, end-of-generation, streaming decode and stop strings.
/// Feed it the logits of the next position; it chooses the token, says what text to emit and whether to stop.
/// </summary>
public sealed class TokenStream
{
    private readonly Tokenizer tokenizer;
    private readonly GenerationOptions options;
    private readonly Sampler sampler;
    private readonly StreamingDecoder decoder;
    private readonly StopStringFilter stopper;
    private readonly List<int> history;
    private readonly float[]? raw;
    private List<TokenLogprob>? pendingLogprobs;
    private int lastId = -1;
    private readonly StringBuilder text = new();

    /// <summary>Every piece of text emitted so far, concatenated (the final chunk's included): the reply as streamed.</summary>
    public string Text => text.ToString();
    /// <summary>The seed sampling draws with (the options' seed, or the one drawn when they gave none).</summary>
    public ulong Seed => sampler.Seed;

    public int Generated { get; private set; }
    /// <summary>Every generated token (end-of-generation tokens excluded).</summary>
    public IReadOnlyList<int> Tokens => history.GetRange(PromptLength, history.Count - PromptLength);
    public int PromptLength { get; }

    public TokenStream(Tokenizer tokenizer, int vocabSize, IReadOnlyList<int> prompt, GenerationOptions options)
    {
        if (options.MaxTokens < 0) throw new OpenWeightsException($"max tokens {options.MaxTokens} must be >= 0");
        if (options.TopLogprobs is < 0 or > 20) throw new OpenWeightsException($"top logprobs {options.TopLogprobs} must be between 0 and 20");
        this.tokenizer = tokenizer;
        this.options = options;
        sampler = new Sampler(options.Sampling, vocabSize);
        decoder = new StreamingDecoder(tokenizer, skipSpecial: true, options.KeepSpecialTokens);
        stopper = new StopStringFilter(options.StopStrings);
        history = new List<int>(prompt);
        PromptLength = prompt.Count;
        if (options.Logprobs) raw = new float[vocabSize];
    }

    public readonly record struct Step(int TokenId, GenerationChunk? Chunk, FinishReason? Finish);

    /// <summary>Chooses the next token from <paramref name="logits"/> (modified in place). When Finish is null, evaluate TokenId and call again.</summary>
    public Step Next(Span<float> logits)
    {
        if (Generated >= options.MaxTokens) return new(-1, null, FinishReason.Length);
        options.Constraint?.MaskLogits(logits);
        if (raw is not null) logits.CopyTo(raw);
        int id = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
        lastId = id;
        bool eog = !options.IgnoreEos && (tokenizer.EndOfGeneration.Contains(id) || options.StopTokens?.Contains(id) == true);
        if (eog) return new(id, null, FinishReason.Stop);
        Generated++;
        history.Add(id);
        options.Constraint?.Accept(id);
        if (raw is not null) (pendingLogprobs ??= []).Add(Logprob(id));
        var (text, hit) = stopper.Push(decoder.Push(id));
        GenerationChunk? chunk = null;
        if (text.Length > 0) { chunk = new GenerationChunk(text, id, Logprobs: pendingLogprobs); pendingLogprobs = null; this.text.Append(text); }
        if (hit || options.Constraint is { IsComplete: true }) return new(id, chunk, FinishReason.Stop);
        if (Generated >= options.MaxTokens) return new(id, chunk, FinishReason.Length);
        return new(id, chunk, null);
    }

    /// <summary>The last chunk: held-back text, finish reason and statistics.</summary>
    public GenerationChunk Final(FinishReason finish, GenerationStats stats)
    {
        string tail = finish == FinishReason.Stop && stopper.Hit ? "" : stopper.Flush(decoder.Flush());
        text.Append(tail);
        var lp = pendingLogprobs; pendingLogprobs = null;
        return new GenerationChunk(tail, lastId, finish, stats, lp, finish == FinishReason.Stop ? stopper.Matched : null);
    }

    private TokenLogprob Logprob(int id)
    {
        var x = raw!;
        float max = float.NegativeInfinity;
        foreach (var v in x) if (v > max) max = v;
        double sum = 0;
        foreach (var v in x) if (!float.IsNegativeInfinity(v)) sum += Math.Exp(v - max);
        float lse = max + (float)Math.Log(sum);
        var top = new List<TokenLogprob>();
        int n = Math.Min(options.TopLogprobs, x.Length);
        if (n > 0)
        {
            // n is small (<= 20): keep a sorted list of the best n
            var best = new List<int>(n + 1);
            for (int i = 0; i < x.Length; i++)
            {
                if (best.Count == n && x[i] <= x[best[^1]]) continue;
                int pos = best.Count;
                while (pos > 0 && x[best[pos - 1]] < x[i]) pos--;
                best.Insert(pos, i);
                if (best.Count > n) best.RemoveAt(n);
            }
            foreach (int t in best) top.Add(Make(t, x[t] - lse, []));
        }
        return Make(id, x[id] - lse, top);
    }

    private TokenLogprob Make(int id, float lp, IReadOnlyList<TokenLogprob> top)
    {
        var bytes = tokenizer.IsControl(id) ? System.Text.Encoding.UTF8.GetBytes(tokenizer.TokenPiece(id)) : tokenizer.TokenBytes(id);
        return new TokenLogprob(id, System.Text.Encoding.UTF8.GetString(bytes), bytes, float.IsNegativeInfinity(lp) ? -9999f : lp, top);
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
    /// <summary>The stop string that was found (null before).</summary>
    public string? Matched { get; private set; }

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
            if (i >= 0 && (first < 0 || i < first)) { first = i; Matched = s; }
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
