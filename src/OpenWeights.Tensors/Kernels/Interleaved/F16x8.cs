using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// F16 weights repacked at load into groups of 8 interleaved rows: for each column k the 8 rows' values are 16
/// consecutive bytes, widened once to 8 floats (<see cref="QuantDot.F16ToF32"/>) and multiplied with one activation
/// value per token, broadcast: a token costs one FMA per 8 rows and column, and the activations are read as scalars
/// (no wide activation rows competing with the weights for L1).
///
/// Layout: group g (rows 8g .. 8g+7) is cols × 8 f16: w[k][j] = row 8g + j, column k, at byte 16·k + 2·j of the group.
/// Activations are F32 rounded to F16 (as ggml's F16 path rounds them), then scaled by 2^112 (<see cref="ActivationScale"/>):
/// the weights are widened without their exponent rebias (w·2^−112, exact, see <see cref="QuantDot.F16ToF32"/>), and
/// the product (w·2^−112)·(x·2^112) = w·x exactly, so each FMA rounds exactly as fma(w, x, acc) would, one multiply
/// per column fewer.
///
/// Per (row, token) the result is the FMA chain acc = fma(w[k], x[k], acc) over k = 0 .. cols−1, the same in the 1-,
/// 4-token and the 2-group 6-token kernels and the scalar reference (all agree bit for bit). The 1-token kernel runs 4 groups' chains
/// at once so that FMA latency does not bound decode.
/// </summary>
public static unsafe class F16x8
{
    public const int Rows = 8;

    /// <summary>2^112: the activations' scale, undoing the weights' missing exponent rebias.</summary>
    public static readonly float ActivationScale = BitConverter.UInt32BitsToSingle(0x77800000);
    private static readonly float WeightScale = BitConverter.UInt32BitsToSingle(0x07800000); // 2^-112

    /// <summary>Repacks an F16 matrix src: (rows, cols), rowBytes apart, into dst (rows·cols·2 bytes).</summary>
    public static void Repack(byte* src, long rowBytes, int rows, int cols, byte* dst)
    {
        if (rows % Rows != 0 || cols % 8 != 0) throw new ArgumentException($"F16x8 needs rows % 8 == 0 and cols % 8 == 0, got {rows}x{cols}");
        for (int g = 0; g < rows / Rows; g++)
        {
            byte* s = src + g * Rows * rowBytes;
            ushort* d = (ushort*)(dst + (long)g * cols * 16);
            if (Sse2.IsSupported)
                for (int k = 0; k < cols; k += 8) Transpose8x8(s + 2 * k, rowBytes, d + 8 * k);
            else
                for (int k = 0; k < cols; k++)
                    for (int j = 0; j < Rows; j++) d[8 * k + j] = Unsafe.ReadUnaligned<ushort>(s + j * rowBytes + 2 * k);
        }
    }

    /// <summary>8 rows × 8 f16 (rowBytes apart) → 8 columns × 8 rows at dst (unpack 16 → 32 → 64 bits).</summary>
    private static void Transpose8x8(byte* s, long rowBytes, ushort* dst)
    {
        var r0 = Vector128.Load(s).AsInt16(); var r1 = Vector128.Load(s + rowBytes).AsInt16();
        var r2 = Vector128.Load(s + 2 * rowBytes).AsInt16(); var r3 = Vector128.Load(s + 3 * rowBytes).AsInt16();
        var r4 = Vector128.Load(s + 4 * rowBytes).AsInt16(); var r5 = Vector128.Load(s + 5 * rowBytes).AsInt16();
        var r6 = Vector128.Load(s + 6 * rowBytes).AsInt16(); var r7 = Vector128.Load(s + 7 * rowBytes).AsInt16();
        var a0 = Sse2.UnpackLow(r0, r1).AsInt32(); var a1 = Sse2.UnpackHigh(r0, r1).AsInt32();
        var a2 = Sse2.UnpackLow(r2, r3).AsInt32(); var a3 = Sse2.UnpackHigh(r2, r3).AsInt32();
        var a4 = Sse2.UnpackLow(r4, r5).AsInt32(); var a5 = Sse2.UnpackHigh(r4, r5).AsInt32();
        var a6 = Sse2.UnpackLow(r6, r7).AsInt32(); var a7 = Sse2.UnpackHigh(r6, r7).AsInt32();
        var b0 = Sse2.UnpackLow(a0, a2).AsInt64(); var b1 = Sse2.UnpackHigh(a0, a2).AsInt64();
        var b2 = Sse2.UnpackLow(a1, a3).AsInt64(); var b3 = Sse2.UnpackHigh(a1, a3).AsInt64();
        var b4 = Sse2.UnpackLow(a4, a6).AsInt64(); var b5 = Sse2.UnpackHigh(a4, a6).AsInt64();
        var b6 = Sse2.UnpackLow(a5, a7).AsInt64(); var b7 = Sse2.UnpackHigh(a5, a7).AsInt64();
        Sse2.UnpackLow(b0, b4).Store((long*)dst); Sse2.UnpackHigh(b0, b4).Store((long*)(dst + 8));
        Sse2.UnpackLow(b1, b5).Store((long*)(dst + 16)); Sse2.UnpackHigh(b1, b5).Store((long*)(dst + 24));
        Sse2.UnpackLow(b2, b6).Store((long*)(dst + 32)); Sse2.UnpackHigh(b2, b6).Store((long*)(dst + 40));
        Sse2.UnpackLow(b3, b7).Store((long*)(dst + 48)); Sse2.UnpackHigh(b3, b7).Store((long*)(dst + 56));
    }

