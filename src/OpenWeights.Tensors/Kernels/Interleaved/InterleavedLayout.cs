using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels.Interleaved;

/// <summary>
/// A weight type's 8-row interleaved layout (made at load, <see cref="WeightMatrix.Repack"/>) and its kernels: a group
/// of 8 rows against 1 or 4 Q8_0 activation rows (AVX2) and the scalar reference, which all give the same bits.
/// </summary>
public readonly unsafe struct InterleavedLayout
{
    public const int GroupRows = 8;

    /// <summary>The weight type this layout repacks.</summary>
    public GgmlType Type { get; private init; }
    /// <summary>Bytes of one block: 8 rows × 32 values.</summary>
    public int BlockBytes { get; private init; }
    /// <summary>(src, rowBytes, rows, cols, dst): repacks a (rows, cols) matrix.</summary>
    public delegate*<byte*, long, int, int, byte*, void> Repack { get; private init; }
    /// <summary>(group, x, n, y): one group against one activation row; y: (8).</summary>
    public delegate*<byte*, byte*, int, float*, void> Dot { get; private init; }
    /// <summary>(group, x, xStride, n, y, yStride): one group against 4 activation rows.</summary>
    public delegate*<byte*, byte*, int, int, float*, int, void> Dot4 { get; private init; }
    /// <summary>(group, x, xStride, n, tokens, y, yStride): scalar reference for any number of tokens.</summary>
    public delegate*<byte*, byte*, int, int, int, float*, int, void> DotScalar { get; private init; }

    /// <summary>(group, j, n, dst): decodes row j of a group to F32, bit-exact with ggml's dequantizer of the type.</summary>
    public delegate*<byte*, int, int, float*, void> DecodeRow { get; private init; }

    public bool IsValid => Repack != null;

    /// <summary>Bytes of the repacked (rows, cols) matrix.</summary>
    public long Bytes(int rows, int cols) => (long)(rows / GroupRows) * (cols / 32) * BlockBytes;

    /// <summary>Whether a (rows, cols) matrix of this type can be repacked: whole groups of rows and whole blocks.</summary>
    public bool Fits(int rows, int cols) => IsValid && rows % GroupRows == 0 && cols % 32 == 0 && rows > 0;

    /// <summary>The layout for a weight type, or an invalid one when it has none.</summary>
    public static InterleavedLayout For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => new()
        {
            Type = type, BlockBytes = Q4_0x8.BlockBytes, Repack = &Q4_0x8.Repack,
            Dot = &Q4_0x8.DotAvx2, Dot4 = &Q4_0x8.DotAvx2x4, DotScalar = &Q4_0x8.DotScalar, DecodeRow = &Q4_0x8.DecodeRow,
        },
        GgmlType.Q8_0 => new()
        {
            Type = type, BlockBytes = Q8_0x8.BlockBytes, Repack = &Q8_0x8.Repack,
            Dot = &Q8_0x8.DotAvx2, Dot4 = &Q8_0x8.DotAvx2x4, DotScalar = &Q8_0x8.DotScalar, DecodeRow = &Q8_0x8.DecodeRow,
        },
        _ => default,
    };
}
