using System.Buffers;
using System.Numerics.Tensors;
using OpenWeights.Models.Common;

namespace OpenWeights.Lora;

/// <summary>One adapter pair applied to a projection with its total scale (alpha / r · user scale).</summary>
public readonly record struct AppliedLora(LoraWeights Weights, float Scale);

/// <summary>
/// A frozen linear projection with LoRA updates: y = W·x + b + Σ scale·B·(A·x). W stays in its stored type;
/// A: (r, In), B: (Out, r) in F32. Several adapters may be stacked on one projection.
/// </summary>
public sealed class LoraLinear : Linear
{
    /// <summary>The wrapped projection (never itself a <see cref="LoraLinear"/>).</summary>
    public Linear Base { get; }
    public IReadOnlyList<AppliedLora> Adapters { get; }

    public LoraLinear(Linear @base, IEnumerable<AppliedLora> adapters) : base(@base.Name, @base.Weight, @base.Bias)
    {
        var list = new List<AppliedLora>();
        if (@base is LoraLinear inner) { list.AddRange(inner.Adapters); @base = inner.Base; }
        list.AddRange(adapters);
        foreach (var a in list)
        {
            a.Weights.Validate();
            if (a.Weights.In != @base.In || a.Weights.Out != @base.Out)
                throw new OpenWeightsException($"LoRA for {@base.Name} is {a.Weights.Out}x{a.Weights.In}, the projection is {@base.Out}x{@base.In}");
        }
        Base = @base;
        Adapters = list;
        bTransposed = [.. list.Select(a => Transpose(a.Weights.B, a.Weights.Out, a.Weights.Rank))];
    }

    private readonly float[][] bTransposed; // per adapter: Bᵀ (r, Out), so each token's update is r vector multiply-adds

    internal static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c];
        return t;
    }

    /// <summary>Y = X·Wᵀ + b + Σ scale · (X·Aᵀ)·Bᵀ. X: (n, In), Y: (n, Out).</summary>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        Base.Forward(x, y, n, threads);
        for (int i = 0; i < Adapters.Count; i++) AddUpdate(Adapters[i], bTransposed[i], x, y, n, In, Out, threads);
    }

    /// <summary>y += scale · B·(A·x) for n rows: u = A·x (r), then y += Σ_k scale·u[k] · Bᵀ[k].</summary>
    internal static void AddUpdate(AppliedLora a, float[] bt, ReadOnlySpan<float> x, Span<float> y, int n, int inDim, int outDim, int threads)
    {
        if (a.Scale == 0) return;
        var w = a.Weights;
        int r = w.Rank;
        var u = ArrayPool<float>.Shared.Rent(n * r); // (n, r)
        try
        {
            for (int t = 0; t < n; t++)
            {
                var xt = x.Slice(t * inDim, inDim);
                for (int k = 0; k < r; k++) u[t * r + k] = TensorPrimitives.Dot(w.A.AsSpan(k * inDim, inDim), xt);
            }
            if (threads > 1 && n > 1 && (long)n * outDim * r > 1 << 16)
            {
                unsafe
                {
                    fixed (float* yp = y)
                    {
                        nint yAddr = (nint)yp;
                        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                            AddRow(bt, r, a.Scale, u.AsSpan(t * r, r), new Span<float>((float*)yAddr + (long)t * outDim, outDim)));
                    }
                }
            }
            else
                for (int t = 0; t < n; t++) AddRow(bt, r, a.Scale, u.AsSpan(t * r, r), y.Slice(t * outDim, outDim));
        }
        finally { ArrayPool<float>.Shared.Return(u); }
    }

    private static void AddRow(float[] bt, int r, float scale, ReadOnlySpan<float> u, Span<float> y)
    {
        int outDim = y.Length;
        for (int k = 0; k < r; k++) TensorPrimitives.MultiplyAdd(bt.AsSpan(k * outDim, outDim), scale * u[k], y, y);
    }
}
