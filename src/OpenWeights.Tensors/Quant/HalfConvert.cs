using System.Runtime.CompilerServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// IEEE half (f16) and bfloat16 conversions, bit-for-bit equal to ggml's
/// <c>ggml_compute_fp16_to_fp32</c> / <c>ggml_compute_fp32_to_fp16</c> (software paths, which are the ones
/// compiled into ggml-base) and <c>ggml_compute_bf16_to_fp32</c> / <c>ggml_compute_fp32_to_bf16</c>.
/// </summary>
/// <remarks>
/// f16 -> f32 is exact for every finite value, infinities keep their sign, NaNs keep sign and payload and
/// get the quiet bit set (ggml multiplies by a power of two, which quiets signalling NaNs).
/// f32 -> f16 rounds to nearest, ties to even (overflow gives ±inf, tiny values become subnormals or ±0);
/// every NaN becomes the canonical quiet NaN 0x7E00 with the input's sign.
/// bf16 -> f32 is a 16-bit shift. f32 -> bf16 rounds to nearest, ties to even; NaNs are truncated and forced
/// quiet (bit 6 of the bf16 set), so a NaN never turns into an infinity.
/// </remarks>
public static class HalfConvert
{
    /// <summary>f16 bits -> f32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fp16ToFp32(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exp = (uint)(h >> 10) & 0x1F;
        uint man = (uint)h & 0x3FF;
        if (exp == 0x1F)
        {
            // inf or NaN: NaN payload is kept, quiet bit forced (like ggml's float multiply does)
            uint bits = sign | 0x7F800000u | (man << 13);
            if (man != 0) bits |= 0x00400000u;
            return BitConverter.UInt32BitsToSingle(bits);
        }
        if (exp == 0)
        {
            if (man == 0) return BitConverter.UInt32BitsToSingle(sign);
            // subnormal: man * 2^-24, exact in f32
            float v = man * (1.0f / 16777216.0f);
            return sign != 0 ? -v : v;
        }
        return BitConverter.UInt32BitsToSingle(sign | ((exp + 112) << 23) | (man << 13));
    }

    /// <summary>f32 -> f16 bits, round to nearest even; NaN -> sign | 0x7E00.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fp32ToFp16(float f)
    {
        uint w = BitConverter.SingleToUInt32Bits(f);
        if ((w & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)(((w >> 16) & 0x8000) | 0x7E00);
        return BitConverter.HalfToUInt16Bits((Half)f); // System.Half rounds to nearest even (IEEE)
    }

    /// <summary>bf16 bits -> f32 (exact: the bf16 is the upper half of the f32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToFp32(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>f32 -> bf16 bits, round to nearest even; NaN is truncated with the quiet bit forced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fp32ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
    }

    /// <summary>Reads the little-endian f16 at <paramref name="p"/> as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe float ReadFp16(byte* p) => Fp16ToFp32(Unsafe.ReadUnaligned<ushort>(p));

    /// <summary>Writes <paramref name="f"/> as a little-endian f16 at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void WriteFp16(byte* p, float f) => Unsafe.WriteUnaligned(p, Fp32ToFp16(f));

    /// <summary>
    /// f32 -> f16 -> f32: the value ggml sees after storing a scale with GGML_FP32_TO_FP16 and reading it back.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float RoundTripFp16(float f) => Fp16ToFp32(Fp32ToFp16(f));
}
