using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tests.Oracle;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// An HF-format synthetic model written by the test from a synthetic GGUF gives the same logits and tokens loaded
/// directly, after `convert`, and as the GGUF it came from; llama.cpp agrees on the converted file.
/// </summary>
public class HfCheckpointTests
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12, 13, 14, 99, 600];

    private static readonly string[] Texts =
    [
        "hello world", "The quick brown fox jumps over the lazy dog 12345 times!", "  spaces\n\nand\ttabs  ",
        "<|im_start|>user\nhi<|im_end|>", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhey<|eot_id|>", "naïve café ünïcödé 日本語",
    ];

    private static float[] Logits(ITensorSource src)
    {
        using var model = DecoderModel.Load(src);
        var cache = model.CreateCache(64);
        var state = model.CreateState(Prompt.Length, 64);
        var all = new float[Prompt.Length * model.Config.VocabSize];
        model.Forward(Prompt, cache, state, 2, all);
        return all;
    }

    private static void AssertClose(float[] a, float[] b, double relTol, string what)
    {
        Assert.Equal(a.Length, b.Length);
        double scale = b.Max(Math.Abs), max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        Assert.True(max / scale < relTol, $"{what}: max abs diff {max} vs scale {scale}");
    }

    [Theory]
    [InlineData("tiny-llama", 1)]
    [InlineData("tiny-qwen2", 1)]
    [InlineData("tiny-llama", 3)]
    [InlineData("tiny-qwen2", 2)]
    public void Same_logits_directly_after_convert_and_as_the_source_gguf(string preset, int shards)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("converted.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf, shards);

        float[] reference;
        using (var g = GgufFile.Open(gguf)) reference = Logits(g);
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal(shards, h.WeightFiles.Count);
            Assert.Equal(preset == "tiny-llama" ? "neox" : null, h.GetString("openweights.rope.style"));
            AssertClose(Logits(h), reference, 1e-5, "loaded directly");
            HfConverter.Convert(h, converted, "f32", threads: 2);
        }
        using (var c = GgufFile.Open(converted))
        {
            Assert.False(c.Contains("openweights.rope.style"));
            AssertClose(Logits(c), reference, 1e-5, "after convert");
            // the permutation restores the source GGUF's Q/K bytes exactly
            using var g = GgufFile.Open(gguf);
            foreach (var t in g.Tensors)
            {
                Assert.True(c.TryGetTensor(t.Name, out var ct), t.Name);
                Assert.Equal(t.Dimensions, ct.Dimensions);
                Assert.True(g.TensorData(t).SequenceEqual(c.TensorData(ct)), $"{t.Name} differs");
            }
        }
        var theirs = LlamaCpp.Logits(converted, Prompt);
        int v = reference.Length / Prompt.Length;
        for (int t = 0; t < Prompt.Length; t++)
        {
            var (maxAbs, cos) = Compare.Logits(reference.AsSpan(t * v, v), theirs[t]);
            Assert.True(maxAbs / theirs[t].Max(Math.Abs) < 1e-5, $"llama.cpp position {t}: {maxAbs}");
            Assert.True(cos > 0.999999, $"llama.cpp position {t}: cosine {cos}");
        }
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void Tokenization_is_the_same_directly_after_convert_in_the_source_gguf_and_in_llama_cpp(string preset)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("converted.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        using var g = GgufFile.Open(gguf);
        using var h = HfCheckpoint.Open(hf);
        HfConverter.Convert(h, converted, "q8_0", threads: 2);
        using var c = GgufFile.Open(converted);
        Assert.Equal(g.GetString("tokenizer.ggml.pre"), h.GetString("tokenizer.ggml.pre"));
        Assert.Equal(g.GetString("tokenizer.chat_template"), h.GetString("tokenizer.chat_template"));
        Assert.Equal(g.GetString("tokenizer.chat_template"), c.GetString("tokenizer.chat_template"));
        if (preset == "tiny-llama") Assert.Equal("{{ 'tools' }}", h.GetString("tokenizer.chat_template.tool_use"));
        Assert.Equal(g.GetBool("tokenizer.ggml.add_bos_token"), h.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Equal(g.GetArray<string>("tokenizer.ggml.tokens"), h.GetArray<string>("tokenizer.ggml.tokens"));
        Assert.Equal(g.GetArray<int>("tokenizer.ggml.token_type"), h.GetArray<int>("tokenizer.ggml.token_type"));
        Assert.Equal(g.GetArray<string>("tokenizer.ggml.merges"), h.GetArray<string>("tokenizer.ggml.merges"));
        var tg = Tokenizer.FromGguf(g); var th = Tokenizer.FromGguf(h); var tc = Tokenizer.FromGguf(c);
        foreach (var text in Texts)
            foreach (bool special in new[] { false, true })
            {
                var expected = tg.Encode(text, addSpecial: true, parseSpecial: special);
                Assert.Equal(expected, th.Encode(text, addSpecial: true, parseSpecial: special));
                Assert.Equal(expected, tc.Encode(text, addSpecial: true, parseSpecial: special));
                Assert.Equal(expected, LlamaCpp.Tokenize(converted, text, addBos: tc.AddBos, special: special));
            }
    }

    [Theory]
    [InlineData("q8_0", 4e-2, 0.9995)]
    [InlineData("q4_k_m", 5e-2, 0.999)]
    [InlineData("f16", 2e-3, 0.99999)]
    public void Quantized_convert_agrees_with_llama_cpp(string type, double relTol, double minCos)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("converted.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf, dtype: SafetensorsDType.BF16);
        using (var h = HfCheckpoint.Open(hf)) HfConverter.Convert(h, converted, type, threads: 2);
        using var c = GgufFile.Open(converted);
        if (type == "q4_k_m")
        {
            Assert.Equal(GgmlType.Q4_K, c.GetTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.Q6_K, c.GetTensor("output.weight").Type);
        }
        Assert.Equal(GgmlType.F32, c.GetTensor("blk.0.attn_norm.weight").Type);
        var ours = Logits(c);
        var theirs = LlamaCpp.Logits(converted, Prompt);
        int v = ours.Length / Prompt.Length;
        for (int t = 0; t < Prompt.Length; t++)
        {
            var (maxAbs, cos) = Compare.Logits(ours.AsSpan(t * v, v), theirs[t]);
            Assert.True(maxAbs / theirs[t].Max(Math.Abs) < relTol, $"{type} position {t}: {maxAbs}");
            Assert.True(cos > minCos, $"{type} position {t}: cosine {cos}");
        }
    }

    /// <summary>
    /// An F16 checkpoint's weights lie in the read-only safetensors maps (so the repacked ones' pages may be released),
    /// the rope factors it computes do not; loaded and repacked, it gives its source GGUF's logits.
    /// </summary>
    [Fact]
    public void F16_checkpoint_reports_its_file_mapped_tensors_and_repacks_like_its_gguf()
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f16"), gguf, threads: 2);
        HfFixture.Write(gguf, hf, 1);
        float[] reference;
        using (var g = GgufFile.Open(gguf))
        {
            Assert.All(g.Tensors, t => Assert.True(((ITensorSource)g).IsFileMapped(t), t.Name));
            reference = Logits(g);
        }
        using var h = HfCheckpoint.Open(hf);
        ITensorSource src = h;
        Assert.True(src.TryGetTensor("rope_freqs.weight", out var rope));
        Assert.False(src.IsFileMapped(rope));
        Assert.True(src.TryGetTensor("blk.0.ffn_up.weight", out var up));
        Assert.True(src.IsFileMapped(up));
        // the checkpoint keeps Q/K rows in HF's permuted order (neox rope): another float order, amplified by the F16
        // activation rounding (as in RepackTests)
        AssertClose(Logits(h), reference, 2e-3, "f16 checkpoint vs its gguf, both repacked");
    }

    [Fact]
    public void Bf16_checkpoint_loads_directly_and_matches_its_bf16_conversion_exactly()
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("c.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2"), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf, dtype: SafetensorsDType.BF16);
        using var h = HfCheckpoint.Open(hf);
        Assert.Equal(GgmlType.BF16, h.GetTensor("blk.0.attn_q.weight").Type);
        var direct = Logits(h);
        HfConverter.Convert(h, converted, "bf16", threads: 2);
        using var c = GgufFile.Open(converted);
        Assert.Equal(direct, Logits(c));
    }

    private static string MakeHf(TempDir dir, string preset = "tiny-qwen2")
    {
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        return hf;
    }

    private static void AssertOneLine(Exception e, string contains)
    {
        Assert.True(e is OpenWeightsException, e.GetType().Name + ": " + e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(contains, e.Message);
    }

    [Fact]
    public void Malformed_checkpoints_fail_with_one_line()
    {
        using var dir = new TempDir();
        string hf = MakeHf(dir);
        string cfg = Path.Combine(hf, "config.json");
        string good = File.ReadAllText(cfg);

        File.WriteAllText(cfg, "{ not json");
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "config.json is not valid JSON");
        File.WriteAllText(cfg, good.Replace("\"hidden_size\"", "\"hidden_sizeX\""));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "hidden_size is missing");
        File.WriteAllText(cfg, good.Replace("Qwen2ForCausalLM", "GPTNeoXForCausalLM"));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "unsupported Hugging Face architecture 'GPTNeoXForCausalLM'");
        File.WriteAllText(cfg, good.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}"));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "rope_scaling type 'dynamic'");
        File.WriteAllText(cfg, good);

        string st = Path.Combine(hf, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(st, bytes[..(bytes.Length / 2)]);
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "model.safetensors");
        File.WriteAllBytes(st, bytes);

        // wrong shape: config says more layers than the file has (refused at open, see HfConfigContradictionTests)
        File.WriteAllText(cfg, good.Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "tensor model.layers.2.input_layernorm.weight is missing");
        File.WriteAllText(cfg, good);

        File.Delete(st);
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "neither model.safetensors nor model.safetensors.index.json");
        File.WriteAllText(Path.Combine(hf, "model.safetensors.index.json"), "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"}}");
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "shard 'model-00001-of-00002.safetensors' is missing");
        File.WriteAllText(Path.Combine(hf, "model.safetensors.index.json"), "{\"weight_map\": {\"model.embed_tokens.weight\": \"../x.safetensors\"}}");
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf))!, "invalid shard");

        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(dir.File("nowhere")))!, "folder not found");
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(dir.Path))!, "no config.json");
    }

    [Fact]
    public void Tensor_names_map_to_gguf_and_unknown_tensors_are_refused()
    {
        Assert.Equal("blk.7.attn_q.weight", HfCheckpoint.MapName(Architectures.Get("llama"), "model.layers.7.self_attn.q_proj.weight").Name);
        Assert.Equal("blk.0.ffn_down.weight", HfCheckpoint.MapName(Architectures.Get("llama"), "model.layers.0.mlp.down_proj.weight").Name);
        Assert.Equal("output.weight", HfCheckpoint.MapName(Architectures.Get("llama"), "lm_head.weight").Name);
        Assert.Null(HfCheckpoint.MapName(Architectures.Get("llama"), "model.layers.0.self_attn.rotary_emb.inv_freq").Name);
        Assert.Null(HfCheckpoint.MapName(Architectures.Get("llama"), "model.rotary_emb.inv_freq").Name);
        AssertOneLine(Record.Exception(() => HfCheckpoint.MapName(Architectures.Get("llama"), "model.vision_tower.x.weight"))!, "unexpected tensor 'model.vision_tower.x.weight'");
        // llama.cpp's permutation: w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)
        Assert.Equal([0L, 4, 1, 5, 2, 6, 3, 7, 8, 12], Enumerable.Range(0, 10).Select(r => HfConverter.PermutedSourceRow(r, 8)).ToArray());
    }

    [Fact]
    public void Mistral_checkpoints_load_as_llama_and_linear_rope_scaling_becomes_metadata()
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        string cfg = Path.Combine(hf, "config.json");
        string good = File.ReadAllText(cfg);
        float[] reference;
        using (var h = HfCheckpoint.Open(hf)) reference = Logits(h);
        File.WriteAllText(cfg, good.Replace("LlamaForCausalLM", "MistralForCausalLM").Replace("\"model_type\": \"llama\"", "\"model_type\": \"mistral\", \"sliding_window\": 4096"));
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("llama", h.GetString("general.architecture"));
            AssertClose(Logits(h), reference, 1e-6, "mistral");
        }
        var linear = System.Text.RegularExpressions.Regex.Replace(good, "\"rope_scaling\": \\{[^}]*\\}", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}");
        File.WriteAllText(cfg, linear);
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("linear", h.GetString("llama.rope.scaling.type"));
            Assert.Equal(4.0, h.GetNumber("llama.rope.scaling.factor"));
            Assert.False(h.TryGetTensor("rope_freqs.weight", out _));
            using var m = DecoderModel.Load(h);
            Assert.Equal(0.25f, m.Config.RopeFreqScale);
        }
    }

    [Fact]
    public void SentencePiece_style_bpe_tokenizer_json_becomes_a_llama_vocab()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), """
            {"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "pre_tokenizer": null,
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
             "decoder": {"type": "Sequence", "decoders": [{"type": "Replace"}, {"type": "ByteFallback"}]},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
                       "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x00>": 3, "▁": 4, "a": 5, "▁a": 6},
                       "merges": ["▁ a"]}}
            """);
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true}""");
        var meta = new Dictionary<string, object>();
        HfTokenizer.AddMetadata(dir.Path, 8, (k, v) => meta[k] = v);
        Assert.Equal("llama", meta["tokenizer.ggml.model"]);
        Assert.Equal(new[] { 2, 3, 3, 6, 1, 1, 1, 5 }, (int[])meta["tokenizer.ggml.token_type"]);
        Assert.Equal("[PAD7]", ((string[])meta["tokenizer.ggml.tokens"])[7]);
        Assert.Equal(true, meta["tokenizer.ggml.add_space_prefix"]);
        Assert.Equal(1u, meta["tokenizer.ggml.bos_token_id"]);
        Assert.Equal(true, meta["tokenizer.ggml.add_bos_token"]);
        Assert.True(((float[])meta["tokenizer.ggml.scores"])[6] < ((float[])meta["tokenizer.ggml.scores"])[5]);
    }

    [Fact]
    public void Cli_info_tokenize_run_and_convert_accept_a_checkpoint_folder()
    {
        using var dir = new TempDir();
        string hf = MakeHf(dir, "tiny-llama");
        (int, string, string) Run(params string[] args)
        {
            var o = new StringWriter(); var e = new StringWriter();
            int code = OpenWeights.Cli.Cli.Run(args, o, e);
            return (code, o.ToString(), e.ToString());
        }
        var info = Run("info", hf);
        Assert.Equal(0, info.Item1);
        Assert.Contains("Hugging Face safetensors", info.Item2);
        Assert.Contains("rope neox", info.Item2);
        var tok = Run("tokenize", hf, "hello world", "--json");
        Assert.Equal(0, tok.Item1);
        Assert.Contains("\"count\"", tok.Item2);
        var run = Run("run", hf, "hello", "-n", "3", "--temp", "0", "-t", "2", "--ctx", "64");
        Assert.Equal(0, run.Item1);
        string outFile = dir.File("out.gguf");
        var conv = Run("convert", hf, "-o", outFile, "--type", "q4_0", "-t", "2");
        Assert.Equal(0, conv.Item1);
        Assert.Contains("wrote", conv.Item2);
        var infoG = Run("info", outFile, "--json");
        Assert.Equal(0, infoG.Item1);
        Assert.Contains("\"rope_style\": \"norm\"", infoG.Item2);
        var bad = Run("convert", hf, "-o", outFile, "--type", "q3_z");
        Assert.Equal(1, bad.Item1);
        Assert.Contains("unknown type 'q3_z'", bad.Item3);
        var folder = Run("info", dir.Path);
        Assert.Equal(1, folder.Item1);
        Assert.Contains("without config.json", folder.Item3);
        var missing = Run("info", "no-such-model-anywhere");
        Assert.Equal(1, missing.Item1);
        Assert.Contains("model not found", missing.Item3);
    }
}
