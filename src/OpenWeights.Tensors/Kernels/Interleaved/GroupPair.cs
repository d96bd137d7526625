using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// Helpers of the AVX-512 interleaved kernels, which work on two consecutive 8-row groups at once: one 512-bit register
/// holds the same 32 bytes (4 values of each of 8 rows) of group g in its low half and of group g + 1 in its high half,
/// so the 16 rows of a block pair share one activation broadcast, one float multiply-add and one store.
/// Per (row, token) the float sequence stays Σ_i fma(d_w·d_a, float(isum_i), acc) in block order, as in the scalar
/// references and the 256-bit kernels: the 512-bit kernels agree with both bit for bit.
/// </summary>
internal static unsafe class GroupPair
{
    /// <summary>The 32 bytes at p0 (low half) and p1 (high half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Load(byte* p0, byte* p1) => Vector512.Create(Vector256.Load(p0), Vector256.Load(p1));

    /// <summary>The int32 at a broadcast to all 16 lanes (4 activation bytes against 4 values of each of the 16 rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<sbyte> Broadcast(byte* a) => Vector512.Create(*(int*)a).AsSByte();

    /// <summary>
    /// The 16 rows' block scales (8 f16 at b0, the block of group g, then 8 at b1, group g + 1) as F32, exactly:
    /// <see cref="QuantDot.F16ToF32"/> on 16 lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Scales(byte* b0, byte* b1)
    {
        var h = Avx512F.ConvertToVector512Int32(Vector256.Create(Vector128.Load((short*)b0), Vector128.Load((short*)b1)));
        return (Vector512.ShiftLeft(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector512.Create(BitConverter.UInt32BitsToSingle(0x77800000));
    }

    /// <summary>acc + (d_w · d_a) · float(isum) for the 16 rows of one block pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Accumulate(Vector512<float> acc, Vector512<int> isum, Vector512<float> dw, float dx) =>
        Avx512F.FusedMultiplyAdd(dw * Vector512.Create(dx), Vector512.ConvertToSingle(isum), acc);

    /// <summary>Asks for the first <paramref name="lines"/> cache lines of the blocks at b0 and b1, ahead of use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(byte* b0, byte* b1, int lines)
    {
        for (int l = 0; l < lines; l++) { Sse.Prefetch0(b0 + 64 * l); Sse.Prefetch0(b1 + 64 * l); }
    }
}
