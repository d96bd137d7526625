using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;
using OpenWeights.Models;
using OpenWeights.Tests.Oracle;
using static OpenWeights.Tests.Models.Families.DenseFamilyOracle;

namespace OpenWeights.Tests.Models.Families;

/// <summary>
/// The checks of a mixture-of-experts family beyond the dense ones (<see cref="DenseFamilyOracle"/>): routing margins, the
/// tie rule against llama.cpp, and the expert bytes a decode step reads.
/// </summary>
public static class MoeOracle
{
    /// <summary>The smallest routing margin of our forward pass over the prompt, every MoE layer (see
    /// <c>ExpertLayer.MinSelectionMargin</c>): a test comparing two engines asserts it is clear of rounding.</summary>
    public static float RoutingMargin(string path, int[] prompt)
    {
        using var model = DecoderModel.Load(path);
        var cache = model.CreateCache(prompt.Length + 8);
        var state = model.CreateState(prompt.Length, prompt.Length + 8);
        model.Forward(prompt, cache, state, 2);
        // group-limited routing (DeepSeek V3): the choice of groups is a selection too
        return model.Layers.Where(l => l.Experts is not null).Min(l => MathF.Min(l.Experts!.MinSelectionMargin, l.Experts.Routing.Stats.MinGroupMargin));
    }

    /// <summary>
    /// A copy of a GGUF whose F32 routers have their rows repeated: expert e's row is expert (e mod <paramref name="distinct"/>)'s,
    /// so experts e, e + distinct, e + 2·distinct... score exactly alike. When k is not a multiple of the group sizes, every
    /// token's k-th place falls inside a group of tied experts that differ in their weights, and which of them top-k keeps
    /// decides the output.
    /// </summary>
    public static unsafe string WithTiedRouters(TempDir dir, string src, string name, int distinct)
    {
        var dst = dir.File(name);
        using var f = GgufFile.Open(src);
        var w = new GgufWriter().CopyMetadata(f);
        foreach (var t in f.Tensors)
        {
            var bytes = new ReadOnlySpan<byte>(f.TensorPointer(t), (int)t.ByteSize).ToArray();
            if (t.Name.EndsWith(".ffn_gate_inp.weight", StringComparison.Ordinal))
            {
                Assert.Equal(GgmlType.F32, t.Type);
                int cols = (int)t.Dimensions[0], rows = (int)t.Dimensions[1], rowBytes = cols * 4;
                for (int e = distinct; e < rows; e++)
                    Array.Copy(bytes, e % distinct * rowBytes, bytes, e * rowBytes, rowBytes);
            }
            w.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
        }
        w.Write(dst);
        return dst;
    }

    /// <summary>A copy of a GGUF whose quantized tensors are dequantized to F32 (the same weights, run with F32 activations).</summary>
    public static unsafe string DequantizedCopy(TempDir dir, string src, string name)
    {
        var dst = dir.File(name);
        using var f = GgufFile.Open(src);
        var w = new GgufWriter().CopyMetadata(f);
        foreach (var t in f.Tensors)
        {
            var bytes = new ReadOnlySpan<byte>(f.TensorPointer(t), (int)t.ByteSize);
            if (t.Type == GgmlType.F32) { w.AddTensor(t.Name, t.Type, t.Dimensions, bytes.ToArray()); continue; }
            var values = new float[t.Dimensions.Aggregate(1L, (a, b) => a * b)];
            Dequantize.Row(t.Type, bytes, values);
            w.AddTensor(t.Name, t.Dimensions, values);
        }
        w.Write(dst);
        return dst;
    }

    /// <summary>Asserts that ours and llama.cpp agree on the logits and the 64-token greedy run, and that our routing margin
    /// is clear (so the agreement is not luck on near-ties); returns the worst relative diff, cosine and the margin.</summary>
    public static (double Rel, double Cos, float Margin) AssertAgrees(string path, double relTol, double minCos)
    {
        float margin = RoutingMargin(path, Prompt);
        // the routers' probabilities (~1/n_expert each) agree between the engines to ~1e-7 (the hidden states to ~1e-6
        // relative): a margin above 1e-6 cannot be flipped by rounding. Measured smallest margins: 6.6e-6 (tiny-qwen3moe
        // q4_k_m) and above
        Assert.True(margin > 1e-6f, $"routing margin {margin:E2}: a near-tie would decide the comparison");
        var (rel, cos) = AssertLogitsAgree(path, relTol, minCos);
        return (rel, cos, margin);
    }
}
