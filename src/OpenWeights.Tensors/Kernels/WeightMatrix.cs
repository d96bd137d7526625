using System.Numerics.Tensors;
using System.Runtime.InteropServices;
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
            int chunk = RowsPerChunk(n, threads);
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

    /// <summary>
    /// Several MatMuls run as one pool job: Y_i = X_i·W_iᵀ for each part i, X_i: (N_i, W_i.Cols) at x[XOffset..],
    /// Y_i: (N_i, W_i.Rows) at y[YOffset..]. The parts' activation rows are converted once (parts that read the same rows
    /// in the same format share one conversion: an expert's gate and up), then the row chunks of all parts are the items
    /// of a single job, so the threads balance over all of them and a mixture-of-experts decode step costs one
    /// dispatch for its k experts' gate and up instead of 2k. Each part's result is bit-identical to its own
    /// <see cref="MatMul"/> (the same kernels on the same activation rows).
    /// </summary>
    public static void MatMulMany(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<MatMulPart> parts, int threads)
    {
        if (parts.Length == 0) return;
        if (QuantDot.UseF32Reference || parts.Length == 1)
        {
            foreach (var part in parts) part.W.MatMul(x[part.XOffset..], part.Output is { } own ? own.AsSpan(part.YOffset) : y[part.YOffset..], part.N, threads);
            return;
        }
        var plan = manyScratch ??= new ManyPlan();
        plan.Ensure(parts.Length);
        // 1. each part's activation format and the bytes of its converted rows (shared where rows and format agree)
        long qBytes = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            var (w, n) = (parts[i].W, parts[i].N);
            int yLength = parts[i].Output is { } own ? own.Length : y.Length;
            if (n <= 0 || x.Length < parts[i].XOffset + (long)n * w.Cols || yLength < parts[i].YOffset + (long)n * w.Rows)
                throw new ArgumentException("matmul buffers too small");
            ref var d = ref plan.Parts[i];
            d = default;
            if (w.packed is not null) { d.Activation = w.layout.Activation; d.Scale = w.layout.ActivationScale; d.XBytes = QuantDot.ActivationBytes(d.Activation, w.Cols); if (d.XBytes % 4096 == 0) d.XBytes += 64; }
            else
            {
                var kernel = QuantDot.For(w.Type);
                d.Activation = kernel.IsValid ? kernel.Activation : GgmlType.F32;
                d.XBytes = d.Activation == GgmlType.F32 ? w.Cols * sizeof(float) : QuantDot.ActivationBytes(d.Activation, w.Cols);
            }
            d.Shared = -1;
            if (d.Activation == GgmlType.F32) continue;
            for (int j = 0; j < i; j++)
            {
                ref var o = ref plan.Parts[j];
                if (o.Activation == d.Activation && o.Scale == d.Scale && o.XBytes == d.XBytes && parts[j].XOffset == parts[i].XOffset
                    && parts[j].N == n && parts[j].W.Cols == w.Cols) { d.Shared = o.Shared >= 0 ? o.Shared : j; break; }
            }
            if (d.Shared < 0) { d.QOffset = qBytes; qBytes += (long)d.XBytes * n; }
        }
        byte[] buf = ActivationScratch(Math.Max(1, qBytes));
        // parts with their own output arrays: pinned for the job (a handle each; nothing allocated on the GC heap)
        for (int i = 0; i < parts.Length; i++)
            plan.Outputs[i] = parts[i].Output is { } own ? GCHandle.Alloc(own, GCHandleType.Pinned) : default;
        try
        {
        fixed (float* px = x, py = y)
        fixed (byte* pq = buf)
        fixed (ManyItem* items = plan.Items)
        {
            // 2. convert the activation rows: one job over (part, 4 tokens)
            int quantItems = 0, totalRows = 0;
            for (int i = 0; i < parts.Length; i++)
            {
                ref var d = ref plan.Parts[i];
                if (d.Activation == GgmlType.F32 || d.Shared >= 0) continue;
                items[quantItems++] = new ManyItem
                {
                    Quant = new QuantizeJob { Activation = d.Activation, Scale = d.Scale, X = px + parts[i].XOffset, Q = pq + d.QOffset, Cols = parts[i].W.Cols, XBytes = d.XBytes, N = parts[i].N, TokensPerChunk = 4 },
                };
                totalRows += parts[i].N;
            }
            if (quantItems > 0)
            {
                var qj = new ManyJob { Items = items, Count = quantItems, Quantize = true };
                int chunks = 0;
                for (int i = 0; i < quantItems; i++) { items[i].First = chunks; chunks += (items[i].Quant.N + 3) / 4; }
                if (totalRows >= 16 && threads > 1) WorkerPool.For(threads, chunks, ref qj);
                else for (int c = 0; c < chunks; c++) qj.Execute(c);
            }
            // 3. the row chunks of every part: one job
            float* shared = py;
            float* OutputOf(int i) => plan.Outputs[i].IsAllocated ? (float*)plan.Outputs[i].AddrOfPinnedObject() : shared;
            int total = 0;
            for (int i = 0; i < parts.Length; i++)
            {
                ref var d = ref plan.Parts[i];
                var w = parts[i].W;
                int n = parts[i].N;
                byte* q = d.Activation == GgmlType.F32 ? (byte*)(px + parts[i].XOffset) : pq + plan.Parts[d.Shared >= 0 ? d.Shared : i].QOffset;
                ref var it = ref items[i];
                it = new ManyItem { First = total };
                if (w.packed is { } pk)
                {
                    int groups = w.Rows / InterleavedLayout.GroupRows, perChunk = w.GroupsPerChunk(n, threads);
                    it.Packed = true;
                    it.Group = new PackedJob
                    {
                        W = pk.Pointer, GroupBytes = w.layout.GroupBytes(w.Cols), Layout = w.layout, X = q, XBytes = d.XBytes, Y = OutputOf(i) + parts[i].YOffset,
                        Rows = w.Rows, Cols = w.Cols, N = n, Groups = groups, GroupsPerChunk = perChunk, Simd = QuantDot.Avx2Path, MultiToken = QuantDot.UseMultiToken,
                    };
                    total += (groups + perChunk - 1) / perChunk;
                }
                else
                {
                    var kernel = QuantDot.For(w.Type);
                    int chunk = w.RowsPerChunk(n, threads);
                    it.Row = new MatMulJob { W = w.Data, RowBytes = w.RowBytes, Type = w.Type, Rows = w.Rows, Cols = w.Cols, N = n, Y = OutputOf(i) + parts[i].YOffset, RowsPerChunk = chunk, X = q, XBytes = d.XBytes };
                    if (kernel.IsValid)
                    {
                        it.Row.Dot = kernel.Dot; it.Row.Dot4 = QuantDot.UseMultiToken ? kernel.Dot4 : null;
                        it.Row.Dot8 = QuantDot.UseMultiToken && QuantDot.UseEightToken ? kernel.Dot8 : null;
                    }
                    total += (w.Rows + chunk - 1) / chunk;
                }
            }
            var job = new ManyJob { Items = items, Count = parts.Length };
            WorkerPool.For(threads, total, ref job);
        }
        }
        finally
        {
            for (int i = 0; i < parts.Length; i++) if (plan.Outputs[i].IsAllocated) plan.Outputs[i].Free();
        }
    }

    /// <summary>Rows per work item of a row-kernel MatMul of n tokens.</summary>
    private int RowsPerChunk(int n, int threads)
    {
        int chunk = Math.Max(1, Rows / (Math.Max(1, threads) * 16));
        return n >= 8 ? Math.Max(1, Math.Min(chunk, 16)) : chunk;
    }

    /// <summary>8-row groups per work item of an interleaved MatMul of n tokens.</summary>
    private int GroupsPerChunk(int n, int threads)
    {
        int perChunk = Math.Max(1, Rows / InterleavedLayout.GroupRows / (Math.Max(1, threads) * 16));
        if (n >= 8) return Math.Max(2, Math.Min(perChunk & ~1, 4)); // even: the F16 prefill kernel takes groups in pairs
        return (perChunk + 3) & ~3; // whole quads of groups: the F16 single-token kernel runs 4 groups' chains at once
    }

    /// <summary>A part's activation rows in <see cref="MatMulMany"/>: their format, and where they are converted to.</summary>
    private struct ManyPart
    {
        public GgmlType Activation; public float Scale; public int XBytes;
        public long QOffset;   // of its converted rows in the scratch
        public int Shared;     // the earlier part whose converted rows it reads, or -1
    }

    /// <summary>One part of a <see cref="ManyJob"/>: its first item and the job that runs its chunks.</summary>
    private struct ManyItem
    {
        public int First;
        public bool Packed;
        public MatMulJob Row;
        public PackedJob Group;
        public QuantizeJob Quant;
    }

    /// <summary>Items [0, Σ chunks) of several parts: item i runs chunk i − First of the part whose range holds it.</summary>
    private struct ManyJob : IPoolJob
    {
        public ManyItem* Items; public int Count; public bool Quantize;

        public readonly void Execute(int i)
        {
            int lo = 0, hi = Count - 1;
            while (lo < hi) { int mid = (lo + hi + 1) >> 1; if (Items[mid].First <= i) lo = mid; else hi = mid - 1; }
            ref var it = ref Items[lo];
            int c = i - it.First;
            if (Quantize) it.Quant.Execute(c);
            else if (it.Packed) it.Group.Execute(c);
            else it.Row.Execute(c);
        }
    }

    private sealed class ManyPlan
    {
        public ManyPart[] Parts = [];
        public ManyItem[] Items = [];
        public GCHandle[] Outputs = [];
        public void Ensure(int n)
        {
            if (Parts.Length < n) { Parts = new ManyPart[n]; Items = new ManyItem[n]; Outputs = new GCHandle[n]; }
        }
    }

    [ThreadStatic] private static ManyPlan? manyScratch;

    /// <summary>MatMul over the interleaved copy: activations in the layout's format, 8-row groups split over the pool.</summary>
    private void MatMulPacked(byte* p, ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        int groups = Rows / InterleavedLayout.GroupRows;
        int perChunk = GroupsPerChunk(n, threads);
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

/// <summary>One product of <see cref="WeightMatrix.MatMulMany"/>: Y = X·Wᵀ, X: (N, W.Cols) from offset XOffset of the
/// batch's input, Y: (N, W.Rows) from offset YOffset of its output, or of <paramref name="Output"/> when given (a part with
/// its own array: Q, K and V of one input; offsets in floats).</summary>
public readonly record struct MatMulPart(WeightMatrix W, int XOffset, int YOffset, int N, float[]? Output = null);

/// <summary>Decodes a row of any supported type to F32 (bit-exact with ggml's dequantizers).</summary>
public static class RowDecoder
{
    public static void Decode(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (type == GgmlType.F32) System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
        else Dequantize.Row(type, src[..(int)GgmlTypes.RowBytes(type, dst.Length)], dst);
    }
}
