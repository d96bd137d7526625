using System.Text.Json.Nodes;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Kernels;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// Per family, a Hugging Face folder opened whole: its config.json fields land in the GGUF keys llama.cpp's converter
/// writes (values edited away from the synthetic preset's so that a key read from the wrong field shows), its tensors
/// under the table's GGUF names, and what llama.cpp would run differently is refused in one line.
/// </summary>
public class HfFamilyCheckpointTests
{
    /// <summary>A folder of a tiny preset with config.json edited.</summary>
    private static string Folder(TempDir dir, string preset, Action<JsonObject>? edit = null)
    {
        string gguf = dir.File("src.gguf"), hf = dir.File("hf");
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("f32"), gguf, threads: 2);
        HfFixture.Write(gguf, hf);
        if (edit is not null) Edit(hf, edit);
        return hf;
    }

    private static void Edit(string hf, Action<JsonObject> edit)
    {
        string cfg = Path.Combine(hf, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        edit(json);
        File.WriteAllText(cfg, json.ToJsonString());
    }

    private static void AssertOneLine(Exception? e, string contains)
    {
        Assert.NotNull(e);
        Assert.True(e is OpenWeightsException, e.GetType().Name + ": " + e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(contains, e.Message);
    }

    private static float[] Vector(ITensorSource s, string name)
    {
        Assert.True(s.TryGetTensor(name, out var t), name);
        return TensorLoader.Vector(s, name, (int)t.ElementCount);
    }

    [Fact]
    public void Gemma2_config_keys_land_in_their_gguf_keys_and_norms_gain_their_one()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-gemma2", c =>
        {
            c["attn_logit_softcapping"] = 41.5; c["final_logit_softcapping"] = 27.25; c["sliding_window"] = 96; c["rope_theta"] = 20000.0;
        });
        using var h = HfCheckpoint.Open(hf);
        Assert.Equal("gemma2", h.Architecture);
        Assert.Equal(1f, h.Spec.NormWeightOffset);
        Assert.False(h.QkNeedsPermute);
        Assert.Equal(41.5, h.GetNumber("gemma2.attn_logit_softcapping"));
        Assert.Equal(27.25, h.GetNumber("gemma2.final_logit_softcapping"));
        Assert.Equal(96L, h.GetInteger("gemma2.attention.sliding_window"));
        Assert.Equal(20000.0, h.GetNumber("gemma2.rope.freq_base"));
        // HF stores w, the GGUF w + 1: every norm (pre, post, final) is presented with its one added
        using var g = GgufFile.Open(dir.File("src.gguf"));
        foreach (var name in new[] { Block(0, AttnNorm), Block(0, AttnPostNorm), Block(1, FfnNorm), Block(1, FfnPostNorm), OutputNorm })
        {
            Assert.False(h.IsFileMapped(h.Tensors.First(t => t.Name == name)), $"{name}: computed, not mapped");
            Assert.Equal(Vector(g, name), Vector(h, name));
        }
        Assert.True(h.IsFileMapped(h.Tensors.First(t => t.Name == Block(0, AttnQ))));
        // a scale llama.cpp would not use
        Edit(hf, c => c["query_pre_attn_scalar"] = 100);
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "query_pre_attn_scalar = 100 is not supported");
    }

    [Fact]
    public void Gemma3_config_keys_and_the_converters_defaults_land_in_their_gguf_keys()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-gemma3", c =>
        {
            c["rope_local_base_freq"] = 12345.0; c["sliding_window"] = 80; c["final_logit_softcapping"] = 15.5;
            c.Remove("rope_theta"); c.Remove("max_position_embeddings"); c["model_type"] = "gemma3_text";
        });
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("gemma3", h.Architecture);
            Assert.Equal(1f, h.Spec.NormWeightOffset);
            Assert.Equal(12345.0, h.GetNumber("gemma3.rope.freq_base_swa"));
            Assert.Equal(80L, h.GetInteger("gemma3.attention.sliding_window"));
            Assert.Equal(15.5, h.GetNumber("gemma3.final_logit_softcapping"));
            Assert.Equal(1_000_000.0, h.GetNumber("gemma3.rope.freq_base")); // the converter's defaults
            Assert.Equal(131072L, h.GetInteger("gemma3.context_length"));
            Assert.Equal(128L, h.GetInteger("gemma3.attention.key_length"));
            using var g = GgufFile.Open(dir.File("src.gguf"));
            foreach (var name in new[] { Block(0, AttnQNorm), Block(0, AttnKNorm), Block(5, FfnPostNorm) })
                Assert.Equal(Vector(g, name), Vector(h, name));
        }
        // without head_dim the converter's default (256) applies, which this file's tensors contradict
        Edit(hf, c => c.Remove("head_dim"));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "query_pre_attn_scalar = 128 is not supported (a GGUF of this shape scales queries by 256^-1/2)");
        Edit(hf, c => c.Remove("query_pre_attn_scalar"));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "self_attn.q_proj.weight has shape [512, 256] where config.json implies [1024, 256]");
        // model_type alone names the family (Gemma3ForCausalLM's config says gemma3_text)
        Edit(hf, c => { c["head_dim"] = 128; c["query_pre_attn_scalar"] = 128; c.Remove("architectures"); });
        using (var h = HfCheckpoint.Open(hf)) Assert.Equal("gemma3", h.Architecture);
    }

    [Fact]
    public void Gemma3_conditional_generation_checkpoints_load_their_language_model()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-gemma3");
        int[] prompt = [2, 300, 301, 17, 900, 44];
        float[] Logits(ITensorSource s)
        {
            using var m = DecoderModel.Load(s);
            var all = new float[prompt.Length * m.Config.VocabSize];
            m.Forward(prompt, m.CreateCache(16), m.CreateState(prompt.Length, 16), 2, all);
            return all;
        }
        float[] reference;
        using (var h = HfCheckpoint.Open(hf)) reference = Logits(h);
        // Gemma 3 4B and larger: the text model's config in text_config, its tensors under model.language_model.*
        HfFixture.ToMultimodal(hf, "gemma3", "Gemma3ForConditionalGeneration", newerNames: true);
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("gemma3", h.Architecture);
            Assert.Equal(reference, Logits(h));
        }
    }

    [Fact]
    public void Phi3_partial_rotary_context_window_and_longrope_land_in_keys_and_factor_tensors()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-phi3", c => { c["original_max_position_embeddings"] = 512; c["sliding_window"] = 2047; });
        using var h = HfCheckpoint.Open(hf);
        Assert.Equal("phi3", h.Architecture);
        Assert.Equal(48L, h.GetInteger("phi3.rope.dimension_count")); // int(0.75 × 256) // 4
        Assert.Equal(512L, h.GetInteger("phi3.rope.scaling.original_context_length"));
        Assert.Equal(2047L, h.GetInteger("phi3.attention.sliding_window"));
        Assert.Equal((float)Math.Sqrt(1 + Math.Log(4096.0 / 512) / Math.Log(512)), (float)h.GetNumber("phi3.rope.scaling.attn_factor")!);
        using var g = GgufFile.Open(dir.File("src.gguf"));
        Assert.Equal(Vector(g, RopeFactorsLong), Vector(h, RopeFactorsLong));
        Assert.Equal(Vector(g, RopeFactorsShort), Vector(h, RopeFactorsShort));
        // fused projections map to the fused GGUF tensors
        Assert.True(h.TryGetTensor(Block(0, AttnQkv), out _));
        Assert.False(h.TryGetTensor(Block(0, AttnQ), out _));
    }

    [Fact]
    public void Qwen3_head_dim_becomes_key_and_value_length_and_qk_norms_map_per_head()
    {
        using var dir = new TempDir();
        using var h = HfCheckpoint.Open(Folder(dir, "tiny-qwen3"));
        Assert.Equal("qwen3", h.Architecture);
        Assert.False(h.QkNeedsPermute);
        Assert.Equal(128L, h.GetInteger("qwen3.attention.key_length"));
        Assert.Equal(128L, h.GetInteger("qwen3.attention.value_length"));
        Assert.True(h.TryGetTensor(Block(1, AttnKNorm), out var kn));
        Assert.Equal([128L], kn.Dimensions);
    }

    [Fact]
    public void SmolLM3_is_permuted_like_llama_and_its_nope_layers_must_be_llama_cpps()
    {
        using var dir = new TempDir();
        string hf = Folder(dir, "tiny-smollm3");
        using (var h = HfCheckpoint.Open(hf))
        {
            Assert.Equal("smollm3", h.Architecture);
            Assert.Equal(RopeStyle.Norm, h.Spec.Rope);
            Assert.True(h.QkNeedsPermute);
            Assert.Equal("neox", h.GetString(HfCheckpoint.RopeStyleKey));
        }
        Edit(hf, c => c["no_rope_layers"] = new JsonArray(1, 1, 0, 1));
        AssertOneLine(Record.Exception(() => HfCheckpoint.Open(hf)), "no_rope_layers[2] = 0 is not supported");
    }

    [Fact]
    public void Olmo2_post_attention_layernorm_is_a_post_norm()
    {
        using var dir = new TempDir();
        using var h = HfCheckpoint.Open(Folder(dir, "tiny-olmo2"));
        Assert.Equal("olmo2", h.Architecture);
        Assert.True(h.TryGetTensor(Block(0, AttnPostNorm), out _));
        Assert.True(h.TryGetTensor(Block(0, FfnPostNorm), out _));
        Assert.False(h.TryGetTensor(Block(0, FfnNorm), out _));
        Assert.False(h.TryGetTensor(Block(0, AttnNorm), out _));
        Assert.True(h.TryGetTensor(Block(0, AttnKNorm), out var kn));
        Assert.Equal([128L], kn.Dimensions); // the whole key projection: 2 KV heads × 64
    }
}
