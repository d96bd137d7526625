using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Lora;

public class LoraFormatTests
{
    public static ModelConfig Config(string arch = "llama") => new()
    {
        Architecture = Architectures.Get(arch), VocabSize = 64, Dim = 32, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 8, FfnDim = 48,
        ContextLength = 64, RmsEps = 1e-5f, RopeBase = 10000, RopeDims = 8, RopeFreqScale = 1, RopeStyle = Architectures.Get(arch).Rope,
    };

    [Fact]
    public void PeftRoundTripKeepsEverything()
    {
        using var dir = new TempDir();
        var a = LoraTestUtil.Random(Config(), rank: 4, alpha: 16, rs: true);
        PeftAdapter.Write(a, dir.Path, dropout: 0.05f);
        LoraTestUtil.AssertSame(a, PeftAdapter.Read(dir.Path));
        LoraTestUtil.AssertSame(a, PeftAdapter.Read(dir.File(PeftAdapter.WeightsFile)));

        var cfg = JsonNode.Parse(File.ReadAllText(dir.File(PeftAdapter.ConfigFile)))!.AsObject();
        Assert.Equal("LORA", (string?)cfg["peft_type"]);
        Assert.Equal("CAUSAL_LM", (string?)cfg["task_type"]);
        Assert.Equal(4, (int)cfg["r"]!);
        Assert.Equal(16.0, (double)cfg["lora_alpha"]!);
        Assert.Equal(0.05, (double)cfg["lora_dropout"]!, 6);
        Assert.True((bool)cfg["use_rslora"]!);
        Assert.Equal("none", (string?)cfg["bias"]);
        Assert.False((bool)cfg["fan_in_fan_out"]!);
        Assert.True((bool)cfg["inference_mode"]!);
        Assert.Equal("test/base", (string?)cfg["base_model_name_or_path"]);
        Assert.Equal(LoraTargets.Default, cfg["target_modules"]!.AsArray().Select(x => (string)x!));

        using var st = SafetensorsFile.Open(dir.File(PeftAdapter.WeightsFile));
        var qa = st.GetTensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
        var db = st.GetTensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
        Assert.Equal([4L, 32], qa.Shape);
        Assert.Equal([32L, 4], db.Shape);
        Assert.Equal(SafetensorsDType.F32, qa.DType);
        Assert.Equal(2 * 7 * 2, st.Tensors.Count);
    }

    [Theory]
    [InlineData(SafetensorsDType.F16, 1e-3f)]
    [InlineData(SafetensorsDType.BF16, 2e-3f)]
    public void PeftHalfPrecisionReadsBack(SafetensorsDType dtype, float tol)
    {
        using var dir = new TempDir();
        var a = LoraTestUtil.Random(Config(), rank: 2);
        PeftAdapter.Write(a, dir.Path, dtype: dtype);
        LoraTestUtil.AssertSame(a, PeftAdapter.Read(dir.Path), tol);
    }

    [Fact]
    public void PeftFromOtherToolsIsRead()
    {
        // Names with the adapter name (".default"), BF16 weights, target_modules as a regex string, extra config keys.
        using var dir = new TempDir();
        var rng = new Random(3);
        var st = new SafetensorsWriter();
        var aq = LoraTestUtil.Fill(rng, 2 * 32, 0.5f); var bq = LoraTestUtil.Fill(rng, 32 * 2, 0.5f);
        st.Add("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", SafetensorsDType.BF16, [2, 32], Bf16(aq));
        st.Add("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight", SafetensorsDType.BF16, [32, 2], Bf16(bq));
        st.Write(dir.File(PeftAdapter.WeightsFile));
        File.WriteAllText(dir.File(PeftAdapter.ConfigFile), """
            {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ".*q_proj", "rank_pattern": {}, "alpha_pattern": {},
             "use_rslora": false, "bias": "none", "task_type": "CAUSAL_LM", "megatron_config": null, "layer_replication": null}
            """);
        var a = PeftAdapter.Read(dir.Path);
        Assert.Equal(2f, a.Scale);
        Assert.Equal(["q_proj"], a.TargetModules);
        var w = a.Weights["blk.0.attn_q.weight"];
        Assert.Equal((2, 32, 32), (w.Rank, w.In, w.Out));
        LoraTestUtil.AssertClose(aq, w.A, 4e-3f, "A");
    }

