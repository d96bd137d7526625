using System.Numerics.Tensors;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Kernels;

/// <summary>
/// A 2-D weight W: (Rows, Cols) stored row-major in its GGUF block format (Cols contiguous elements per row),
/// left where it lies (in a memory map). y = W·x multiplies without ever materialising W in F32.
/// </summary>
public sealed unsafe class WeightMatrix
{
    public byte* Data { get; }
    public GgmlType Type { get; }
    public int Rows { get; }   // output features
    public int Cols { get; }   // input features
    public long RowBytes { get; }

    public WeightMatrix(byte* data, GgmlType type, int rows, int cols)
    {
        Data = data; Type = type; Rows = rows; Cols = cols;
        RowBytes = GgmlTypes.RowBytes(type, cols);
    }

    public ReadOnlySpan<byte> RowData(int r) => new(Data + r * RowBytes, (int)RowBytes);

    /// <summary>Decodes row r into dst: (Cols).</summary>
    public void DecodeRow(int r, Span<float> dst) => RowDecoder.Decode(Type, RowData(r), dst[..Cols]);

    /// <summary>
    /// Y = X·Wᵀ for n tokens. X: (n, Cols), Y: (n, Rows). Each weight row is decoded once and multiplied
    /// with all n inputs, rows split across threads.
    /// </summary>
    public void MatMul(ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        if (x.Length < n * Cols || y.Length < n * Rows) throw new ArgumentException("matmul buffers too small");
        fixed (float* px = x, py = y)
        {
            float* xp = px, yp = py;
            int chunk = Math.Max(1, Rows / (threads * 8));
            int nChunks = (Rows + chunk - 1) / chunk;
            void Body(int c)
            {
                int r0 = c * chunk, r1 = Math.Min(Rows, r0 + chunk);
                float[] rowBuf = RowScratch(Cols);
                var row = rowBuf.AsSpan(0, Cols);
                for (int r = r0; r < r1; r++)
                {
                    ReadOnlySpan<float> w;
                    if (Type == GgmlType.F32) w = new ReadOnlySpan<float>(Data + r * RowBytes, Cols);
                    else { DecodeRow(r, row); w = row; }
                    for (int t = 0; t < n; t++)
                        yp[(long)t * Rows + r] = TensorPrimitives.Dot(w, new ReadOnlySpan<float>(xp + (long)t * Cols, Cols));
                }
            }
            if (threads <= 1 || nChunks == 1) for (int c = 0; c < nChunks; c++) Body(c);
            else Parallel.For(0, nChunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, Body);
        }
    }

    [ThreadStatic] private static float[]? scratch;
    private static float[] RowScratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 4096)];
}

/// <summary>Decodes a row of any supported type to F32.</summary>
public static class RowDecoder
{
    public static void Decode(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case GgmlType.F16:
                TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(src)[..dst.Length], dst);
                break;
            case GgmlType.BF16:
                var bf = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(bf[i] << 16);
                break;
            default:
                throw new NotSupportedException($"tensor type {type} is not supported yet");
        }
    }
}
