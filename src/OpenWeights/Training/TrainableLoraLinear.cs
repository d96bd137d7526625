using System.Numerics.Tensors;
using OpenWeights.Lora;
using OpenWeights.Models.Common;

namespace OpenWeights.Training;

/// <summary>
/// A frozen base projection with an optional trainable LoRA branch (PEFT's lora.Linear):
///   y = x·Wᵀ + b + scale · (dropout(x)·Aᵀ)·Bᵀ
/// W stays in its stored type (F32, F16, quantized), decoded row by row. A: (rank, in), B: (out, rank) F32.
/// </summary>
public sealed class TrainableLoraLinear
{
    public Linear Base { get; }
    public LoraWeights? Lora { get; }
    public float[]? GradA { get; }   // (rank, in)
    public float[]? GradB { get; }   // (out, rank)
    public float Scale { get; }
    public float Dropout { get; }
    /// <summary>Distinguishes this module's dropout stream from the others'.</summary>
    public ulong Id { get; }
    public int In => Base.In;
    public int Out => Base.Out;

    private float[] xa = [];     // (n, rank) dropout(x)·Aᵀ saved for backward

    public TrainableLoraLinear(Linear baseLinear, LoraWeights? lora, float scale, float dropout, ulong id)
    {
        Base = baseLinear; Lora = lora; Scale = scale; Dropout = dropout; Id = id;
        if (lora is not null)
        {
            if (lora.In != baseLinear.In || lora.Out != baseLinear.Out) throw new OpenWeightsException($"LoRA {lora.Target}: shape {lora.Out}x{lora.In} does not match the base {baseLinear.Out}x{baseLinear.In}");
            GradA = new float[lora.A.Length]; GradB = new float[lora.B.Length];
        }
    }

    /// <summary>y = x·Wᵀ + b + scale · (dropout(x)·Aᵀ)·Bᵀ. x: (n, in), y: (n, out). seed = 0 disables dropout (evaluation).</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int n, int threads, ulong seed)
    {
        TrainOps.LinearForward(Base.Weight, Base.Bias, x, y, n, threads);
        if (Lora is not { } l) return;
        int r = l.Rank;
        if (xa.Length < n * r) xa = new float[n * r];
        var xaS = xa.AsSpan(0, n * r);
        if (Dropout > 0 && seed != 0)
        {
            var xd = Buffer(ref sIn, n * In);
            DropoutMask(seed, x, xd, n);
            TrainOps.MatMulABt(xd, l.A, xaS, n, In, r);               // xa = dropout(x)·Aᵀ
        }
        else TrainOps.MatMulABt(x, l.A, xaS, n, In, r);
        // y += scale·xa·Bᵀ as r long rows: (scale·xa) (n, r) · Bᵀ (r, out), so each of the n·r steps is an axpy over `out`
        // values (not n·out dot products of length r).
        var bt = TransposeB(l);
        var xs = Buffer(ref sR, n * r);
        TensorPrimitives.Multiply(xaS, Scale, xs);
        TrainOps.MatMulAddAB(xs, bt, y[..(n * Out)], n, r, Out);
    }

    // Scratch shared by all modules of a thread (modules run one after another): the LoRA branch allocates nothing per
    // module, so memory does not grow with layers x targets.
    [ThreadStatic] private static float[]? sIn, sIn2, sR, sBt, sGt;
    private static Span<float> Buffer(ref float[]? b, int n) { if (b is null || b.Length < n) b = new float[n]; return b.AsSpan(0, n); }

    /// <summary>Bᵀ (rank, out) of B (out, rank), into thread scratch.</summary>
    private Span<float> TransposeB(LoraWeights l)
    {
        int r = l.Rank;
        var bt = Buffer(ref sBt, r * Out);
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < r; i++) bt[i * Out + o] = l.B[o * r + i];
        return bt;
    }

    /// <summary>
    /// Backward of y = x·Wᵀ + scale·(xd·Aᵀ)·Bᵀ, xd = dropout(x), xa = xd·Aᵀ:
    ///   dB += scale · dyᵀ·xa;  dxa = scale · dy·B;  dA += dxaᵀ·xd;  dx += dy·W + dropout(dxa·A).
    /// dx is accumulated. Must follow this module's own Forward on the same x and seed.
    /// </summary>
    public void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, int n, int threads, ulong seed)
    {
        TrainOps.LinearBackwardInput(Base.Weight, dy, dx, n, threads);
        if (Lora is not { } l) return;
        int r = l.Rank;
        var xaS = xa.AsSpan(0, n * r);
        // dB += scale·dyᵀ·xa, computed transposed, (rank, out) += scale·xaᵀ·dy: n·r axpys over `out` values
        var gt = Buffer(ref sGt, r * Out);
        gt.Clear();
        TrainOps.MatMulAddAtB(xaS, dy, gt, n, r, Out, Scale);
        var gb = GradB!;
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < r; i++) gb[o * r + i] += gt[i * Out + o];
        var dxa = Buffer(ref sR, n * r);
        TrainOps.MatMulABt(dy, TransposeB(l), dxa, n, Out, r);          // dxa = dy·B = dy·(Bᵀ)ᵀ: n·r dots over `out`
        TensorPrimitives.Multiply(dxa, Scale, dxa);                     //       · scale
        if (Dropout > 0 && seed != 0)
        {
            var xd = Buffer(ref sIn, n * In);
            DropoutMask(seed, x, xd, n);
            TrainOps.MatMulAddAtB(dxa, xd, GradA, n, r, In, 1f);        // dA += dxaᵀ·xd
            var dxd = Buffer(ref sIn2, n * In);
            dxd.Clear();
            TrainOps.MatMulAddAB(dxa, l.A, dxd, n, r, In);              // dxd = dxa·A
            DropoutMask(seed, dxd, dxd, n);                             // dropout'(dxd) = dxd ⊙ keep/(1−p), same mask
            TensorPrimitives.Add(dx[..(n * In)], dxd, dx[..(n * In)]);
        }
        else
        {
            TrainOps.MatMulAddAtB(dxa, x, GradA, n, r, In, 1f);         // dA += dxaᵀ·x
            TrainOps.MatMulAddAB(dxa, l.A, dx, n, r, In);               // dx += dxa·A
        }
    }

    /// <summary>dst = x ⊙ keep / (1 − p), keep drawn from a counter-based hash of (seed, module, index): recomputable, thread-free.</summary>
    private void DropoutMask(ulong seed, ReadOnlySpan<float> x, Span<float> dst, int n)
    {
        float keepScale = 1f / (1f - Dropout);
        uint threshold = (uint)(Dropout * 4294967296.0);
        ulong s = SplitMix(seed ^ SplitMix(Id));
        for (int i = 0; i < n * In; i++)
        {
            uint h = (uint)(SplitMix(s + (ulong)i) >> 32);
            dst[i] = h < threshold ? 0f : x[i] * keepScale;
        }
    }

    internal static ulong SplitMix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
