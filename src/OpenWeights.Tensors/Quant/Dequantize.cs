using System.Runtime.InteropServices;

namespace OpenWeights.Tensors.Quant;

/// <summary>Row dequantization to f32, bit-identical to llama.cpp's <c>dequantize_row_*</c> / <c>to_float</c>.</summary>
public static class Dequantize
{
    /// <summary>Types <see cref="Row"/> accepts.</summary>
    public static bool CanDequantize(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.MXFP4
        or GgmlType.IQ3_XXS or GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M
        or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S;

    /// <summary>
    /// Dequantizes <c>dst.Length</c> elements of <paramref name="type"/> read from <paramref name="src"/>
    /// (dst.Length must be a multiple of the block size; src must hold at least the row's bytes).
    /// Allocation-free.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        long need = GgmlTypes.RowBytes(type, dst.Length);
        if (src.Length < need)
            throw new ArgumentException($"{type} row of {dst.Length} elements needs {need} bytes, got {src.Length}", nameof(src));
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(src[..(int)need]).CopyTo(dst); break;
            case GgmlType.F16: F16(src, dst); break;
            case GgmlType.BF16: Bf16(src, dst); break;
            case GgmlType.Q4_0: BlockQ4_0.Dequantize(src, dst); break;
            case GgmlType.Q4_1: BlockQ4_1.Dequantize(src, dst); break;
            case GgmlType.Q5_0: BlockQ5_0.Dequantize(src, dst); break;
            case GgmlType.Q5_1: BlockQ5_1.Dequantize(src, dst); break;
            case GgmlType.Q8_0: BlockQ8_0.Dequantize(src, dst); break;
            case GgmlType.Q2_K: BlockQ2_K.Dequantize(src, dst); break;
            case GgmlType.Q3_K: BlockQ3_K.Dequantize(src, dst); break;
            case GgmlType.Q4_K: BlockQ4_K.Dequantize(src, dst); break;
            case GgmlType.Q5_K: BlockQ5_K.Dequantize(src, dst); break;
            case GgmlType.Q6_K: BlockQ6_K.Dequantize(src, dst); break;
            case GgmlType.Q8_K: BlockQ8_K.Dequantize(src, dst); break;
            case GgmlType.IQ4_NL: BlockIQ4_NL.Dequantize(src, dst); break;
            case GgmlType.IQ4_XS: BlockIQ4_XS.Dequantize(src, dst); break;
            case GgmlType.MXFP4: BlockMXFP4.Dequantize(src, dst); break;
            case GgmlType.IQ3_XXS: BlockIQ3_XXS.Dequantize(src, dst); break;
            case GgmlType.IQ3_S: BlockIQ3_S.Dequantize(src, dst); break;
            case GgmlType.IQ1_S: BlockIQ1_S.Dequantize(src, dst); break;
            case GgmlType.IQ1_M: BlockIQ1_M.Dequantize(src, dst); break;
            case GgmlType.IQ2_XXS: BlockIQ2_XXS.Dequantize(src, dst); break;
            case GgmlType.IQ2_XS: BlockIQ2_XS.Dequantize(src, dst); break;
            case GgmlType.IQ2_S: BlockIQ2_S.Dequantize(src, dst); break;
            default: throw new NotSupportedException($"cannot dequantize tensor type {type}");
        }
    }

    /// <summary>f16 row -> f32 (exact; vectorised by TensorPrimitives, <see cref="F16Scalar"/> is the reference).</summary>
    public static void F16(ReadOnlySpan<byte> src, Span<float> dst) =>
        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src)[..dst.Length], dst);

    /// <summary>f16 row -> f32, one value at a time (reference for <see cref="F16"/>).</summary>
    public static void F16Scalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var h = MemoryMarshal.Cast<byte, ushort>(src);
        for (int i = 0; i < dst.Length; i++) dst[i] = HalfConvert.Fp16ToFp32(h[i]);
    }

    /// <summary>bf16 row -> f32: the 16 bits become the high half of the f32 (Vector256 widening; scalar tail).</summary>
    public static void Bf16(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var h = MemoryMarshal.Cast<byte, ushort>(src);
        var d = MemoryMarshal.Cast<float, uint>(dst);
        int i = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated)
            for (; i + 16 <= dst.Length; i += 16)
            {
                var v = System.Runtime.Intrinsics.Vector256.Create(h.Slice(i, 16));
                var (lo, hi) = System.Runtime.Intrinsics.Vector256.Widen(v);
                System.Runtime.Intrinsics.Vector256.CopyTo(lo << 16, d.Slice(i, 8));
                System.Runtime.Intrinsics.Vector256.CopyTo(hi << 16, d.Slice(i + 8, 8));
            }
        for (; i < dst.Length; i++) dst[i] = HalfConvert.Bf16ToFp32(h[i]);
    }
}
