using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Vectorized dequantization paths (portable Vector256, so AVX2/AVX-512 on x64 and NEON pairs on arm64).
/// Each produces exactly the scalar reference's bits: int -> float conversion is exact and there is a
/// single multiply per value, as in the scalar code.
/// </summary>
internal static unsafe class SimdDequant
{
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    // scalar reference: BlockQ8_0.DequantizeScalar
    public static void Q8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockQ8_0.BlockSize;
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockQ8_0.BlockBytes;
                var d = Vector256.Create(HalfConvert.ReadFp16(b));
                var q = Vector256.Load((sbyte*)(b + 2));
                Store32(q, d, y0 + i * 32);
            }
        }
    }

    // scalar reference: BlockQ4_0.DequantizeScalar
    public static void Q4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = dst.Length / BlockQ4_0.BlockSize;
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector256.Create((sbyte)8);
        fixed (byte* s0 = src) fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* b = s0 + i * BlockQ4_0.BlockBytes;
                var d = Vector256.Create(HalfConvert.ReadFp16(b));
                var qs = Vector128.Load(b + 2);
                // values 0..15 are the low nibbles, 16..31 the high nibbles
                var q = Vector256.Create(qs & mask, Vector128.ShiftRightLogical(qs, 4)).AsSByte() - eight;
                Store32(q, d, y0 + i * 32);
            }
        }
    }

    /// <summary>y[k] = (float)q[k] * d for 32 signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store32(Vector256<sbyte> q, Vector256<float> d, float* y)
    {
        var (lo, hi) = Vector256.Widen(q);
        var (a, b) = Vector256.Widen(lo);
        var (c, e) = Vector256.Widen(hi);
        (Vector256.ConvertToSingle(a) * d).Store(y);
        (Vector256.ConvertToSingle(b) * d).Store(y + 8);
        (Vector256.ConvertToSingle(c) * d).Store(y + 16);
        (Vector256.ConvertToSingle(e) * d).Store(y + 24);
    }
}
