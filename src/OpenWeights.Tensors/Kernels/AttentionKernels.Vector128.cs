using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// The attention kernels with portable 128-bit vectors: the SIMD path on ARM64 (NEON), and on x64 when
/// <see cref="QuantDot.ForceVector128"/> is set (tests run this code there). The public entry points of
/// AttentionKernels.cs and AttentionRowKernels.cs come here when <see cref="QuantDot.Vector128Path"/> is the path in use,
/// for head dimensions that are a multiple of 4 (<see cref="Supported"/>; Q8_0 rows still need a multiple of 32).
/// Written with the cross-platform <see cref="Vector128"/> API; the one pairwise add comes from AdvSimd (faddp) or SSE3
/// (haddps) behind their IsSupported checks, with a portable fallback that adds the same pairs.
/// <para>
/// The float-order contract, the same on every CPU, so an x64 run with the 128-bit kernels forced gives ARM64's bits:
/// <list type="bullet">
/// <item>score of key j for query q: one 4-lane accumulator a, a = fma(q[c..c+4), k_j[c..c+4), a) for c = 0, 4, .. d-4 in order,
/// then ((a0 + a1) + (a2 + a3))·scale. The keys run 4 at a time (one transposing pairwise sum per 4 keys) and the rest one at a
/// time, each key's score the same expression either way, so it depends on the key and the query alone: a row's scores are
/// the same bits whichever rows share its pass (<see cref="ScoresRowsV128{T, TR}"/> with 1 row is the one-row kernel).</item>
/// <item>weighted sums: each output element's chain o = fma(v_j, p[j], o) over the keys in order (bit-identical to
/// <see cref="WeightedSumScalar"/> / <see cref="WeightedSumAccumulateScalar"/>), 32 dims at a time for one row, 16 per row
/// for several, 4 at the end.</item>
/// <item>F16 and Q8_0 rows are widened in registers exactly as <see cref="DecodeRowsScalar"/> decodes them (F16 exactly,
/// NaNs quieted as <see cref="HalfConvert.Fp16ToFp32"/>; Q8_0 as int8·scale, one multiply), so reading them in place gives
/// the bits of <see cref="DecodeRows"/> followed by the F32 kernel.</item>
/// </list>
/// No prefetch: .NET has no portable prefetch instruction (the AVX2 kernels use SSE's).
/// </para>
/// </summary>
public static unsafe partial class AttentionKernels
{
    // ---------------------------------------------------------------- scores

    /// <summary>One query row's scores over F32 / F16 / Q8_0 keys (the one-row entry points): the several-row kernel with one row.</summary>
    private static void ScoresV128(GgmlType type, float* q, int d, byte* k, long rowBytes, int len, float scale, float* s) =>
        ScoresRowsV128(type, &q, 1, d, k, rowBytes, len, scale, &s);

