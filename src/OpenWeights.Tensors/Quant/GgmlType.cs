namespace OpenWeights.Tensors.Quant;

/// <summary>Tensor element types, numbered exactly as ggml numbers them in GGUF files.</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
}

/// <summary>Block geometry of each type: a tensor row of n elements takes n / BlockSize * BlockBytes bytes.</summary>
public static class GgmlTypes
{
    /// <summary>Elements per block and bytes per block, or null when we do not know the type.</summary>
    public static (int BlockSize, int BlockBytes)? TryGetLayout(GgmlType t) => t switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        GgmlType.F64 => (1, 8),
        GgmlType.I8 => (1, 1),
        GgmlType.I16 => (1, 2),
        GgmlType.I32 => (1, 4),
        GgmlType.I64 => (1, 8),
        GgmlType.Q4_0 => (32, 18),   // f16 d, 16 bytes of nibbles
        GgmlType.Q4_1 => (32, 20),   // f16 d, f16 m, 16 bytes of nibbles
        GgmlType.Q5_0 => (32, 22),   // f16 d, u32 high bits, 16 bytes of nibbles
        GgmlType.Q5_1 => (32, 24),   // f16 d, f16 m, u32 high bits, 16 bytes
        GgmlType.Q8_0 => (32, 34),   // f16 d, 32 x i8
        GgmlType.Q8_1 => (32, 36),   // f16 d, f16 s, 32 x i8
        GgmlType.Q2_K => (256, 84),  // 16 scales, 64 qs, f16 d, f16 dmin
        GgmlType.Q3_K => (256, 110), // 32 hmask, 64 qs, 12 scales, f16 d
        GgmlType.Q4_K => (256, 144), // f16 d, f16 dmin, 12 scales, 128 qs
        GgmlType.Q5_K => (256, 176), // f16 d, f16 dmin, 12 scales, 32 qh, 128 qs
        GgmlType.Q6_K => (256, 210), // 128 ql, 64 qh, 16 i8 scales, f16 d
        GgmlType.Q8_K => (256, 292), // f32 d, 256 x i8, 16 x i16 bsums
        GgmlType.IQ4_NL => (32, 18), // f16 d, 16 bytes of grid indices
        GgmlType.IQ4_XS => (256, 136), // f16 d, u16 scales_h, 4 scales_l, 128 bytes of grid indices
        GgmlType.MXFP4 => (32, 17),  // e8m0 exponent, 16 bytes of FP4 nibbles
        GgmlType.IQ3_XXS => (256, 98), // f16 d, 64 grid indices, 8 u32 of signs and scales
        GgmlType.IQ3_S => (256, 110),  // f16 d, 64 grid indices, 8 qh, 32 bytes of signs, 4 scales
        GgmlType.IQ1_S => (256, 50),   // f16 d, 32 grid indices, 8 u16 of index bits, scales and shift signs
        GgmlType.IQ1_M => (256, 56),   // 32 grid indices, 16 qh, 8 bytes of scales (holding the f16 d)
        GgmlType.IQ2_XXS => (256, 66), // f16 d, 8 x (4 grid indices, 4 sign indices + scale)
        GgmlType.IQ2_XS => (256, 74),  // f16 d, 32 u16 (9-bit grid index, 7-bit sign index), 8 scales
        GgmlType.IQ2_S => (256, 82),   // f16 d, 32 grid indices, 32 sign bytes, 8 qh, 8 scales
        _ => null,
    };

    public static bool IsKnown(GgmlType t) => TryGetLayout(t) is not null;

    public static int BlockSize(GgmlType t) => Layout(t).BlockSize;
    public static int BlockBytes(GgmlType t) => Layout(t).BlockBytes;

    /// <summary>Bytes taken by a row of <paramref name="n"/> elements; n must be a multiple of the block size.</summary>
    public static long RowBytes(GgmlType t, long n)
    {
        var (bs, bb) = Layout(t);
        if (n % bs != 0) throw new ArgumentException($"row length {n} is not a multiple of the {t} block size {bs}");
        return n / bs * bb;
    }

    /// <summary>Average bits per weight of a type (for size estimates).</summary>
    public static double BitsPerWeight(GgmlType t) { var (bs, bb) = Layout(t); return bb * 8.0 / bs; }

    private static (int BlockSize, int BlockBytes) Layout(GgmlType t) =>
        TryGetLayout(t) ?? throw new NotSupportedException($"unsupported tensor type {t} ({(uint)t})");

    /// <summary>Parses names such as "q4_k", "Q8_0", "f16" (case-insensitive).</summary>
    public static bool TryParse(string name, out GgmlType type) =>
        Enum.TryParse(name.Trim(), ignoreCase: true, out type) && Enum.IsDefined(type);
}
