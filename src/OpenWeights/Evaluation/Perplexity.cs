using OpenWeights.Models;

namespace OpenWeights.Evaluation;

/// <summary>A perplexity measurement: mean negative log-likelihood per scored token (nats) and exp of it.</summary>
public sealed record PerplexityResult(double MeanNll, int ScoredTokens, int Window, int Stride)
{
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>
/// Perplexity of a token sequence by sliding windows (the Hugging Face "strided" method): windows of
/// <c>window</c> tokens start every <c>stride</c> tokens (0, stride, 2·stride, … until a window reaches the end); each is
/// evaluated on a fresh cache (F32) with every position's logits kept, and scores only the tokens the windows before it did
/// not: the first window scores its tokens 1..window-1 (token 0 has nothing before it), a later one the tokens from where
/// the previous window ended, each predicted from at least window - stride tokens of context. NLL(t) = -log softmax(logits
/// of position t-1)[token t], in double; the result is the mean over all scored tokens.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Measure(DecoderModel model, IReadOnlyList<int> tokens, int window, int stride, int threads, CancellationToken ct = default)
    {
        if (tokens.Count < 2) throw new OpenWeightsException($"the text has {tokens.Count} token(s); perplexity needs at least 2");
        if (window < 2) throw new OpenWeightsException($"the window of {window} tokens must be at least 2");
        if (stride < 1 || stride > window) throw new OpenWeightsException($"the stride {stride} must be between 1 and the window ({window})");
        int vocab = model.Config.VocabSize;
        int w = Math.Min(window, tokens.Count);
        using var cache = model.CreateCache(w);
        var state = model.CreateState(w, w);
        var logits = new float[w * vocab]; // (window, vocab)
        var ids = new int[w];
        double sum = 0;
        int scored = 0, end = 0; // end: tokens [0, end) are scored (token 0 counts as done)
        for (int start = 0; ; start += stride)
        {
            ct.ThrowIfCancellationRequested();
            int n = Math.Min(w, tokens.Count - start);
            for (int i = 0; i < n; i++) ids[i] = tokens[start + i];
            cache.Length = 0;
            model.Forward(ids.AsSpan(0, n), cache, state, threads, logits.AsSpan(0, n * vocab));
            int first = Math.Max(end, start + 1); // the first token this window scores (absolute index)
            for (int t = first; t < start + n; t++)
            {
                sum += Nll(logits.AsSpan((t - start - 1) * vocab, vocab), tokens[t]);
                scored++;
            }
            end = start + n;
            if (end >= tokens.Count) break;
        }
        return new PerplexityResult(sum / scored, scored, w, stride);
    }

    /// <summary>-log softmax(logits)[target], in double (max subtracted first).</summary>
    public static double Nll(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (var v in logits) if (v > max) max = v;
        double sum = 0;
        foreach (var v in logits) sum += Math.Exp((double)v - max);
        return Math.Log(sum) + max - logits[target];
    }
}
