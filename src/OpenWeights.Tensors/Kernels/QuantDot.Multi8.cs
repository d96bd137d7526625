using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// 8-token kernels (prefill): one weight row against 8 activation rows x, x + stride, ..., x + 7·stride in one pass
/// (8 accumulators); each weight block is loaded, unpacked and its |w| taken once for 8 tokens instead of 4. Only Q5_0
/// has one: its unpacking (nibbles + 5th bits) is a large part of the 4-token kernel's work, and 8 tokens gave ~+10%
/// prefill on Q5_0-heavy files (the small "q4_k_m" ones); the same kernel for Q4_0 and Q8_0 measured no gain. result: (8).
/// For every token the integer sums per block (same lanes) and the float operations are exactly those of
/// <see cref="DotQ5_0Avx2"/>, so results are bit for bit the single-token ones (tested).
/// Scalar reference: <see cref="Dot8Reference"/>.
/// </summary>
public static unsafe partial class QuantDot
{
    /// <summary>Use the 8-token kernels in <see cref="WeightMatrix.MatMul"/> where a type has one (with <see cref="UseMultiToken"/>).</summary>
    public static bool UseEightToken { get; set; } = true;

    /// <summary>Scalar reference of every 8-token kernel: the single-token <paramref name="dot"/> on each of the 8 rows.</summary>
    public static void Dot8Reference(delegate*<byte*, byte*, int, float> dot, byte* w, byte* x, int stride, int n, float* result)
    {
        for (int k = 0; k < 8; k++) result[k] = dot(w, x + (long)k * stride, n);
    }

    /// <summary>acc + (d_w·d_x)·Σ |w|·sign(y, w) for one block: the single-token kernels' step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(Vector256<float> acc, Vector256<byte> ax, Vector256<sbyte> wv, Vector256<sbyte> y, float dw, float dx) =>
        Fma.MultiplyAdd(Vector256.Create(dw * dx), Vector256.ConvertToSingle(MulUnsigned(ax, Avx2.Sign(y, wv))), acc);

    // ---------------------------------------------------------------- Q5_0 x Q8_0, 8 tokens

    /// <summary>32 signed Q5_0 values (in [−16, 15]) of the 22-byte block at a, in the single-token kernel's order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> UnpackQ5_0(byte* a)
    {
        var q = Vector128.Load(a + 6);
        var mask = Vector128.Create((byte)0x0F);
        var lo = Vector256.Create(q & mask, Vector128.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask);
        var shuf = Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        var bits = Vector256.Create(0x8040201008040201UL).AsByte();
        var hv = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(a + 2)).AsByte(), shuf);
        return (lo | Vector256.AndNot(Vector256.Create((byte)0xF0), Vector256.Equals(hv & bits, bits))).AsSByte();
    }

    /// <summary>Q5_0 weights (22-byte blocks) against 8 Q8_0 activation rows with their F32 tails.</summary>
    public static void DotQ5_0Avx2x8(byte* w, byte* x, int stride, int n, float* result)
    {
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        var a4 = Vector256<float>.Zero; var a5 = Vector256<float>.Zero; var a6 = Vector256<float>.Zero; var a7 = Vector256<float>.Zero;
        byte* x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride, x4 = x + 4 * stride, x5 = x + 5 * stride, x6 = x + 6 * stride, x7 = x + 7 * stride;
        int nb = n / 32, tail = nb * 34; // the F32 scales of block i are at tail + 4·i of each activation row
        for (int i = 0; i < nb; i++)
        {
            byte* a = w + i * 22; int o = i * 34 + 2, od = tail + 4 * i;
            var wv = UnpackQ5_0(a);
            var ax = Avx2.Abs(wv);
            float dw = Fp16(a);
            a0 = Step(a0, ax, wv, Vector256.Load((sbyte*)(x + o)), dw, *(float*)(x + od));
            a1 = Step(a1, ax, wv, Vector256.Load((sbyte*)(x1 + o)), dw, *(float*)(x1 + od));
            a2 = Step(a2, ax, wv, Vector256.Load((sbyte*)(x2 + o)), dw, *(float*)(x2 + od));
            a3 = Step(a3, ax, wv, Vector256.Load((sbyte*)(x3 + o)), dw, *(float*)(x3 + od));
            a4 = Step(a4, ax, wv, Vector256.Load((sbyte*)(x4 + o)), dw, *(float*)(x4 + od));
            a5 = Step(a5, ax, wv, Vector256.Load((sbyte*)(x5 + o)), dw, *(float*)(x5 + od));
            a6 = Step(a6, ax, wv, Vector256.Load((sbyte*)(x6 + o)), dw, *(float*)(x6 + od));
            a7 = Step(a7, ax, wv, Vector256.Load((sbyte*)(x7 + o)), dw, *(float*)(x7 + od));
        }
        result[0] = Hsum(a0); result[1] = Hsum(a1); result[2] = Hsum(a2); result[3] = Hsum(a3);
        result[4] = Hsum(a4); result[5] = Hsum(a5); result[6] = Hsum(a6); result[7] = Hsum(a7);
    }
}
