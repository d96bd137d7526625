using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Quant;

public class QuantRecipeTests
{
    [Fact]
    public void UseMoreBits_matches_llama_cpp_for_32_layers()
    {
        // n = 32: n/8 = 4, 7n/8 = 28; in between every third starting at 4 + 2 = 6
        var expected = new[] { 0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31 };
        var got = Enumerable.Range(0, 32).Where(i => QuantRecipe.UseMoreBits(i, 32)).ToArray();
        Assert.Equal(expected, got);
    }

    [Theory]
    [InlineData("output.weight", 0, GgmlType.Q6_K)]
    [InlineData("token_embd.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.attn_v.weight", 0, GgmlType.Q6_K)]
    [InlineData("blk.4.attn_v.weight", 4, GgmlType.Q4_K)]
    [InlineData("blk.6.attn_v.weight", 6, GgmlType.Q6_K)]
    [InlineData("blk.31.attn_v.weight", 31, GgmlType.Q6_K)]
    [InlineData("blk.0.ffn_down.weight", 0, GgmlType.Q6_K)]
    [InlineData("blk.5.ffn_down.weight", 5, GgmlType.Q4_K)]
    [InlineData("blk.9.ffn_down.weight", 9, GgmlType.Q6_K)]
    [InlineData("blk.0.attn_q.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.attn_k.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.attn_output.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.ffn_gate.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.ffn_up.weight", 0, GgmlType.Q4_K)]
    [InlineData("blk.0.attn_qkv.weight", 0, GgmlType.Q6_K)]
    public void Q4_K_M_dense_model(string name, int layer, GgmlType expected) =>
        Assert.Equal(expected, Q4KMRecipe.TypeFor(name, layer, 32, rowLength: 4096, nDims: 2));

    [Fact]
    public void One_dimensional_and_norm_tensors_keep_their_type()
    {
        Assert.Equal(GgmlType.F32, Q4KMRecipe.TypeFor("blk.0.attn_norm.weight", 0, 32, 4096, nDims: 1));
        Assert.Equal(GgmlType.F32, Q4KMRecipe.TypeFor("blk.0.attn_q.bias", 0, 32, 4096, nDims: 1));
        Assert.Equal(GgmlType.F32, Q4KMRecipe.TypeFor("output_norm.weight", 0, 32, 4096, nDims: 1));
        Assert.Equal(GgmlType.F16, Q4KMRecipe.TypeFor("blk.0.ffn_gate_inp.weight", 0, 32, 4096, nDims: 2, sourceType: GgmlType.F16));
        Assert.Equal(GgmlType.F32, QuantRecipe.TypeFor(QuantPreset.F16, "blk.0.ffn_norm.weight", 0, 32, 4096, 1));
    }

