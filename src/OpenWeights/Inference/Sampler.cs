namespace OpenWeights.Inference;

/// <summary>Turns logits into the next token id. Holds its candidate buffers and RNG; not thread-safe.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions o;
    private readonly int vocab;
    private readonly int[] ids;
    private readonly float[] vals;
    private readonly Dictionary<int, int> counts = [];
    private readonly Random rng;

    /// <summary>The seed this sampler draws with: the options' seed, or the one drawn at random when they gave none (an audit log records it, so a replay draws alike).</summary>
    public ulong Seed { get; }

    public Sampler(SamplingOptions options, int vocabSize)
    {
        options.Validate();
        o = options; vocab = vocabSize;
        ids = new int[vocabSize]; vals = new float[vocabSize];
        ulong seed = Seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        rng = new Random(unchecked((int)(seed ^ (seed >> 32)))); // seeded System.Random is stable across runs
    }

    /// <summary>Chooses a token. logits: (vocab), modified in place; history: tokens so far (prompt and generated).</summary>
    public int Sample(Span<float> logits, ReadOnlySpan<int> history)
    {
        if (logits.Length != vocab) throw new ArgumentException($"logits length {logits.Length} != vocab {vocab}");
        if (o.LogitBias is { } bias)
            foreach (var (id, b) in bias) if ((uint)id < (uint)vocab) logits[id] += b;
        ApplyPenalties(logits, history);

        if (o.Temperature <= 0) return ArgMax(logits);

        // candidates = all tokens, then top-k
        int n = vocab;
        for (int i = 0; i < n; i++) { ids[i] = i; vals[i] = logits[i]; }
        if (o.TopK > 0 && o.TopK < n) n = PartialTopK(o.TopK, n);
        else SortDescending(0, n);

        // probabilities without temperature (llama.cpp applies top-p/min-p before temperature)
        float[] probs = System.Buffers.ArrayPool<float>.Shared.Rent(n);
        try
        {
            Softmax(vals.AsSpan(0, n), probs.AsSpan(0, n), 1f);
            if (o.TopP < 1f)
            {
                double cum = 0; int keep = n;
                for (int i = 0; i < n; i++) { cum += probs[i]; if (cum >= o.TopP) { keep = i + 1; break; } }
                n = Math.Max(1, keep);
            }
            if (o.MinP > 0f)
            {
                float limit = probs[0] * o.MinP; int keep = 1;
                while (keep < n && probs[keep] >= limit) keep++;
                n = keep;
            }
            Softmax(vals.AsSpan(0, n), probs.AsSpan(0, n), 1f / o.Temperature);
            double r = rng.NextDouble(), acc = 0;
            for (int i = 0; i < n; i++) { acc += probs[i]; if (r < acc) return ids[i]; }
            return ids[n - 1];
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(probs); }
    }

    private void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> history)
    {
        if (o.RepeatPenalty == 1f && o.PresencePenalty == 0f && o.FrequencyPenalty == 0f) return;
        int window = o.PenaltyLastN < 0 ? history.Length : Math.Min(o.PenaltyLastN, history.Length);
        counts.Clear();
        foreach (var t in history[^window..]) counts[t] = counts.GetValueOrDefault(t) + 1;
        foreach (var (t, c) in counts)
        {
            if ((uint)t >= (uint)vocab) continue;
            ref float l = ref logits[t];
            l = l > 0 ? l / o.RepeatPenalty : l * o.RepeatPenalty;
            l -= c * o.FrequencyPenalty + o.PresencePenalty;
        }
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>Moves the k largest of the first n candidates to the front, sorted descending; returns k.</summary>
    private int PartialTopK(int k, int n)
    {
        // min-heap of size k over vals/ids
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(i, k);
        for (int i = k; i < n; i++)
        {
            if (vals[i] > vals[0] || vals[i] == vals[0] && ids[i] < ids[0])
            {
                vals[0] = vals[i]; ids[0] = ids[i];
                SiftDown(0, k);
            }
        }
        SortDescending(0, k);
        return k;
    }

    private void SiftDown(int i, int n)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < n && Less(l, m)) m = l;
            if (r < n && Less(r, m)) m = r;
            if (m == i) return;
            (vals[i], vals[m]) = (vals[m], vals[i]); (ids[i], ids[m]) = (ids[m], ids[i]);
            i = m;
        }
    }

    // heap order: smaller value first; on ties the larger id is "smaller" so lower ids win
    private bool Less(int a, int b) => vals[a] < vals[b] || vals[a] == vals[b] && ids[a] > ids[b];

    private void SortDescending(int from, int n)
    {
        var keys = vals.AsSpan(from, n); var items = ids.AsSpan(from, n);
        keys.Sort(items, Descending.Instance); // a cached comparer: Sort(Comparison) would allocate a wrapper per call
    }

    private sealed class Descending : IComparer<float>
    {
        public static readonly Descending Instance = new();
        public int Compare(float a, float b) => b.CompareTo(a);
    }

    private static void Softmax(ReadOnlySpan<float> logits, Span<float> probs, float invTemp)
    {
        float max = float.NegativeInfinity;
        foreach (var v in logits) if (v > max) max = v;
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) { float e = float.IsNegativeInfinity(logits[i]) ? 0 : MathF.Exp((logits[i] - max) * invTemp); probs[i] = e; sum += e; }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < probs.Length; i++) probs[i] *= inv;
    }
}
