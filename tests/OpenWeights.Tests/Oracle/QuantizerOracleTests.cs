using LLama;
using LLama.Native;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// Our file-level quantization (per-tensor recipe + block quantizers) against llama.cpp's own quantizer
/// (llama_model_quantize through LLamaSharp) on the same F32 file: every tensor must get the same type and,
/// without an importance matrix, the very same bytes.
/// </summary>
public class QuantizerOracleTests
{
    public static TheoryData<string, string, LLamaFtype> Cases() => new()
    {
        { "tiny-llama", "q4_k_m", LLamaFtype.MOSTLY_Q4_K_M },
        { "tiny-qwen2", "q4_k_m", LLamaFtype.MOSTLY_Q4_K_M },
        { "tiny-llama", "q8_0", LLamaFtype.MOSTLY_Q8_0 },
        { "tiny-qwen2", "q4_0", LLamaFtype.MOSTLY_Q4_0 },
        { "tiny-llama", "f16", LLamaFtype.MOSTLY_F16 },
        { "odd-rows", "q4_k_m", LLamaFtype.MOSTLY_Q4_K_M },
        { "tiny-llama", "iq4_nl", LLamaFtype.MOSTLY_IQ4_NL },
        { "tiny-qwen2", "iq4_xs", LLamaFtype.MOSTLY_IQ4_XS },
        { "odd-rows", "iq4_xs", LLamaFtype.MOSTLY_IQ4_XS },
        { "gqa4-8-layers", "iq4_nl", LLamaFtype.MOSTLY_IQ4_NL },
        { "gqa4-8-layers", "iq4_xs", LLamaFtype.MOSTLY_IQ4_XS },
        { "tiny-llama", "mxfp4_moe", LLamaFtype.LLAMA_FTYPE_MOSTLY_MXFP4_MOE }, // a dense model: every quantized tensor Q8_0
        { "tiny-qwen3moe", "mxfp4_moe", LLamaFtype.LLAMA_FTYPE_MOSTLY_MXFP4_MOE }, // 3-D expert tensors MXFP4, the rest Q8_0
        { "tiny-qwen3moe", "iq4_xs", LLamaFtype.MOSTLY_IQ4_XS },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SameTypesAndBytesAsLlamaCpp(string preset, string type, LLamaFtype ftype)
    {
        // odd-rows: a row length (576, SmolLM2's width) that is not a multiple of 256 exercises the fallbacks.
        // gqa4-8-layers: 4 query heads per KV head and 8 layers (the IQ4 presets' attn_v and first-eighth ffn_down rules).
        var p = preset switch
        {
            "odd-rows" => SynthPreset.Get("tiny-llama") with { Name = "odd-rows", Dim = 576, Heads = 9, KvHeads = 3, FfnDim = 512, Layers = 3 },
            "gqa4-8-layers" => SynthPreset.Get("tiny-llama") with { Name = "gqa4-8-layers", Heads = 4, KvHeads = 1, Layers = 8 },
            _ => SynthPreset.Get(preset),
        };
        using var dir = new TempDir();
        string f32 = dir.File("f32.gguf"), theirs = dir.File("theirs.gguf"), ours = dir.File("ours.gguf");
        SyntheticModel.Write(p, SynthType.Parse("f32"), f32, threads: 2);
        SyntheticModel.Write(p, SynthType.Parse(type), ours, threads: 2);
        LlamaCpp.Init();
        bool ok = ftype == LLamaFtype.LLAMA_FTYPE_MOSTLY_MXFP4_MOE
            ? QuantizeNative(f32, theirs, ftype) // LLamaQuantizer refuses this ftype; llama.cpp itself takes it
            : LLamaQuantizer.Quantize(f32, theirs, ftype, 2, allowRequantize: true, quantizeOutputTensor: true);
        Assert.True(ok, "llama.cpp quantization failed");

        using var a = GgufFile.Open(ours);
        using var b = GgufFile.Open(theirs);
        Assert.Equal(b.Tensors.Select(t => t.Name).Order(), a.Tensors.Select(t => t.Name).Order());
        foreach (var tb in b.Tensors)
        {
            var ta = a.GetTensor(tb.Name);
            Assert.True(tb.Type == ta.Type, $"{tb.Name}: llama.cpp chose {tb.Type}, we chose {ta.Type}");
            Assert.Equal(tb.Dimensions, ta.Dimensions);
            Assert.True(b.TensorData(tb).SequenceEqual(a.TensorData(ta)), $"{tb.Name} ({tb.Type}): bytes differ");
        }
    }

    /// <summary>llama_model_quantize called directly (as LLamaQuantizer does, without its list of allowed ftypes).</summary>
    private static bool QuantizeNative(string src, string dst, LLamaFtype ftype)
    {
        var q = LLamaModelQuantizeParams.Default();
        q.nthread = 2;
        q.ftype = ftype;
        q.allow_requantize = true;
        q.quantize_output_tensor = true;
        return NativeApi.llama_model_quantize(src, dst, ref q) == 0;
    }
}
