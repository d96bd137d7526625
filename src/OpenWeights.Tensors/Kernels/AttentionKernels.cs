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
/// </summary>
public static unsafe class AttentionKernels
{
    /// <summary>Whether the AVX2 kernels handle head dimension d (a multiple of 8).</summary>
    public static bool Supported(int d) => QuantDot.Avx2Path && d % 8 == 0 && d > 0;

    /// <summary>s[j] = (q·k[j·stride ..+d])·scale for j in [0, s.Length). q: (d); k: (s.Length, stride).</summary>
    public static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int stride, int len, float scale, Span<float> s)
    {
        int d = q.Length;
        if (!Supported(d)) { ScoresScalar(q, k, stride, len, scale, s); return; }
        if (len > s.Length || (len > 0 && (long)(len - 1) * stride + d > k.Length)) throw new ArgumentException("attention scores: buffers too small");
        fixed (float* pq = q, pk = k, ps = s)
        {
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
