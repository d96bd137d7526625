using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// AVX-512 forms of the several-row attention kernels (<see cref="ScoresRows(GgmlType, float**, int, int, byte*, long, int, float, float**)"/>,
/// <see cref="WeightedSumAccumulateRows"/>), bit for bit the 256-bit ones:
/// - scores: one 512-bit register holds two keys' 8-lane accumulators (key j in the low half, key j + 1 in the high half)
///   against the row's 8 query values broadcast to both halves, so each lane's FMA chain over the head's dims is the
///   256-bit kernel's, and the four keys' horizontal sums are the same adds on the halves;
/// - weighted sums: 16 dims per register; each output element's chain, fma(v_j, p[j], o) over the keys in order, does not
///   depend on how many elements share an instruction.
/// F16 rows are widened 16 at a time and Q8_0 rows 16 int8 at a time (the same exact conversions). The 256-bit kernels
/// are the reference (and run the few keys or dims the 512-bit loops leave).
/// </summary>
public static unsafe partial class AttentionKernels
{
    /// <summary>Whether the several-row kernels take their 512-bit forms: the AVX-512 kernel path (<see cref="QuantDot.UseAvx512"/>).</summary>
    internal static bool Avx512Rows => QuantDot.Avx512Path;

    /// <summary>Scores of keys [0, len - len % 4) in 512-bit registers; the last keys through the 256-bit kernel.</summary>
    private static void ScoresRowsAvx512<T, TR>(float** q, int d, byte* k, long rowBytes, int len, float scale, float** s)
        where T : struct, IRowType where TR : struct, IRowCount
    {
        float* q0 = q[0], q1 = TR.N > 1 ? q[1] : null, q2 = TR.N > 2 ? q[2] : null, q3 = TR.N > 3 ? q[3] : null;
        var vs = Vector128.Create(scale);
        int j = 0;
        for (; j + 4 <= len; j += 4)
        {
            byte* k0 = k + j * rowBytes, k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
            if (T.Prefetch && j + 4 + PrefetchRows <= len) Prefetch(k0 + (4 + PrefetchRows) * rowBytes, 4, rowBytes, (int)T.Bytes(d));
            // (row r, keys 0|1) and (row r, keys 2|3); a row's 8 query values go to both halves (vbroadcastf64x4: the same 32 bytes)
            Vector512<float> a001 = default, a023 = default, a101 = default, a123 = default;
            Vector512<float> a201 = default, a223 = default, a301 = default, a323 = default;
            Vector512<float> s01 = default, s23 = default;
            for (int c = 0; c < d; c += 8)
            {
                if (T.Scaled && (c & 31) == 0) { s01 = T.Scale8x2(k0, k1, c); s23 = T.Scale8x2(k2, k3, c); }
                var x01 = T.Load8x2(k0, k1, c); var x23 = T.Load8x2(k2, k3, c);
                if (T.Scaled) { x01 *= s01; x23 *= s23; }
                var qc = Avx512F.BroadcastVector256ToVector512((double*)(q0 + c)).AsSingle();
                a001 = Avx512F.FusedMultiplyAdd(qc, x01, a001); a023 = Avx512F.FusedMultiplyAdd(qc, x23, a023);
                if (TR.N > 1) { qc = Avx512F.BroadcastVector256ToVector512((double*)(q1 + c)).AsSingle(); a101 = Avx512F.FusedMultiplyAdd(qc, x01, a101); a123 = Avx512F.FusedMultiplyAdd(qc, x23, a123); }
                if (TR.N > 2) { qc = Avx512F.BroadcastVector256ToVector512((double*)(q2 + c)).AsSingle(); a201 = Avx512F.FusedMultiplyAdd(qc, x01, a201); a223 = Avx512F.FusedMultiplyAdd(qc, x23, a223); }
                if (TR.N > 3) { qc = Avx512F.BroadcastVector256ToVector512((double*)(q3 + c)).AsSingle(); a301 = Avx512F.FusedMultiplyAdd(qc, x01, a301); a323 = Avx512F.FusedMultiplyAdd(qc, x23, a323); }
            }
            Sum4(a001.GetLower(), a001.GetUpper(), a023.GetLower(), a023.GetUpper(), vs, s[0] + j);
            if (TR.N > 1) Sum4(a101.GetLower(), a101.GetUpper(), a123.GetLower(), a123.GetUpper(), vs, s[1] + j);
            if (TR.N > 2) Sum4(a201.GetLower(), a201.GetUpper(), a223.GetLower(), a223.GetUpper(), vs, s[2] + j);
            if (TR.N > 3) Sum4(a301.GetLower(), a301.GetUpper(), a323.GetLower(), a323.GetUpper(), vs, s[3] + j);
        }
        if (j == len) return;
        float** rest = stackalloc float*[4];
        for (int r = 0; r < TR.N; r++) rest[r] = s[r] + j;
        ScoresRows<T, TR>(q, d, k + j * rowBytes, rowBytes, len - j, scale, rest);
    }

