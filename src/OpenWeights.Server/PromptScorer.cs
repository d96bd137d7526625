using OpenWeights.Inference;

namespace OpenWeights.Server;

/// <summary>
/// The logprob of each prompt token given the tokens before it (for /v1/completions' <c>echo</c> with <c>logprobs</c>):
/// the prompt runs through the model on a cache of its own, a chunk at a time, every position's logits kept. It runs on
/// the request's thread with one compute thread (the worker pool belongs to the scheduler), one prompt at a time per host.
/// </summary>
internal static class PromptScorer
{
    /// <summary>Logits (floats) one chunk may hold at most: chunk * vocab.</summary>
    private const int MaxChunkFloats = 8 << 20;

    /// <summary>Entry i: token i's logprob and its <paramref name="top"/> alternatives; entry 0's logprob is NaN (nothing comes before it).</summary>
    public static async Task<TokenLogprob[]> ScoreAsync(ModelHost h, int[] tokens, int top, CancellationToken ct)
    {
        await h.Scoring.WaitAsync(ct);
        try { return await Task.Run(() => Score(h, tokens, top, ct), ct); }
        finally { h.Scoring.Release(); }
    }

    private static TokenLogprob[] Score(ModelHost h, int[] tokens, int top, CancellationToken ct)
    {
        var model = h.Model;
        int vocab = model.Config.VocabSize;
        var result = new TokenLogprob[tokens.Length];
        result[0] = Make(h, tokens[0], float.NaN, []);
        int scored = tokens.Length - 1; // the last token's logits predict a token the prompt does not have
        if (scored <= 0) return result;
        int chunk = Math.Clamp(MaxChunkFloats / vocab, 1, Math.Min(64, scored));
        using var cache = model.CreateCache(tokens.Length);
        var state = model.CreateState(chunk, tokens.Length);
        var logits = new float[chunk * vocab]; // (chunk, vocab)
        for (int done = 0; done < scored;)
        {
            ct.ThrowIfCancellationRequested();
            int n = Math.Min(chunk, scored - done);
            model.Forward(tokens.AsSpan(done, n), cache, state, threads: 1, logits.AsSpan(0, n * vocab));
            for (int t = 0; t < n; t++)
                result[done + t + 1] = Logprob(h, logits.AsSpan(t * vocab, vocab), tokens[done + t + 1], top);
            done += n;
        }
        return result;
    }

    /// <summary>log softmax of <paramref name="x"/> at <paramref name="id"/>, with the <paramref name="top"/> most likely tokens.</summary>
    internal static TokenLogprob Logprob(ModelHost h, ReadOnlySpan<float> x, int id, int top)
    {
        float max = float.NegativeInfinity;
        foreach (var v in x) if (v > max) max = v;
        double sum = 0;
        foreach (var v in x) if (!float.IsNegativeInfinity(v)) sum += Math.Exp(v - max);
        float lse = max + (float)Math.Log(sum);
        var alternatives = new List<TokenLogprob>();
        if (top > 0)
        {
            var best = new List<int>(top + 1); // the best `top`, most likely first
            for (int i = 0; i < x.Length; i++)
            {
                if (best.Count == top && x[i] <= x[best[^1]]) continue;
                int pos = best.Count;
                while (pos > 0 && x[best[pos - 1]] < x[i]) pos--;
                best.Insert(pos, i);
                if (best.Count > top) best.RemoveAt(top);
            }
            foreach (int t in best) alternatives.Add(Make(h, t, x[t] - lse, []));
        }
        return Make(h, id, x[id] - lse, alternatives);
    }

    private static TokenLogprob Make(ModelHost h, int id, float lp, IReadOnlyList<TokenLogprob> top)
    {
        var tok = h.Tokenizer;
        var bytes = id < tok.VocabSize ? (tok.IsControl(id) ? System.Text.Encoding.UTF8.GetBytes(tok.TokenPiece(id)) : tok.TokenBytes(id)) : [];
        return new TokenLogprob(id, System.Text.Encoding.UTF8.GetString(bytes), bytes, float.IsNegativeInfinity(lp) ? -9999f : lp, top);
    }
}
