using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;

namespace OpenWeights.Models.Common;

/// <summary>
/// How a layer's attention scores its keys. Scale: the query scale (1/√head_dim unless the family says otherwise, e.g.
/// Gemma's query_pre_attn_scalar). Window: a sliding window of this many keys ending at the query's own position
/// (key positions p with pos - p &lt; Window; 0 = every past key). Softcap: scores become cap·tanh(score/cap) (Gemma 2;
/// 0 = none). Chunk: chunked attention (Llama 4's RoPE layers): positions fall into chunks of this many and a query
/// attends only to the keys of its own chunk, (pos / Chunk)·Chunk .. pos (0 = no chunks). Unlike a sliding window, the
/// first query of a chunk sees one key. Sinks: (heads) a learned logit per query head that joins the softmax's denominator and nothing else
/// (gpt-oss's attention sinks: p_j = e^(s_j) / (Σ_k e^(s_k) + e^(sink_h)), so a head may attend to "nothing");
/// null = none.
/// </summary>
public readonly record struct AttentionParams(float Scale, int Window = 0, float Softcap = 0, int Chunk = 0, float[]? Sinks = null)
{
    public static AttentionParams Default(int headDim) => new(1.0f / MathF.Sqrt(headDim));

    /// <summary>The first key position a query at <paramref name="pos"/> attends to.</summary>
    public int FirstKey(int pos) => FirstKey(pos, Window, Chunk);

    /// <summary>The first key of a query at pos under a sliding window and / or chunks (each 0 = none).</summary>
    public static int FirstKey(int pos, int window, int chunk)
    {
        int lo = window > 0 ? Math.Max(0, pos - window + 1) : 0;
        return chunk > 0 ? Math.Max(lo, pos / chunk * chunk) : lo;
    }
}

/// <summary>Causal grouped-query attention over the KV cache.</summary>
public static unsafe class Attention
{
    /// <summary>Query tokens per block: consecutive tokens of one sequence share each key and value block read.</summary>
    public const int TokenBlock = 4;

    /// <summary>Keys per tile: 64 keys of head dimension 64 are 16 KiB, resident in L1 while a block's queries pass.</summary>
    public const int KeyTile = 64;

    /// <summary>Rows (query token × head) of an item up to which F16 / Q8_0 keys and values are read in place, widened in
    /// registers per row, rather than decoded once into an F32 tile that the rows then share (decode without grouping: 1).</summary>
    public const int DirectRows = 2;

    /// <summary>
    /// att[t, h] = softmax(q[t,h]·K[0..pos[t], h/g] / sqrt(d)) · V[0..pos[t], h/g], with g = heads/kvHeads and
    /// K, V the layer's cache of token t's own sequence. q, att: (n, heads*d); caches: (capacity, kvHeads*d).
    /// One pool item per (block of up to <see cref="TokenBlock"/> consecutive tokens of one sequence, KV head): the
    /// block's tokens × the g query heads of the KV head (up to 4·g rows) go over the keys and values a tile of
    /// <see cref="KeyTile"/> at a time, so each tile is read from L2 once per block instead of once per row. Per row
    /// the float operations are those of one row alone (scores, softmax, then the value FMA chains in key order).
    /// With few items (decode) an item takes a share of a block's rows instead. Scores use a per-thread scratch.
    /// An F16 or Q8_0 cache is read the same way: each tile of keys (and of values) is decoded to F32 once per item into a
    /// per-thread scratch of KeyTile × d floats, which the F32 kernels then read for every row of the block (so the result
    /// is bit for bit that of an F32 cache holding the decoded values).
    /// </summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads)
        => Causal(q, caches, pos, layer, att, n, heads, kvHeads, d, threads, AttentionParams.Default(d));

    /// <summary>As above, with the layer's query scale, sliding window or chunk and score soft-cap (<see cref="AttentionParams"/>):
    /// row r attends to keys FirstKey(pos) .. pos.</summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads, AttentionParams p)
    {
        // blocks of consecutive tokens of the same sequence at consecutive positions
        var starts = BlockStarts(n + 1);
        int blocks = 0;
        for (int t = 0; t < n; blocks++)
        {
            starts[blocks] = t;
            int u = t + 1;
            while (u < n && u - t < TokenBlock && caches[u] == caches[t] && pos[u] == pos[u - 1] + 1) u++;
            t = u;
        }
        starts[blocks] = n;
        // few items (decode: one block) would leave threads idle: then each item takes a share of a block's rows
        int g = heads / kvHeads, parts = blocks * kvHeads < 4 * threads ? g : 1;
        var job = new Job
        {
            Q = q, Caches = caches, Pos = pos, Layer = layer, Att = att, Heads = heads, KvHeads = kvHeads, Group = g, Parts = parts,
            KvDim = kvHeads * d, QDim = heads * d, D = d, Scale = p.Scale, Window = p.Window, Chunk = p.Chunk, Softcap = p.Softcap, Sinks = p.Sinks, Starts = starts,
        };
        // the calling thread runs items too, but which ones depends on the pool's timing: its scratches exist before the first
        // item, so a step never allocates on it (decode steps allocate nothing on the calling thread)
        TileScratch(KeyTile * d);
        Scratch(1024);
        WorkerPool.For(threads, blocks * kvHeads * parts, ref job);
    }