    /// <summary>Rows 1..4 of <see cref="ScoresRows"/> on the 128-bit path (arguments checked by the caller).</summary>
    private static void ScoresRowsV128(GgmlType type, float** q, int rows, int d, byte* k, long rowBytes, int len, float scale, float** s)
    {
        switch (type)
        {
            case GgmlType.F32: ScoresRowsV128<F32Row128>(q, rows, d, k, rowBytes, len, scale, s); break;
            case GgmlType.F16: ScoresRowsV128<F16Row128>(q, rows, d, k, rowBytes, len, scale, s); break;
            case GgmlType.Q8_0: ScoresRowsV128<Q8Row128>(q, rows, d, k, rowBytes, len, scale, s); break;
            default: throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void ScoresRowsV128<T>(float** q, int rows, int d, byte* k, long rowBytes, int len, float scale, float** s) where T : struct, IRowType128
    {
        switch (rows)
        {
            case 1: ScoresRowsV128<T, R1>(q, d, k, rowBytes, len, scale, s); break;
            case 2: ScoresRowsV128<T, R2>(q, d, k, rowBytes, len, scale, s); break;
            case 3: ScoresRowsV128<T, R3>(q, d, k, rowBytes, len, scale, s); break;
            default: ScoresRowsV128<T, R4>(q, d, k, rowBytes, len, scale, s); break;
        }
    }

    /// <summary>
    /// s_r[j] = (q_r·k_j)·scale. Rows × 4 keys: a 4-lane accumulator per (row, key) over the head's dims in steps of 4 (up to
    /// 16 chains: 16 accumulators + 4 keys + the query fit NEON's 32 registers), then per row one transposing sum of its 4
    /// keys (<see cref="Sum4V128"/>); the last keys one at a time (<see cref="HSum"/>, the same expression per key).
    /// q: (rows) pointers to d floats; k: key j's d elements of T at k + j·rowBytes; s: (rows) pointers to len floats.
    /// </summary>
    private static void ScoresRowsV128<T, TR>(float** q, int d, byte* k, long rowBytes, int len, float scale, float** s)
        where T : struct, IRowType128 where TR : struct, IRowCount
    {
        float* q0 = q[0], q1 = TR.N > 1 ? q[1] : null, q2 = TR.N > 2 ? q[2] : null, q3 = TR.N > 3 ? q[3] : null;
        var vs = Vector128.Create(scale);
        int j = 0;
        for (; j + 4 <= len; j += 4)
        {
            byte* k0 = k + j * rowBytes, k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
            Vector128<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector128<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            Vector128<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int c = 0; c < d; c += 4)
            {
                if (T.Scaled && (c & 31) == 0) { s0 = T.Scale(k0, c); s1 = T.Scale(k1, c); s2 = T.Scale(k2, c); s3 = T.Scale(k3, c); }
                var x0 = T.Load4(k0, c); var x1 = T.Load4(k1, c); var x2 = T.Load4(k2, c); var x3 = T.Load4(k3, c);
                if (T.Scaled) { x0 *= s0; x1 *= s1; x2 *= s2; x3 *= s3; }
                var qc = Vector128.Load(q0 + c);
                a00 = Vector128.FusedMultiplyAdd(qc, x0, a00); a01 = Vector128.FusedMultiplyAdd(qc, x1, a01);
                a02 = Vector128.FusedMultiplyAdd(qc, x2, a02); a03 = Vector128.FusedMultiplyAdd(qc, x3, a03);
                if (TR.N > 1)
                {
                    qc = Vector128.Load(q1 + c);
                    a10 = Vector128.FusedMultiplyAdd(qc, x0, a10); a11 = Vector128.FusedMultiplyAdd(qc, x1, a11);
                    a12 = Vector128.FusedMultiplyAdd(qc, x2, a12); a13 = Vector128.FusedMultiplyAdd(qc, x3, a13);
                }
                if (TR.N > 2)
                {
                    qc = Vector128.Load(q2 + c);
                    a20 = Vector128.FusedMultiplyAdd(qc, x0, a20); a21 = Vector128.FusedMultiplyAdd(qc, x1, a21);
                    a22 = Vector128.FusedMultiplyAdd(qc, x2, a22); a23 = Vector128.FusedMultiplyAdd(qc, x3, a23);
                }
                if (TR.N > 3)
                {
                    qc = Vector128.Load(q3 + c);
                    a30 = Vector128.FusedMultiplyAdd(qc, x0, a30); a31 = Vector128.FusedMultiplyAdd(qc, x1, a31);
                    a32 = Vector128.FusedMultiplyAdd(qc, x2, a32); a33 = Vector128.FusedMultiplyAdd(qc, x3, a33);
                }
            }
            Sum4V128(a00, a01, a02, a03, vs, s[0] + j);
            if (TR.N > 1) Sum4V128(a10, a11, a12, a13, vs, s[1] + j);
            if (TR.N > 2) Sum4V128(a20, a21, a22, a23, vs, s[2] + j);
            if (TR.N > 3) Sum4V128(a30, a31, a32, a33, vs, s[3] + j);
        }
        for (; j < len; j++)
        {
            byte* kj = k + j * rowBytes;
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default, sj = default;
            for (int c = 0; c < d; c += 4)
            {
                if (T.Scaled && (c & 31) == 0) sj = T.Scale(kj, c);
                var x = T.Load4(kj, c);
                if (T.Scaled) x *= sj;
                a0 = Vector128.FusedMultiplyAdd(Vector128.Load(q0 + c), x, a0);
                if (TR.N > 1) a1 = Vector128.FusedMultiplyAdd(Vector128.Load(q1 + c), x, a1);
                if (TR.N > 2) a2 = Vector128.FusedMultiplyAdd(Vector128.Load(q2 + c), x, a2);
                if (TR.N > 3) a3 = Vector128.FusedMultiplyAdd(Vector128.Load(q3 + c), x, a3);
            }
            s[0][j] = HSum(a0) * scale;
            if (TR.N > 1) s[1][j] = HSum(a1) * scale;
            if (TR.N > 2) s[2][j] = HSum(a2) * scale;
            if (TR.N > 3) s[3][j] = HSum(a3) * scale;
        }
    }

    /// <summary>(a0 + a1) + (a2 + a3) of one accumulator: the score sum of one key (the same expression as a lane of <see cref="Sum4V128"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HSum(Vector128<float> a) => (a.GetElement(0) + a.GetElement(1)) + (a.GetElement(2) + a.GetElement(3));

    /// <summary>Four keys' accumulators to 4 scores: lane k = ((a_k0 + a_k1) + (a_k2 + a_k3))·scale, two rounds of pairwise adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sum4V128(Vector128<float> a0, Vector128<float> a1, Vector128<float> a2, Vector128<float> a3, Vector128<float> scale, float* dst) =>
        (AddPairwise(AddPairwise(a0, a1), AddPairwise(a2, a3)) * scale).Store(dst);

    /// <summary>(a0 + a1, a2 + a3, b0 + b1, b2 + b3): faddp on ARM64, haddps on x64, else the same four adds one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> AddPairwise(Vector128<float> a, Vector128<float> b)
    {
        if (AdvSimd.Arm64.IsSupported) return AdvSimd.Arm64.AddPairwise(a, b);
        if (Sse3.IsSupported) return Sse3.HorizontalAdd(a, b);
        return Vector128.Create(a.GetElement(0) + a.GetElement(1), a.GetElement(2) + a.GetElement(3), b.GetElement(0) + b.GetElement(1), b.GetElement(2) + b.GetElement(3));
    }

    // ---------------------------------------------------------------- weighted sums

    /// <summary>One row's o[0..width) += Σ_j p[j]·v_j on the 128-bit path, values of <paramref name="type"/> (arguments checked by the caller).</summary>
    private static void WeightedSumV128(GgmlType type, float* p, int len, byte* v, long rowBytes, float* o, int width)
    {
        switch (type)
        {
            case GgmlType.F32: WeightedSumV128<F32Row128>(p, len, v, rowBytes, o, width); break;
            case GgmlType.F16: WeightedSumV128<F16Row128>(p, len, v, rowBytes, o, width); break;
            case GgmlType.Q8_0: WeightedSumV128<Q8Row128>(p, len, v, rowBytes, o, width); break;
            default: throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    /// <summary>
    /// One row, 32 dims at a time: 8 accumulators held across all keys (8 chains, where one row's 4-lane chain would wait on
    /// its own FMA latency), then 4 dims at a time (F32 / F16 widths not a multiple of 32; Q8_0 widths are).
    /// p: (len); v: value j's width elements of T at v + j·rowBytes; o: (width).
    /// </summary>
    private static void WeightedSumV128<T>(float* p, int len, byte* v, long rowBytes, float* o, int width) where T : struct, IRowType128
    {
        int c = 0;
        for (; c + 32 <= width; c += 32)
        {
            float* oc = o + c;
            var o0 = Vector128.Load(oc); var o1 = Vector128.Load(oc + 4); var o2 = Vector128.Load(oc + 8); var o3 = Vector128.Load(oc + 12);
            var o4 = Vector128.Load(oc + 16); var o5 = Vector128.Load(oc + 20); var o6 = Vector128.Load(oc + 24); var o7 = Vector128.Load(oc + 28);
            byte* vj = v;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var x0 = T.Load4(vj, c); var x1 = T.Load4(vj, c + 4); var x2 = T.Load4(vj, c + 8); var x3 = T.Load4(vj, c + 12);
                var x4 = T.Load4(vj, c + 16); var x5 = T.Load4(vj, c + 20); var x6 = T.Load4(vj, c + 24); var x7 = T.Load4(vj, c + 28);
                if (T.Scaled)
                {
                    var sc = T.Scale(vj, c); // c a block start
                    x0 *= sc; x1 *= sc; x2 *= sc; x3 *= sc; x4 *= sc; x5 *= sc; x6 *= sc; x7 *= sc;
                }
                var w = Vector128.Create(p[j]);
                o0 = Vector128.FusedMultiplyAdd(x0, w, o0); o1 = Vector128.FusedMultiplyAdd(x1, w, o1);
                o2 = Vector128.FusedMultiplyAdd(x2, w, o2); o3 = Vector128.FusedMultiplyAdd(x3, w, o3);
                o4 = Vector128.FusedMultiplyAdd(x4, w, o4); o5 = Vector128.FusedMultiplyAdd(x5, w, o5);
                o6 = Vector128.FusedMultiplyAdd(x6, w, o6); o7 = Vector128.FusedMultiplyAdd(x7, w, o7);
            }
            o0.Store(oc); o1.Store(oc + 4); o2.Store(oc + 8); o3.Store(oc + 12);
            o4.Store(oc + 16); o5.Store(oc + 20); o6.Store(oc + 24); o7.Store(oc + 28);
        }
        for (; c < width; c += 4)
        {
            var acc = Vector128.Load(o + c);
            byte* vj = v;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var x = T.Load4(vj, c);
                if (T.Scaled) x *= T.Scale(vj, c);
                acc = Vector128.FusedMultiplyAdd(x, Vector128.Create(p[j]), acc);
            }
            acc.Store(o + c);
        }
    }

    /// <summary>Rows 2..4 of <see cref="WeightedSumAccumulateRows"/> on the 128-bit path (arguments checked by the caller).</summary>
    private static void WeightedSumRowsV128(GgmlType type, float** p, int rows, int len, byte* v, long rowBytes, float** o, int width)
    {
        switch (type)
        {
            case GgmlType.F32: WeightedSumRowsV128<F32Row128>(p, rows, len, v, rowBytes, o, width); break;
            case GgmlType.F16: WeightedSumRowsV128<F16Row128>(p, rows, len, v, rowBytes, o, width); break;
            case GgmlType.Q8_0: WeightedSumRowsV128<Q8Row128>(p, rows, len, v, rowBytes, o, width); break;
            default: throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void WeightedSumRowsV128<T>(float** p, int rows, int len, byte* v, long rowBytes, float** o, int width) where T : struct, IRowType128
    {
        switch (rows)
        {
            case 2: WeightedSumRowsV128<T, R2>(p, len, v, rowBytes, o, width); break;
            case 3: WeightedSumRowsV128<T, R3>(p, len, v, rowBytes, o, width); break;
            default: WeightedSumRowsV128<T, R4>(p, len, v, rowBytes, o, width); break;
        }
    }

    /// <summary>
    /// 16 dims at a time: per key 4 value vectors loaded (widened, scaled) once, then each row's 4 accumulators (up to 16
    /// chains + 4 values + the weight: NEON's 32 registers); then 4 dims at a time, one chain per row. Each element's chain is
    /// that of the one-row kernel. p: (rows) pointers to len floats; o: (rows) pointers to width floats.
    /// </summary>
    private static void WeightedSumRowsV128<T, TR>(float** p, int len, byte* v, long rowBytes, float** o, int width)
        where T : struct, IRowType128 where TR : struct, IRowCount
    {
        float* p0 = p[0], p1 = p[1], p2 = TR.N > 2 ? p[2] : null, p3 = TR.N > 3 ? p[3] : null;
        int c = 0;
        for (; c + 16 <= width; c += 16)
        {
            float* o0 = o[0] + c, o1 = o[1] + c, o2 = TR.N > 2 ? o[2] + c : null, o3 = TR.N > 3 ? o[3] + c : null;
            Vector128<float> a00 = Vector128.Load(o0), a01 = Vector128.Load(o0 + 4), a02 = Vector128.Load(o0 + 8), a03 = Vector128.Load(o0 + 12);
            Vector128<float> a10 = Vector128.Load(o1), a11 = Vector128.Load(o1 + 4), a12 = Vector128.Load(o1 + 8), a13 = Vector128.Load(o1 + 12);
            Vector128<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            if (TR.N > 2) { a20 = Vector128.Load(o2); a21 = Vector128.Load(o2 + 4); a22 = Vector128.Load(o2 + 8); a23 = Vector128.Load(o2 + 12); }
            if (TR.N > 3) { a30 = Vector128.Load(o3); a31 = Vector128.Load(o3 + 4); a32 = Vector128.Load(o3 + 8); a33 = Vector128.Load(o3 + 12); }
            byte* vj = v;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var x0 = T.Load4(vj, c); var x1 = T.Load4(vj, c + 4); var x2 = T.Load4(vj, c + 8); var x3 = T.Load4(vj, c + 12);
                if (T.Scaled) { var sc = T.Scale(vj, c); x0 *= sc; x1 *= sc; x2 *= sc; x3 *= sc; } // 16 dims inside one block
                var w = Vector128.Create(p0[j]);
                a00 = Vector128.FusedMultiplyAdd(x0, w, a00); a01 = Vector128.FusedMultiplyAdd(x1, w, a01);
                a02 = Vector128.FusedMultiplyAdd(x2, w, a02); a03 = Vector128.FusedMultiplyAdd(x3, w, a03);
                w = Vector128.Create(p1[j]);
                a10 = Vector128.FusedMultiplyAdd(x0, w, a10); a11 = Vector128.FusedMultiplyAdd(x1, w, a11);
                a12 = Vector128.FusedMultiplyAdd(x2, w, a12); a13 = Vector128.FusedMultiplyAdd(x3, w, a13);
                if (TR.N > 2)
                {
                    w = Vector128.Create(p2[j]);
                    a20 = Vector128.FusedMultiplyAdd(x0, w, a20); a21 = Vector128.FusedMultiplyAdd(x1, w, a21);
                    a22 = Vector128.FusedMultiplyAdd(x2, w, a22); a23 = Vector128.FusedMultiplyAdd(x3, w, a23);
                }
                if (TR.N > 3)
                {
                    w = Vector128.Create(p3[j]);
                    a30 = Vector128.FusedMultiplyAdd(x0, w, a30); a31 = Vector128.FusedMultiplyAdd(x1, w, a31);
                    a32 = Vector128.FusedMultiplyAdd(x2, w, a32); a33 = Vector128.FusedMultiplyAdd(x3, w, a33);
                }
            }
            a00.Store(o0); a01.Store(o0 + 4); a02.Store(o0 + 8); a03.Store(o0 + 12);
            a10.Store(o1); a11.Store(o1 + 4); a12.Store(o1 + 8); a13.Store(o1 + 12);
            if (TR.N > 2) { a20.Store(o2); a21.Store(o2 + 4); a22.Store(o2 + 8); a23.Store(o2 + 12); }
            if (TR.N > 3) { a30.Store(o3); a31.Store(o3 + 4); a32.Store(o3 + 8); a33.Store(o3 + 12); }
        }
        for (; c < width; c += 4) // F32 / F16 widths that are not a multiple of 16
        {
            var a0 = Vector128.Load(o[0] + c); var a1 = Vector128.Load(o[1] + c);
            var a2 = TR.N > 2 ? Vector128.Load(o[2] + c) : default; var a3 = TR.N > 3 ? Vector128.Load(o[3] + c) : default;
            byte* vj = v;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var x = T.Load4(vj, c);
                if (T.Scaled) x *= T.Scale(vj, c);
                a0 = Vector128.FusedMultiplyAdd(x, Vector128.Create(p0[j]), a0);
                a1 = Vector128.FusedMultiplyAdd(x, Vector128.Create(p1[j]), a1);
                if (TR.N > 2) a2 = Vector128.FusedMultiplyAdd(x, Vector128.Create(p2[j]), a2);
                if (TR.N > 3) a3 = Vector128.FusedMultiplyAdd(x, Vector128.Create(p3[j]), a3);
            }
            a0.Store(o[0] + c); a1.Store(o[1] + c);
            if (TR.N > 2) a2.Store(o[2] + c);
            if (TR.N > 3) a3.Store(o[3] + c);
        }
    }

    // ---------------------------------------------------------------- decoding F16 / Q8_0 rows

    /// <summary><see cref="DecodeRows"/> for F16 and Q8_0 on the 128-bit path: bit for bit <see cref="DecodeRowsScalar"/>.
    /// src: the first row's first element (a block start for Q8_0, d then a multiple of 32); dst: (rows, d).</summary>
    private static void DecodeRowsV128(GgmlType type, byte* src, long rowBytes, int rows, int d, float* dst)
    {
        if (type != GgmlType.F16 && type != GgmlType.Q8_0) throw new ArgumentException($"{type} is not a KV cache type");
        for (int j = 0; j < rows; j++, src += rowBytes, dst += d)
        {
            if (type == GgmlType.F16)
            {
                short* h = (short*)src;
                int c = 0;
                for (; c + 8 <= d; c += 8)
                {
                    var (lo, hi) = Vector128.Widen(Vector128.Load(h + c)); // 8 halves sign-extended to int32
                    HalfToSingle(lo).Store(dst + c); HalfToSingle(hi).Store(dst + c + 4);
                }
                for (; c < d; c++) dst[c] = HalfConvert.Fp16ToFp32((ushort)h[c]);
                continue;
            }
            for (int b = 0; b < d / 32; b++)
            {
                byte* blk = src + b * 34; // f16 scale, 32 int8
                var s = Vector128.Create(HalfConvert.ReadFp16(blk));
                float* o = dst + b * 32;
                for (int i = 0; i < 32; i += 16)
                {
                    var (w0, w1) = Vector128.Widen(Vector128.Load((sbyte*)(blk + 2 + i)));
                    var (x0, x1) = Vector128.Widen(w0); var (x2, x3) = Vector128.Widen(w1);
                    (Vector128.ConvertToSingle(x0) * s).Store(o + i); (Vector128.ConvertToSingle(x1) * s).Store(o + i + 4);
                    (Vector128.ConvertToSingle(x2) * s).Store(o + i + 8); (Vector128.ConvertToSingle(x3) * s).Store(o + i + 12);
                }
            }
        }
    }

    /// <summary>
    /// 4 f16 values (sign-extended to int32) as F32, bit for bit <see cref="HalfConvert.Fp16ToFp32"/>: shifted left by 13, the
    /// exponent and mantissa land in an f32's places and the sign at bit 31; masking the sign's copies out of bits 28-30 and
    /// multiplying by 2^112 rebiases the exponent (exact for normals, subnormals and zeros); the all-ones exponent (inf, NaN)
    /// gets the f32's all-ones exponent instead, and a NaN the quiet bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalfToSingle(Vector128<int> h)
    {
        var bits = Vector128.ShiftLeft(h, 13) & Vector128.Create(unchecked((int)0x8FFFE000));
        var finite = bits.AsSingle() * Vector128.Create(BitConverter.UInt32BitsToSingle(0x77800000));
        var magnitude = h & Vector128.Create(0x7FFF);
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(0x7C00));
        var quiet = Vector128.GreaterThan(magnitude, Vector128.Create(0x7C00)) & Vector128.Create(0x00400000);
        return Vector128.ConditionalSelect(special.AsSingle(), (bits | Vector128.Create(0x7F800000) | quiet).AsSingle(), finite);
    }

