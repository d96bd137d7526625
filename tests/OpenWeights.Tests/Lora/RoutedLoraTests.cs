using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Tests.Chat;
using Xunit;

namespace OpenWeights.Tests.Lora;

/// <summary>Adapters selected per row of one batched pass (<see cref="RoutedAdapters"/>): each sequence as alone.</summary>
public class RoutedLoraTests
{
    private static readonly int[][] Prompts = [[5, 300, 301, 17, 900], [44, 45, 46, 260, 261, 700, 12], [7, 8, 9], [5, 300, 301, 17, 900]];

    // greedy decoding of the sequences `which` together, `steps` tokens; each sequence's tokens and every step's logits
    private static (List<int>[] Tokens, List<float[]>[] Logits) Run(DecoderModel m, int[] adapters, int[] which, int steps)
    {
        int vocab = m.Config.VocabSize;
        var caches = which.Select(_ => m.CreateCache(64)).ToArray();
        var state = m.CreateState(64, 64);
        var logits = new float[which.Length * vocab];
        var rows = new int[64];
        var next = which.Select(k => Prompts[k]).ToArray();
        var tokens = which.Select(_ => new List<int>()).ToArray();
        var all = which.Select(_ => new List<float[]>()).ToArray();
        for (int step = 0; step < steps; step++)
        {
            var segs = new SequenceBatch[which.Length];
            int row = 0;
            for (int i = 0; i < which.Length; i++)
            {
                segs[i] = new SequenceBatch(next[i], caches[i]);
                rows.AsSpan(row, next[i].Length).Fill(adapters[which[i]]);
                row += next[i].Length;
            }
            LoraRouting.Set(rows);
            try { m.Forward(segs, state, 2, logits); }
            finally { LoraRouting.Set(null); }
            for (int i = 0; i < which.Length; i++)
            {
                var l = logits.AsSpan(i * vocab, vocab).ToArray();
                all[i].Add(l);
                int best = 0;
                for (int v = 1; v < vocab; v++) if (l[v] > l[best]) best = v;
                tokens[i].Add(best);
                next[i] = [best];
            }
        }
        return (tokens, all);
    }

    [Fact]
    public void MixedAdapterBatchEqualsEachRequestAlone()
    {
        using var m = DecoderModel.Load(TinyModels.Llama);
        var routed = new RoutedAdapters(m);
        var first = LoraTestUtil.Random(m.Config, rank: 4, alpha: 8, seed: 1, amp: 0.5f);
        int a1 = routed.Add(first);
        int a2 = routed.Add(LoraTestUtil.Random(m.Config, rank: 8, alpha: 4, seed: 2, amp: 0.5f), 0.7f);
        int[] adapters = [a1, 0, a2, 0]; // prompts 0 and 3 are the same: with and without the first adapter
        const int steps = 5;

        var mixed = Run(m, adapters, [0, 1, 2, 3], steps);
        for (int k = 0; k < Prompts.Length; k++)
        {
            var alone = Run(m, adapters, [k], steps);
            Assert.Equal(alone.Tokens[0], mixed.Tokens[k]);
            for (int s = 0; s < steps; s++) Assert.Equal(alone.Logits[0][s], mixed.Logits[k][s]); // bit-identical
        }
        // the adapter did something: the same prompt with and without it
        double effect = 0;
        for (int v = 0; v < mixed.Logits[0][0].Length; v++) effect = Math.Max(effect, Math.Abs(mixed.Logits[0][0][v] - mixed.Logits[3][0][v]));
        Assert.True(effect > 0.05, $"the adapter changes the logits by only {effect}");

        // routed to a row = attached to the whole model (serve --lora FILE), bit for bit
        using var attached = DecoderModel.Load(TinyModels.Llama);
        LoraLoader.Attach(attached, first);
        var whole = Run(attached, [0, 0, 0, 0], [0], steps);
        for (int s = 0; s < steps; s++) Assert.Equal(whole.Logits[0][s], mixed.Logits[0][s]);

        // unloaded: its rows take the base model
        routed.Remove(a1);
        var after = Run(m, adapters, [0], 1);
        Assert.Equal(mixed.Logits[3][0], after.Logits[0][0]);
    }
}
