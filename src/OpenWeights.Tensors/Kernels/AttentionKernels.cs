using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// The two loops of one (token, head) of attention over a KV cache with rows of <c>stride</c> floats, the head's
/// d values at the start of each row: scores s[j] = (q·K[j])·scale for 4 keys at a time (one horizontal reduction per
/// 4 keys), and o = Σ_j p[j]·V[j] with o held in registers across all j (64 dims at a time) instead of being loaded
/// and stored for every key. Scalar references: <see cref="ScoresScalar"/>, <see cref="WeightedSumScalar"/>.
/// The weighted sum multiplies and adds separately, in key order (bit-identical to TensorPrimitives.MultiplyAdd
/// over the keys); the scores sum in another order than TensorPrimitives.Dot (float rounding).
/// The kernels here are AVX2/FMA ones; on ARM64 (and x64 with <see cref="QuantDot.ForceVector128"/>) the same entry points
/// run the portable 128-bit kernels of AttentionKernels.Vector128.cs (their float order is stated there).
/// </summary>
public static unsafe partial class AttentionKernels
{
    /// <summary>Whether the SIMD kernels handle head dimension d: the AVX2 ones a multiple of 8, the portable 128-bit ones
    /// (<see cref="QuantDot.Vector128Path"/>: ARM64, or x64 with <see cref="QuantDot.ForceVector128"/>) a multiple of 4.
    /// Q8_0 rows need a multiple of 32 on both.</summary>
    public static bool Supported(int d) => d > 0 && (QuantDot.Avx2Path ? d % 8 == 0 : QuantDot.Vector128Path && d % 4 == 0);