    // ---------------------------------------------------------------- element types of cache rows, 4 at a time

    /// <summary>How 4 elements (c, a multiple of 4) of a cache row become F32 lanes. Scaled types (Q8_0) give int8 lanes by
    /// <see cref="Load4"/> and the scale of the block holding element c by <see cref="Scale"/>, multiplied after, exactly as
    /// <see cref="DecodeRowsScalar"/> does. Loads read only the row's own bytes.</summary>
    private interface IRowType128
    {
        static abstract bool Scaled { get; }
        static abstract Vector128<float> Load4(byte* row, int c);
        static abstract Vector128<float> Scale(byte* row, int c);
    }

    private struct F32Row128 : IRowType128
    {
        public static bool Scaled => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load4(byte* row, int c) => Vector128.Load((float*)row + c);
        public static Vector128<float> Scale(byte* row, int c) => default;
    }

    private struct F16Row128 : IRowType128
    {
        public static bool Scaled => false;
        /// <summary>8 bytes (4 halves) into the low half of a vector, sign-extended to int32 (sxtl), widened exactly.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Load4(byte* row, int c) =>
            HalfToSingle(Vector128.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<long>(row + 2L * c)).AsInt16()));
        public static Vector128<float> Scale(byte* row, int c) => default;
    }

    private struct Q8Row128 : IRowType128
    {
        public static bool Scaled => true;
        /// <summary>4 int8 of element c's block (34 bytes: f16 scale, 32 int8), sign-extended twice and converted (exact).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Load4(byte* row, int c) =>
            Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(
                Vector128.CreateScalar(Unsafe.ReadUnaligned<int>(row + (c >> 5) * 34 + 2 + (c & 31))).AsSByte())));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Scale(byte* row, int c) => Vector128.Create(HalfConvert.ReadFp16(row + (c >> 5) * 34));
    }
}
