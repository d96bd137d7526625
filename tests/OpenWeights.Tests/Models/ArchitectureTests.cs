using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Oracle;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Models;

public class ArchitectureTests
{
    private static string Rewrite(TempDir dir, string src, string name, Action<GgufWriter> edit)
    {
        var dst = dir.File(name);
        using var f = GgufFile.Open(src);
        var w = GgufWriter.CopyOf(f);
        edit(w);
        w.Write(dst);
        return dst;
    }

    [Fact]
    public void UnsupportedArchitectureIsRefusedByName()
    {
        using var dir = new TempDir();
        var src = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), src, threads: 1);
        var bad = Rewrite(dir, src, "rwkv.gguf", w => w.Set("general.architecture", "rwkv7"));
        var e = Assert.Throws<OpenWeightsException>(() => DecoderModel.Load(bad));
        Assert.Equal($"unsupported architecture 'rwkv7' (supported: {string.Join(", ", Architectures.Supported.Select(a => a.Name))})", e.Message);
        Assert.StartsWith("unsupported architecture 'rwkv7' (supported: llama, qwen2, ", e.Message);
        var none = Rewrite(dir, src, "none.gguf", w => w.Remove("general.architecture"));
        Assert.Contains("general.architecture is missing", Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(none)).Message);
    }

    [Fact]
    public void WrongTensorShapeIsNamed()
    {
        using var dir = new TempDir();
        var src = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), src, threads: 1);
        var bad = Rewrite(dir, src, "bad.gguf", w => w.Set("llama.feed_forward_length", 768u));
        var e = Assert.Throws<InvalidModelFileException>(() => DecoderModel.Load(bad));
        Assert.Contains("blk.0.ffn_gate.weight has shape [256, 512], expected [256, 768]", e.Message);
    }

    [Fact]
    public void LinearRopeScalingAgreesWithLlamaCpp()
    {
        using var dir = new TempDir();
        var src = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f32"), src, threads: 1);
        var scaled = Rewrite(dir, src, "linear.gguf", w => w.Set("qwen2.rope.scaling.type", "linear").Set("qwen2.rope.scaling.factor", 4f));
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12];
        using var model = DecoderModel.Load(scaled);
        Assert.Equal(0.25f, model.Config.RopeFreqScale);
        var cache = model.CreateCache(32); var state = model.CreateState(prompt.Length, 32);
        var ours = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, cache, state, 2, ours);
        var theirs = LlamaCpp.Logits(scaled, prompt);
        // the scaling matters: unscaled logits differ from llama.cpp's scaled ones
        using var plain = DecoderModel.Load(src);
        var c2 = plain.CreateCache(32); var s2 = plain.CreateState(prompt.Length, 32);
        var unscaled = new float[prompt.Length * plain.Config.VocabSize];
        plain.Forward(prompt, c2, s2, 2, unscaled);
        int v = model.Config.VocabSize, last = prompt.Length - 1;
        Assert.True(Compare.Logits(unscaled.AsSpan(last * v, v), theirs[last]).MaxAbs > 1e-4);
        for (int t = 0; t < prompt.Length; t++)
            Assert.True(Compare.Logits(ours.AsSpan(t * v, v), theirs[t]).MaxAbs < 1e-4, $"position {t}");
    }

    public static TheoryData<string> Presets() => ["tiny-llama", "tiny-qwen2", "smollm2-135m", "tiny-olmo2"];

    [Theory]
    [MemberData(nameof(Presets))]
    public void TokenizationOfSyntheticVocabulariesEqualsLlamaCpp(string preset)
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        var p = SynthPreset.Get(preset);
        // Only the vocabulary matters: shrink the network, keep the preset's tokenizer (pre-tokenizer llama-bpe / qwen2 / smollm / dbrx).
        var small = p with { Dim = 64, Heads = 2, KvHeads = 1, FfnDim = 64, Layers = 1, VocabSize = Math.Min(p.VocabSize, 2048) };
        SyntheticModel.Write(small, SynthType.Parse("f32"), path, threads: 1);
        var tok = Tokenizer.FromGguf(path);
        string[] texts =
        [
            "hello world", "  leading spaces and   runs", "numbers 1234567 and 3.14159", "MiXeD CaSe, punctuation!? (yes)",
            "tabs\tand\nnewlines\n\n", "unicode: café naïve 你好 🙂", "it's they're we'll I'd", "<|im_start|>user\nhi<|im_end|>",
            "", " ", "a", "1 22 333 4444",
        ];
        foreach (var text in texts)
            foreach (var (bos, special) in new[] { (true, false), (false, true) })
                Assert.Equal(LlamaCpp.Tokenize(path, text, bos, special), tok.Encode(text, bos, special));
    }
}
