using System.Runtime.InteropServices;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// Whole models whose weights are IQ2_XXS, IQ2_XS or IQ2_S (the types the large DeepSeek GGUFs are published in) against
/// llama.cpp on the same file. We have no quantizer of our own for these types, and llama.cpp's llama_model_quantize
/// refuses them without an importance matrix (which LLamaSharp cannot pass), so the file is made here: the F32 synthetic
/// model with every tensor llama.cpp would quantize (2-D and 3-D weights, embeddings and output included) replaced by
/// ggml's own quantization of it (ggml_quantize_chunk, an importance matrix of ones where ggml requires one).
/// </summary>
public unsafe class IQ2LogitsTests(ITestOutputHelper output)
{
    /// <summary>llama.cpp's ggml-base from the LLamaSharp.Backend.Cpu package (the NuGet cache), or zero.</summary>
    private static readonly Lazy<IntPtr> GgmlBase = new(() =>
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return IntPtr.Zero;
        string p = Path.Combine(root, "llamasharp.backend.cpu", "0.30.0", "LLamaSharpRuntimes", "linux-x64", "native", "avx2", "libggml-base.so");
        return File.Exists(p) && NativeLibrary.TryLoad(p, out var h) ? h : IntPtr.Zero;
    });

    /// <summary>Writes <paramref name="f32Path"/> again with its quantizable weights in <paramref name="type"/>, quantized by ggml.</summary>
    internal static string QuantizeWithGgml(string f32Path, GgmlType type, string path, Func<string, bool>? include = null)
    {
        if (GgmlBase.Value == IntPtr.Zero) Assert.Skip("llama.cpp's ggml-base (linux-x64 AVX2 build of LLamaSharp.Backend.Cpu 0.30.0) is not in the NuGet cache");
        var chunk = (delegate* unmanaged<int, float*, byte*, long, long, long, float*, nuint>)NativeLibrary.GetExport(GgmlBase.Value, "ggml_quantize_chunk");
        var requires = (delegate* unmanaged<int, byte>)NativeLibrary.GetExport(GgmlBase.Value, "ggml_quantize_requires_imatrix");
        using var src = GgufFile.Open(f32Path);
        var w = new GgufWriter().CopyMetadata(src);
        // llama_ftype (a name for the file only): MOSTLY_IQ2_XXS = 19, IQ2_XS = 20, IQ3_XXS = 23, IQ1_S = 24, IQ3_S = 26,
        // IQ2_S = 28, IQ1_M = 31
        w.Set("general.file_type", type switch
        {
            GgmlType.IQ2_XXS => 19u, GgmlType.IQ2_XS => 20u, GgmlType.IQ3_XXS => 23u, GgmlType.IQ1_S => 24u, GgmlType.IQ3_S => 26u,
            GgmlType.IQ1_M => 31u, _ => 28u,
        });
        foreach (var t in src.Tensors)
        {
            Assert.Equal(GgmlType.F32, t.Type);
            var data = new ReadOnlySpan<byte>(src.TensorPointer(t), (int)t.ByteSize).ToArray();
            if (!QuantRecipe.AllowsQuantization(t.Name, t.Dimensions.Length) || t.RowLength % 256 != 0 || !(include?.Invoke(t.Name) ?? true))
            {
                w.AddTensor(t.Name, t.Type, t.Dimensions, data);
                continue;
            }
            var q = new byte[GgufWriter.ExpectedBytes(type, t.Dimensions)];
            var ones = new float[t.RowLength];
            Array.Fill(ones, 1f);
            fixed (byte* pf = data) fixed (byte* pq = q) fixed (float* pi = ones)
                Assert.Equal((nuint)q.Length, chunk((int)type, (float*)pf, pq, 0, t.RowCount, t.RowLength, requires((int)type) != 0 ? pi : null));
            w.AddTensor(t.Name, type, t.Dimensions, q);
        }
        w.Write(path);
        return path;
    }

    private string Model(TempDir dir, string preset, GgmlType type)
    {
        string path = QuantizeWithGgml(Write(dir, preset, "f32"), type, dir.File($"{preset}-{type}.gguf"));
        using var f = GgufFile.Open(path);
        int quantized = f.Tensors.Count(t => t.Type == type);
        Assert.True(quantized >= 9, $"{quantized} tensors in {type}");
        output.WriteLine($"{preset} {type}: {quantized} of {f.Tensors.Count} tensors in {type}");
        return path;
    }

    /// <summary>
    /// Logits at every prompt position; our matrix products are ggml's AVX2 vec_dot bit for bit (GgmlOracleTests), so what
    /// is left is the rest of the graph, as for the other types. Measured worst of 16 positions: see the output.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    [InlineData(GgmlType.IQ2_S)]
    public void LogitsAgreeWithLlamaCpp(GgmlType type)
    {
        using var dir = new TempDir();
        var path = Model(dir, "tiny-llama", type);
        var (rel, cos) = AssertLogitsAgree(path, 1e-5, 0.999999);
        output.WriteLine($"tiny-llama {type}: worst rel {rel:E2}, worst cos {cos:F9}");
    }

    /// <summary>
    /// A mixture of experts with its routed experts (the 3-D expert tensors) in IQ2_XXS, the rest F32: the layout of the
    /// published low-bit DeepSeek GGUFs, whose routed experts are IQ2 and whose attention and shared expert keep more bits.
    /// Logits at every position, and our routing margin clear of rounding. Measured worst of 16 positions 4.9e-7, margin 8.9e-4.
    /// OPEN (see STATUS-iqa): on this model and prompt, with the experts in IQ2_XS one position (12) differs by 9.2e-4 and
    /// with them in IQ2_S one position (4) by 4.0e-5, the others agreeing to 5e-7; with every weight in IQ2_XXS, positions
    /// 6..15 differ by ~1e-2. Routing margins are clear (2.4e-4 and above), llama.cpp's own logits do not depend on its
    /// thread count, our matrix products equal ggml's vec_dot bit for bit (GgmlOracleTests) and the dense models agree to
    /// 3.3e-7 in all three types; the cause is not found yet.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    public void MoeModelWithIQ2ExpertsAgreesWithLlamaCpp(GgmlType type)
    {
        using var dir = new TempDir();
        string path = QuantizeWithGgml(Write(dir, "tiny-qwen3moe", "f32"), type, dir.File($"tiny-qwen3moe-{type}-experts.gguf"), name => name.Contains("_exps."));
        using (var f = GgufFile.Open(path)) Assert.Equal(6, f.Tensors.Count(t => t.Type == type)); // gate, up, down × 2 layers
        float margin = OpenWeights.Tests.Models.Families.MoeOracle.RoutingMargin(path, Prompt);
        Assert.True(margin > 1e-6, $"routing margin {margin:E2}: a near-tie could flip between the engines");
        var (rel, cos) = AssertLogitsAgree(path, 1e-5, 0.999999);
        output.WriteLine($"tiny-qwen3moe, experts {type}: worst rel {rel:E2}, worst cos {cos:F9}, routing margin {margin:E2}");
    }

    [Fact]
    public void GreedyContinuationOf64TokensEqualsLlamaCpp()
    {
        using var dir = new TempDir();
        var path = Model(dir, "tiny-llama", GgmlType.IQ2_XS);
        int[] prompt = [5, 300, 301, 17, 900, 44, 45, 46];
        var ours = OurGreedy(path, prompt, 64);
        var theirs = LlamaCpp.ArgmaxContinuation(path, prompt, 64);
        Assert.Equal(theirs, ours);
        Assert.True(ours.Distinct().Count() > 1, "a continuation of one repeated token would say little");
    }
}