    private struct Job : IPoolJob
    {
        public float[] Q, Att;
        public float[]? Sinks;   // (heads) or null
        public KvCache?[] Caches;
        public int[] Pos, Starts;
        public int Layer, Heads, KvHeads, Group, Parts, KvDim, QDim, D, Window, Chunk;
        public float Scale, Softcap;

        /// <summary>The first key of row r's window or chunk (0 without either).</summary>
        private readonly int Lo(int r, int t0) => AttentionParams.FirstKey(Pos[t0 + r / Group], Window, Chunk);

        /// <summary>score = cap·tanh(score/cap) over a row's scores (Gemma 2's attention logit soft-capping).</summary>
        private readonly void Cap(Span<float> sc)
        {
            if (Softcap <= 0) return;
            TensorPrimitives.Multiply(sc, 1f / Softcap, sc);
            TensorPrimitives.Tanh(sc, sc);
            TensorPrimitives.Multiply(sc, Softcap, sc);
        }

        public readonly void Execute(int index)
        {
            int part = index % Parts, bk = index / Parts, b = bk / KvHeads, kvh = bk % KvHeads, d = D, kvDim = KvDim, g = Group;
            int t0 = Starts[b], tokens = Starts[b + 1] - t0, rows = tokens * g;
            int r0 = rows * part / Parts, r1 = rows * (part + 1) / Parts; // this item's rows of the block
            if (r0 >= r1) return;
            var cache = Caches[t0]!;
            int maxLen = Pos[t0 + (r1 - 1) / g] + 1, ld = maxLen; // scores: (rows, ld)
            var sc = Scratch((r1 - r0) * ld);
            var tile = TileScratch(KeyTile * d);
            // the head's first element in a position's row (Q8_0: d is a multiple of 32, so a block start)
            byte* kHead = cache.KData(Layer) + KvCacheTypes.Bytes(cache.KType, kvh * d), vHead = cache.VData(Layer) + KvCacheTypes.Bytes(cache.VType, kvh * d);
            if (!AttentionKernels.Supported(d))
            {
                for (int r = r0; r < r1; r++) Reference(r, t0, kvh, cache, kHead, vHead, tile, sc.AsSpan((r - r0) * ld, ld));
                return;
            }
            int minLo = Lo(r0, t0); // rows are in position order: the first row's window starts first
            // scores: key tiles outer, the rows inner (row r = token t0 + r / g, head kvh·g + r % g); row r's keys lo..len-1
            // an F16 / Q8_0 tile read by at most DirectRows rows is read in place (widened in registers) rather than decoded
            // into the scratch first: the same values and operations, so the same bits
            bool kDirect = cache.KType != GgmlType.F32 && r1 - r0 <= DirectRows, vDirect = cache.VType != GgmlType.F32 && r1 - r0 <= DirectRows;
            for (int j0 = minLo; j0 < maxLen; j0 += KeyTile)
            {
                int stride = 0;
                var kt = kDirect ? default : Tile(cache.KType, kHead, cache.KRowBytes, j0, Math.Min(KeyTile, maxLen - j0), tile, out stride);
                for (int r = r0; r < r1; r++)
                {
                    int len = Pos[t0 + r / g] + 1, a = Math.Max(j0, Lo(r, t0)), m = Math.Min(j0 + KeyTile, len) - a;
                    if (m <= 0) continue;
                    if (kDirect) AttentionKernels.Scores(cache.KType, QRow(r, t0, kvh), kHead + (long)a * cache.KRowBytes, cache.KRowBytes, m, Scale, sc.AsSpan((r - r0) * ld + a, m));
                    else AttentionKernels.Scores(QRow(r, t0, kvh), kt[((a - j0) * stride)..], stride, m, Scale, sc.AsSpan((r - r0) * ld + a, m));
                }
            }
            for (int r = r0; r < r1; r++)
            {
                int lo = Lo(r, t0), len = Pos[t0 + r / g] + 1;
                var row = sc.AsSpan((r - r0) * ld + lo, len - lo);
                Cap(row);
                Softmax(row, r, kvh);
                Out(r, t0, kvh).Clear();
            }
            // values: tiles outer, rows inner; each output element's FMA chain runs over the keys in order
            for (int j0 = minLo; j0 < maxLen; j0 += KeyTile)
            {
                int stride = 0;
                var vt = vDirect ? default : Tile(cache.VType, vHead, cache.VRowBytes, j0, Math.Min(KeyTile, maxLen - j0), tile, out stride);
                for (int r = r0; r < r1; r++)
                {
                    int len = Pos[t0 + r / g] + 1, a = Math.Max(j0, Lo(r, t0)), m = Math.Min(j0 + KeyTile, len) - a;
                    if (m <= 0) continue;
                    if (vDirect) AttentionKernels.WeightedSumAccumulate(cache.VType, sc.AsSpan((r - r0) * ld + a, m), vHead + (long)a * cache.VRowBytes, cache.VRowBytes, Out(r, t0, kvh));
                    else AttentionKernels.WeightedSumAccumulate(sc.AsSpan((r - r0) * ld + a, m), vt[((a - j0) * stride)..], stride, Out(r, t0, kvh));
                }
            }
        }

