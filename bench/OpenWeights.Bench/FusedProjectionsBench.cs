using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Common;

namespace OpenWeights.Bench;

/// <summary>
/// `--fused-projections --model FILE`: decode tokens/s with a layer's Q/K/V and gate/up projections as one pool dispatch each
/// (Linear.ForwardMany) against one dispatch per projection, in one process, alternated run by run (medians of 7 runs of 64
/// greedy tokens after a 32-token prompt, decode timed), so the machine's drift between processes does not decide. Both give the same
/// tokens (asserted: the fused products are bit for bit the separate ones).
/// </summary>
public static class FusedProjectionsBench
{
    public static int Run(BenchOptions o)
    {
        using var m = DecoderModel.Load(o.Model ?? throw new ArgumentException("--fused-projections needs --model FILE"));
        var session = new InferenceSession(m, 256, o.Threads, 64);
        var prompt = SpeedTest.PromptTokens(32, m.Config.VocabSize);
        // the prompt, then 64 greedy tokens timed (decode only)
        (int[] Tokens, double Seconds) Decode(bool fuse)
        {
            Linear.Fuse = fuse;
            try
            {
                session.Reset();
                int next = Sampler.ArgMax(session.EvaluatePrompt(prompt));
                var tokens = new int[64];
                Span<int> one = stackalloc int[1];
                long t = System.Diagnostics.Stopwatch.GetTimestamp();
                for (int i = 0; i < tokens.Length; i++) { tokens[i] = next; one[0] = next; next = Sampler.ArgMax(session.Evaluate(one)); }
                return (tokens, System.Diagnostics.Stopwatch.GetElapsedTime(t).TotalSeconds);
            }
            finally { Linear.Fuse = true; }
        }
        var reference = Decode(false).Tokens;
        if (!Decode(true).Tokens.SequenceEqual(reference)) throw new InvalidOperationException("fused projections changed the tokens");
        const int runs = 7;
        var sep = new double[runs]; var fused = new double[runs];
        for (int r = 0; r < runs; r++) { sep[r] = Decode(false).Seconds; fused[r] = Decode(true).Seconds; }
        Array.Sort(sep); Array.Sort(fused);
        double a = 64 / sep[runs / 2], b = 64 / fused[runs / 2];
        Console.WriteLine($"{Path.GetFileName(o.Model)}, {o.Threads} threads, decode tok/s, medians of {runs} alternated runs of 64 greedy tokens after a 32-token prompt");
        Console.WriteLine($"one dispatch per projection: {a:F2} tok/s; Q/K/V and gate/up fused: {b:F2} tok/s; fused / separate {b / a:F3}x");
        return 0;
    }
}
