using OpenWeights.Tensors.Quant;

namespace OpenWeights.Formats.Gguf;

/// <summary>
/// One tensor's entry in a GGUF file. <see cref="Dimensions"/> are in ggml order: Dimensions[0] is the
/// innermost (contiguous) axis, so a weight W of shape (out, in) is stored with Dimensions = [in, out].
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, GgmlType Type, long Offset, long ByteSize)
{
    public long ElementCount { get { long n = 1; foreach (var d in Dimensions) n *= d; return n; } }

    /// <summary>Elements per row (the innermost dimension).</summary>
    public long RowLength => Dimensions.Length == 0 ? 1 : Dimensions[0];

    /// <summary>Number of rows (product of the outer dimensions).</summary>
    public long RowCount => RowLength == 0 ? 0 : ElementCount / RowLength;

    public string ShapeText => "[" + string.Join(", ", Dimensions) + "]";
}
