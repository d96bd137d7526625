using OpenWeights.Models;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Models;

public class Stories260KTests
{
    private static readonly int[] Prompt16 = [1, 403, 407, 261, 378, 290, 263, 500, 334, 420, 261, 274, 301, 288, 46, 13];

    [Fact]
    public void LogitsAgreeWithLlamaCppAtEveryPosition()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(64);
        var state = model.CreateState(16, 64);
        var ours = new float[16 * model.Config.VocabSize];
        model.Forward(Prompt16, cache, state, threads: 2, ours);
        var theirs = LlamaCpp.Logits(path, Prompt16);
        for (int t = 0; t < Prompt16.Length; t++)
        {
            var (maxAbs, cos) = Compare.Logits(ours.AsSpan(t * 512, 512), theirs[t]);
            // F32 weights, F32 KV cache, no flash attention on both sides: only summation order differs (seen: <= 1.3e-5 on logits of magnitude ~17).
            Assert.True(maxAbs < 1e-4, $"position {t}: max abs diff {maxAbs}");
            Assert.True(cos > 0.9999999, $"position {t}: cosine {cos}");
        }
    }

    [Fact]
    public void TokenByTokenDecodeEqualsBatchedPrefill()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = DecoderModel.Load(path);
        var c1 = model.CreateCache(64); var s1 = model.CreateState(16, 64);
        var all = new float[16 * 512];
        model.Forward(Prompt16, c1, s1, 2, all);
        var c2 = model.CreateCache(64); var s2 = model.CreateState(1, 64);
        for (int t = 0; t < 16; t++)
        {
            model.Forward(Prompt16.AsSpan(t, 1), c2, s2, 1);
            var (maxAbs, _) = Compare.Logits(s2.Logits, all.AsSpan(t * 512, 512));
            Assert.True(maxAbs < 1e-4, $"position {t}: {maxAbs}");
        }
    }
}

public class MultiSequenceForwardTests
{
    [Fact]
    public void TwoSequencesInOneBatchEqualEachAlone()
    {
        var path = TestData.Require("models/stories260K.gguf");
        using var model = OpenWeights.Models.DecoderModel.Load(path);
        int v = model.Config.VocabSize;
        int[] a = [1, 403, 407, 261, 378], b = [1, 290, 263, 500];
        // alone
        var ca = model.CreateCache(32); var cb = model.CreateCache(32); var s = model.CreateState(16, 32);
        model.Forward(a, ca, s, 2); var la = s.Logits.ToArray();
        model.Forward(b, cb, s, 2); var lb = s.Logits.ToArray();
        model.Forward([432], ca, s, 2); var la2 = s.Logits.ToArray();
        model.Forward([334], cb, s, 2); var lb2 = s.Logits.ToArray();
        // together: prefill both prompts in one pass, then decode both in one pass
        var da = model.CreateCache(32); var db = model.CreateCache(32);
        var both = new float[2 * v];
        model.Forward([new OpenWeights.Models.SequenceBatch(a, da), new OpenWeights.Models.SequenceBatch(b, db)], s, 2, both);
        Assert.True(Oracle.Compare.Logits(both.AsSpan(0, v), la).MaxAbs < 1e-5);
        Assert.True(Oracle.Compare.Logits(both.AsSpan(v, v), lb).MaxAbs < 1e-5);
        model.Forward([new OpenWeights.Models.SequenceBatch(new[] { 432 }, da), new OpenWeights.Models.SequenceBatch(new[] { 334 }, db)], s, 2, both);
        Assert.True(Oracle.Compare.Logits(both.AsSpan(0, v), la2).MaxAbs < 1e-5);
        Assert.True(Oracle.Compare.Logits(both.AsSpan(v, v), lb2).MaxAbs < 1e-5);
        Assert.Equal(6, da.Length);
        Assert.Equal(5, db.Length);
    }
}
