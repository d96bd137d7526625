using System.Text.Json.Nodes;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// Every architecture of the table, read from a Hugging Face folder: the folder <see cref="HfFixture"/> writes from a tiny
/// synthetic GGUF (the inverse of the converter) gives the GGUF's logits loaded directly and after `convert`, and the
/// converted file holds the source's bytes and metadata. Each family's config.json fields land in their GGUF keys.
/// </summary>
public class HfFamilyTests
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260, 261, 700, 12, 13, 14, 99, 600];

    /// <summary>Every tiny test preset of every supported architecture.</summary>
    public static TheoryData<string> TinyPresets() => new(TinyPresetNames());

    private static IEnumerable<string> TinyPresetNames() =>
        // checkpoints with experts (one tensor per expert) are not read from Hugging Face folders: MoE presets are left out
        SynthPreset.All.Where(p => p.Name.StartsWith("tiny-", StringComparison.Ordinal) && p.ExpertCount == 0 && Architectures.Supported.Any(a => a.Name == p.Architecture)).Select(p => p.Name);

    private static float[] Logits(ITensorSource src)
    {
        using var model = DecoderModel.Load(src);
        var cache = model.CreateCache(64);
        var state = model.CreateState(Prompt.Length, 64);
        var all = new float[Prompt.Length * model.Config.VocabSize];
        model.Forward(Prompt, cache, state, 2, all);
        return all;
    }

    private static double MaxRel(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double scale = b.Max(Math.Abs), max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max / scale;
    }

    [Fact]
    public void Every_supported_architecture_has_a_tiny_preset_and_a_hugging_face_class()
    {
        var presets = TinyPresetNames().ToList();
        foreach (var a in Architectures.Supported.Where(a => a.HfClasses.Count > 0 || !a.Experts))
        {
            Assert.Contains(presets, p => SynthPreset.Get(p).Architecture == a.Name);
            Assert.NotEmpty(a.HfClasses);
            foreach (var cls in a.HfClasses) Assert.Same(a, Architectures.FromHfClass(cls));
        }
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void Logits_of_the_gguf_the_folder_loaded_directly_and_the_folder_converted_agree(string preset)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("converted.gguf");
        var p = SynthPreset.Get(preset);
        SyntheticModel.Write(p, SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        var spec = Architectures.Get(p.Architecture);

        float[] reference;
        using (var g = GgufFile.Open(gguf)) reference = Logits(g);
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Same(spec, h.Spec);
            // Q/K rows are permuted exactly when the GGUF's rotary pairing is NORM; read directly, NEOX on HF rows is the same rotation
            Assert.Equal(spec.Rope == RopeStyle.Norm, h.QkNeedsPermute);
            Assert.Equal(spec.Rope == RopeStyle.Norm ? "neox" : null, h.GetString(HfCheckpoint.RopeStyleKey));
            double direct = MaxRel(Logits(h), reference);
            TestContext.Current.TestOutputHelper?.WriteLine($"{preset}: loaded directly, max |diff| / max |logit| = {direct:G3}");
            // the same weights with Q/K rows in another order: the dot products sum in another order (measured <= 3e-7)
            Assert.True(direct < 1e-6, $"{preset} loaded directly: max |diff| / max |logit| = {direct}");
            HfConverter.Convert(h, converted, "f32", threads: 2);
        }
        using (var c = GgufFile.Open(converted))
        using (var g = GgufFile.Open(gguf))
        {
            Assert.False(c.Contains(HfCheckpoint.RopeStyleKey));
            // the converter restores the source's bytes: permutation undone, Gemma's +1 back on its norms, rope factors regenerated
            foreach (var t in g.Tensors)
            {
                Assert.True(c.TryGetTensor(t.Name, out var ct), $"{t.Name} is missing after convert");
                Assert.Equal(t.Dimensions, ct.Dimensions);
                Assert.True(g.TensorData(t).SequenceEqual(c.TensorData(ct)), $"{t.Name} differs after convert");
            }
            Assert.Equal(g.Tensors.Count, c.Tensors.Count);
            // every architecture key of the source comes back with its value (the converter may add keys llama.cpp's does)
            string prefix = spec.Name + ".";
            foreach (var key in g.MetadataKeys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)))
            {
                Assert.True(c.Contains(key), $"{key} is missing after convert");
                Assert.Equal(g.Metadata[key], c.Metadata[key]);
            }
            Assert.Equal(0, MaxRel(Logits(c), reference)); // same bytes, same model: the same logits
        }
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void A_bf16_folder_loaded_directly_gives_the_logits_of_its_bf16_conversion(string preset)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf"), converted = dir.File("converted.gguf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf, dtype: OpenWeights.Formats.Safetensors.SafetensorsDType.BF16);
        float[] direct;
        using (var h = HfCheckpoint.Open(hf))
        {
            direct = Logits(h);
            HfConverter.Convert(h, converted, "bf16", threads: 2);
        }
        using var c = GgufFile.Open(converted);
        // the same BF16 matrices (Q/K rows in the GGUF's order where NORM) and the same F32 norms (Gemma's + 1)
        double d = MaxRel(direct, Logits(c));
        Assert.True(d < 1e-6, $"{preset}: max |diff| / max |logit| = {d}");
    }

    /// <summary>A folder of a tiny preset with config.json edited; returns the folder.</summary>
    private static string Folder(TempDir dir, string preset, Action<JsonObject> edit)
    {
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        string cfg = Path.Combine(hf, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        edit(json);
        File.WriteAllText(cfg, json.ToJsonString());
        return hf;
    }

    private static void AssertOneLine(Exception? e, string contains)
    {
        Assert.NotNull(e);
        Assert.True(e is OpenWeightsException, e.GetType().Name + ": " + e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(contains, e.Message);
    }

    [Fact]
    public void Llama_config_keys_land_in_their_gguf_keys()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-llama", c =>
        {
            c["max_position_embeddings"] = 4321; c["rope_theta"] = 123456.0; c["rms_norm_eps"] = 3e-6; c["head_dim"] = 64;
            c["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 2.0 };
        });
        using var h = HfCheckpoint.Open(hf);
        Assert.Equal(4321L, h.GetInteger("llama.context_length"));
        Assert.Equal(123456.0, h.GetNumber("llama.rope.freq_base"));
        Assert.Equal(3e-6f, (float)h.GetNumber("llama.attention.layer_norm_rms_epsilon")!);
        Assert.Equal(1024L, h.GetInteger("llama.vocab_size"));
        Assert.Equal(64L, h.GetInteger("llama.rope.dimension_count"));
        // head_dim given: key and value length written, as convert_hf_to_gguf.py's TextModel does
        Assert.Equal(64L, h.GetInteger("llama.attention.key_length"));
        Assert.Equal(64L, h.GetInteger("llama.attention.value_length"));
        Assert.Equal("linear", h.GetString("llama.rope.scaling.type"));
        Assert.Equal(2.0, h.GetNumber("llama.rope.scaling.factor"));
    }

    [Fact]
    public void Unknown_architectures_and_model_types_are_one_line_naming_the_supported_ones()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-qwen2", c => c["architectures"] = new JsonArray("MambaForCausalLM"));
        var e = Record.Exception(() => HfCheckpoint.Open(hf));
        AssertOneLine(e, "unsupported Hugging Face architecture 'MambaForCausalLM'");
        foreach (var a in Architectures.Supported) foreach (var cls in a.HfClasses) Assert.Contains(cls, e!.Message);

        string cfg = Path.Combine(hf, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        json.Remove("architectures");
        json["model_type"] = "mamba";
        File.WriteAllText(cfg, json.ToJsonString());
        e = Record.Exception(() => HfCheckpoint.Open(hf));
        AssertOneLine(e, "model_type: 'mamba'");
        foreach (var a in Architectures.Supported) Assert.Contains(a.Name, e!.Message);

        // without architectures, model_type alone names the family
        json["model_type"] = "qwen2";
        File.WriteAllText(cfg, json.ToJsonString());
        using (var h = HfCheckpoint.Open(hf)) Assert.Equal("qwen2", h.Architecture);
        json["model_type"] = "mistral";
        json["architectures"] = null;
        File.WriteAllText(cfg, json.ToJsonString());
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "does not match its config.json"); // a qwen2 folder read as llama: its biases are not llama's
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_multimodal_checkpoints_language_model_loads_as_the_text_model(bool newerNames)
    {
        using var dir = new TempDir();
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        float[] reference;
        using (var h = HfCheckpoint.Open(hf)) reference = Logits(h);
        // text_config's model_type names the family; the vision tower and projector are left out, as the converter does
        HfFixture.ToMultimodal(hf, "llava", null, newerNames);
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("llama", h.Architecture);
            Assert.Equal(1024L, h.GetInteger("llama.vocab_size"));
            Assert.DoesNotContain(h.Tensors, t => t.Name.Contains("vision", StringComparison.Ordinal) || t.Name.Contains("projector", StringComparison.Ordinal));
            Assert.Equal(0, MaxRel(Logits(h), reference));
        }
        // a text_config repeating a key: read as any JSON file is (no crash outside the one-line errors)
        string cfg = Path.Combine(hf, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"text_config\":{", "\"text_config\":{\"hidden_size\":7,"));
        Assert.Contains("\"hidden_size\":7,", File.ReadAllText(cfg));
        var e = Record.Exception(() => HfCheckpoint.Open(hf).Dispose());
        Assert.True(e is null or OpenWeightsException, e?.ToString());
    }

    [Fact]
    public void A_rope_scaling_type_no_family_maps_names_the_supported_ones()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-qwen2", c => c["rope_scaling"] = new JsonObject { ["type"] = "longrope", ["long_factor"] = new JsonArray(), ["short_factor"] = new JsonArray() });
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "rope_scaling type 'longrope' is not supported for qwen2 (supported: llama3, linear, yarn)");
    }
}
