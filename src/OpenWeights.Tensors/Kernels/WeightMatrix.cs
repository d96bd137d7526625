using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels.Interleaved;
using OpenWeights.Tensors.Memory;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;

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

    /// <summary>Repack weights at load (<see cref="Repack"/>); OPENWEIGHTS_NO_REPACK=1 turns it off (to compare).</summary>
    public static bool RepackEnabled { get; set; } = Environment.GetEnvironmentVariable("OPENWEIGHTS_NO_REPACK") != "1";

    private NativeBuffer? packed; // 8-row interleaved groups (Q4_0x8, Q5_0x8, Q8_0x8, F16x8), used by MatMul instead of Data
    private InterleavedLayout layout;

    /// <summary>Whether MatMul uses an interleaved copy made by <see cref="Repack"/>.</summary>
    public bool IsRepacked => packed is not null;

    /// <summary>
    /// Makes the interleaved copy MatMul and DecodeRow prefer where one pays for itself (Q4_0, Q5_0, Q8_0 and F16
    /// with rows a multiple of 8: 8-row groups, <see cref="InterleavedLayout"/>); returns whether this matrix now has one.
    /// <see cref="Data"/> stays valid (training reads it); with <paramref name="releaseMappedSource"/> its pages are
    /// handed back to the OS (for a read-only file mapping only), so the weights are not resident twice.
    /// </summary>
    public bool Repack(bool releaseMappedSource = false)
    {
        if (packed is not null) return true;
        if (RepackBytes == 0) return false;
        var l = InterleavedLayout.For(Type);
        var buf = new NativeBuffer(l.Bytes(Rows, Cols));
        // a slice of groups at a time, each slice's source pages released once copied: the source and its copy are
        // never both resident in full
        int groups = Rows / InterleavedLayout.GroupRows, slice = Math.Max(1, (1 << 20) / (int)Math.Min(int.MaxValue, RowBytes * InterleavedLayout.GroupRows));
        long groupBytes = l.GroupBytes(Cols);
        for (int g = 0; g < groups; g += slice)
        {
            int rows = Math.Min(slice, groups - g) * InterleavedLayout.GroupRows;
            byte* src = Data + (long)g * InterleavedLayout.GroupRows * RowBytes;
            l.Repack(src, RowBytes, rows, Cols, buf.Pointer + g * groupBytes);
            if (releaseMappedSource) MappedPages.Release(src, rows * RowBytes);
        }
        if (releaseMappedSource) MappedPages.Release(Data, RowBytes * Rows); // the pages straddling slice boundaries
        layout = l;
        packed = buf;
        return true;
    }

    /// <summary>
    /// Bytes <see cref="Repack"/> would allocate; 0 where it would not repack: repacking off, no layout for the type or
    /// shape, or no AVX2 kernels on this CPU (the layouts' scalar references are slower than the row kernels').
    /// </summary>
    public long RepackBytes
    {
        get
        {
            if (packed is not null || !RepackEnabled || !QuantDot.Avx2Path || QuantDot.UseF32Reference) return 0;
            var l = InterleavedLayout.For(Type);
            return l.Fits(Rows, Cols) ? l.Bytes(Rows, Cols) : 0;
        }
    }

    /// <summary>Frees the interleaved copy (MatMul goes back to <see cref="Data"/>).</summary>
    public void ReleasePacked()
    {
        var p = packed;
        packed = null;
        p?.Dispose();
    }

    /// <summary>
    /// Decodes row r into dst: (Cols), the same values from the GGUF row or the interleaved copy (which, once made, is
    /// read instead: a tied embedding's lookups then do not fault the released file pages back in).
    /// </summary>
    public void DecodeRow(int r, Span<float> dst)
    {
        if ((uint)r >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(r));
        if (packed is { } p)
        {
            if (dst.Length < Cols) throw new ArgumentException("row buffer too small");
            fixed (float* d = dst)
                layout.DecodeRow(p.Pointer + r / InterleavedLayout.GroupRows * layout.GroupBytes(Cols), r % InterleavedLayout.GroupRows, Cols, d);
            return;
        }
        RowDecoder.Decode(Type, RowData(r), dst[..Cols]);
    }

    /// <summary>
    /// Y = X·Wᵀ for n tokens. X: (n, Cols), Y: (n, Rows). The activation rows are converted once to the weight
    /// type's dot-product format (<see cref="QuantDot"/>: 8-bit blocks for quantized weights, as ggml does), then each
    /// weight row, read once from the memory map, is dotted with all n activation rows while it is in cache; rows are
    /// split across the worker pool. Types without a kernel (and <see cref="QuantDot.UseF32Reference"/>) decode each
    /// row to F32 and use F32 activations.
    /// </summary>
    public void MatMul(ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        if (x.Length < n * Cols || y.Length < n * Rows) throw new ArgumentException("matmul buffers too small");
        if (n <= 0) return;
        if (packed is { } pk && !QuantDot.UseF32Reference) { MatMulPacked(pk.Pointer, x, y, n, threads); return; }
        var kernel = QuantDot.For(Type);
        fixed (float* px = x, py = y)
        {
            int chunk = Math.Max(1, Rows / (Math.Max(1, threads) * 16));
            if (n >= 8) chunk = Math.Max(1, Math.Min(chunk, 16));
            var job = new MatMulJob { W = Data, RowBytes = RowBytes, Type = Type, Rows = Rows, Cols = Cols, N = n, Y = py, RowsPerChunk = chunk };
            if (!kernel.IsValid)
            {
                job.X = (byte*)px; job.XBytes = Cols * sizeof(float);
                WorkerPool.For(threads, (Rows + chunk - 1) / chunk, ref job);
                return;
            }
            job.Dot = kernel.Dot; job.Dot4 = QuantDot.UseMultiToken ? kernel.Dot4 : null;
            job.Dot8 = QuantDot.UseMultiToken && QuantDot.UseEightToken ? kernel.Dot8 : null;
            if (kernel.Activation == GgmlType.F32)
            {
                job.X = (byte*)px; job.XBytes = Cols * sizeof(float);
                WorkerPool.For(threads, (Rows + chunk - 1) / chunk, ref job);
                return;
            }
            int xb = QuantDot.ActivationBytes(kernel.Activation, Cols);
            byte[] buf = ActivationScratch((long)xb * n);
            fixed (byte* pq = buf)
            {
                // X → (n, xb) activation rows in the kernel's format; split over the pool when the batch is large
                var quant = new QuantizeJob { Activation = kernel.Activation, X = px, Q = pq, Cols = Cols, XBytes = xb, N = n, TokensPerChunk = 4 };
                if (n >= 16 && threads > 1) WorkerPool.For(threads, (n + quant.TokensPerChunk - 1) / quant.TokensPerChunk, ref quant);
                else { quant.TokensPerChunk = n; quant.Execute(0); }
                job.X = pq; job.XBytes = xb;
                WorkerPool.For(threads, (Rows + chunk - 1) / chunk, ref job);
            }
        }
    }

    /// <summary>MatMul over the interleaved copy: activations in the layout's format, 8-row groups split over the pool.</summary>
    private void MatMulPacked(byte* p, ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        int groups = Rows / InterleavedLayout.GroupRows;
        int perChunk = Math.Max(1, groups / (Math.Max(1, threads) * 16));
        if (n >= 8) perChunk = Math.Max(2, Math.Min(perChunk & ~1, 4)); // even: the F16 prefill kernel takes groups in pairs
        else perChunk = (perChunk + 3) & ~3; // whole quads of groups: the F16 single-token kernel runs 4 groups' chains at once
        int xb = QuantDot.ActivationBytes(layout.Activation, Cols);
        // rows a multiple of 4 KiB apart would all map to the same L1 sets: 8 token rows and the weight stream then
        // evict each other (8-way cache); one cache line of padding staggers them
        if (xb % 4096 == 0) xb += 64;
        byte[] buf = ActivationScratch((long)xb * n);
        fixed (float* px = x, py = y)
        fixed (byte* pq = buf)
        {
            var quant = new QuantizeJob { Activation = layout.Activation, Scale = layout.ActivationScale, X = px, Q = pq, Cols = Cols, XBytes = xb, N = n, TokensPerChunk = 4 };
            if (n >= 16 && threads > 1) WorkerPool.For(threads, (n + quant.TokensPerChunk - 1) / quant.TokensPerChunk, ref quant);
            else { quant.TokensPerChunk = n; quant.Execute(0); }
            var job = new PackedJob
            {
                W = p, GroupBytes = layout.GroupBytes(Cols), Layout = layout, X = pq, XBytes = xb, Y = py, Rows = Rows, Cols = Cols, N = n,
                Groups = groups, GroupsPerChunk = perChunk, Simd = QuantDot.Avx2Path, MultiToken = QuantDot.UseMultiToken,
            };
            WorkerPool.For(threads, (groups + perChunk - 1) / perChunk, ref job);
        }
    }

    /// <summary>Row groups [c·GroupsPerChunk, ...) of an interleaved matrix against all N activation rows.</summary>
    private struct PackedJob : IPoolJob
    {
        public byte* W; public long GroupBytes; public InterleavedLayout Layout;
        public byte* X; public int XBytes;     // (N, XBytes) activation rows in the layout's format
        public float* Y;                       // (N, Rows)
        public int Rows, Cols, N, Groups, GroupsPerChunk;
        public bool Simd, MultiToken;

        public readonly void Execute(int c)
        {
            int g0 = c * GroupsPerChunk, g1 = Math.Min(Groups, g0 + GroupsPerChunk);
            if (!Simd)
            {
                for (int g = g0; g < g1; g++) Layout.DotScalar(W + g * GroupBytes, X, XBytes, Cols, N, Y + g * InterleavedLayout.GroupRows, Rows);
                return;
            }
            int t = 0;
            if (MultiToken)
            {
                // token sextets / quads outer: their activation rows stay in cache while the chunk's groups stream
                if (Layout.DotPair6 != null)
                    for (; t + 6 <= N; t += 6)
                    {
                        byte* xt = X + (long)t * XBytes;
                        float* yt = Y + (long)t * Rows;
                        int g = g0;
                        for (; g + 2 <= g1; g += 2) Layout.DotPair6(W + g * GroupBytes, GroupBytes, xt, XBytes, Cols, yt + g * InterleavedLayout.GroupRows, Rows);
                        if (g < g1) // an odd last group: 4 tokens, then 2 single ones (the same float chains)
                        {
                            Layout.Dot4(W + g * GroupBytes, xt, XBytes, Cols, yt + g * InterleavedLayout.GroupRows, Rows);
                            for (int u = 4; u < 6; u++) Layout.DotGroups(W + g * GroupBytes, GroupBytes, 1, xt + u * XBytes, Cols, yt + (long)u * Rows + g * InterleavedLayout.GroupRows);
                        }
                    }
                for (; t + 4 <= N; t += 4)
                {
                    byte* xt = X + (long)t * XBytes;
                    float* yt = Y + (long)t * Rows;
                    for (int g = g0; g < g1; g++) Layout.Dot4(W + g * GroupBytes, xt, XBytes, Cols, yt + g * InterleavedLayout.GroupRows, Rows);
                }
            }
            for (; t < N; t++)
                Layout.DotGroups(W + g0 * GroupBytes, GroupBytes, g1 - g0, X + (long)t * XBytes, Cols, Y + (long)t * Rows + g0 * InterleavedLayout.GroupRows);
        }
    }

    /// <summary>Quantizes activation rows [c·TokensPerChunk, ...) of X: (N, Cols) into Q: (N, XBytes).</summary>
    private struct QuantizeJob : IPoolJob
    {
        public GgmlType Activation;
        public float Scale;                     // 0 or 1: none; else F32 activations are multiplied by it (a power of two)
        public float* X; public byte* Q;
        public int Cols, XBytes, N, TokensPerChunk;

        public readonly void Execute(int c)
        {
            int t1 = Math.Min(N, (c + 1) * TokensPerChunk);
            for (int t = c * TokensPerChunk; t < t1; t++)
            {
                QuantDot.QuantizeActivation(Activation, X + (long)t * Cols, Q + (long)t * XBytes, Cols);
                if (Scale is not (0 or 1))
                {
                    var row = new Span<float>(Q + (long)t * XBytes, Cols);
                    TensorPrimitives.Multiply(row, Scale, row);
                }
            }
        }
    }

    private struct MatMulJob : IPoolJob
    {
        public byte* W; public long RowBytes; public GgmlType Type;
        public byte* X; public int XBytes;     // (N, XBytes) activation rows in the kernel's format
        public float* Y;                       // (N, Rows)
        public int Rows, Cols, N, RowsPerChunk;
        public delegate*<byte*, byte*, int, float> Dot; // null: decode rows to F32
        public delegate*<byte*, byte*, int, int, float*, void> Dot4; // optional 4-token kernel
        public delegate*<byte*, byte*, int, int, float*, void> Dot8; // optional 8-token kernel (with Dot4)

        public void Execute(int c)
        {
            int r0 = c * RowsPerChunk, r1 = Math.Min(Rows, r0 + RowsPerChunk);
            if (Dot != null)
            {
                int t = 0;
                if (Dot4 != null && N >= 4)
                {
                    // token quads outer, rows inner: the 4 activation rows stay in L1 while the chunk's weight rows stream
                    // (octets first where the type has an 8-token kernel)
                    if (Dot8 != null) t = Octets(r0, r1);
                    float* four = stackalloc float[4];
                    for (; t + 4 <= N; t += 4)
                    {
                        byte* xt = X + (long)t * XBytes;
                        float* yt = Y + (long)t * Rows;
                        for (int r = r0; r < r1; r++)
                        {
                            Dot4(W + r * RowBytes, xt, XBytes, Cols, four);
                            yt[r] = four[0]; yt[Rows + r] = four[1]; yt[2 * Rows + r] = four[2]; yt[3 * Rows + r] = four[3];
                        }
                    }
                }
                for (; t < N; t++)
                    for (int r = r0; r < r1; r++) Y[(long)t * Rows + r] = Dot(W + r * RowBytes, X + (long)t * XBytes, Cols);
                return;
            }
            float[] rowBuf = RowScratch(Cols);
            fixed (float* row = rowBuf)
            {
                for (int r = r0; r < r1; r++)
                {
                    RowDecoder.Decode(Type, new ReadOnlySpan<byte>(W + r * RowBytes, (int)RowBytes), new Span<float>(row, Cols));
                    for (int t = 0; t < N; t++)
                        Y[(long)t * Rows + r] = TensorPrimitives.Dot(new ReadOnlySpan<float>(row, Cols), new ReadOnlySpan<float>((float*)(X + (long)t * XBytes), Cols));
                }
            }
        }

        /// <summary>Token octets of rows [r0, r1) with the 8-token kernel; returns the tokens done (a multiple of 8).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private readonly int Octets(int r0, int r1)
        {
            float* eight = stackalloc float[8];
            int t = 0;
            for (; t + 8 <= N; t += 8)
            {
                byte* xt = X + (long)t * XBytes;
                float* yt = Y + (long)t * Rows;
                for (int r = r0; r < r1; r++)
                {
                    Dot8(W + r * RowBytes, xt, XBytes, Cols, eight);
                    for (int k = 0; k < 8; k++) yt[(long)k * Rows + r] = eight[k];
                }
            }
            return t;
        }
    }

    [ThreadStatic] private static float[]? scratch;
    private static float[] RowScratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 4096)];

    [ThreadStatic] private static byte[]? actScratch;
    private static byte[] ActivationScratch(long n) =>
        actScratch is { } s && s.Length >= n ? s : actScratch = GC.AllocateUninitializedArray<byte>((int)Math.Max(n, 1 << 16));
}

/// <summary>Decodes a row of any supported type to F32 (bit-exact with ggml's dequantizers).</summary>
public static class RowDecoder
{
    public static void Decode(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (type == GgmlType.F32) System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
        else Dequantize.Row(type, src[..(int)GgmlTypes.RowBytes(type, dst.Length)], dst);
    }
}
