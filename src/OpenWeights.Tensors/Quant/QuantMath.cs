using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Shared helpers of the reference quantizers. Each one follows the float operation order of the
/// matching static function in ggml-quants.c (all arithmetic in f32, no fused multiply-add: ggml-base is
/// built without FMA, so a*b+c is rounded twice there too).
/// </summary>
internal static class QuantMath
{
    /// <summary>Values below this count as an all-zero group (ggml's GROUP_MAX_EPS).</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's <c>nearest_int</c>: adds 1.5*2^23 and reads the mantissa, i.e. round half to even for |x| &lt; 2^22.
    /// Reproduced bit for bit (also for out-of-range inputs) rather than with Math.Round.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float fval)
    {
        float val = fval + 12582912f;
        int i = BitConverter.SingleToInt32Bits(val);
        return (i & 0x007fffff) - 0x00400000;
    }

    /// <summary>C's roundf: round half away from zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundF(float x) => MathF.Round(x, MidpointRounding.AwayFromZero);

    /// <summary>
    /// ggml's <c>make_qx_quants</c> (symmetric quants in [-nmax, nmax-1], stored + nmax in L).
    /// <paramref name="qw"/> empty means "no importance weights" (the rmse_type formula picks the weight).
    /// Returns the scale.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> L, int rmseType, ReadOnlySpan<float> qw)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        if (rmseType == 0)
        {
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
            }
            return 1 / iscale;
        }
        bool returnEarly = false;
        if (rmseType < 0) { rmseType = -rmseType; returnEarly = true; }
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
            float w = Weight(x, qw, i, rmseType);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        if (returnEarly) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
        float best = scale * sumlx;
        for (int istep = -9; istep <= 9; ++istep)
        {
            if (istep == 0) continue;
            iscale = -(nmax + 0.1f * istep) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = Weight(x, qw, i, rmseType);
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; ++i)
                {
                    int l = NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2; best = scale * sumlx;
            }
        }
        return scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Weight(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, int i, int rmseType) =>
        !qw.IsEmpty ? qw[i]
        : rmseType == 1 ? x[i] * x[i]
        : rmseType == 2 ? 1
        : rmseType == 3 ? MathF.Abs(x[i])
        : MathF.Sqrt(MathF.Abs(x[i]));

    /// <summary>
    /// ggml's <c>make_q3_quants</c> with do_rmse = true: start from the max-based scale, then up to 5 passes
    /// of coordinate descent on the weighted (w = x^2) least-squares scale. L gets values + nmax.
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> L)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; ++i)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry)
        {
            int nChanged = 0;
            for (int i = 0; i < n; ++i)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int newL = NearestInt(x[i] * sl2 / slx);
                    newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                    if (newL != L[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            L[i] = (sbyte)newL; sumlx = slx; suml2 = sl2;
                            ++nChanged;
                        }
                    }
                }
            }
            if (nChanged == 0) break;
        }
        for (int i = 0; i < n; ++i) L[i] = (sbyte)(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }

    /// <summary>
    /// ggml's <c>make_qkx2_quants</c>: asymmetric quants q in [0, nmax] with x ≈ scale*q - theMin, searching
    /// nstep+1 candidate scales around nmax/(max-min) and keeping the best weighted least-squares fit
    /// (|error| when <paramref name="useMad"/>). Returns the scale; <paramref name="theMin"/> gets -min (≥ 0).
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights,
        Span<byte> L, out float theMin, Span<byte> Laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; ++i)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            for (int i = 0; i < n; ++i) L[i] = 0;
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; ++i)
        {
            int l = NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int istep = 0; istep <= nstep; ++istep)
        {
            iscale = (rmin + rdelta * istep + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; ++i)
            {
                int l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; ++i)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError)
                {
                    for (int i = 0; i < n; ++i) L[i] = Laux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// Unpacks the j-th (0..7) 6-bit scale and 6-bit min of a Q4_K/Q5_K block from its 12 scale bytes
    /// (ggml's get_scale_min_k4). Bytes 0-3: low 6 bits = scales 0-3, top 2 bits = high bits of scales 4-7;
    /// bytes 4-7: same for mins; bytes 8-11: low nibble = low 4 bits of scale j+4, high nibble = of min j+4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out byte d, out byte m)
    {
        if (j < 4)
        {
            d = (byte)(q[j] & 63); m = (byte)(q[j + 4] & 63);
        }
        else
        {
            d = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m = (byte)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
        }
    }

    /// <summary>Inverse of <see cref="GetScaleMinK4"/> for all eight (scale, min) pairs (values must be ≤ 63).</summary>
    public static void PackScaleMinK4(ReadOnlySpan<byte> ls, ReadOnlySpan<byte> lm, Span<byte> scales12)
    {
        for (int j = 0; j < 8; ++j)
        {
            if (j < 4)
            {
                scales12[j] = ls[j];
                scales12[j + 4] = lm[j];
            }
            else
            {
                scales12[j + 4] = (byte)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                scales12[j - 4] |= (byte)((ls[j] >> 4) << 6);
                scales12[j - 0] |= (byte)((lm[j] >> 4) << 6);
            }
        }
    }

    /// <summary>y[0..32] = d·q − m for 32 unsigned byte values q (multiply, then subtract, as the scalar references).</summary>
    internal static unsafe void Affine32(System.Runtime.Intrinsics.Vector256<byte> q, float d, float m, float* y)
    {
        var (lo, hi) = System.Runtime.Intrinsics.Vector256.Widen(q);
        var dv = System.Runtime.Intrinsics.Vector256.Create(d); var mv = System.Runtime.Intrinsics.Vector256.Create(m);
        var (a, b) = System.Runtime.Intrinsics.Vector256.Widen(lo);
        var (c, e) = System.Runtime.Intrinsics.Vector256.Widen(hi);
        (dv * System.Runtime.Intrinsics.Vector256.ConvertToSingle(a.AsInt32()) - mv).Store(y);
        (dv * System.Runtime.Intrinsics.Vector256.ConvertToSingle(b.AsInt32()) - mv).Store(y + 8);
        (dv * System.Runtime.Intrinsics.Vector256.ConvertToSingle(c.AsInt32()) - mv).Store(y + 16);
        (dv * System.Runtime.Intrinsics.Vector256.ConvertToSingle(e.AsInt32()) - mv).Store(y + 24);
    }

    /// <summary>y[0..16] = s0·q[0..16], y[16..32] = s1·q[16..32] for 32 signed byte values q.</summary>
    internal static unsafe void Scale32(System.Runtime.Intrinsics.Vector256<sbyte> q, float s0, float s1, float* y)
    {
        var (lo, hi) = System.Runtime.Intrinsics.Vector256.Widen(q);
        var (a, b) = System.Runtime.Intrinsics.Vector256.Widen(lo);
        var (c, e) = System.Runtime.Intrinsics.Vector256.Widen(hi);
        var v0 = System.Runtime.Intrinsics.Vector256.Create(s0); var v1 = System.Runtime.Intrinsics.Vector256.Create(s1);
        (v0 * System.Runtime.Intrinsics.Vector256.ConvertToSingle(a)).Store(y);
        (v0 * System.Runtime.Intrinsics.Vector256.ConvertToSingle(b)).Store(y + 8);
        (v1 * System.Runtime.Intrinsics.Vector256.ConvertToSingle(c)).Store(y + 16);
        (v1 * System.Runtime.Intrinsics.Vector256.ConvertToSingle(e)).Store(y + 24);
    }
}
