using System.Runtime.InteropServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>
/// Row quantization from f32, bit-identical to llama.cpp's reference quantizers <c>quantize_row_*_ref</c>
/// (what <c>llama_model_quantize</c> runs when no importance matrix is given; for IQ4_NL that is quantize_iq4_nl,
/// not the cheaper quantize_row_iq4_nl_ref).
/// </summary>
public static class Quantize
{
    /// <summary>Types <see cref="Row"/> can produce.</summary>
    public static bool CanQuantize(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.MXFP4;

    /// <summary>
    /// Quantizes <c>src.Length</c> values (a multiple of the block size) into <paramref name="dst"/>, which must
    /// hold at least <see cref="GgmlTypes.RowBytes"/> bytes. Blocks are independent, so a tensor may be
    /// quantized row by row or all at once with the same result.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (!CanQuantize(type)) throw new NotSupportedException($"cannot quantize to tensor type {type}");
        long need = GgmlTypes.RowBytes(type, src.Length);
        if (dst.Length < need)
            throw new ArgumentException($"{type} row of {src.Length} elements needs {need} bytes, got {dst.Length}", nameof(dst));
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case GgmlType.F16:
                {
                    var h = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int i = 0; i < src.Length; i++) h[i] = HalfConvert.Fp32ToFp16(src[i]);
                    break;
                }
            case GgmlType.BF16:
                {
                    var h = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int i = 0; i < src.Length; i++) h[i] = HalfConvert.Fp32ToBf16(src[i]);
                    break;
                }
            case GgmlType.Q4_0: BlockQ4_0.Quantize(src, dst); break;
            case GgmlType.Q4_1: BlockQ4_1.Quantize(src, dst); break;
            case GgmlType.Q5_0: BlockQ5_0.Quantize(src, dst); break;
            case GgmlType.Q5_1: BlockQ5_1.Quantize(src, dst); break;
            case GgmlType.Q8_0: BlockQ8_0.Quantize(src, dst); break;
            case GgmlType.Q2_K: BlockQ2_K.Quantize(src, dst); break;
            case GgmlType.Q3_K: BlockQ3_K.Quantize(src, dst); break;
            case GgmlType.Q4_K: BlockQ4_K.Quantize(src, dst); break;
            case GgmlType.Q5_K: BlockQ5_K.Quantize(src, dst); break;
            case GgmlType.Q6_K: BlockQ6_K.Quantize(src, dst); break;
            case GgmlType.Q8_K: BlockQ8_K.Quantize(src, dst); break;
            case GgmlType.IQ4_NL: BlockIQ4_NL.Quantize(src, dst); break;
            case GgmlType.IQ4_XS: BlockIQ4_XS.Quantize(src, dst); break;
            case GgmlType.MXFP4: BlockMXFP4.Quantize(src, dst); break;
        }
    }
}
