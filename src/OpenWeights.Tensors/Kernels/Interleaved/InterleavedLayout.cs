using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// A weight type's 8-row interleaved layout (made at load, <see cref="WeightMatrix.Repack"/>) and its kernels: groups
/// of 8 rows against 1, 4 or 8 activation rows (AVX2; Q8_0 / Q4_0 / Q5_0 / Q4_K also AVX-512: two groups against 6 rows,
/// when <see cref="QuantDot.Avx512Path"/> at load, and against 1 row with <see cref="QuantDot.Avx512OneToken"/>) and the
/// scalar reference, which all give the same bits.
/// </summary>
public readonly unsafe struct InterleavedLayout
{
    public const int GroupRows = 8;

    /// <summary>The weight type this layout repacks.</summary>
    public GgmlType Type { get; private init; }
    /// <summary>The activation rows' format: Q8_0 (with tails) or F16 (F32 values rounded to F16).</summary>
    public GgmlType Activation { get; private init; }
    /// <summary>Factor applied to the activation rows after conversion (exact: a power of two); 1 for most layouts.</summary>
    public float ActivationScale { get; private init; }
    /// <summary>Bytes of one block: 8 rows × 32 values (quantized types); F16: 8 rows × 1 column.</summary>
    public int BlockBytes { get; private init; }
    /// <summary>Values per block (32, F16: 1).</summary>
    public int BlockValues { get; private init; }
    /// <summary>(src, rowBytes, rows, cols, dst): repacks a (rows, cols) matrix.</summary>
    public delegate*<byte*, long, int, int, byte*, void> Repack { get; private init; }
    /// <summary>(w, groupBytes, groups, x, n, y): consecutive groups against one activation row; y: (8·groups).</summary>
    public delegate*<byte*, long, int, byte*, int, float*, void> DotGroups { get; private init; }
    /// <summary>Optional (w, groupBytes, x, xStride, n, y, yStride): two consecutive groups against 6 activation rows.</summary>
    public delegate*<byte*, long, byte*, int, int, float*, int, void> DotPair6 { get; private init; }
    /// <summary>(group, x, xStride, n, y, yStride): one group against 4 activation rows.</summary>
    public delegate*<byte*, byte*, int, int, float*, int, void> Dot4 { get; private init; }
    /// <summary>(group, x, xStride, n, tokens, y, yStride): scalar reference for any number of tokens.</summary>
    public delegate*<byte*, byte*, int, int, int, float*, int, void> DotScalar { get; private init; }

    /// <summary>(group, j, n, dst): decodes row j of a group to F32, bit-exact with ggml's dequantizer of the type.</summary>
    public delegate*<byte*, int, int, float*, void> DecodeRow { get; private init; }

    public bool IsValid => Repack != null;

    /// <summary>Bytes of one group of 8 rows of cols values.</summary>
    public long GroupBytes(int cols) => (long)(cols / BlockValues) * BlockBytes;

    /// <summary>Bytes of the repacked (rows, cols) matrix.</summary>
    public long Bytes(int rows, int cols) => rows / GroupRows * GroupBytes(cols);

    /// <summary>Whether a (rows, cols) matrix of this type can be repacked: whole groups of rows and whole blocks.</summary>
    public bool Fits(int rows, int cols) => IsValid && rows > 0 && cols > 0 && rows % GroupRows == 0 && cols % Math.Max(8, BlockValues) == 0;

    /// <summary>The layout for a weight type, or an invalid one when it has none.</summary>
    public static InterleavedLayout For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => new()
        {
            Type = type, Activation = GgmlType.Q8_0, ActivationScale = 1, BlockBytes = Q4_0x8.BlockBytes, BlockValues = 32, Repack = &Q4_0x8.Repack,
            DotGroups = QuantDot.Avx512Path && QuantDot.Avx512OneToken ? &Q4_0x8.DotGroupsAvx512 : &Q4_0x8.DotGroupsAvx2, Dot4 = &Q4_0x8.DotAvx2x4,
            DotPair6 = QuantDot.Avx512Path ? &Q4_0x8.DotPairAvx512x6 : null, DotScalar = &Q4_0x8.DotScalar, DecodeRow = &Q4_0x8.DecodeRow,
        },
        GgmlType.Q5_0 => new()
        {
            Type = type, Activation = GgmlType.Q8_0, ActivationScale = 1, BlockBytes = Q5_0x8.BlockBytes, BlockValues = 32, Repack = &Q5_0x8.Repack,
            DotGroups = QuantDot.Avx512Path && QuantDot.Avx512OneToken ? &Q5_0x8.DotGroupsAvx512 : &Q5_0x8.DotGroupsAvx2, Dot4 = &Q5_0x8.DotAvx2x4,
            DotPair6 = QuantDot.Avx512Path ? &Q5_0x8.DotPairAvx512x6 : null, DotScalar = &Q5_0x8.DotScalar, DecodeRow = &Q5_0x8.DecodeRow,
        },
        GgmlType.Q4_K => new()
        {
            Type = type, Activation = GgmlType.Q8_K, ActivationScale = 1, BlockBytes = Q4_Kx8.BlockBytes, BlockValues = 256, Repack = &Q4_Kx8.Repack,
            DotGroups = QuantDot.Avx512Path && QuantDot.Avx512OneToken ? &Q4_Kx8.DotGroupsAvx512 : &Q4_Kx8.DotGroupsAvx2, Dot4 = &Q4_Kx8.DotAvx2x4,
            DotPair6 = QuantDot.Avx512Path ? &Q4_Kx8.DotPairAvx512x6 : null, DotScalar = &Q4_Kx8.DotScalar, DecodeRow = &Q4_Kx8.DecodeRow,
        },
        GgmlType.IQ4_NL => new()
        {
            Type = type, Activation = GgmlType.Q8_0, ActivationScale = 1, BlockBytes = 144, BlockValues = 32, Repack = &Lut4x8.RepackIq4Nl,
            DotGroups = &Lut4x8.DotGroupsIq4Nl, Dot4 = &Lut4x8.Dot4Iq4Nl, DotScalar = &Lut4x8.DotScalarIq4Nl, DecodeRow = &Lut4x8.DecodeRowIq4Nl,
        },
        GgmlType.IQ4_XS => new()
        {
            Type = type, Activation = GgmlType.Q8_K, ActivationScale = 1, BlockBytes = IQ4_XSx8.BlockBytes, BlockValues = 256, Repack = &IQ4_XSx8.Repack,
            DotGroups = &IQ4_XSx8.DotGroupsAvx2, Dot4 = &IQ4_XSx8.DotAvx2x4, DotScalar = &IQ4_XSx8.DotScalar, DecodeRow = &IQ4_XSx8.DecodeRow,
        },
        GgmlType.MXFP4 => new()
        {
            Type = type, Activation = GgmlType.Q8_0, ActivationScale = 1, BlockBytes = 136, BlockValues = 32, Repack = &Lut4x8.RepackMxfp4,
            DotGroups = &Lut4x8.DotGroupsMxfp4, Dot4 = &Lut4x8.Dot4Mxfp4, DotScalar = &Lut4x8.DotScalarMxfp4, DecodeRow = &Lut4x8.DecodeRowMxfp4,
        },
        GgmlType.Q8_0 => new()
        {
            Type = type, Activation = GgmlType.Q8_0, ActivationScale = 1, BlockBytes = Q8_0x8.BlockBytes, BlockValues = 32, Repack = &Q8_0x8.Repack,
            DotGroups = Q8_0x8.Avx512Ready && QuantDot.Avx512OneToken ? &Q8_0x8.DotGroupsAvx512 : &Q8_0x8.DotGroupsAvx2, Dot4 = &Q8_0x8.DotAvx2x4,
            DotPair6 = Q8_0x8.Avx512Ready ? &Q8_0x8.DotPairAvx512x6 : null, DotScalar = &Q8_0x8.DotScalar, DecodeRow = &Q8_0x8.DecodeRow,
        },
        GgmlType.F16 => new()
        {
            Type = type, Activation = GgmlType.F16, ActivationScale = F16x8.ActivationScale, BlockBytes = 16, BlockValues = 1, Repack = &F16x8.Repack,
            DotGroups = &F16x8.DotGroupsAvx2, Dot4 = &F16x8.DotAvx2x4, DotPair6 = &F16x8.DotPairAvx2x6, DotScalar = &F16x8.DotScalar, DecodeRow = &F16x8.DecodeRow,
        },
        _ => default,
    };
}