    [Fact]
    public void Tied_embeddings_quantize_token_embd_like_output()
    {
        Assert.Equal(GgmlType.Q6_K, Q4KMRecipe.TypeFor("token_embd.weight", 0, 16, 2048, 2, tiedEmbeddings: true));
        Assert.Equal(GgmlType.Q6_K, QuantRecipe.TypeFor(QuantPreset.Q4_0, "token_embd.weight", 0, 16, 2048, 2, tiedEmbeddings: true));
        // 576 is not a multiple of 256: Q4_K_M goes straight to Q8_0, Q4_0 picks Q6_K which falls back to Q8_0
        Assert.Equal(GgmlType.Q8_0, Q4KMRecipe.TypeFor("token_embd.weight", 0, 30, 576, 2, tiedEmbeddings: true));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.Q4_0, "token_embd.weight", 0, 30, 576, 2, tiedEmbeddings: true));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.Q8_0, "token_embd.weight", 0, 30, 576, 2, tiedEmbeddings: true));
    }

    [Fact]
    public void Legacy_presets()
    {
        Assert.Equal(GgmlType.Q6_K, QuantRecipe.TypeFor(QuantPreset.Q4_0, "output.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.Q4_0, QuantRecipe.TypeFor(QuantPreset.Q4_0, "blk.0.attn_v.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.Q4_0, QuantRecipe.TypeFor(QuantPreset.Q4_0, "token_embd.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.Q8_0, "output.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.Q8_0, "blk.0.ffn_down.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.F16, QuantRecipe.TypeFor(QuantPreset.F16, "output.weight", 0, 32, 4096, 2));
        Assert.Equal(GgmlType.F16, QuantRecipe.TypeFor(QuantPreset.F16, "blk.0.attn_v.weight", 0, 32, 100, 2));
    }

    [Fact]
    public void Rows_not_multiple_of_256_fall_back()
    {
        // SmolLM2-135M-like: dim 576 = 2.25 * 256, ffn 1536 = 6 * 256
        Assert.Equal(GgmlType.Q5_0, Q4KMRecipe.TypeFor("blk.1.attn_q.weight", 1, 30, 576, 2));
        Assert.Equal(GgmlType.Q8_0, Q4KMRecipe.TypeFor("blk.0.attn_v.weight", 0, 30, 576, 2));   // Q6_K -> Q8_0
        Assert.Equal(GgmlType.Q6_K, Q4KMRecipe.TypeFor("blk.0.ffn_down.weight", 0, 30, 1536, 2));
        Assert.Equal(GgmlType.Q8_0, Q4KMRecipe.TypeFor("output.weight", 0, 30, 576, 2));          // output: straight to Q8_0
        Assert.Equal(GgmlType.F16, Q4KMRecipe.TypeFor("blk.1.attn_q.weight", 1, 30, 100, 2));     // not even /32
        Assert.Throws<ArgumentException>(() => QuantRecipe.TypeFor(QuantPreset.Q8_0, "blk.0.attn_q.weight", 0, 30, 100, 2));
        Assert.Equal(GgmlType.Q5_1, QuantRecipe.Fallback(GgmlType.Q5_K, 576));
        Assert.Equal(GgmlType.Q4_0, QuantRecipe.Fallback(GgmlType.Q3_K, 576));
    }

    [Fact]
    public void Eight_expert_models()
    {
        Assert.Equal(GgmlType.Q8_0, Q4KMRecipe.TypeFor("blk.4.attn_v.weight", 4, 32, 4096, 2, nExpert: 8));
        Assert.Equal(GgmlType.Q8_0, Q4KMRecipe.TypeFor("blk.4.attn_k.weight", 4, 32, 4096, 2, nExpert: 8));
        Assert.Equal(GgmlType.Q5_K, Q4KMRecipe.TypeFor("blk.4.attn_output.weight", 4, 32, 4096, 2, nExpert: 8));
    }

    [Theory]
    [InlineData(QuantPreset.IQ4_NL, "output.weight", 0, 1, GgmlType.Q6_K)]
    [InlineData(QuantPreset.IQ4_NL, "token_embd.weight", 0, 1, GgmlType.IQ4_NL)]
    [InlineData(QuantPreset.IQ4_NL, "blk.0.attn_v.weight", 0, 2, GgmlType.IQ4_NL)]
    [InlineData(QuantPreset.IQ4_NL, "blk.0.attn_v.weight", 0, 4, GgmlType.Q5_K)]
    [InlineData(QuantPreset.IQ4_XS, "blk.7.attn_v.weight", 7, 8, GgmlType.Q5_K)]
    [InlineData(QuantPreset.IQ4_XS, "blk.3.ffn_down.weight", 3, 1, GgmlType.Q5_K)]
    [InlineData(QuantPreset.IQ4_XS, "blk.4.ffn_down.weight", 4, 1, GgmlType.IQ4_XS)]
    [InlineData(QuantPreset.IQ4_XS, "blk.0.attn_k.weight", 0, 8, GgmlType.IQ4_XS)]
    [InlineData(QuantPreset.IQ4_XS, "blk.0.ffn_gate.weight", 0, 8, GgmlType.IQ4_XS)]
    public void IQ4_presets(QuantPreset preset, string name, int layer, int gqa, GgmlType expected) =>
        Assert.Equal(expected, QuantRecipe.TypeFor(preset, name, layer, 32, rowLength: 4096, nDims: 2, nGqa: gqa));

    [Fact]
    public void IQ4_presets_with_eight_experts_and_odd_rows()
    {
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.IQ4_NL, "blk.0.attn_v.weight", 0, 32, 4096, 2, nExpert: 8, nGqa: 4));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.IQ4_XS, "blk.0.attn_k.weight", 0, 32, 4096, 2, nExpert: 8));
        Assert.Equal(GgmlType.Q5_K, QuantRecipe.TypeFor(QuantPreset.IQ4_XS, "blk.9.attn_output.weight", 9, 32, 4096, 2, nExpert: 8));
        // 576 is not a multiple of 256: IQ4_XS falls back to IQ4_NL, Q5_K to Q5_1, Q6_K (output) straight to Q8_0
        Assert.Equal(GgmlType.IQ4_NL, QuantRecipe.TypeFor(QuantPreset.IQ4_XS, "blk.9.attn_q.weight", 9, 32, 576, 2));
        Assert.Equal(GgmlType.Q5_1, QuantRecipe.TypeFor(QuantPreset.IQ4_XS, "blk.0.ffn_down.weight", 0, 32, 576, 2));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.IQ4_XS, "output.weight", 0, 32, 576, 2));
    }

    [Fact]
    public void MXFP4_MOE_gives_experts_MXFP4_and_everything_else_Q8_0()
    {
        Assert.Equal(GgmlType.MXFP4, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "blk.0.ffn_down_exps.weight", 0, 24, 2880, 3, expertCount: 32));
        Assert.Equal(GgmlType.MXFP4, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "blk.3.ffn_gate_exps.weight", 3, 24, 2880, 3, expertCount: 32));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "blk.0.attn_q.weight", 0, 24, 2880, 2));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "token_embd.weight", 0, 24, 2880, 2));
        Assert.Equal(GgmlType.Q8_0, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "output.weight", 0, 24, 2880, 2));
        Assert.Equal(GgmlType.F32, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "blk.0.ffn_gate_inp.weight", 0, 24, 2880, 2));
        Assert.Equal(GgmlType.F32, QuantRecipe.TypeFor(QuantPreset.MXFP4_MOE, "blk.0.attn_sinks.weight", 0, 24, 64, 1));
    }
}