    /// <summary>Weighted sums of dims [0, width - width % 32) in 512-bit registers (64 dims per pass where they fit); the
    /// last dims through the 256-bit kernel.</summary>
    private static void WeightedSumRowsAvx512<T, TR>(float** p, int len, byte* v, long rowBytes, float** o, int width)
        where T : struct, IRowType where TR : struct, IRowCount
    {
        float* p0 = p[0], p1 = p[1], p2 = TR.N > 2 ? p[2] : null, p3 = TR.N > 3 ? p[3] : null;
        int c = 0;
        for (; c + 64 <= width; c += 64)
        {
            float* o0 = o[0] + c, o1 = o[1] + c, o2 = TR.N > 2 ? o[2] + c : null, o3 = TR.N > 3 ? o[3] + c : null;
            Vector512<float> a00 = Vector512.Load(o0), a01 = Vector512.Load(o0 + 16), a02 = Vector512.Load(o0 + 32), a03 = Vector512.Load(o0 + 48);
            Vector512<float> a10 = Vector512.Load(o1), a11 = Vector512.Load(o1 + 16), a12 = Vector512.Load(o1 + 32), a13 = Vector512.Load(o1 + 48);
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            if (TR.N > 2) { a20 = Vector512.Load(o2); a21 = Vector512.Load(o2 + 16); a22 = Vector512.Load(o2 + 32); a23 = Vector512.Load(o2 + 48); }
            if (TR.N > 3) { a30 = Vector512.Load(o3); a31 = Vector512.Load(o3 + 16); a32 = Vector512.Load(o3 + 32); a33 = Vector512.Load(o3 + 48); }
            byte* vj = v + T.Bytes(c);
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                if (T.Prefetch && j + PrefetchRows < len) { Sse.Prefetch0(vj + PrefetchRows * rowBytes); Sse.Prefetch0(vj + PrefetchRows * rowBytes + T.Bytes(64) - 1); }
                var x0 = T.Load16(vj, 0); var x1 = T.Load16(vj, 16); var x2 = T.Load16(vj, 32); var x3 = T.Load16(vj, 48);
                if (T.Scaled) { var sa = T.Scale16(vj, 0); var sb = T.Scale16(vj, 32); x0 *= sa; x1 *= sa; x2 *= sb; x3 *= sb; }
                var w = Vector512.Create(p0[j]);
                a00 = Avx512F.FusedMultiplyAdd(x0, w, a00); a01 = Avx512F.FusedMultiplyAdd(x1, w, a01); a02 = Avx512F.FusedMultiplyAdd(x2, w, a02); a03 = Avx512F.FusedMultiplyAdd(x3, w, a03);
                w = Vector512.Create(p1[j]);
                a10 = Avx512F.FusedMultiplyAdd(x0, w, a10); a11 = Avx512F.FusedMultiplyAdd(x1, w, a11); a12 = Avx512F.FusedMultiplyAdd(x2, w, a12); a13 = Avx512F.FusedMultiplyAdd(x3, w, a13);
                if (TR.N > 2)
                {
                    w = Vector512.Create(p2[j]);
                    a20 = Avx512F.FusedMultiplyAdd(x0, w, a20); a21 = Avx512F.FusedMultiplyAdd(x1, w, a21); a22 = Avx512F.FusedMultiplyAdd(x2, w, a22); a23 = Avx512F.FusedMultiplyAdd(x3, w, a23);
                }
                if (TR.N > 3)
                {
                    w = Vector512.Create(p3[j]);
                    a30 = Avx512F.FusedMultiplyAdd(x0, w, a30); a31 = Avx512F.FusedMultiplyAdd(x1, w, a31); a32 = Avx512F.FusedMultiplyAdd(x2, w, a32); a33 = Avx512F.FusedMultiplyAdd(x3, w, a33);
                }
            }
            a00.Store(o0); a01.Store(o0 + 16); a02.Store(o0 + 32); a03.Store(o0 + 48);
            a10.Store(o1); a11.Store(o1 + 16); a12.Store(o1 + 32); a13.Store(o1 + 48);
            if (TR.N > 2) { a20.Store(o2); a21.Store(o2 + 16); a22.Store(o2 + 32); a23.Store(o2 + 48); }
            if (TR.N > 3) { a30.Store(o3); a31.Store(o3 + 16); a32.Store(o3 + 32); a33.Store(o3 + 48); }
        }
        for (; c + 32 <= width; c += 32)
        {
            float* o0 = o[0] + c, o1 = o[1] + c, o2 = TR.N > 2 ? o[2] + c : null, o3 = TR.N > 3 ? o[3] + c : null;
            Vector512<float> a00 = Vector512.Load(o0), a01 = Vector512.Load(o0 + 16), a10 = Vector512.Load(o1), a11 = Vector512.Load(o1 + 16);
            Vector512<float> a20 = default, a21 = default, a30 = default, a31 = default;
            if (TR.N > 2) { a20 = Vector512.Load(o2); a21 = Vector512.Load(o2 + 16); }
            if (TR.N > 3) { a30 = Vector512.Load(o3); a31 = Vector512.Load(o3 + 16); }
            byte* vj = v + T.Bytes(c);
            for (int j = 0; j < len; j++, vj += rowBytes)
            {
                if (T.Prefetch && j + PrefetchRows < len) Sse.Prefetch0(vj + PrefetchRows * rowBytes);
                var x0 = T.Load16(vj, 0); var x1 = T.Load16(vj, 16);
                if (T.Scaled) { var sc = T.Scale16(vj, 0); x0 *= sc; x1 *= sc; }
                var w = Vector512.Create(p0[j]);
                a00 = Avx512F.FusedMultiplyAdd(x0, w, a00); a01 = Avx512F.FusedMultiplyAdd(x1, w, a01);
                w = Vector512.Create(p1[j]);
                a10 = Avx512F.FusedMultiplyAdd(x0, w, a10); a11 = Avx512F.FusedMultiplyAdd(x1, w, a11);
                if (TR.N > 2) { w = Vector512.Create(p2[j]); a20 = Avx512F.FusedMultiplyAdd(x0, w, a20); a21 = Avx512F.FusedMultiplyAdd(x1, w, a21); }
                if (TR.N > 3) { w = Vector512.Create(p3[j]); a30 = Avx512F.FusedMultiplyAdd(x0, w, a30); a31 = Avx512F.FusedMultiplyAdd(x1, w, a31); }
            }
            a00.Store(o0); a01.Store(o0 + 16); a10.Store(o1); a11.Store(o1 + 16);
            if (TR.N > 2) { a20.Store(o2); a21.Store(o2 + 16); }
            if (TR.N > 3) { a30.Store(o3); a31.Store(o3 + 16); }
        }
        if (c == width) return;
        float** rest = stackalloc float*[4];
        for (int r = 0; r < TR.N; r++) rest[r] = o[r] + c;
        WeightedSumRows<T, TR>(p, len, v + T.Bytes(c), rowBytes, rest, width - c);
    }

    /// <summary><see cref="HalfToSingle(Vector256{int})"/> on 16 lanes: the same exact conversion.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToSingle(Vector512<int> h)
    {
        var bits = Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
        var finite = bits.AsSingle() * Vector512.Create(BitConverter.UInt32BitsToSingle(0x77800000));
        var special = Vector512.Equals(h & Vector512.Create(0x7C00), Vector512.Create(0x7C00)).AsSingle();
        return Vector512.ConditionalSelect(special, (bits | Vector512.Create(0x7F800000)).AsSingle(), finite);
    }
}
