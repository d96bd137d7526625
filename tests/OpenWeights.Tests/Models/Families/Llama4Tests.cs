using LLama;
using LLama.Common;
using LLama.Native;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Llama4;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// Llama 4 (dense and expert layers interleaved, sigmoid top-1 routing on the expert's input plus a shared expert, NoPE
/// with attention temperature on every 4th layer, 8192-position chunks and unweighted QK-norm on the others) against
/// llama.cpp's llama4 on the same random-weight files. tiny-llama4: 4 layers, experts in layers 1 and 3 (step 2, as
/// Maverick), layer 3 without rotary. llama.cpp fixes the chunk and the temperature's floor at 8192 (no key sets them), so
/// the tests that cross a chunk and reach a temperature other than 1 run prompts of more than 8192 tokens.
/// </summary>
public class Llama4Tests(ITestOutputHelper output)
{
    private const string Tiny = "tiny-llama4";

    // the oracle checks (logits per type, 64-token greedy runs, the tie rule on tied routers) are rows of MoeFamilyTests

    [Fact]
    public void LayersInterleaveDenseAndExpertFeedForwardsAndEveryFourthHasNoRope()
    {
        using var dir = new TempDir();
        var path = Write(dir, Tiny, "f32");
        using var model = DecoderModel.Load(path);
        var m = Assert.IsType<Llama4Model>(model);
        // step 2: layers 1 and 3 run experts (+ shared expert), layers 0 and 2 the dense feed-forward
        Assert.Equal([false, true, false, true], Enumerable.Range(0, 4).Select(l => model.Layers[l].Experts is not null));
        Assert.All(new[] { 0, 2 }, l => Assert.NotNull(model.Layers[l].WGate));
        Assert.All(new[] { 1, 3 }, l => Assert.NotNull(model.Layers[l].Experts!.Shared));
        // layer 3: no rotary, every past key, temperature; layers 0-2: rotary, 8192-chunks, QK-norm after rotary
        var a = Enumerable.Range(0, 4).Select(model.AttentionOf).ToArray();
        Assert.Equal([1, 1, 1, -1], a.Select(x => x.Rope));
        Assert.Equal([8192, 8192, 8192, 0], a.Select(x => x.Params.Chunk));
        Assert.Equal([true, true, true, false], a.Select(x => x.QkNormAfterRope));
        Assert.Equal([false, false, false, true], a.Select(x => x.Temperature is not null));
        Assert.All(a, x => Assert.Equal(1f / MathF.Sqrt(64), x.Params.Scale));
        // Scout (step 1): every layer has experts; Maverick (step 2): layers 1, 3, ..., 47
        Assert.Equal(48, Enumerable.Range(0, 48).Count(l => Llama4Model.IsMoeLayer(l, 1)));
        Assert.Equal(Enumerable.Range(0, 24).Select(i => 2 * i + 1), Enumerable.Range(0, 48).Where(l => Llama4Model.IsMoeLayer(l, 2)));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => 4 * i + 3), Enumerable.Range(0, 48).Where(l => !Llama4Model.UsesRope(l)));
    }

    /// <summary>A prompt past the first chunk: positions 8192.. attend only to their own chunk in layers 0-2, and from
    /// position 8191 on the NoPE layer's queries are scaled by ln(2)·0.1 + 1.</summary>
    private const int LongPrompt = 8192 + 128;

    [Fact]
    public void PromptLongerThanTheChunkAgreesWithLlamaCppAndNeedsChunksAndTemperature()
    {
        using var dir = new TempDir();
        var path = Write(dir, Tiny, "f32");
        var prompt = RandomTokens(LongPrompt, seed: 7);
        // compared: the first positions, the last of the first chunk, and every position of the second
        int[] at = [.. Enumerable.Range(0, 8), .. Enumerable.Range(8160, LongPrompt - 8160)];
        var theirs = LlamaCppLogitsInBatches(path, prompt, at);
        var (ours, margin) = OurLogitsInBatches(path, prompt, at, m => m);
        // 2 MoE layers x 8320 tokens of routing: the closest call must still be clear of rounding (see MoeOracle)
        Assert.True(margin > 1e-6f, $"routing margin {margin:E2}: a near-tie would decide the comparison");
        int v = theirs[0].Length;
        double worst = 0;
        for (int i = 0; i < at.Length; i++)
        {
            var (maxAbs, cos) = Compare.Logits(ours[i], theirs[i]);
            double rel = maxAbs / theirs[i].Max(Math.Abs);
            worst = Math.Max(worst, rel);
            // measured worst 2.1e-6 (more accumulation than the 16-token prompts' 4.4e-7)
            Assert.True(rel < 2e-5 && cos > 0.9999999, $"position {at[i]}: rel {rel:E2}, cosine {cos:F9}");
        }
        output.WriteLine($"{LongPrompt}-token prompt, f32: worst rel {worst:E2} over {at.Length} positions, smallest routing margin {margin:E2}");

        // the same weights without chunks, or without the temperature, give other logits from position 8192 (8191) on
        // and the same before: the agreement above rests on both
        foreach (var (what, change, first) in new (string, Func<LayerAttention, LayerAttention>, int)[]
        {
            ("no chunks", x => x with { Params = x.Params with { Chunk = 0 } }, 8192),
            ("no temperature", x => x with { Temperature = null }, 8191),
        })
        {
            var (other, _) = OurLogitsInBatches(path, prompt, at, change);
            double least = double.PositiveInfinity;
            for (int i = 0; i < at.Length; i++)
            {
                double rel = Compare.Logits(other[i], ours[i]).MaxAbs / ours[i].Max(Math.Abs);
                if (at[i] < first) Assert.True(rel == 0, $"{what}: position {at[i]} changed by {rel:E2} before {first}");
                else least = Math.Min(least, rel);
            }
            // 50x the worst disagreement with llama.cpp above (measured 2.1e-6): dropping either is visible at every
            // position from its first (measured smallest changes: no temperature 8.2e-4, one NoPE layer scaled by 1.069)
            output.WriteLine($"{what}: smallest change from position {first} on {least:E2}");
            Assert.True(least > 50 * worst, $"{what}: a position from {first} on changed by only {least:E2}");
        }
    }

    [Fact]
    public void DecodingAcrossTheChunkBoundaryEqualsLlamaCpp()
    {
        // a prompt ending 16 positions before the chunk boundary, then 32 greedy tokens one at a time: the 17th is the
        // first query of the second chunk (it sees itself alone in layers 0-2)
        using var dir = new TempDir();
        var path = Write(dir, Tiny, "q8_0");
        var prompt = RandomTokens(8192 - 16, seed: 11);
        var ours = OurGreedyInBatches(path, prompt, 32);
        var theirs = LlamaCppGreedyInBatches(path, prompt, 32);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }

    [Fact]
    public void FilesMissingAKeyOrATensorOrWithoutChunksAreRefusedNamingIt()
    {
        using var dir = new TempDir();
        var path = Write(dir, Tiny, "f32");
        (string File, string Expect)[] cases =
        [
            (Without(dir, path, "no-step.gguf", key: "llama4.interleave_moe_layer_step"), "llama4.interleave_moe_layer_step is missing"),
            (Without(dir, path, "no-expert-ffn.gguf", key: "llama4.expert_feed_forward_length"), "llama4.expert_feed_forward_length"),
            (Without(dir, path, "no-eps.gguf", key: "llama4.attention.layer_norm_rms_epsilon"), "llama4.attention.layer_norm_rms_epsilon is missing"),
            (Without(dir, path, "no-shexp.gguf", tensor: "blk.1.ffn_up_shexp.weight"), "blk.1.ffn_up_shexp.weight"),
            (Without(dir, path, "no-router.gguf", tensor: "blk.3.ffn_gate_inp.weight"), "blk.3.ffn_gate_inp.weight"),
            (Without(dir, path, "no-dense-gate.gguf", tensor: "blk.2.ffn_gate.weight"), "blk.2.ffn_gate.weight"),
            (Edited(dir, path, "no-chunks.gguf", w => w.Set("llama4.attention.sliding_window", 0u)), "llama4.attention.sliding_window = 0"),
        ];
        foreach (var (file, expect) in cases)
        {
            var e = Assert.ThrowsAny<OpenWeightsException>(() => DecoderModel.Load(file));
            Assert.Contains(expect, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Fact]
    public void DecodeStepsAllocateNothingOnTheCallingThread()
    {
        using var dir = new TempDir();
        Assert.Equal(0, DecodeAllocations(Write(dir, Tiny, "q4_k_m")));
    }

    [Fact]
    public void RealShapePresetHasScoutParameterCounts()
    {
        // meta-llama/Llama-4-Scout-17B-16E (text_config): 48 layers, d 5120, 40/8 heads of 128, 16 experts of 8192 top-1
        // plus a shared expert of 8192 in every layer, vocab 202048, untied. Published: 109B total, 17B active; the text
        // part counted here is 107.8B / 17.2B (the rest of the 109B is the vision encoder and its projector).
        var p = SynthPreset.Get("llama-4-scout");
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q4_k_m"));
        long Count(SyntheticModel.PlannedTensor t) => t.Dims.Aggregate(1L, (a, b) => a * b);
        long total = plan.Sum(Count);
        long routed = plan.Where(t => t.Name.Contains("_exps.", StringComparison.Ordinal)).Sum(Count);
        long active = total - routed + routed / 16; // one routed expert of 16 per token
        output.WriteLine($"llama-4-scout: total {total / 1e9:F2}B, active {active / 1e9:F2}B");
        Assert.InRange(total / 1e9, 109 * 0.98, 109 * 1.0);
        Assert.InRange(active / 1e9, 17 * 0.98, 17 * 1.03);
        Assert.Equal([5120L, 8192L, 16L], plan.Single(t => t.Name == "blk.47.ffn_gate_exps.weight").Dims);
        Assert.Equal([8192L, 5120L], plan.Single(t => t.Name == "blk.0.ffn_down_shexp.weight").Dims);
        Assert.Equal([5120L, 16L], plan.Single(t => t.Name == "blk.0.ffn_gate_inp.weight").Dims);
        Assert.DoesNotContain(plan, t => t.Name.EndsWith(".ffn_gate.weight", StringComparison.Ordinal)); // Scout: no dense layer
        Assert.Contains(plan, t => t.Name == "output.weight");
    }

    // ---- helpers -----------------------------------------------------------------------------------------------

    private static int[] RandomTokens(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(3, 1024)).ToArray();
    }

    /// <summary>Llama 4 with each layer's attention changed (to show what the agreement rests on).</summary>
    private sealed class Changed(ITensorSource source, ModelConfig c, Func<LayerAttention, LayerAttention> change) : Llama4Model(source, c)
    {
        public override LayerAttention AttentionOf(int layer) => change(base.AttentionOf(layer));
    }

    /// <summary>Our logits at the given positions, the prompt run in batches of 512 (as llama.cpp's below), and the
    /// smallest routing margin of the run.</summary>
    private static (float[][] Logits, float Margin) OurLogitsInBatches(string path, int[] prompt, int[] at, Func<LayerAttention, LayerAttention> change)
    {
        using var f = GgufFile.Open(path);
        using var model = new Changed(f, ModelConfig.FromGguf(f), change);
        model.RepackWeights();
        const int batch = 512;
        var cache = model.CreateCache(prompt.Length + 8);
        var state = model.CreateState(batch, prompt.Length + 8);
        int v = model.Config.VocabSize;
        var all = new float[batch * v];
        var result = new float[at.Length][];
        for (int s = 0; s < prompt.Length; s += batch)
        {
            int n = Math.Min(batch, prompt.Length - s);
            model.Forward(prompt.AsSpan(s, n), cache, state, 2, all);
            for (int i = 0; i < at.Length; i++)
                if (at[i] >= s && at[i] < s + n) result[i] = all.AsSpan((at[i] - s) * v, v).ToArray();
        }
        return (result, model.Layers.Where(l => l.Experts is not null).Min(l => l.Experts!.MinSelectionMargin));
    }

    private static int[] OurGreedyInBatches(string path, int[] prompt, int count)
    {
        using var model = DecoderModel.Load(path);
        const int batch = 512;
        var cache = model.CreateCache(prompt.Length + count + 8);
        var state = model.CreateState(batch, prompt.Length + count + 8);
        for (int s = 0; s < prompt.Length; s += batch) model.Forward(prompt.AsSpan(s, Math.Min(batch, prompt.Length - s)), cache, state, 2);
        var result = new int[count];
        for (int k = 0; k < count; k++)
        {
            result[k] = Compare.ArgMax(state.Logits);
            if (k + 1 < count) model.Forward([result[k]], cache, state, 2);
        }
        return result;
    }

    /// <summary>llama.cpp's context for a long prompt: batches of 512 (its KQ matrix stays small), F32 KV cache.</summary>
    private static ModelParams LongParams(string path, int context) => new(path)
    {
        ContextSize = (uint)context, BatchSize = 512, UBatchSize = 512, GpuLayerCount = 0, Threads = 2, BatchThreads = 2,
        TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
    };

    /// <summary>llama.cpp's logits at the given positions of a prompt decoded 512 tokens at a time.</summary>
    private static float[][] LlamaCppLogitsInBatches(string path, int[] prompt, int[] at)
    {
        LlamaCpp.Init();
        var p = LongParams(path, prompt.Length + 8);
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        var wanted = at.ToHashSet();
        var result = new float[at.Length][];
        var batch = new LLamaBatch();
        for (int s = 0; s < prompt.Length; s += 512)
        {
            batch.Clear();
            int n = Math.Min(512, prompt.Length - s);
            for (int i = 0; i < n; i++) batch.Add((LLamaToken)prompt[s + i], s + i, LLamaSeqId.Zero, wanted.Contains(s + i));
            var r = ctx.Decode(batch);
            if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
            for (int i = 0; i < at.Length; i++)
                if (at[i] >= s && at[i] < s + n) result[i] = ctx.NativeHandle.GetLogitsIth(at[i] - s).ToArray();
        }
        return result;
    }

    private static int[] LlamaCppGreedyInBatches(string path, int[] prompt, int count)
    {
        LlamaCpp.Init();
        var p = LongParams(path, prompt.Length + count + 8);
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        var batch = new LLamaBatch();
        for (int s = 0; s < prompt.Length; s += 512)
        {
            batch.Clear();
            int n = Math.Min(512, prompt.Length - s);
            for (int i = 0; i < n; i++) batch.Add((LLamaToken)prompt[s + i], s + i, LLamaSeqId.Zero, s + i == prompt.Length - 1);
            if (ctx.Decode(batch) is var r && r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
        }
        var result = new int[count];
        for (int k = 0; k < count; k++)
        {
            result[k] = Compare.ArgMax(ctx.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            if (k + 1 == count) break;
            batch.Clear();
            batch.Add((LLamaToken)result[k], prompt.Length + k, LLamaSeqId.Zero, true);
            if (ctx.Decode(batch) is var r && r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
        }
        return result;
    }
}
