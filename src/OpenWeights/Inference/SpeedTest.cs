using System.Diagnostics;

namespace OpenWeights.Inference;

/// <summary>Prefill and decode times of one pass: a prompt evaluated in batches, then greedy tokens one at a time.</summary>
public sealed record SpeedSample(int PromptTokens, int GeneratedTokens, double PrefillSeconds, double DecodeSeconds)
{
    public double PrefillTokensPerSecond => PromptTokens / PrefillSeconds;
    public double DecodeTokensPerSecond => GeneratedTokens / DecodeSeconds;
}

/// <summary>
/// The measurement behind `openweights bench` and bench/OpenWeights.Bench: fixed token ids (no tokenizer, so any
/// engine sees the same tokens), a short warm-up that touches every weight page, then one timed prefill of the
/// prompt and a timed greedy decode of <c>gen</c> tokens continuing it.
/// </summary>
public static class SpeedTest
{
    /// <summary>Deterministic prompt ids in [1, vocab): the same list for every engine and run.</summary>
    public static int[] PromptTokens(int count, int vocabSize)
    {
        if (count < 1) throw new OpenWeightsException($"prompt length {count} must be at least 1");
        if (vocabSize < 2) throw new OpenWeightsException($"vocabulary of {vocabSize} tokens is too small");
        var ids = new int[count];
        ulong x = 0x9E3779B97F4A7C15;
        for (int i = 0; i < count; i++)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            ids[i] = 1 + (int)(x % (ulong)(vocabSize - 1));
        }
        return ids;
    }

    /// <summary>Evaluates a few tokens and clears the context, so page faults and JIT are not timed.</summary>
    public static void WarmUp(InferenceSession session, ReadOnlySpan<int> prompt)
    {
        session.Reset();
        session.EvaluatePrompt(prompt[..Math.Min(8, prompt.Length)]);
        Span<int> one = [Sampler.ArgMax(session.Logits)];
        session.Evaluate(one);
        session.Reset();
    }

    /// <summary>One timed pass from an empty context: prefill <paramref name="prompt"/>, then <paramref name="gen"/> greedy tokens.</summary>
    public static SpeedSample Run(InferenceSession session, ReadOnlySpan<int> prompt, int gen, CancellationToken ct = default)
    {
        if (gen < 1) throw new OpenWeightsException($"generated tokens {gen} must be at least 1");
        if (prompt.Length + gen > session.ContextSize)
            throw new OpenWeightsException($"prompt {prompt.Length} + generated {gen} tokens exceed the context size {session.ContextSize}");
        session.Reset();
        var sw = Stopwatch.StartNew();
        int next = Sampler.ArgMax(session.EvaluatePrompt(prompt, ct));
        double prefill = sw.Elapsed.TotalSeconds;
        Span<int> one = stackalloc int[1];
        sw.Restart();
        for (int i = 0; i < gen; i++)
        {
            one[0] = next;
            next = Sampler.ArgMax(session.Evaluate(one, ct));
        }
        double decode = sw.Elapsed.TotalSeconds;
        return new SpeedSample(prompt.Length, gen, prefill, decode);
    }

    /// <summary>Peak resident memory of this process: VmHWM on Linux, the peak working set elsewhere.</summary>
    public static long PeakMemoryBytes()
    {
        try
        {
            if (File.Exists("/proc/self/status"))
                foreach (var line in File.ReadLines("/proc/self/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    {
                        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        if (parts.Length >= 2 && long.TryParse(parts[1], out long kb)) return kb * 1024;
                    }
        }
        catch (IOException) { }
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64;
    }
}
