using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// What IQ4_NL, IQ4_XS and MXFP4 share: 4-bit indices into a 16-entry int8 table, in 32-value groups laid out as
/// Q4_0's (low nibble of byte j = value j, high nibble = value j + 16), and the table-based quantizer of IQ4_NL /
/// IQ4_XS (ggml's <c>quantize_row_iq4_nl_impl</c>, float operations in its order, no FMA).
/// </summary>
internal static unsafe class NonLinear4
{
    /// <summary>ggml's kvalues_iq4nl: the IQ4_NL / IQ4_XS grid (non-uniform, denser near zero).</summary>
    public static ReadOnlySpan<sbyte> Iq4Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>ggml's kvalues_mxfp4: the 16 E2M1 (FP4) values doubled, so that they are integers; the scale is halved to match.</summary>
    public static ReadOnlySpan<sbyte> Mxfp4Values => [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    /// <summary>The table in both 128-bit halves, for vpshufb lookups.</summary>
    public static Vector256<sbyte> Table256(ReadOnlySpan<sbyte> values)
    {
        var t = Vector128.Create(values);
        return Vector256.Create(t, t);
    }

    /// <summary>
    /// 16 bytes of nibbles → the 32 table values of a group, in value order (low nibbles, then high nibbles).
    /// Needs AVX2 (vpshufb on the table held in both halves).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Lookup32(byte* qs, Vector256<sbyte> table)
    {
        var q = Vector128.Load(qs);
        var mask = Vector128.Create((byte)0x0F);
        var idx = Vector256.Create(q & mask, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask);
        return Avx2.Shuffle(table, idx.AsSByte());
    }

    /// <summary>y[j] = d · values[nibble j] for one group of 32 (scalar: the int8 → float conversion is exact, one multiply).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void DecodeGroupScalar(byte* qs, float d, ReadOnlySpan<sbyte> values, float* y)
    {
        for (int j = 0; j < 16; ++j)
        {
            y[j] = d * values[qs[j] & 0xF];
            y[j + 16] = d * values[qs[j] >> 4];
        }
    }

    /// <summary>The same as <see cref="DecodeGroupScalar"/> with a vpshufb lookup and 4 × 8 multiplies (same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void DecodeGroupAvx2(byte* qs, float d, Vector256<sbyte> table, float* y)
    {
        var v = Lookup32(qs, table);
        var dv = Vector256.Create(d);
        var (lo, hi) = Vector256.Widen(v);
        var (a, b) = Vector256.Widen(lo);
        var (c, e) = Vector256.Widen(hi);
        (dv * Vector256.ConvertToSingle(a)).Store(y);
        (dv * Vector256.ConvertToSingle(b)).Store(y + 8);
        (dv * Vector256.ConvertToSingle(c)).Store(y + 16);
        (dv * Vector256.ConvertToSingle(e)).Store(y + 24);
    }

    public static bool SimdDecode => Avx2.IsSupported;

    /// <summary>
    /// ggml's <c>best_index_int8</c> for a sorted table of 16: the index of the nearest value (ties to the upper one),
    /// with ggml's comparisons (x − lo &lt; hi − x, each difference rounded to f32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BestIndex(ReadOnlySpan<sbyte> val, float x)
    {
        if (x <= val[0]) return 0;
        if (x >= val[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1)
        {
            int mav = (ml + mu) / 2;
            if (x < val[mav]) mu = mav; else ml = mav;
        }
        return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
    }

    /// <summary>The IQ4 grid as f32 (exact), for <see cref="BestIndexIq4"/>.</summary>
    private static readonly float[] iq4Floats = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary><see cref="BestIndex"/> on the IQ4 grid, unrolled: the same comparisons (the search path of 15 sorted values is
    /// always 4 steps: ml, mu = 0, 15 → 7 → 3 or 11 → ...), the same f32 differences.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BestIndexIq4(float x)
    {
        var v = iq4Floats;
        if (x <= v[0]) return 0;
        if (x >= v[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1)
        {
            int mav = (ml + mu) >> 1;
            if (x < v[mav]) mu = mav; else ml = mav;
        }
        return x - v[mu - 1] < v[mu] - x ? mu - 1 : mu;
    }

    /// <summary>
    /// ggml's <c>quantize_row_iq4_nl_impl</c> without importance weights (w = x², <paramref name="ntry"/> = 7 as
    /// llama_model_quantize runs it): per 32-value group, the scale is searched over 15 candidates (max/(values[0] +
    /// k), k = −7..7) for the least weighted squared error; groups of a 256-value super-block (IQ4_XS) then get 6-bit
    /// scales relative to the super-block's largest one. Writes the f16 scale at <paramref name="dh"/>, the nibbles at
    /// <paramref name="q4"/>, and for IQ4_XS the packed 6-bit scales.
    /// </summary>
    /// <param name="superBlock">32 (IQ4_NL) or 256 (IQ4_XS)</param>
    /// <param name="x">(superBlock) values</param>
    /// <param name="scalesH">IQ4_XS: the u16 of the top 2 bits of each group's scale (null for IQ4_NL)</param>
    /// <param name="scalesL">IQ4_XS: 4 bytes of low scale nibbles (null for IQ4_NL)</param>
    /// <param name="ntry">ggml's ntry: 7 for quantize_iq4_nl / quantize_iq4_xs, −1 for quantize_row_iq4_nl_ref</param>
    public static void QuantizeIq4(int superBlock, ReadOnlySpan<float> x, byte* dh, byte* q4, ushort* scalesH, byte* scalesL, int ntry)
    {
        const int blockSize = 32;
        var values = Iq4Values;
        int nb = superBlock / blockSize;
        Span<float> scales = stackalloc float[8];
        Span<float> weight = stackalloc float[blockSize];
        Span<byte> L = stackalloc byte[256];
        new Span<byte>(q4, superBlock / 2).Clear();
        HalfConvert.WriteFp16(dh, 0f);

        float maxScale = 0, amaxScale = 0;
        for (int ib = 0; ib < nb; ++ib)
        {
            var xb = x.Slice(ib * blockSize, blockSize);
            var Lb = L.Slice(ib * blockSize, blockSize);
            for (int j = 0; j < blockSize; ++j) weight[j] = xb[j] * xb[j];
            float amax = 0, max = 0;
            for (int j = 0; j < blockSize; ++j)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax < QuantMath.GroupMaxEps)
            {
                scales[ib] = 0;
                Lb.Clear();
                continue;
            }
            float d = ntry > 0 ? -max / values[0] : max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < blockSize; ++j)
            {
                float al = id * xb[j];
                int l = BestIndexIq4(al);
                Lb[j] = (byte)l;
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 0f;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry)
            {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < blockSize; ++j)
                {
                    float al = id * xb[j];
                    int l = BestIndexIq4(al);
                    float q = values[l];
                    float w = weight[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2; best = d * sumqx;
                }
            }
            scales[ib] = d;
            float absD = MathF.Abs(d);
            if (absD > amaxScale) { amaxScale = absD; maxScale = d; }
        }

        if (nb > 1)
        {
            *scalesH = 0;
            float d = -maxScale / 32;
            HalfConvert.WriteFp16(dh, d);
            float id = d != 0 ? 1 / d : 0f;
            for (int ib = 0; ib < nb; ++ib)
            {
                int l = QuantMath.NearestInt(id * scales[ib]);
                l = Math.Max(-32, Math.Min(31, l));
                float dl = d * l;
                float idl = dl != 0 ? 1 / dl : 0f;
                var xb = x.Slice(ib * blockSize, blockSize);
                for (int j = 0; j < blockSize; ++j) L[ib * blockSize + j] = (byte)BestIndexIq4(idl * xb[j]);
                l += 32;
                byte lLow = (byte)(l & 0xF), lHigh = (byte)(l >> 4);
                if (ib % 2 == 0) scalesL[ib / 2] = lLow;
                else scalesL[ib / 2] |= (byte)(lLow << 4);
                *scalesH |= (ushort)(lHigh << 2 * (ib % 8));
            }
        }
        else
        {
            HalfConvert.WriteFp16(dh, scales[0]);
            if (ntry > 0)
            {
                float id = scales[0] != 0 ? 1 / scales[0] : 0;
                for (int j = 0; j < superBlock; ++j) L[j] = (byte)BestIndexIq4(id * x[j]);
            }
        }

        for (int i = 0; i < superBlock / 32; ++i)
            for (int j = 0; j < 16; ++j)
                q4[16 * i + j] = (byte)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}