    /// <summary>Decodes row j of group wg into dst: (n).</summary>
    public static void DecodeRow(byte* wg, int j, int n, float* dst)
    {
        ushort* w = (ushort*)wg;
        for (int k = 0; k < n; k++) dst[k] = HalfConvert.Fp16ToFp32(w[8 * k + j]);
    }

    /// <summary>
    /// Scalar reference: y[t·yStride + j] = row j of group wg · activation row t (F32 × 2^112, x + t·xStride bytes),
    /// for t &lt; tokens, j &lt; 8.
    /// </summary>
    public static void DotScalar(byte* wg, byte* x, int xStride, int n, int tokens, float* y, int yStride)
    {
        ushort* w = (ushort*)wg;
        for (int t = 0; t < tokens; t++)
        {
            float* xt = (float*)(x + (long)t * xStride);
            for (int j = 0; j < Rows; j++)
            {
                float acc = 0;
                for (int k = 0; k < n; k++) acc = MathF.FusedMultiplyAdd(HalfConvert.Fp16ToFp32(w[8 * k + j]) * WeightScale, xt[k], acc);
                y[(long)t * yStride + j] = acc;
            }
        }
    }

    /// <summary>Column k of a group (8 rows) as F32 × 2^−112: the f16 bits in an f32's places (sign, exponent, mantissa), exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column(short* w, int k) =>
        (Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(w + 8 * k), 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();

    /// <summary>
    /// AVX2, one token: groups consecutive groups (groupBytes apart) against one activation row x; y: (8·groups).
    /// Four groups at a time: four independent FMA chains.
    /// </summary>
    public static void DotGroupsAvx2(byte* w, long groupBytes, int groups, byte* x, int n, float* y)
    {
        float* xf = (float*)x;
        int g = 0;
        for (; g + 4 <= groups; g += 4)
        {
            short* w0 = (short*)(w + g * groupBytes), w1 = (short*)(w + (g + 1) * groupBytes), w2 = (short*)(w + (g + 2) * groupBytes), w3 = (short*)(w + (g + 3) * groupBytes);
            var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
            int k = 0;
            for (; k + 4 <= n; k += 4)
            {
                // one 64-byte line of each group's stream per 4 columns, 8 KiB ahead
                Sse.Prefetch0(w0 + 8 * k + 4096); Sse.Prefetch0(w1 + 8 * k + 4096); Sse.Prefetch0(w2 + 8 * k + 4096); Sse.Prefetch0(w3 + 8 * k + 4096);
                for (int u = 0; u < 4; u++)
                {
                    var xk = Vector256.Create(xf[k + u]);
                    a0 = Fma.MultiplyAdd(Column(w0, k + u), xk, a0); a1 = Fma.MultiplyAdd(Column(w1, k + u), xk, a1);
                    a2 = Fma.MultiplyAdd(Column(w2, k + u), xk, a2); a3 = Fma.MultiplyAdd(Column(w3, k + u), xk, a3);
                }
            }
            for (; k < n; k++)
            {
                var xk = Vector256.Create(xf[k]);
                a0 = Fma.MultiplyAdd(Column(w0, k), xk, a0); a1 = Fma.MultiplyAdd(Column(w1, k), xk, a1);
                a2 = Fma.MultiplyAdd(Column(w2, k), xk, a2); a3 = Fma.MultiplyAdd(Column(w3, k), xk, a3);
            }
            a0.Store(y + 8 * g); a1.Store(y + 8 * g + 8); a2.Store(y + 8 * g + 16); a3.Store(y + 8 * g + 24);
        }
        for (; g < groups; g++)
        {
            short* w0 = (short*)(w + g * groupBytes);
            var a0 = Vector256<float>.Zero;
            for (int k = 0; k < n; k++) a0 = Fma.MultiplyAdd(Column(w0, k), Vector256.Create(xf[k]), a0);
            a0.Store(y + 8 * g);
        }
    }

    /// <summary>AVX2: one group against 4 activation rows (x + t·xStride bytes); y[t·yStride + j].</summary>
    public static void DotAvx2x4(byte* wg, byte* x, int xStride, int n, float* y, int yStride)
    {
        short* w = (short*)wg;
        float* x0 = (float*)x, x1 = (float*)(x + xStride), x2 = (float*)(x + 2 * xStride), x3 = (float*)(x + 3 * xStride);
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        for (int k = 0; k < n; k++)
        {
            var c = Column(w, k);
            a0 = Fma.MultiplyAdd(c, Vector256.Create(x0[k]), a0); a1 = Fma.MultiplyAdd(c, Vector256.Create(x1[k]), a1);
            a2 = Fma.MultiplyAdd(c, Vector256.Create(x2[k]), a2); a3 = Fma.MultiplyAdd(c, Vector256.Create(x3[k]), a3);
        }
        a0.Store(y); a1.Store(y + yStride); a2.Store(y + 2 * yStride); a3.Store(y + 3 * yStride);
    }

    /// <summary>
    /// AVX2: two consecutive groups (groupBytes apart) against 6 activation rows (x + t·xStride bytes); y[t·yStride + j]
    /// for the first group, y[t·yStride + 8 + j] for the second. 12 FMA chains per column for 2 widened weight vectors
    /// and 6 broadcast activations (measured ~25% faster than 1 group × 8 tokens: fewer loads per FMA).
    /// </summary>
    public static void DotPairAvx2x6(byte* wg, long groupBytes, byte* x, int xStride, int n, float* y, int yStride)
    {
        short* w = (short*)wg, v = (short*)(wg + groupBytes);
        float* x0 = (float*)x, x1 = (float*)(x + xStride), x2 = (float*)(x + 2 * xStride);
        float* x3 = (float*)(x + 3 * xStride), x4 = (float*)(x + 4 * xStride), x5 = (float*)(x + 5 * xStride);
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0; var a4 = a0; var a5 = a0;
        var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0; var b4 = a0; var b5 = a0;
        for (int k = 0; k < n; k++)
        {
            var c = Column(w, k); var d = Column(v, k);
            var s = Vector256.Create(x0[k]); a0 = Fma.MultiplyAdd(c, s, a0); b0 = Fma.MultiplyAdd(d, s, b0);
            s = Vector256.Create(x1[k]); a1 = Fma.MultiplyAdd(c, s, a1); b1 = Fma.MultiplyAdd(d, s, b1);
            s = Vector256.Create(x2[k]); a2 = Fma.MultiplyAdd(c, s, a2); b2 = Fma.MultiplyAdd(d, s, b2);
            s = Vector256.Create(x3[k]); a3 = Fma.MultiplyAdd(c, s, a3); b3 = Fma.MultiplyAdd(d, s, b3);
            s = Vector256.Create(x4[k]); a4 = Fma.MultiplyAdd(c, s, a4); b4 = Fma.MultiplyAdd(d, s, b4);
            s = Vector256.Create(x5[k]); a5 = Fma.MultiplyAdd(c, s, a5); b5 = Fma.MultiplyAdd(d, s, b5);
        }
        a0.Store(y); a1.Store(y + yStride); a2.Store(y + 2 * yStride); a3.Store(y + 3 * yStride); a4.Store(y + 4 * yStride); a5.Store(y + 5 * yStride);
        b0.Store(y + 8); b1.Store(y + yStride + 8); b2.Store(y + 2 * yStride + 8); b3.Store(y + 3 * yStride + 8); b4.Store(y + 4 * yStride + 8); b5.Store(y + 5 * yStride + 8);
    }
}