    [Theory]
    [InlineData("\"rank_pattern\": {\"q_proj\": 8}", "rank_pattern")]
    [InlineData("\"alpha_pattern\": {\"q_proj\": 8}", "alpha_pattern")]
    [InlineData("\"use_dora\": true", "DoRA")]
    [InlineData("\"peft_type\": \"IA3\"", "only LORA")]
    [InlineData("\"bias\": \"all\"", "bias")]
    public void PeftUnsupportedConfigIsAClearError(string extra, string expected)
    {
        using var dir = new TempDir();
        PeftAdapter.Write(LoraTestUtil.Random(Config(), rank: 2), dir.Path);
        var cfg = JsonNode.Parse(File.ReadAllText(dir.File(PeftAdapter.ConfigFile)))!.AsObject();
        var patch = JsonNode.Parse("{" + extra + "}")!.AsObject();
        foreach (var (k, v) in patch.ToList()) { patch.Remove(k); cfg[k] = v; }
        File.WriteAllText(dir.File(PeftAdapter.ConfigFile), cfg.ToJsonString());
        var e = Assert.Throws<OpenWeightsException>(() => PeftAdapter.Read(dir.Path));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    private static byte[] Bf16(float[] v) => MemoryMarshal.AsBytes(v.Select(HalfConvert.Fp32ToBf16).ToArray().AsSpan()).ToArray();

    [Theory]
    [InlineData(GgmlType.F32, 0f)]
    [InlineData(GgmlType.F16, 1e-3f)]
    public void GgufRoundTripKeepsEverything(GgmlType type, float tol)
    {
        using var dir = new TempDir();
        var c = Config();
        var a = LoraTestUtil.Random(c, rank: 4, alpha: 6);
        var path = dir.File("a.gguf");
        GgufLoraAdapter.Write(a, path, "llama", type);
        var (back, arch) = GgufLoraAdapter.Read(path);
        Assert.Equal("llama", arch);
        LoraTestUtil.AssertSame(a, back, tol);

        using var f = GgufFile.Open(path);
        Assert.Equal("adapter", f.GetString("general.type"));
        Assert.Equal("lora", f.GetString("adapter.type"));
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.IsType<float>(f.Metadata["adapter.lora.alpha"]);
        Assert.Equal(6f, (float)f.Metadata["adapter.lora.alpha"]);
        Assert.True(f.TryGetTensor("blk.1.attn_k.weight.lora_a", out var ka));
        Assert.True(f.TryGetTensor("blk.1.attn_k.weight.lora_b", out var kb));
        Assert.Equal([32L, 4], ka.Dimensions);   // [in, r]
        Assert.Equal([4L, 16], kb.Dimensions);   // [r, out]
        Assert.Equal(type, ka.Type);
    }

    [Fact]
    public void GgufAlphaCarriesRsLoraScaleAndModelOrder()
    {
        using var dir = new TempDir();
        var c = Config();
        var a = LoraTestUtil.Random(c, rank: 4, alpha: 6, rs: true);
        var path = dir.File("a.gguf");
        GgufLoraAdapter.Write(a, path, c);
        var back = GgufLoraAdapter.Read(path, c);
        Assert.Equal(a.Scale, LoraNames.ScaleOf(back, back.Weights["blk.0.attn_q.weight"]), 5);
        // A llama model loaded in HF order (NEOX override) gets its rows converted both ways.
        var hfOrder = c with { RopeStyle = RopeStyle.Neox };
        GgufLoraAdapter.Write(a, path, hfOrder);
        var g = GgufLoraAdapter.Read(path).Adapter;
        LoraTestUtil.AssertClose(LoraRotary.HfToGguf(a.Weights["blk.0.attn_q.weight"].B, 32, 4, 4), g.Weights["blk.0.attn_q.weight"].B, 0, "q B");
        LoraTestUtil.AssertClose(LoraRotary.HfToGguf(a.Weights["blk.1.attn_k.weight"].B, 16, 4, 2), g.Weights["blk.1.attn_k.weight"].B, 0, "k B");
        LoraTestUtil.AssertClose(a.Weights["blk.0.attn_v.weight"].B, g.Weights["blk.0.attn_v.weight"].B, 0, "v B");
        LoraTestUtil.AssertSame(a, GgufLoraAdapter.Read(path, hfOrder), weightsOnly: true);
    }
}
