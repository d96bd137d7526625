using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.Common;

/// <summary>
/// A linear projection y = W·x (+ b). W: (Out, In) in whatever type the file stores (F32, F16, BF16 or a
/// quantized block format); b: (Out) F32 or none. The one thing LoRA wraps.
/// </summary>
public class Linear
{
    public WeightMatrix Weight { get; }
    public float[]? Bias { get; }
    public string Name { get; }
    public int In => Weight.Cols;
    public int Out => Weight.Rows;

    public Linear(string name, WeightMatrix weight, float[]? bias = null)
    {
        if (bias is not null && bias.Length != weight.Rows) throw new InvalidModelFileException($"{name}: bias length {bias.Length} != {weight.Rows}");
        Name = name; Weight = weight; Bias = bias;
    }

    /// <summary>Y = X·Wᵀ + b. X: (n, In), Y: (n, Out).</summary>
    public virtual void Forward(ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        Weight.MatMul(x, y, n, threads);
        if (Bias is { } b)
            for (int t = 0; t < n; t++) System.Numerics.Tensors.TensorPrimitives.Add(y.Slice(t * Out, Out), b, y.Slice(t * Out, Out));
    }

    /// <summary>
    /// Several projections of the same input X: (n, In) as one pool dispatch (Q, K and V; gate and up): Y_i = X·W_iᵀ (+ b_i)
    /// into each part's own array, bit for bit each one's <see cref="Forward"/> (<see cref="WeightMatrix.MatMulMany"/> runs the
    /// same kernels on the same converted activations, converted once where the parts share a format). A decode step then
    /// wakes the pool once for the three projections instead of three times, and the threads balance over all their rows.
    /// Projections that are not plain (LoRA-wrapped: their Forward adds the adapter) run their own Forward.
    /// </summary>
    public static void ForwardMany(ReadOnlySpan<float> x, int n, int threads, ReadOnlySpan<(Linear L, float[] Y)> parts)
    {
        bool plain = Fuse && !QuantDot.UseF32Reference;
        foreach (var (l, _) in parts) plain &= l.GetType() == typeof(Linear);
        if (!plain || parts.Length > 4)
        {
            foreach (var (l, y) in parts) l.Forward(x, y, n, threads);
            return;
        }
        var mp = manyParts ??= new MatMulPart[4];
        for (int i = 0; i < parts.Length; i++) mp[i] = new MatMulPart(parts[i].L.Weight, 0, 0, n, parts[i].Y);
        WeightMatrix.MatMulMany(x, default, mp.AsSpan(0, parts.Length), threads);
        mp.AsSpan(0, parts.Length).Clear(); // no references kept to the outputs
        foreach (var (l, y) in parts)
            if (l.Bias is { } b)
                for (int t = 0; t < n; t++) System.Numerics.Tensors.TensorPrimitives.Add(y.AsSpan(t * l.Out, l.Out), b, y.AsSpan(t * l.Out, l.Out));
    }

    [ThreadStatic] private static MatMulPart[]? manyParts;

    /// <summary>Whether <see cref="ForwardMany"/> runs its projections as one dispatch (benchmarks compare it with one each).</summary>
    public static bool Fuse = true;

    /// <summary>
    /// A view of rows [start, start+count) of this projection, over the same stored weights (a fused tensor split into
    /// its parts: Phi-3's QKV and gate-up). Quantized rows are whole blocks, so a row range is a byte range.
    /// </summary>
    public unsafe Linear Rows(int start, int count)
    {
        if (start < 0 || count <= 0 || start + count > Out) throw new ArgumentOutOfRangeException(nameof(start), $"rows {start}..{start + count} of {Name} ({Out} rows)");
        var w = new WeightMatrix(Weight.Data + start * Weight.RowBytes, Weight.Type, count, In);
        return new Linear(Name, w, Bias?.AsSpan(start, count).ToArray());
    }

    public static unsafe Linear Load(ITensorSource f, string name, int expectedIn, int expectedOut, string? biasName = null)
    {
        var t = f.GetTensor(name);
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != expectedIn || t.Dimensions[1] != expectedOut)
            throw new InvalidModelFileException($"tensor {name} has shape {t.ShapeText}, expected [{expectedIn}, {expectedOut}]");
        var w = new WeightMatrix(f.TensorPointer(t), t.Type, expectedOut, expectedIn);
        float[]? b = biasName is null ? null : TensorLoader.Vector(f, biasName, expectedOut);
        return new Linear(name, w, b);
    }
}

/// <summary>Reading small tensors (norms, biases) into F32 arrays.</summary>
public static class TensorLoader
{
    public static unsafe float[] Vector(ITensorSource f, string name, int expected)
    {
        var t = f.GetTensor(name);
        if (t.ElementCount != expected) throw new InvalidModelFileException($"tensor {name} has {t.ElementCount} elements, expected {expected}");
        var r = new float[expected];
        RowDecoder.Decode(t.Type, f.TensorData(t), r);
        return r;
    }
}