        /// <summary>
        /// Positions j0 .. j0+count-1 of one head (from <paramref name="head"/>, rows <paramref name="rowBytes"/> apart) as F32
        /// rows <paramref name="stride"/> floats apart, the head's d values at the start of each: an F32 cache in place
        /// (stride KvDim), an F16 / Q8_0 one decoded into <paramref name="tile"/> (stride d).
        /// </summary>
        private readonly ReadOnlySpan<float> Tile(GgmlType type, byte* head, int rowBytes, int j0, int count, float[] tile, out int stride)
        {
            byte* first = head + (long)j0 * rowBytes;
            if (type == GgmlType.F32) { stride = KvDim; return new ReadOnlySpan<float>(first, (count - 1) * KvDim + D); }
            stride = D;
            fixed (float* pt = tile) AttentionKernels.DecodeRows(type, first, rowBytes, count, D, pt);
            return tile.AsSpan(0, count * D);
        }

        /// <summary>Row r's softmax, with its query head's sink in the denominator when the layer has sinks.</summary>
        private readonly void Softmax(Span<float> row, int r, int kvh)
        {
            if (Sinks is null) Ops.Softmax(row);
            else Ops.SoftmaxWithSink(row, Sinks[kvh * Group + r % Group]);
        }

        private readonly Span<float> QRow(int r, int t0, int kvh) => Q.AsSpan((t0 + r / Group) * QDim + (kvh * Group + r % Group) * D, D);
        private readonly Span<float> Out(int r, int t0, int kvh) => Att.AsSpan((t0 + r / Group) * QDim + (kvh * Group + r % Group) * D, D);

        /// <summary>One row without SIMD kernels (head dimensions that are not a multiple of 8), a key or value decoded at a time.</summary>
        private readonly void Reference(int r, int t0, int kvh, KvCache cache, byte* kHead, byte* vHead, float[] buf, Span<float> sc)
        {
            int d = D, len = Pos[t0 + r / Group] + 1, lo = Lo(r, t0);
            var qv = QRow(r, t0, kvh);
            var row = buf.AsSpan(0, d);
            sc = sc[..(len - lo)];
            for (int j = lo; j < len; j++)
            {
                Tile(cache.KType, kHead, cache.KRowBytes, j, 1, buf, out _).CopyTo(row);
                sc[j - lo] = TensorPrimitives.Dot(qv, row) * Scale;
            }
            Cap(sc);
            Softmax(sc, r, kvh);
            var o = Out(r, t0, kvh);
            o.Clear();
            for (int j = lo; j < len; j++)
            {
                Tile(cache.VType, vHead, cache.VRowBytes, j, 1, buf, out _).CopyTo(row);
                TensorPrimitives.MultiplyAdd(row, sc[j - lo], o, o);
            }
        }
    }

    [ThreadStatic] private static float[]? scratch;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] Scratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 1024)];

    [ThreadStatic] private static float[]? tileScratch;
    /// <summary>A thread's tile of decoded keys or values: (KeyTile, d), 32 KiB at d = 128.</summary>
    private static float[] TileScratch(int n) => tileScratch is { } s && s.Length >= n ? s : tileScratch = new float[n];

    [ThreadStatic] private static int[]? starts;
    private static int[] BlockStarts(int n) => starts is { } s && s.Length >= n ? s : starts = new int[Math.Max(n, 64)];
}