    /// <summary>s[j] = (q·k[j·stride ..+d])·scale for j in [0, s.Length). q: (d); k: (s.Length, stride).</summary>
    public static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int stride, int len, float scale, Span<float> s)
    {
        int d = q.Length;
        if (!Supported(d)) { ScoresScalar(q, k, stride, len, scale, s); return; }
        if (len > s.Length || (len > 0 && (long)(len - 1) * stride + d > k.Length)) throw new ArgumentException("attention scores: buffers too small");
        fixed (float* pq = q, pk = k, ps = s)
        {
            if (QuantDot.Vector128Path) { ScoresV128(GgmlType.F32, pq, d, (byte*)pk, 4L * stride, len, scale, ps); return; }
            int j = 0;
            var vs = Vector128.Create(scale);
            for (; j + 4 <= len; j += 4)
            {
                float* k0 = pk + (long)j * stride, k1 = k0 + stride, k2 = k1 + stride, k3 = k2 + stride;
                var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
                for (int c = 0; c < d; c += 8)
                {
                    var qc = Vector256.Load(pq + c);
                    a0 = Fma.MultiplyAdd(qc, Vector256.Load(k0 + c), a0);
                    a1 = Fma.MultiplyAdd(qc, Vector256.Load(k1 + c), a1);
                    a2 = Fma.MultiplyAdd(qc, Vector256.Load(k2 + c), a2);
                    a3 = Fma.MultiplyAdd(qc, Vector256.Load(k3 + c), a3);
                }
                // (a0..a3) → 4 sums: two rounds of pairwise adds, then the two 128-bit halves
                var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
                ((h.GetLower() + h.GetUpper()) * vs).Store(ps + j);
            }
            for (; j < len; j++)
            {
                float* kj = pk + (long)j * stride;
                var a = Vector256<float>.Zero;
                for (int c = 0; c < d; c += 8) a = Fma.MultiplyAdd(Vector256.Load(pq + c), Vector256.Load(kj + c), a);
                ps[j] = Vector256.Sum(a) * scale;
            }
        }
    }

    /// <summary>Scalar reference of <see cref="Scores"/>.</summary>
    public static void ScoresScalar(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int stride, int len, float scale, Span<float> s)
    {
        for (int j = 0; j < len; j++)
        {
            float sum = 0;
            for (int c = 0; c < q.Length; c++) sum += q[c] * k[j * stride + c];
            s[j] = sum * scale;
        }
    }

    /// <summary>o = Σ_j p[j]·v[j·stride ..+d], j in [0, p.Length), d = o.Length. v: (p.Length, stride).</summary>
    public static void WeightedSum(ReadOnlySpan<float> p, ReadOnlySpan<float> v, int stride, Span<float> o)
    {
        if (!Supported(o.Length)) { WeightedSumScalar(p, v, stride, o); return; }
        o.Clear();
        WeightedSumAccumulate(p, v, stride, o);
    }

    /// <summary>
    /// o += Σ_j p[j]·v[j·stride ..+d] for j in [0, p.Length): <see cref="WeightedSum"/> continued over a further range
    /// of keys (each element's FMA chain goes on from o's value, so a sum taken block by block equals one pass).
    /// </summary>
    public static void WeightedSumAccumulate(ReadOnlySpan<float> p, ReadOnlySpan<float> v, int stride, Span<float> o)
    {
        int d = o.Length, len = p.Length;
        if (!Supported(d))
        {
            for (int j = 0; j < len; j++)
                for (int c = 0; c < d; c++) o[c] = MathF.FusedMultiplyAdd(v[j * stride + c], p[j], o[c]);
            return;
        }
        if (len > 0 && (long)(len - 1) * stride + d > v.Length) throw new ArgumentException("attention weighted sum: buffers too small");
        fixed (float* pp = p, pv = v, po = o)
        {
            if (QuantDot.Vector128Path) { WeightedSumV128(GgmlType.F32, pp, len, (byte*)pv, 4L * stride, po, d); return; }
            int c = 0;
            for (; c + 64 <= d; c += 64)
            {
                var o0 = Vector256.Load(po + c); var o1 = Vector256.Load(po + c + 8); var o2 = Vector256.Load(po + c + 16); var o3 = Vector256.Load(po + c + 24);
                var o4 = Vector256.Load(po + c + 32); var o5 = Vector256.Load(po + c + 40); var o6 = Vector256.Load(po + c + 48); var o7 = Vector256.Load(po + c + 56);
                float* vj = pv + c;
                for (int j = 0; j < len; j++, vj += stride)
                {
                    var w = Vector256.Create(pp[j]);
                    o0 = Fma.MultiplyAdd(Vector256.Load(vj), w, o0); o1 = Fma.MultiplyAdd(Vector256.Load(vj + 8), w, o1);
                    o2 = Fma.MultiplyAdd(Vector256.Load(vj + 16), w, o2); o3 = Fma.MultiplyAdd(Vector256.Load(vj + 24), w, o3);
                    o4 = Fma.MultiplyAdd(Vector256.Load(vj + 32), w, o4); o5 = Fma.MultiplyAdd(Vector256.Load(vj + 40), w, o5);
                    o6 = Fma.MultiplyAdd(Vector256.Load(vj + 48), w, o6); o7 = Fma.MultiplyAdd(Vector256.Load(vj + 56), w, o7);
                }
                o0.Store(po + c); o1.Store(po + c + 8); o2.Store(po + c + 16); o3.Store(po + c + 24);
                o4.Store(po + c + 32); o5.Store(po + c + 40); o6.Store(po + c + 48); o7.Store(po + c + 56);
            }
            for (; c < d; c += 8)
            {
                var acc = Vector256.Load(po + c);
                float* vj = pv + c;
                for (int j = 0; j < len; j++, vj += stride) acc = Fma.MultiplyAdd(Vector256.Load(vj), Vector256.Create(pp[j]), acc);
                acc.Store(po + c);
            }
        }
    }

    /// <summary>Scalar reference of <see cref="WeightedSum"/>: for each key in order, o = fma(v[j], p[j], o).</summary>
    public static void WeightedSumScalar(ReadOnlySpan<float> p, ReadOnlySpan<float> v, int stride, Span<float> o)
    {
        o.Clear();
        for (int j = 0; j < p.Length; j++)
            for (int c = 0; c < o.Length; c++) o[c] = MathF.FusedMultiplyAdd(v[j * stride + c], p[j], o[c]);
    }

    // ---------------------------------------------------------------- KV cache rows in F16 / Q8_0

    /// <summary>
    /// dst (rows, d) = d elements of each of <paramref name="rows"/> cache rows <paramref name="rowBytes"/> apart, from
    /// <paramref name="src"/> (the first element, at a block start for Q8_0, d a multiple of 32), as F32: F32 copied,
    /// F16 widened (exact), Q8_0 q·scale (one multiply, exact as ggml's dequantize_row_q8_0). Attention decodes a tile of
    /// keys or values once and runs <see cref="Scores"/> / <see cref="WeightedSumAccumulate"/> on it for every query row
    /// of its block. Scalar reference: <see cref="DecodeRowsScalar"/>.
    /// </summary>
    public static void DecodeRows(GgmlType type, byte* src, long rowBytes, int rows, int d, float* dst)
    {
        if (QuantDot.Vector128Path && type != GgmlType.F32) { DecodeRowsV128(type, src, rowBytes, rows, d, dst); return; }
        if (!Vector256.IsHardwareAccelerated || !QuantDot.UseSimd || type == GgmlType.F32) { DecodeRowsScalar(type, src, rowBytes, rows, d, dst); return; }
        int headBytes = (int)(type == GgmlType.F16 ? 2L * d : d / 32 * 34);
        for (int j = 0; j < rows; j++, src += rowBytes, dst += d)
        {
            // rows are a whole position apart (kv_heads × the head): the hardware prefetcher does not follow such strides
            if (Sse.IsSupported && j + PrefetchRows < rows)
                for (int off = 0; off < headBytes; off += 64) Sse.Prefetch0(src + PrefetchRows * rowBytes + off);
            if (type == GgmlType.F16)
            {
                short* h = (short*)src;
                int c = 0;
                if (Avx2.IsSupported)
                    for (; c + 8 <= d; c += 8) HalfToSingle(Avx2.ConvertToVector256Int32(h + c)).Store(dst + c); // vpmovsxwd: 8 halves sign-extended
                for (; c + 16 <= d; c += 16)
                {
                    var (a, b) = Vector256.Widen(Vector256.Load(h + c));
                    HalfToSingle(a).Store(dst + c); HalfToSingle(b).Store(dst + c + 8);
                }
                for (; c < d; c++) dst[c] = HalfConvert.Fp16ToFp32((ushort)h[c]);
                continue;
            }
            for (int b = 0; b < d / 32; b++)
            {
                byte* blk = src + b * 34;
                var s = Vector256.Create(HalfConvert.ReadFp16(blk));
                float* o = dst + b * 32;
                if (Avx2.IsSupported)
                {
                    sbyte* qs = (sbyte*)(blk + 2); // vpmovsxbd: 8 int8 sign-extended to int32 at a time
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs)) * s).Store(o);
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs + 8)) * s).Store(o + 8);
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs + 16)) * s).Store(o + 16);
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(qs + 24)) * s).Store(o + 24);
                    continue;
                }
                var q = Vector256.Load((sbyte*)(blk + 2));
                var (q0, q1) = Vector256.Widen(q);
                var (w0, w1) = Vector256.Widen(q0); var (w2, w3) = Vector256.Widen(q1);
                (Vector256.ConvertToSingle(w0) * s).Store(o); (Vector256.ConvertToSingle(w1) * s).Store(o + 8);
                (Vector256.ConvertToSingle(w2) * s).Store(o + 16); (Vector256.ConvertToSingle(w3) * s).Store(o + 24);
            }
        }
    }

    // ---------------------------------------------------------------- scores and weighted sums over F16 / Q8_0 rows read in place

    /// <summary>
    /// <see cref="Scores"/> over keys stored as <paramref name="type"/> (F32, F16 or Q8_0; Q8_0 with d a multiple of 32):
    /// s[j] = (q·k_j)·scale, key j's d elements starting at <paramref name="k"/> + j·<paramref name="rowBytes"/> (a block
    /// start for Q8_0). F16 and Q8_0 keys are widened in registers (F16 exactly, Q8_0 as int8·scale, exact), with the same
    /// fused multiply-adds in the same order as <see cref="Scores"/> over the decoded rows: bit for bit the result of
    /// <see cref="DecodeRows"/> followed by <see cref="Scores"/>, without the scratch. Scalar reference: <see cref="ScoresScalar(GgmlType, ReadOnlySpan{float}, byte*, long, int, float, Span{float})"/>.
    /// </summary>
    public static void Scores(GgmlType type, ReadOnlySpan<float> q, byte* k, long rowBytes, int len, float scale, Span<float> s)
    {
        int d = q.Length;
        if (type == GgmlType.F32 && rowBytes % 4 == 0)
        {
            Scores(q, new ReadOnlySpan<float>(k, len == 0 ? 0 : (int)((len - 1) * rowBytes / 4) + d), (int)(rowBytes / 4), len, scale, s);
            return;
        }
        if (!Supported(d) || type == GgmlType.F32) { ScoresScalar(type, q, k, rowBytes, len, scale, s); return; }
        if (len > s.Length) throw new ArgumentException("attention scores: buffers too small");
        if (type == GgmlType.Q8_0 && d % 32 != 0) throw new ArgumentException("q8_0 rows need d a multiple of 32");
        fixed (float* pq = q, ps = s)
        {
            if (QuantDot.Vector128Path) ScoresV128(type, pq, d, k, rowBytes, len, scale, ps);
            else if (type == GgmlType.F16) ScoresF16(pq, d, k, rowBytes, len, scale, ps);
            else if (type == GgmlType.Q8_0) ScoresQ8_0(pq, d, k, rowBytes, len, scale, ps);
            else throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void ScoresF16(float* pq, int d, byte* k, long rowBytes, int len, float scale, float* ps)
    {
        int j = 0;
        var vs = Vector128.Create(scale);
        for (; j + 4 <= len; j += 4)
        {
            short* k0 = (short*)(k + j * rowBytes), k1 = (short*)((byte*)k0 + rowBytes), k2 = (short*)((byte*)k1 + rowBytes), k3 = (short*)((byte*)k2 + rowBytes);
            if (j + 4 + PrefetchRows <= len) Prefetch((byte*)k0 + (4 + PrefetchRows) * rowBytes, 4, rowBytes, 2 * d);
            var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
            for (int c = 0; c < d; c += 8)
            {
                var qc = Vector256.Load(pq + c);
                a0 = Fma.MultiplyAdd(qc, HalfToSingle(Avx2.ConvertToVector256Int32(k0 + c)), a0);
                a1 = Fma.MultiplyAdd(qc, HalfToSingle(Avx2.ConvertToVector256Int32(k1 + c)), a1);
                a2 = Fma.MultiplyAdd(qc, HalfToSingle(Avx2.ConvertToVector256Int32(k2 + c)), a2);
                a3 = Fma.MultiplyAdd(qc, HalfToSingle(Avx2.ConvertToVector256Int32(k3 + c)), a3);
            }
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
            ((h.GetLower() + h.GetUpper()) * vs).Store(ps + j);
        }
        for (; j < len; j++)
        {
            short* kj = (short*)(k + j * rowBytes);
            var a = Vector256<float>.Zero;
            for (int c = 0; c < d; c += 8) a = Fma.MultiplyAdd(Vector256.Load(pq + c), HalfToSingle(Avx2.ConvertToVector256Int32(kj + c)), a);
            ps[j] = Vector256.Sum(a) * scale;
        }
    }

    private static void ScoresQ8_0(float* pq, int d, byte* k, long rowBytes, int len, float scale, float* ps)
    {
        int j = 0;
        var vs = Vector128.Create(scale);
        for (; j + 4 <= len; j += 4)
        {
            byte* k0 = k + j * rowBytes, k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
            if (j + 4 + PrefetchRows <= len) Prefetch(k0 + (4 + PrefetchRows) * rowBytes, 4, rowBytes, d / 32 * 34);
            var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
            for (int b = 0; b < d / 32; b++)
            {
                byte* b0 = k0 + b * 34, b1 = k1 + b * 34, b2 = k2 + b * 34, b3 = k3 + b * 34;
                var s0 = Vector256.Create(HalfConvert.ReadFp16(b0)); var s1 = Vector256.Create(HalfConvert.ReadFp16(b1));
                var s2 = Vector256.Create(HalfConvert.ReadFp16(b2)); var s3 = Vector256.Create(HalfConvert.ReadFp16(b3));
                for (int i = 0; i < 32; i += 8)
                {
                    var qc = Vector256.Load(pq + b * 32 + i);
                    a0 = Fma.MultiplyAdd(qc, Int8ToSingle(b0 + 2 + i) * s0, a0);
                    a1 = Fma.MultiplyAdd(qc, Int8ToSingle(b1 + 2 + i) * s1, a1);
                    a2 = Fma.MultiplyAdd(qc, Int8ToSingle(b2 + 2 + i) * s2, a2);
                    a3 = Fma.MultiplyAdd(qc, Int8ToSingle(b3 + 2 + i) * s3, a3);
                }
            }
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
            ((h.GetLower() + h.GetUpper()) * vs).Store(ps + j);
        }
        for (; j < len; j++)
        {
            byte* kj = k + j * rowBytes;
            var a = Vector256<float>.Zero;
            for (int b = 0; b < d / 32; b++)
            {
                var sb = Vector256.Create(HalfConvert.ReadFp16(kj + b * 34));
                for (int i = 0; i < 32; i += 8) a = Fma.MultiplyAdd(Vector256.Load(pq + b * 32 + i), Int8ToSingle(kj + b * 34 + 2 + i) * sb, a);
            }
            ps[j] = Vector256.Sum(a) * scale;
        }
    }

    /// <summary>Scalar reference of the typed <see cref="Scores(GgmlType, ReadOnlySpan{float}, byte*, long, int, float, Span{float})"/>:
    /// each key decoded by <see cref="DecodeRowsScalar"/>, then <see cref="ScoresScalar(ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, float, Span{float})"/>.</summary>
    public static void ScoresScalar(GgmlType type, ReadOnlySpan<float> q, byte* k, long rowBytes, int len, float scale, Span<float> s)
    {
        var row = new float[q.Length];
        fixed (float* pr = row)
            for (int j = 0; j < len; j++)
            {
                DecodeRowsScalar(type, k + j * rowBytes, rowBytes, 1, q.Length, pr);
                ScoresScalar(q, row, q.Length, 1, scale, s.Slice(j, 1));
            }
    }

    /// <summary>
    /// <see cref="WeightedSumAccumulate(ReadOnlySpan{float}, ReadOnlySpan{float}, int, Span{float})"/> over values stored as
    /// <paramref name="type"/>: o += Σ_j p[j]·v_j, value j's d = o.Length elements at <paramref name="v"/> + j·<paramref name="rowBytes"/>
    /// (a block start for Q8_0, d a multiple of 32). Values widen in registers; each output element's FMA chain runs over the
    /// keys in order exactly as over decoded rows, so the result is bit for bit that of <see cref="DecodeRows"/> and the F32
    /// kernel. A slice of a head's dims (o a slice, v moved to its first element) gives that slice of the whole head's result.
    /// Scalar reference: <see cref="WeightedSumAccumulateScalar"/>.
    /// </summary>
    public static void WeightedSumAccumulate(GgmlType type, ReadOnlySpan<float> p, byte* v, long rowBytes, Span<float> o)
    {
        int d = o.Length, len = p.Length;
        if (type == GgmlType.F32 && rowBytes % 4 == 0)
        {
            WeightedSumAccumulate(p, new ReadOnlySpan<float>(v, len == 0 ? 0 : (int)((len - 1) * rowBytes / 4) + d), (int)(rowBytes / 4), o);
            return;
        }
        if (!Supported(d) || type == GgmlType.F32) { WeightedSumAccumulateScalar(type, p, v, rowBytes, o); return; }
        if (type == GgmlType.Q8_0 && d % 32 != 0) throw new ArgumentException("q8_0 rows need d a multiple of 32");
        fixed (float* pp = p, po = o)
        {
            if (QuantDot.Vector128Path) WeightedSumV128(type, pp, len, v, rowBytes, po, d);
            else if (type == GgmlType.F16) WeightedSumF16(pp, len, v, rowBytes, po, d);
            else if (type == GgmlType.Q8_0) WeightedSumQ8_0(pp, len, v, rowBytes, po, d);
            else throw new ArgumentException($"{type} is not a KV cache type");
        }
    }

    private static void WeightedSumF16(float* pp, int len, byte* v, long rowBytes, float* po, int d)
    {
        int c = 0;
        for (; c + 64 <= d; c += 64)
        {
            var o0 = Vector256.Load(po + c); var o1 = Vector256.Load(po + c + 8); var o2 = Vector256.Load(po + c + 16); var o3 = Vector256.Load(po + c + 24);
            var o4 = Vector256.Load(po + c + 32); var o5 = Vector256.Load(po + c + 40); var o6 = Vector256.Load(po + c + 48); var o7 = Vector256.Load(po + c + 56);
            byte* vj = v + 2 * c;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                if (j + PrefetchRows < len) { Sse.Prefetch0(vj + PrefetchRows * rowBytes); Sse.Prefetch0(vj + PrefetchRows * rowBytes + 64); }
                var w = Vector256.Create(pp[j]);
                short* h = (short*)vj;
                o0 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h)), w, o0); o1 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 8)), w, o1);
                o2 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 16)), w, o2); o3 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 24)), w, o3);
                o4 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 32)), w, o4); o5 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 40)), w, o5);
                o6 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 48)), w, o6); o7 = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32(h + 56)), w, o7);
            }
            o0.Store(po + c); o1.Store(po + c + 8); o2.Store(po + c + 16); o3.Store(po + c + 24);
            o4.Store(po + c + 32); o5.Store(po + c + 40); o6.Store(po + c + 48); o7.Store(po + c + 56);
        }
        for (; c < d; c += 8)
        {
            var acc = Vector256.Load(po + c);
            byte* vj = v + 2 * c;
            for (int j = 0; j < len; j++, vj += rowBytes) acc = Fma.MultiplyAdd(HalfToSingle(Avx2.ConvertToVector256Int32((short*)vj)), Vector256.Create(pp[j]), acc);
            acc.Store(po + c);
        }
    }

    private static void WeightedSumQ8_0(float* pp, int len, byte* v, long rowBytes, float* po, int d)
    {
        int c = 0;
        for (; c + 64 <= d; c += 64)
        {
            var o0 = Vector256.Load(po + c); var o1 = Vector256.Load(po + c + 8); var o2 = Vector256.Load(po + c + 16); var o3 = Vector256.Load(po + c + 24);
            var o4 = Vector256.Load(po + c + 32); var o5 = Vector256.Load(po + c + 40); var o6 = Vector256.Load(po + c + 48); var o7 = Vector256.Load(po + c + 56);
            byte* vj = v + c / 32 * 34; // two blocks: scale, 32 int8; scale, 32 int8
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                if (j + PrefetchRows < len) { Sse.Prefetch0(vj + PrefetchRows * rowBytes); Sse.Prefetch0(vj + PrefetchRows * rowBytes + 64); }
                var w = Vector256.Create(pp[j]);
                var s0 = Vector256.Create(HalfConvert.ReadFp16(vj)); var s1 = Vector256.Create(HalfConvert.ReadFp16(vj + 34));
                o0 = Fma.MultiplyAdd(Int8ToSingle(vj + 2) * s0, w, o0); o1 = Fma.MultiplyAdd(Int8ToSingle(vj + 10) * s0, w, o1);
                o2 = Fma.MultiplyAdd(Int8ToSingle(vj + 18) * s0, w, o2); o3 = Fma.MultiplyAdd(Int8ToSingle(vj + 26) * s0, w, o3);
                o4 = Fma.MultiplyAdd(Int8ToSingle(vj + 36) * s1, w, o4); o5 = Fma.MultiplyAdd(Int8ToSingle(vj + 44) * s1, w, o5);
                o6 = Fma.MultiplyAdd(Int8ToSingle(vj + 52) * s1, w, o6); o7 = Fma.MultiplyAdd(Int8ToSingle(vj + 60) * s1, w, o7);
            }
            o0.Store(po + c); o1.Store(po + c + 8); o2.Store(po + c + 16); o3.Store(po + c + 24);
            o4.Store(po + c + 32); o5.Store(po + c + 40); o6.Store(po + c + 48); o7.Store(po + c + 56);
        }
        for (; c < d; c += 32) // one block left (d a multiple of 32)
        {
            var o0 = Vector256.Load(po + c); var o1 = Vector256.Load(po + c + 8); var o2 = Vector256.Load(po + c + 16); var o3 = Vector256.Load(po + c + 24);
            byte* vj = v + c / 32 * 34;
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                var w = Vector256.Create(pp[j]);
                var s0 = Vector256.Create(HalfConvert.ReadFp16(vj));
                o0 = Fma.MultiplyAdd(Int8ToSingle(vj + 2) * s0, w, o0); o1 = Fma.MultiplyAdd(Int8ToSingle(vj + 10) * s0, w, o1);
                o2 = Fma.MultiplyAdd(Int8ToSingle(vj + 18) * s0, w, o2); o3 = Fma.MultiplyAdd(Int8ToSingle(vj + 26) * s0, w, o3);
            }
            o0.Store(po + c); o1.Store(po + c + 8); o2.Store(po + c + 16); o3.Store(po + c + 24);
        }
    }

    /// <summary>Scalar reference of the typed <see cref="WeightedSumAccumulate(GgmlType, ReadOnlySpan{float}, byte*, long, Span{float})"/>:
    /// each value decoded by <see cref="DecodeRowsScalar"/>, then o = fma(v_j, p[j], o) per element, keys in order.</summary>
    public static void WeightedSumAccumulateScalar(GgmlType type, ReadOnlySpan<float> p, byte* v, long rowBytes, Span<float> o)
    {
        var row = new float[o.Length];
        fixed (float* pr = row)
            for (int j = 0; j < p.Length; j++)
            {
                DecodeRowsScalar(type, v + j * rowBytes, rowBytes, 1, o.Length, pr);
                for (int c = 0; c < o.Length; c++) o[c] = MathF.FusedMultiplyAdd(row[c], p[j], o[c]);
            }
    }

    /// <summary>8 int8 at <paramref name="q"/> as F32 (vpmovsxbd, vcvtdq2ps: exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Int8ToSingle(byte* q) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)q));

    /// <summary>Prefetches <paramref name="rows"/> rows <paramref name="rowBytes"/> apart, <paramref name="bytes"/> of each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* first, int rows, long rowBytes, int bytes)
    {
        for (int r = 0; r < rows; r++, first += rowBytes)
            for (int off = 0; off < bytes; off += 64) Sse.Prefetch0(first + off);
    }

    /// <summary>
    /// 8 f16 values (sign-extended to int32) as F32: shifted left by 13, the exponent and mantissa land in an f32's places and
    /// the sign at bit 31; masking the sign's copies out of bits 28-30 and multiplying by 2^112 rebiases the exponent (exact
    /// for normals, subnormals and zeros); the all-ones exponent (inf, NaN) gets the f32's all-ones exponent instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToSingle(Vector256<int> h)
    {
        var bits = Vector256.ShiftLeft(h, 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        var finite = bits.AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000));
        var special = Vector256.Equals(h & Vector256.Create(0x7C00), Vector256.Create(0x7C00)).AsSingle();
        return Vector256.ConditionalSelect(special, (bits | Vector256.Create(0x7F800000)).AsSingle(), finite);
    }

    /// <summary>How many rows ahead <see cref="DecodeRows"/> prefetches.</summary>
    private const int PrefetchRows = 6;

    /// <summary>Scalar reference of <see cref="DecodeRows"/>.</summary>
    public static void DecodeRowsScalar(GgmlType type, byte* src, long rowBytes, int rows, int d, float* dst)
    {
        for (int j = 0; j < rows; j++, src += rowBytes, dst += d)
            switch (type)
            {
                case GgmlType.F32: new ReadOnlySpan<float>(src, d).CopyTo(new Span<float>(dst, d)); break;
                case GgmlType.F16: for (int c = 0; c < d; c++) dst[c] = HalfConvert.Fp16ToFp32(((ushort*)src)[c]); break;
                case GgmlType.Q8_0:
                    for (int b = 0; b < d / 32; b++)
                    {
                        float s = HalfConvert.ReadFp16(src + b * 34);
                        for (int c = 0; c < 32; c++) dst[b * 32 + c] = ((sbyte*)(src + b * 34 + 2))[c] * s;
                    }
                    break;
                default: throw new ArgumentException($"{type} is not a KV cache type");
            }
    }
}
