using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Phi3;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// Phi-3 (GGUF architecture phi3: Phi-3.5-mini, Phi-4, Phi-4-mini) against llama.cpp on the same random-weight file:
/// fused QKV and gate-up, partial NEOX rotary (48 of 64 dims in tiny-phi3, as Phi-4-mini's 0.75), LongRoPE factor tables
/// chosen by context size with the attn_factor on cos/sin, and the separate Q/K/V layout llama.cpp also loads.
/// tiny-phi3's original context is 256: a context up to 256 takes the short table, beyond it the long one.
/// </summary>
public class Phi3Tests
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12, 13, 14, 99, 600];

    /// <summary>A prompt of n tokens (96 by default: positions far enough for the factor tables to matter).</summary>
    private static int[] LongPrompt(int n = 96) => Enumerable.Range(0, n).Select(i => (i * 37 + 11) % 1000 + 3).ToArray();

    private static string Write(TempDir dir, string type)
    {
        var path = dir.File($"tiny-phi3-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-phi3"), SynthType.Parse(type), path, threads: 2);
        return path;
    }

    /// <summary>Our logits (n, vocab) for the prompt in a cache and state of the given context size.</summary>
    private static float[] Ours(DecoderModel model, int[] prompt, int context)
    {
        var cache = model.CreateCache(context);
        var state = model.CreateState(prompt.Length, context);
        var logits = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, cache, state, 2, logits);
        return logits;
    }

    /// <summary>Worst relative max-abs difference and worst cosine over every position.</summary>
    private static (double Rel, double Cos) Worst(float[] ours, float[][] theirs, int vocab)
    {
        double rel = 0, cos = 1;
        for (int t = 0; t < theirs.Length; t++)
        {
            var (maxAbs, c) = Compare.Logits(ours.AsSpan(t * vocab, vocab), theirs[t]);
            rel = Math.Max(rel, maxAbs / theirs[t].Max(Math.Abs));
            cos = Math.Min(cos, c);
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"worst max abs diff / max |logit| {rel:G3}, worst cosine {cos:G9}");
        return (rel, cos);
    }

    public static TheoryData<string, double, double> Cases() => new()
    {
        // type, max |diff| / max |logit|, min cosine over 16 positions. Measured worst (tiny-phi3): f32 4.1e-7 (cos 1),
        // f16 3.8e-4 (cos 0.99999994), q8_0 1.3e-7 (cos 1), q4_k_m 9.1e-4 (cos 0.9999989); tolerances with margin.
        { "f32", 1e-5, 0.999999 },
        { "f16", 1.5e-3, 0.99999 },
        { "q8_0", 1e-5, 0.999999 },
        { "q4_k_m", 4e-3, 0.99999 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAgreeWithLlamaCpp(string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = Write(dir, type);
        using var model = DecoderModel.Load(path);
        Assert.IsType<Phi3Model>(model);
        Assert.Equal(48, model.Config.RopeDims);
        Assert.Equal(64, model.Config.HeadDim);
        var ours = Ours(model, Prompt, 64);
        var theirs = LlamaCpp.Logits(path, Prompt); // n_ctx 64: the short table
        var (rel, cos) = Worst(ours, theirs, model.Config.VocabSize);
        Assert.True(rel < relTol && cos > minCos, $"{type}: worst max abs diff / max |logit| {rel:G3}, worst cosine {cos:G9}");
    }

    [Fact]
    public void GreedyContinuationOf64TokensEqualsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        const int count = 64, context = 128;
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(context);
        var state = model.CreateState(Prompt.Length, context);
        var ours = new int[count];
        model.Forward(Prompt, cache, state, 2);
        for (int k = 0; k < count; k++)
        {
            ours[k] = Compare.ArgMax(state.Logits);
            if (k < count - 1) model.Forward([ours[k]], cache, state, 2);
        }
        var theirs = LlamaCpp.GreedyDecode(path, Prompt, count, context);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token tests little");
    }

    [Fact]
    public void LongRopeTableFollowsTheContextSizeAsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        var prompt = LongPrompt();
        var longPrompt = LongPrompt(320);            // positions past the original context (256)
        using var model = DecoderModel.Load(path);
        int v = model.Config.VocabSize;
        var shortOurs = Ours(model, prompt, 128);   // 128 <= 256: short factors
        var longOurs = Ours(model, longPrompt, 1024);   // 1024 > 256: long factors
        var shortTheirs = LlamaCpp.Logits(path, prompt, contextSize: 128);
        var longTheirs = LlamaCpp.Logits(path, longPrompt, contextSize: 1024);
        var (relShort, cosShort) = Worst(shortOurs, shortTheirs, v);
        var (relLong, cosLong) = Worst(longOurs, longTheirs, v);
        Assert.True(relShort < 1e-5 && cosShort > 0.999999, $"short: {relShort:G3} {cosShort:G9}");
        Assert.True(relLong < 1e-5 && cosLong > 0.999999, $"long: {relLong:G3} {cosLong:G9}");
        // the tables differ enough that the wrong one would be caught (the first 96 positions see the same tokens)
        var (relCross, _) = Worst(shortOurs, longTheirs[..prompt.Length], v);
        Assert.True(relCross > 1e-3, $"short vs long tables: {relCross:G3}");
        // the boundary: a context equal to the original one is still short
        var p3 = Assert.IsType<Phi3Model>(model);
        Assert.Equal(256, p3.OriginalContext);
        Assert.Same(model.Ropes(128)[0], model.Ropes(256)[0]);
        Assert.NotSame(model.Ropes(256)[0], model.Ropes(257)[0]);
    }

    [Fact]
    public void AttnFactorScalesTheRotatedDimensions()
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        using var model = DecoderModel.Load(path);
        float expected = (float)Math.Sqrt(1 + Math.Log(4096.0 / 256) / Math.Log(256));
        Assert.Equal(expected, model.Ropes(64)[0].Mscale, 6);
        Assert.Equal(expected, model.Ropes(4096)[0].Mscale, 6);
        // without the key, cos/sin are not scaled, and llama.cpp agrees on that file too
        var plain = Rewrite(dir, path, "plain.gguf", w => w.Remove("phi3.rope.scaling.attn_factor"));
        using var m2 = DecoderModel.Load(plain);
        Assert.Equal(1f, m2.Ropes(64)[0].Mscale);
        var ours = Ours(m2, Prompt, 64);
        var (rel, cos) = Worst(ours, LlamaCpp.Logits(plain, Prompt), m2.Config.VocabSize);
        Assert.True(rel < 1e-5 && cos > 0.999999, $"{rel:G3} {cos:G9}");
        var (relScaled, _) = Worst(Ours(model, Prompt, 64), LlamaCpp.Logits(plain, Prompt), m2.Config.VocabSize);
        Assert.True(relScaled > 1e-3, $"the factor changes the logits: {relScaled:G3}");
    }

    [Fact]
    public void SlidingWindowKeyIsIgnoredAsLlamaCppDoes()
    {
        // llama.cpp: "Phi SWA is currently disabled" (phi3 load_hparams sets swa_type NONE): a file that names a window
        // shorter than the prompt still attends to every past token
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        var windowed = Rewrite(dir, path, "swa.gguf", w => w.Set("phi3.attention.sliding_window", 16u));
        var prompt = LongPrompt();
        using var model = DecoderModel.Load(windowed);
        Assert.Equal(0, model.AttentionOf(0).Params.Window);
        var (rel, cos) = Worst(Ours(model, prompt, 128), LlamaCpp.Logits(windowed, prompt, contextSize: 128), model.Config.VocabSize);
        Assert.True(rel < 1e-5 && cos > 0.999999, $"{rel:G3} {cos:G9}");
    }

    [Fact]
    public void SeparateQkvLayoutRunsLikeTheFusedOne()
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        var split = SplitQkv(dir, path);
        using (var f = GgufFile.Open(split))
        {
            Assert.False(f.TryGetTensor(Block(0, AttnQkv), out _));
            Assert.True(f.TryGetTensor(Block(0, AttnK), out _));
        }
        using var fused = DecoderModel.Load(path);
        using var separate = DecoderModel.Load(split);
        var a = Ours(fused, Prompt, 64);
        var b = Ours(separate, Prompt, 64);
        var (rel, cos) = Worst(a, [.. Enumerable.Range(0, Prompt.Length).Select(t => b.AsSpan(t * 1024, 1024).ToArray())], 1024);
        Assert.True(rel < 1e-6 && cos > 0.9999999, $"fused vs separate: {rel:G3} {cos:G9}");
        // llama.cpp loads this layout too (create_tensor_qkv) and agrees
        var (relCpp, cosCpp) = Worst(b, LlamaCpp.Logits(split, Prompt), 1024);
        Assert.True(relCpp < 1e-5 && cosCpp > 0.999999, $"separate vs llama.cpp: {relCpp:G3} {cosCpp:G9}");
    }

    [Theory]
    [InlineData("blk.1.attn_qkv.weight")]
    [InlineData("blk.0.ffn_up.weight")]
    [InlineData("blk.1.attn_output.weight")]
    public void MissingTensorIsRefusedByName(string tensor)
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        var bad = dir.File("bad.gguf");
        using (var f = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(f);
            foreach (var t in f.Tensors.Where(t => t.Name != tensor)) AddCopy(w, f, t, t.Name, 0, t.Dimensions);
            w.Write(bad);
        }
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(bad));
        Assert.Contains(tensor, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void RopeFactorsOfTheWrongLengthAreRefusedByName()
    {
        using var dir = new TempDir();
        var path = Write(dir, "f32");
        var bad = dir.File("bad.gguf");
        using (var f = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(f);
            foreach (var t in f.Tensors.Where(t => t.Name != RopeFactorsLong)) AddCopy(w, f, t, t.Name, 0, t.Dimensions);
            w.AddTensor(RopeFactorsLong, [32], Enumerable.Repeat(1f, 32).ToArray());
            w.Write(bad);
        }
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(bad));
        Assert.Contains("rope_factors_long.weight has 32 elements, expected 24", e.Message);
    }

    [Fact]
    public void PartialNeoxRopeRotatesPairsWithinTheRotatedDimsOnly()
    {
        const int headDim = 64, dims = 48, heads = 2, half = dims / 2;
        float[] factors = [.. Enumerable.Range(0, half).Select(i => 1f + i * 0.5f)];
        var rope = new Rope(dims, RopeStyle.Neox, 10000f, 1f, factors, mscale: 1.25f);
        var cos = new float[half]; var sin = new float[half];
        rope.Angles(37, cos, sin);
        var x = Enumerable.Range(0, heads * headDim).Select(i => MathF.Sin(i * 0.7f) + 0.1f * i).ToArray();
        var y = (float[])x.Clone();
        rope.Apply(y, heads, headDim, cos, sin);
        // scalar reference: theta_i = p · base^(-2i/dims) / factor_i; pairs (i, i + dims/2); cos, sin scaled by attn factor
        for (int h = 0; h < heads; h++)
        {
            int o = h * headDim;
            for (int i = 0; i < half; i++)
            {
                double theta = 37 * Math.Pow(10000, -2.0 * i / dims) / factors[i];
                double c = Math.Cos(theta) * 1.25, s = Math.Sin(theta) * 1.25;
                double a = x[o + i], b = x[o + i + half];
                Assert.Equal(a * c - b * s, y[o + i], 1e-3);
                Assert.Equal(a * s + b * c, y[o + i + half], 1e-3);
            }
            for (int i = dims; i < headDim; i++) Assert.Equal(x[o + i], y[o + i]); // passed through, unscaled
        }
    }

    [Fact]
    public void Phi4MiniPresetHasTheCheckpointShape()
    {
        var p = SynthPreset.Get("phi-4-mini");
        Assert.Equal((3072, 32, 24, 8, 128, 8192, 200064, 96), (p.Dim, p.Layers, p.Heads, p.KvHeads, p.HeadDim, p.FfnDim, p.VocabSize, p.RopeDims));
        Assert.Equal(48, p.ExtraTensors[RopeFactorsLong].Length);
        Assert.Equal(47.77f, p.ExtraTensors[RopeFactorsLong][^1]);
        Assert.Equal(1.1902380f, (float)p.Extra["rope.scaling.attn_factor"], 5);
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        Assert.Contains(plan, t => t.Name == Block(0, AttnQkv) && t.Dims.SequenceEqual(new long[] { 3072, 3072 + 2 * 1024 }));
        Assert.Contains(plan, t => t.Name == Block(0, FfnUp) && t.Dims.SequenceEqual(new long[] { 3072, 2 * 8192 }));
        Assert.DoesNotContain(plan, t => t.Name == Block(0, AttnQ) || t.Name == Block(0, FfnGate));
    }

    // ---- file surgery ------------------------------------------------------------------------------------------

    private static string Rewrite(TempDir dir, string src, string name, Action<GgufWriter> edit)
    {
        var dst = dir.File(name);
        using var f = GgufFile.Open(src);
        var w = GgufWriter.CopyOf(f);
        edit(w);
        w.Write(dst);
        return dst;
    }

    /// <summary>The same model with each attn_qkv (an F32 file) written as attn_q, attn_k, attn_v.</summary>
    private static string SplitQkv(TempDir dir, string src)
    {
        var dst = dir.File("split.gguf");
        var p = SynthPreset.Get("tiny-phi3");
        int q = p.Heads * p.HeadDim, kv = p.KvHeads * p.HeadDim;
        using var f = GgufFile.Open(src);
        var w = new GgufWriter().CopyMetadata(f);
        foreach (var t in f.Tensors)
        {
            if (!t.Name.EndsWith("." + AttnQkv, StringComparison.Ordinal)) { AddCopy(w, f, t, t.Name, 0, t.Dimensions); continue; }
            Assert.Equal(GgmlType.F32, t.Type);
            string layer = t.Name[..^AttnQkv.Length];
            long rowBytes = t.Dimensions[0] * 4;
            AddCopy(w, f, t, layer + AttnQ, 0, [t.Dimensions[0], q]);
            AddCopy(w, f, t, layer + AttnK, q * rowBytes, [t.Dimensions[0], kv]);
            AddCopy(w, f, t, layer + AttnV, (q + kv) * rowBytes, [t.Dimensions[0], kv]);
        }
        w.Write(dst);
        return dst;
    }

    /// <summary>Adds the bytes of <paramref name="t"/> from <paramref name="offset"/> as a tensor of the given dims.</summary>
    private static unsafe void AddCopy(GgufWriter w, GgufFile f, GgufTensorInfo t, string name, long offset, long[] dims)
    {
        long bytes = GgufWriter.ExpectedBytes(t.Type, dims);
        w.AddTensor(name, t.Type, dims, bytes, s => s.Write(new ReadOnlySpan<byte>(f.TensorPointer(t) + offset, (int)bytes)));
    }
}
