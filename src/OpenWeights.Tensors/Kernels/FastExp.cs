using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// e^x for 8 floats at a time (AVX2 + FMA), for softmax and SiLU: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two
/// parts so r is exact to float precision), e^r by the degree-6 minimax polynomial of Cephes' expf, 2^n added to the
/// exponent bits. Within 2 ulp of the correctly rounded result over the whole range; below −87.3 it returns 0, above
/// 88.7 +∞, NaN stays NaN. <see cref="Scalar"/> is the same computation one value at a time (bit-identical);
/// TensorPrimitives.Exp, which this replaces in the hot loops, computes in double and was most of softmax's time.
/// </summary>
public static class FastExp
{
    private const float Log2E = 1.44269504088896341f, Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;
    private const float Min = -87.33654f, Max = 88.72283f;

    /// <summary>Whether <see cref="Exp"/> runs here (AVX2 and FMA).</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var c = Vector256.Min(Vector256.Max(x, Vector256.Create(Min)), Vector256.Create(Max));
        var n = Avx.RoundToNearestInteger(c * Vector256.Create(Log2E));
        var r = Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Hi), c);
        r = Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Lo), r);
        var p = Fma.MultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P2));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P3));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P4));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(P5));
        p = Fma.MultiplyAdd(p, r * r, r) + Vector256<float>.One;
        // scale by 2^n in two halves (n may be 128 at the top of the range, beyond a single exponent step)
        var ni = Vector256.ConvertToInt32(n);
        var half = Vector256.ShiftRightArithmetic(ni, 1);
        var e1 = Vector256.ShiftLeft(half + Vector256.Create(127), 23).AsSingle();
        var e2 = Vector256.ShiftLeft(ni - half + Vector256.Create(127), 23).AsSingle();
        var y = p * e1 * e2;
        y = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(Min)), Vector256<float>.Zero, y);
        y = Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(Max)), Vector256.Create(float.PositiveInfinity), y);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), y, x); // NaN in, NaN out
    }

    /// <summary>Scalar reference: the same operations on one value (bit-identical to <see cref="Exp"/>).</summary>
    public static float Scalar(float x)
    {
        if (float.IsNaN(x)) return x;
        if (x < Min) return 0f;
        if (x > Max) return float.PositiveInfinity;
        float n = MathF.Round(x * Log2E, MidpointRounding.ToEven);
        float r = MathF.FusedMultiplyAdd(-n, Ln2Hi, x);
        r = MathF.FusedMultiplyAdd(-n, Ln2Lo, r);
        float p = MathF.FusedMultiplyAdd(P0, r, P1);
        p = MathF.FusedMultiplyAdd(p, r, P2);
        p = MathF.FusedMultiplyAdd(p, r, P3);
        p = MathF.FusedMultiplyAdd(p, r, P4);
        p = MathF.FusedMultiplyAdd(p, r, P5);
        p = MathF.FusedMultiplyAdd(p, r * r, r) + 1f;
        int ni = (int)n, half = ni >> 1;
        return p * BitConverter.Int32BitsToSingle((half + 127) << 23) * BitConverter.Int32BitsToSingle((ni - half + 127) << 23);
    }
}
