using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// Several query rows at once over the same keys and values (the query heads of a KV head, or several tokens with the same
/// key range): each key or value is loaded (and, for F16 / Q8_0, widened) once for up to <see cref="MaxRows"/> rows, and the
/// rows' independent accumulators keep both FMA ports busy where one row's chain waits on its own latency. Per row the
/// operations are exactly those of the one-row kernels (<see cref="Scores(ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, float, Span{float})"/>,
/// <see cref="WeightedSumAccumulate(ReadOnlySpan{float}, ReadOnlySpan{float}, int, Span{float})"/> and their typed forms):
/// the same lanes, the same horizontal sums, the same FMA chains in key order, so a row's result is bit for bit the same
/// whichever rows share its pass (batch invariance: prefill blocks, decode steps and split steps agree). Scalar references:
/// the one-row scalar kernels, row by row.
/// </summary>
public static unsafe partial class AttentionKernels
{
    /// <summary>Rows per pass: 4 with AVX-512VL's 32 vector registers (16 accumulators + 4 keys + the query), 2 with AVX2's 16.
    /// (Settable for benchmarks: 1 is one row at a time, as before these kernels.)</summary>
    public static int MaxRows = Avx512F.VL.IsSupported ? 4 : 2;

    /// <summary>
    /// s_r[j] = (q_r·k_j)·scale for rows r &lt; <paramref name="rows"/> (at most <see cref="MaxRows"/>) and keys j &lt; len: q_r
    /// at q[r] (d floats), key j's d elements of <paramref name="type"/> (F32, F16 or Q8_0) at k + j·rowBytes, s_r at s[r].
    /// Each row's scores are bit for bit those of the one-row kernel.
    /// </summary>
    public static void ScoresRows(GgmlType type, float** q, int rows, int d, byte* k, long rowBytes, int len, float scale, float** s)
    {
        if (rows < 1 || rows > 4) throw new ArgumentOutOfRangeException(nameof(rows), "1 to 4 rows per pass");
        if (!Supported(d) || (type == GgmlType.F32 && rowBytes % 4 != 0))
        {
            for (int r = 0; r < rows; r++) ScoresScalar(type, new ReadOnlySpan<float>(q[r], d), k, rowBytes, len, scale, new Span<float>(s[r], len));
            return;
        }
        if (type == GgmlType.Q8_0 && d % 32 != 0) throw new ArgumentException("q8_0 rows need d a multiple of 32");
        if (QuantDot.Vector128Path) { ScoresRowsV128(type, q, rows, d, k, rowBytes, len, scale, s); return; }
        switch (type)
        {
            case GgmlType.F32: ScoresRows<F32Row>(q, rows, d, k, rowBytes, len, scale, s); break;
            case GgmlType.F16: ScoresRows<F16Row>(q, rows, d, k, rowBytes, len, scale, s); break;
            case GgmlType.Q8_0: ScoresRows<Q8Row>(q, rows, d, k, rowBytes, len, scale, s); break;
            default: throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void ScoresRows<T>(float** q, int rows, int d, byte* k, long rowBytes, int len, float scale, float** s) where T : struct, IRowType
    {
        if (Avx512Rows)
        {
            switch (rows)
            {
                case 1: ScoresRowsAvx512<T, R1>(q, d, k, rowBytes, len, scale, s); break;
                case 2: ScoresRowsAvx512<T, R2>(q, d, k, rowBytes, len, scale, s); break;
                case 3: ScoresRowsAvx512<T, R3>(q, d, k, rowBytes, len, scale, s); break;
                default: ScoresRowsAvx512<T, R4>(q, d, k, rowBytes, len, scale, s); break;
            }
            return;
        }
        switch (rows)
        {
            case 1: ScoresRows<T, R1>(q, d, k, rowBytes, len, scale, s); break;
            case 2: ScoresRows<T, R2>(q, d, k, rowBytes, len, scale, s); break;
            case 3: ScoresRows<T, R3>(q, d, k, rowBytes, len, scale, s); break;
            default: ScoresRows<T, R4>(q, d, k, rowBytes, len, scale, s); break;
        }
    }

    /// <summary>
    /// Rows × 4 keys: an 8-lane accumulator per (row, key) over the head's dims in steps of 8, then per row the one-row
    /// kernel's horizontal sum of its 4 keys; single keys at the end likewise (Vector256.Sum).
    /// </summary>
    private static void ScoresRows<T, TR>(float** q, int d, byte* k, long rowBytes, int len, float scale, float** s)
        where T : struct, IRowType where TR : struct, IRowCount
    {
        float* q0 = q[0], q1 = TR.N > 1 ? q[1] : null, q2 = TR.N > 2 ? q[2] : null, q3 = TR.N > 3 ? q[3] : null;
        var vs = Vector128.Create(scale);
        int j = 0;
        for (; j + 4 <= len; j += 4)
        {
            byte* k0 = k + j * rowBytes, k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
            if (T.Prefetch && j + 4 + PrefetchRows <= len) Prefetch(k0 + (4 + PrefetchRows) * rowBytes, 4, rowBytes, (int)T.Bytes(d));
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int c = 0; c < d; c += 8)
            {
                if (T.Scaled && (c & 31) == 0) { s0 = T.Scale(k0, c); s1 = T.Scale(k1, c); s2 = T.Scale(k2, c); s3 = T.Scale(k3, c); }
                var x0 = T.Load8(k0, c); var x1 = T.Load8(k1, c); var x2 = T.Load8(k2, c); var x3 = T.Load8(k3, c);
                if (T.Scaled) { x0 *= s0; x1 *= s1; x2 *= s2; x3 *= s3; }
                var qc = Vector256.Load(q0 + c);
                a00 = Fma.MultiplyAdd(qc, x0, a00); a01 = Fma.MultiplyAdd(qc, x1, a01); a02 = Fma.MultiplyAdd(qc, x2, a02); a03 = Fma.MultiplyAdd(qc, x3, a03);
                if (TR.N > 1)
                {
                    qc = Vector256.Load(q1 + c);
                    a10 = Fma.MultiplyAdd(qc, x0, a10); a11 = Fma.MultiplyAdd(qc, x1, a11); a12 = Fma.MultiplyAdd(qc, x2, a12); a13 = Fma.MultiplyAdd(qc, x3, a13);
                }
                if (TR.N > 2)
                {
                    qc = Vector256.Load(q2 + c);
                    a20 = Fma.MultiplyAdd(qc, x0, a20); a21 = Fma.MultiplyAdd(qc, x1, a21); a22 = Fma.MultiplyAdd(qc, x2, a22); a23 = Fma.MultiplyAdd(qc, x3, a23);
                }
                if (TR.N > 3)
                {
                    qc = Vector256.Load(q3 + c);
                    a30 = Fma.MultiplyAdd(qc, x0, a30); a31 = Fma.MultiplyAdd(qc, x1, a31); a32 = Fma.MultiplyAdd(qc, x2, a32); a33 = Fma.MultiplyAdd(qc, x3, a33);
                }
            }
            Sum4(a00, a01, a02, a03, vs, s[0] + j);
            if (TR.N > 1) Sum4(a10, a11, a12, a13, vs, s[1] + j);
            if (TR.N > 2) Sum4(a20, a21, a22, a23, vs, s[2] + j);
            if (TR.N > 3) Sum4(a30, a31, a32, a33, vs, s[3] + j);
        }
        for (; j < len; j++)
        {
            byte* kj = k + j * rowBytes;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, sj = default;
            for (int c = 0; c < d; c += 8)
            {
                if (T.Scaled && (c & 31) == 0) sj = T.Scale(kj, c);
                var x = T.Load8(kj, c);
                if (T.Scaled) x *= sj;
                a0 = Fma.MultiplyAdd(Vector256.Load(q0 + c), x, a0);
                if (TR.N > 1) a1 = Fma.MultiplyAdd(Vector256.Load(q1 + c), x, a1);
                if (TR.N > 2) a2 = Fma.MultiplyAdd(Vector256.Load(q2 + c), x, a2);
                if (TR.N > 3) a3 = Fma.MultiplyAdd(Vector256.Load(q3 + c), x, a3);
            }
            s[0][j] = Vector256.Sum(a0) * scale;
            if (TR.N > 1) s[1][j] = Vector256.Sum(a1) * scale;
            if (TR.N > 2) s[2][j] = Vector256.Sum(a2) * scale;
            if (TR.N > 3) s[3][j] = Vector256.Sum(a3) * scale;
        }
    }

    /// <summary>Four keys' 8-lane sums to 4 scores, as the one-row kernels: two rounds of pairwise adds, then the two halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sum4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3, Vector128<float> scale, float* dst)
    {
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        ((h.GetLower() + h.GetUpper()) * scale).Store(dst);
    }

    /// <summary>
    /// o_r[0..width) += Σ_j p_r[j]·v_j for rows r &lt; <paramref name="rows"/> (at most <see cref="MaxRows"/>) and j &lt; len:
    /// p_r at p[r], o_r at o[r], value j's <paramref name="width"/> elements of <paramref name="type"/> at v + j·rowBytes (a
    /// block start for Q8_0, width then a multiple of 32). Each output element's chain is fma(v_j, p_r[j], o) over the keys
    /// in order, as in the one-row kernels, so each row's output is bit for bit theirs.
    /// </summary>
    public static void WeightedSumAccumulateRows(GgmlType type, float** p, int rows, int len, byte* v, long rowBytes, float** o, int width)
    {
        if (rows < 1 || rows > 4) throw new ArgumentOutOfRangeException(nameof(rows), "1 to 4 rows per pass");
        if (rows == 1 || !Supported(width) || (type == GgmlType.F32 && rowBytes % 4 != 0))
        {
            // one row: the one-row kernels (64 dims in flight: 8 chains, where 32 dims of one row would leave FMA latency bare)
            for (int r = 0; r < rows; r++)
                WeightedSumAccumulate(type, new ReadOnlySpan<float>(p[r], len), v, rowBytes, new Span<float>(o[r], width));
            return;
        }
        if (type == GgmlType.Q8_0 && width % 32 != 0) throw new ArgumentException("q8_0 rows need a multiple of 32 dims");
        if (QuantDot.Vector128Path) { WeightedSumRowsV128(type, p, rows, len, v, rowBytes, o, width); return; }
        switch (type)
        {
            case GgmlType.F32: WeightedSumRows<F32Row>(p, rows, len, v, rowBytes, o, width); break;
            case GgmlType.F16: WeightedSumRows<F16Row>(p, rows, len, v, rowBytes, o, width); break;
            case GgmlType.Q8_0: WeightedSumRows<Q8Row>(p, rows, len, v, rowBytes, o, width); break;
            default: throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void WeightedSumRows<T>(float** p, int rows, int len, byte* v, long rowBytes, float** o, int width) where T : struct, IRowType
    {
        if (Avx512Rows)
        {
            switch (rows)
            {
                case 2: WeightedSumRowsAvx512<T, R2>(p, len, v, rowBytes, o, width); break;
                case 3: WeightedSumRowsAvx512<T, R3>(p, len, v, rowBytes, o, width); break;
                default: WeightedSumRowsAvx512<T, R4>(p, len, v, rowBytes, o, width); break;
            }
            return;
        }
        switch (rows)
        {
            case 2: WeightedSumRows<T, R2>(p, len, v, rowBytes, o, width); break;
            case 3: WeightedSumRows<T, R3>(p, len, v, rowBytes, o, width); break;
            default: WeightedSumRows<T, R4>(p, len, v, rowBytes, o, width); break;
        }
    }

    /// <summary>32 dims at a time: per key 4 value vectors loaded once, then each row's 4 accumulators (up to 16 chains).</summary>
    private static void WeightedSumRows<T, TR>(float** p, int len, byte* v, long rowBytes, float** o, int width)
        where T : struct, IRowType where TR : struct, IRowCount
    {
        float* p0 = p[0], p1 = p[1], p2 = TR.N > 2 ? p[2] : null, p3 = TR.N > 3 ? p[3] : null;
        int c = 0;
        for (; c + 32 <= width; c += 32)
        {
            float* o0 = o[0] + c, o1 = o[1] + c, o2 = TR.N > 2 ? o[2] + c : null, o3 = TR.N > 3 ? o[3] + c : null;
            Vector256<float> a00 = Vector256.Load(o0), a01 = Vector256.Load(o0 + 8), a02 = Vector256.Load(o0 + 16), a03 = Vector256.Load(o0 + 24);
            Vector256<float> a10 = Vector256.Load(o1), a11 = Vector256.Load(o1 + 8), a12 = Vector256.Load(o1 + 16), a13 = Vector256.Load(o1 + 24);
            Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            if (TR.N > 2) { a20 = Vector256.Load(o2); a21 = Vector256.Load(o2 + 8); a22 = Vector256.Load(o2 + 16); a23 = Vector256.Load(o2 + 24); }
            if (TR.N > 3) { a30 = Vector256.Load(o3); a31 = Vector256.Load(o3 + 8); a32 = Vector256.Load(o3 + 16); a33 = Vector256.Load(o3 + 24); }
            byte* vj = v + T.Bytes(c);
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                if (T.Prefetch && j + PrefetchRows < len) Sse.Prefetch0(vj + PrefetchRows * rowBytes);
                var x0 = T.Load8(vj, 0); var x1 = T.Load8(vj, 8); var x2 = T.Load8(vj, 16); var x3 = T.Load8(vj, 24);
                if (T.Scaled) { var sc = T.Scale(vj, 0); x0 *= sc; x1 *= sc; x2 *= sc; x3 *= sc; }
                var w = Vector256.Create(p0[j]);
                a00 = Fma.MultiplyAdd(x0, w, a00); a01 = Fma.MultiplyAdd(x1, w, a01); a02 = Fma.MultiplyAdd(x2, w, a02); a03 = Fma.MultiplyAdd(x3, w, a03);
                w = Vector256.Create(p1[j]);
                a10 = Fma.MultiplyAdd(x0, w, a10); a11 = Fma.MultiplyAdd(x1, w, a11); a12 = Fma.MultiplyAdd(x2, w, a12); a13 = Fma.MultiplyAdd(x3, w, a13);
                if (TR.N > 2)
                {
                    w = Vector256.Create(p2[j]);
                    a20 = Fma.MultiplyAdd(x0, w, a20); a21 = Fma.MultiplyAdd(x1, w, a21); a22 = Fma.MultiplyAdd(x2, w, a22); a23 = Fma.MultiplyAdd(x3, w, a23);
                }
                if (TR.N > 3)
                {
                    w = Vector256.Create(p3[j]);
                    a30 = Fma.MultiplyAdd(x0, w, a30); a31 = Fma.MultiplyAdd(x1, w, a31); a32 = Fma.MultiplyAdd(x2, w, a32); a33 = Fma.MultiplyAdd(x3, w, a33);
                }
            }
            a00.Store(o0); a01.Store(o0 + 8); a02.Store(o0 + 16); a03.Store(o0 + 24);
            a10.Store(o1); a11.Store(o1 + 8); a12.Store(o1 + 16); a13.Store(o1 + 24);
            if (TR.N > 2) { a20.Store(o2); a21.Store(o2 + 8); a22.Store(o2 + 16); a23.Store(o2 + 24); }
            if (TR.N > 3) { a30.Store(o3); a31.Store(o3 + 8); a32.Store(o3 + 16); a33.Store(o3 + 24); }
        }
        for (; c < width; c += 8) // F32 / F16 widths that are not a multiple of 32: 8 dims, one chain per row
        {
            var a0 = Vector256.Load(o[0] + c); var a1 = Vector256.Load(o[1] + c);
            var a2 = TR.N > 2 ? Vector256.Load(o[2] + c) : default; var a3 = TR.N > 3 ? Vector256.Load(o[3] + c) : default;
            byte* vj = v + T.Bytes(c);
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var x = T.Load8(vj, 0);
                a0 = Fma.MultiplyAdd(x, Vector256.Create(p0[j]), a0);
                a1 = Fma.MultiplyAdd(x, Vector256.Create(p1[j]), a1);
                if (TR.N > 2) a2 = Fma.MultiplyAdd(x, Vector256.Create(p2[j]), a2);
                if (TR.N > 3) a3 = Fma.MultiplyAdd(x, Vector256.Create(p3[j]), a3);
            }
            a0.Store(o[0] + c); a1.Store(o[1] + c);
            if (TR.N > 2) a2.Store(o[2] + c);
            if (TR.N > 3) a3.Store(o[3] + c);
        }
    }

    // ---- element types of cache rows and row counts, as type parameters (the JIT compiles one loop per combination)

    /// <summary>How 8 elements of a cache row become F32 lanes. Scaled types (Q8_0) give int8 lanes by <see cref="Load8"/> and
    /// the block's scale by <see cref="Scale"/> (c a multiple of 32), multiplied after, exactly as the one-row kernels.</summary>
    private interface IRowType
    {
        static abstract bool Scaled { get; }
        static abstract bool Prefetch { get; }
        static abstract long Bytes(int elements);
        static abstract Vector256<float> Load8(byte* row, int c);
        static abstract Vector256<float> Scale(byte* row, int c);
        /// <summary>16 elements c.. of one row (c a multiple of 16; Q8_0: int8 lanes, one block).</summary>
        static abstract Vector512<float> Load16(byte* row, int c);
        /// <summary>8 elements c.. of row a (low half) and of row b (high half).</summary>
        static abstract Vector512<float> Load8x2(byte* a, byte* b, int c);
        /// <summary>Q8_0: the block scale of element c, all 16 lanes.</summary>
        static abstract Vector512<float> Scale16(byte* row, int c);
        /// <summary>Q8_0: row a's block scale of element c in the low half, row b's in the high half.</summary>
        static abstract Vector512<float> Scale8x2(byte* a, byte* b, int c);
    }

    private struct F32Row : IRowType
    {
        public static bool Scaled => false;
        public static bool Prefetch => false; // a decoded tile in L1, or an F32 cache read as before
        public static long Bytes(int elements) => 4L * elements;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(byte* row, int c) => Vector256.Load((float*)row + c);
        public static Vector256<float> Scale(byte* row, int c) => default;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(byte* row, int c) => Vector512.Load((float*)row + c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load8x2(byte* a, byte* b, int c) => Vector512.Create(Vector256.Load((float*)a + c), Vector256.Load((float*)b + c));
        public static Vector512<float> Scale16(byte* row, int c) => default;
        public static Vector512<float> Scale8x2(byte* a, byte* b, int c) => default;
    }

    private struct F16Row : IRowType
    {
        public static bool Scaled => false;
        public static bool Prefetch => true;
        public static long Bytes(int elements) => 2L * elements;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(byte* row, int c) => HalfToSingle(Avx2.ConvertToVector256Int32((short*)row + c));
        public static Vector256<float> Scale(byte* row, int c) => default;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(byte* row, int c) => HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)row + c)));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load8x2(byte* a, byte* b, int c) => HalfToSingle(Avx512F.ConvertToVector512Int32(Vector256.Create(Vector128.Load((short*)a + c), Vector128.Load((short*)b + c))));
        public static Vector512<float> Scale16(byte* row, int c) => default;
        public static Vector512<float> Scale8x2(byte* a, byte* b, int c) => default;
    }

    private struct Q8Row : IRowType
    {
        public static bool Scaled => true;
        public static bool Prefetch => true;
        public static long Bytes(int elements) => elements / 32 * 34L;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load8(byte* row, int c) => Int8ToSingle(row + (c >> 5) * 34 + 2 + (c & 31));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Scale(byte* row, int c) => Vector256.Create(HalfConvert.ReadFp16(row + (c >> 5) * 34));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)row + (c >> 5) * 34 + 2 + (c & 31))));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load8x2(byte* a, byte* b, int c)
        {
            long off = (c >> 5) * 34 + 2 + (c & 31);
            return Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Create(Unsafe.ReadUnaligned<long>(a + off), Unsafe.ReadUnaligned<long>(b + off)).AsSByte()));
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Scale16(byte* row, int c) => Vector512.Create(HalfConvert.ReadFp16(row + (c >> 5) * 34));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Scale8x2(byte* a, byte* b, int c) => Vector512.Create(Vector256.Create(HalfConvert.ReadFp16(a + (c >> 5) * 34)), Vector256.Create(HalfConvert.ReadFp16(b + (c >> 5) * 34)));
    }

    private interface IRowCount { static abstract int N { get; } }
    private struct R1 : IRowCount { public static int N => 1; }
    private struct R2 : IRowCount { public static int N => 2; }
    private struct R3 : IRowCount { public static int N => 3; }
    private struct R4 : IRowCount { public static int N => 4; }
}
