using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Memory;
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
    /// <summary>Query tokens per block: consecutive tokens of one sequence share each key and value tile read (and an F16 /
    /// Q8_0 tile's decoding to F32: 16 tokens × g heads amortize it where 4 did not, `bench --attention-rows`). The block's
    /// scores are kept for one softmax chunk at a time, (16·g, <see cref="SoftmaxChunk"/>) floats per thread at most: 384 KiB
    /// for SmolLM2 (g = 3) whatever the context. Settable for benchmarks.</summary>
    public static int TokenBlock = 16;

    /// <summary>Keys per tile: 64 keys of head dimension 64 are 16 KiB, resident in L1 while a block's queries pass.</summary>
    public const int KeyTile = 64;

    /// <summary>Keys per softmax chunk: a row's keys fall into chunks at fixed absolute boundaries (keys c·SoftmaxChunk ..
    /// (c+1)·SoftmaxChunk − 1), each normalized and weighed on its own and merged into the row's output in order (an online
    /// softmax: the order of operations is in Causal's summary).
    /// A positive multiple of <see cref="KeyTile"/>; settable for tests and benchmarks (a step reads it once).</summary>
    public static int SoftmaxChunk = 2048;

    /// <summary>Rows (query token × head) of an item up to which F16 / Q8_0 keys and values are read in place, widened in
    /// registers (one kernel pass holds them all), rather than decoded once into an F32 tile that more rows then share.</summary>
    public static int DirectRows = AttentionKernels.MaxRows;

    /// <summary>
    /// att[t, h] = softmax(q[t,h]·K[0..pos[t], h/g] / sqrt(d)) · V[0..pos[t], h/g], with g = heads/kvHeads and
    /// K, V the layer's cache of token t's own sequence. q, att: (n, heads*d); caches: (capacity, kvHeads*d).
    /// One pool item per (block of up to <see cref="TokenBlock"/> consecutive tokens of one sequence, KV head): the
    /// block's tokens × the g query heads of the KV head (up to TokenBlock·g rows) go over the keys and values a tile of
    /// <see cref="KeyTile"/> at a time, so each tile is read from L2 once per block instead of once per row; within a tile,
    /// rows with the same keys (a token's g heads; tokens whose ranges cover the tile) share each key and value load in
    /// passes of up to <see cref="AttentionKernels.MaxRows"/> rows. With few items (decode) an item takes a share of a
    /// block's rows, or the step splits over the keys.
    /// An F16 or Q8_0 cache read by more rows than one pass holds has each tile of keys (and of values) decoded to F32 once
    /// per item into a per-thread scratch of KeyTile × d floats, which the F32 kernels then read for every row of the block;
    /// fewer rows read it in place, widened in registers: the same values either way (bit for bit an F32 cache holding them).
    /// The softmax is online over chunks of C = <see cref="SoftmaxChunk"/> keys at fixed absolute boundaries; per row (its
    /// keys lo..len-1, query head h) and chunk c that holds some of them, in chunk order:
    /// <code>
    /// s_j = cap((q·k_j)·scale)                   over the row's keys j of the chunk           (≤ C scores)
    /// m_c = max_j s_j;  p_j = e^(s_j − m_c) in place;  l_c = Σ_j p_j in double    on the row's first chunk the sink joins
    /// p_j = p_j·(float)(1/l_c)                                                       m_c and then l_c: l_c += e^(sink − m_c)
    /// acc = Σ_j p_j·v_j                          each element's FMA chain in key order, from 0  (d)
    /// first chunk:  o = acc;  m = m_c;  l = l_c
    /// later:        m' = max(m, m_c);  a = e^(m − m');  b = e^(m_c − m');  l' = l·a + l_c·b (double)
    ///               o = o·(float)(l·a / l') + acc·(float)(l_c·b / l');  m = m';  l = l'
    /// </code>
    /// (e^ is <see cref="FastExp"/>'s.) o stays the softmax average of the keys so far: a row within one chunk gets exactly
    /// the two-pass softmax (<see cref="Ops.Softmax"/>, <see cref="Ops.SoftmaxWithSink"/>) and weighted sum, the operations
    /// of ggml's soft_max and V product that llama.cpp's logits are compared with. Per row these float operations are those
    /// of one row alone, whichever rows share its kernel pass, item or thread, and the chunks depend on the key positions
    /// alone: results do not depend on the batch, the thread count, <see cref="TokenBlock"/> or <see cref="DirectRows"/> (a
    /// prefill block and decode steps give the same bits). A thread's scores take (rows, C) floats at most, whatever the
    /// context.
    /// </summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads)
        => Causal(q, caches, pos, layer, att, n, heads, kvHeads, d, threads, AttentionParams.Default(d));

    /// <summary>As above, with the layer's query scale, sliding window or chunk and score soft-cap (<see cref="AttentionParams"/>):
    /// row r attends to keys FirstKey(pos) .. pos.</summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads, AttentionParams p)
    {
        int softmaxKeys = SoftmaxChunk;
        if (softmaxKeys <= 0 || softmaxKeys % KeyTile != 0)
            throw new InvalidOperationException($"Attention.SoftmaxChunk ({softmaxKeys}) must be a positive multiple of {KeyTile}");
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
        // few items (decode: one block) would leave threads idle: then over long key ranges the step splits (SplitKeys), and
        // over short ones each item takes a share of a block's rows
        int g = heads / kvHeads, maxLen = 0;
        bool few = blocks * kvHeads < 4 * threads;
        for (int t = 0; t < n; t++) maxLen = Math.Max(maxLen, pos[t] + 1);
        var job = new Job
        {
            Q = q, Caches = caches, Pos = pos, Layer = layer, Att = att, Heads = heads, KvHeads = kvHeads, Group = g, Parts = few ? g : 1,
            KvDim = kvHeads * d, QDim = heads * d, D = d, Scale = p.Scale, Window = p.Window, Chunk = p.Chunk, Softcap = p.Softcap, Sinks = p.Sinks,
            SoftmaxKeys = softmaxKeys, Starts = starts,
        };
        // the calling thread runs items too, but which ones depends on the pool's timing: its scratches exist before the first
        // item, so a step never allocates on it (decode steps allocate nothing on the calling thread)
        TileScratch(KeyTile * d);
        Scratch(1024);
        Sums(1024);
        Runs(64);
        if (few && threads > 1 && maxLen >= SplitKeys && AttentionKernels.Supported(d)) { Split(ref job, n, blocks, maxLen, threads); return; }
        WorkerPool.For(threads, blocks * kvHeads * job.Parts, ref job);
    }

    /// <summary>Key length from which a step with few (block, KV head) items splits: 2 threads stay busy on 1-2 KV heads.</summary>
    public static int SplitKeys = 1024;

    private const int SplitScores = 1, SplitSoftmax = 2, SplitValues = 3;

    /// <summary>
    /// A step of few (block, KV head) items over long key ranges (decode at long contexts with few KV heads) in three pool
    /// passes over a shared (tokens × heads, maxLen) score buffer: (block, KV head, key segment) items score all the block's
    /// rows on their segment (each key read once for the group's heads), (token, head) items run each row's softmax chunk
    /// by chunk (p in place, and the row's <see cref="Running"/> after each chunk into a shared (tokens × heads, chunks)
    /// array), (block, KV head, slice of the head's dims) items weigh the values chunk by chunk and merge them with those
    /// states' factors. Every score, softmax and output element is computed by the same operations in the same order as in
    /// one item (scores are per key, the chunks are the same, each output element's FMA chain runs over a chunk's keys in
    /// order and its merges use the same factors), so the result is bit for bit the unsplit one, whatever the thread count
    /// and split points.
    /// </summary>
    private static void Split(ref Job job, int n, int blocks, int maxLen, int threads)
    {
        int items = blocks * job.KvHeads, target = 8 * threads;
        int segments = (target + items - 1) / items, segKeys = ((maxLen + segments - 1) / segments + KeyTile - 1) / KeyTile * KeyTile;
        job.Ld = maxLen; job.SegKeys = segKeys; job.Segments = (maxLen + segKeys - 1) / segKeys;
        job.Chunks = (maxLen + job.SoftmaxKeys - 1) / job.SoftmaxKeys;
        job.Shared = SharedScores(n * job.Heads * maxLen);
        job.SharedRuns = SharedRuns(n * job.Heads * job.Chunks);
        int slice = job.D; // halve while few items and the halves stay whole Q8_0 blocks
        while (items * (job.D / slice) < 4 * threads && slice % 64 == 0) slice /= 2;
        job.SliceDims = slice;
        job.Phase = SplitScores; WorkerPool.For(threads, items * job.Segments, ref job);
        job.Phase = SplitSoftmax; WorkerPool.For(threads, n * job.Heads, ref job);
        job.Phase = SplitValues; WorkerPool.For(threads, items * (job.D / slice), ref job);
    }

    [ThreadStatic] private static float[]? sharedScores; // the calling thread's: steps may run on several threads at once
    /// <summary>The split steps' score buffer, kept across steps (a decode step allocates nothing once it has grown).</summary>
    private static float[] SharedScores(int n) => GrowingScratch.Get(ref sharedScores, n, 4096);

    [ThreadStatic] private static Running[]? sharedRuns; // the calling thread's, as above
    /// <summary>The split steps' softmax states, (tokens × heads, chunks), kept across steps.</summary>
    private static Running[] SharedRuns(int n) => GrowingScratch.Get(ref sharedRuns, n, 256);

    /// <summary>
    /// A row's online softmax after its chunks so far: M, the largest of their scores (and the sink's logit); L, the sum of
    /// e^(s − M) over their keys (and the sink), in double. First, A and B tell how the last chunk's weighted average acc
    /// merges into the row's output o, the average over the earlier chunks: o = acc when it was the row's first chunk, else
    /// o = o·A + acc·B (A, B: the shares of the earlier chunks and of this one in L).
    /// </summary>
    private struct Running
    {
        public float M, A, B;
        public double L;
        public bool First;
    }

    private struct Job : IPoolJob
    {
        public float[] Q, Att;
        public float[]? Sinks;   // (heads) or null
        public KvCache?[] Caches;
        public int[] Pos, Starts;
        public int Layer, Heads, KvHeads, Group, Parts, KvDim, QDim, D, Window, Chunk, SoftmaxKeys;
        public float Scale, Softcap;
        // a split step: which phase runs, the shared scores (tokens × heads, Ld), keys per segment, softmax chunks per row
        // (of the longest), the rows' softmax states after each chunk (tokens × heads, Chunks) and dims per slice
        public int Phase, Ld, SegKeys, Segments, Chunks, SliceDims;
        public float[]? Shared;
        public Running[]? SharedRuns;

        /// <summary>The first key of row r's window or chunk (0 without either).</summary>
        private readonly int Lo(int r, int t0) => AttentionParams.FirstKey(Pos[t0 + r / Group], Window, Chunk);

        /// <summary>Row r's key count: its keys are Lo .. Len-1.</summary>
        private readonly int Len(int r, int t0) => Pos[t0 + r / Group] + 1;

        /// <summary>Row r's query head.</summary>
        private readonly int Head(int r, int kvh) => kvh * Group + r % Group;

        /// <summary>The first key of the softmax chunk that holds key j.</summary>
        private readonly int ChunkStart(int j) => j / SoftmaxKeys * SoftmaxKeys;

        /// <summary>Row r's keys in the softmax chunk from key k0: the first and one past the last (none when A ≥ E).</summary>
        private readonly (int A, int E) KeysIn(int r, int t0, int k0) => (Math.Max(k0, Lo(r, t0)), Math.Min(k0 + SoftmaxKeys, Len(r, t0)));

        /// <summary>score = cap·tanh(score/cap) over a row's scores (Gemma 2's attention logit soft-capping).</summary>
        private readonly void Cap(Span<float> sc)
        {
            if (Softcap <= 0) return;
            TensorPrimitives.Multiply(sc, 1f / Softcap, sc);
            TensorPrimitives.Tanh(sc, sc);
            TensorPrimitives.Multiply(sc, Softcap, sc);
        }

        /// <summary>
        /// The rows of one (block, KV head) item (or its share of them), a softmax chunk at a time: the chunk's scores into
        /// a (rows, min(C, keys)) scratch, each row's <see cref="ChunkSoftmax"/>, the values weighed into a (rows, d) scratch
        /// (from zero: the chunk's weighted averages), each row's <see cref="Merge"/> into its output.
        /// </summary>
        public readonly void Execute(int index)
        {
            switch (Phase)
            {
                case SplitScores: ExecuteScores(index); return;
                case SplitSoftmax: ExecuteSoftmax(index); return;
                case SplitValues: ExecuteValues(index); return;
            }
            int part = index % Parts, bk = index / Parts, b = bk / KvHeads, kvh = bk % KvHeads, d = D;
            int t0 = Starts[b], rows = (Starts[b + 1] - t0) * Group;
            int r0 = rows * part / Parts, r1 = rows * (part + 1) / Parts; // this item's rows of the block
            if (r0 >= r1) return;
            int minLo = Lo(r0, t0), maxLen = Len(r1 - 1, t0); // rows are in position order: the first row's window starts first
            int ld = Math.Min(SoftmaxKeys, maxLen);
            var sc = Scratch((r1 - r0) * ld); // (rows, ld): one chunk's scores, then its p
            var acc = Sums((r1 - r0) * d);    // (rows, d): one chunk's weighted averages
            var run = Runs(r1 - r0);          // (rows): each row's softmax so far
            var tile = TileScratch(KeyTile * d);
            if (!AttentionKernels.Supported(d))
            {
                for (int r = r0; r < r1; r++) Reference(r, t0, kvh, tile, sc.AsSpan((r - r0) * ld, ld), acc.AsSpan((r - r0) * d, d));
                return;
            }
            for (int k0 = ChunkStart(minLo); k0 < maxLen; k0 += SoftmaxKeys)
            {
                int j0 = Math.Max(k0, minLo), j1 = Math.Min(k0 + SoftmaxKeys, maxLen);
                var own = (r0, ld, k0);
                ScoreKeys(t0, kvh, r0, r1, j0, j1, sc, own, tile);
                for (int r = r0; r < r1; r++)
                {
                    var (a, e) = KeysIn(r, t0, k0);
                    if (a < e) ChunkSoftmax(sc.AsSpan(ScoreBase(r, t0, kvh, own) + a, e - a), Head(r, kvh), k0 <= Lo(r, t0), ref run[r - r0]);
                }
                WeightValues(t0, kvh, r0, r1, j0, j1, 0, d, sc, own, tile, acc);
                for (int r = r0; r < r1; r++)
                {
                    var (a, e) = KeysIn(r, t0, k0);
                    if (a < e) Merge(Out(r, t0, kvh), acc.AsSpan((r - r0) * d, d), run[r - r0]);
                }
            }
        }

        /// <summary>Where the scores of row r start in the score buffer, as the index of key 0 (the row's key j is at this + j):
        /// its own (rows, ld) scratch of the chunk from key <c>origin</c>, from row <c>first</c> on, or the shared
        /// (tokens × heads, Ld) buffer of a split step (all keys).</summary>
        private readonly int ScoreBase(int r, int t0, int kvh, (int First, int Ld, int Origin) own)
            => Shared is null ? (r - own.First) * own.Ld - own.Origin : RowIndex(r, t0, kvh) * Ld;

        /// <summary>Row r's index among the step's (token, head) rows: token · heads + head.</summary>
        private readonly int RowIndex(int r, int t0, int kvh) => (t0 + r / Group) * Heads + Head(r, kvh);

        private readonly byte* KHead(KvCache c, int kvh) => c.KData(Layer) + KvCacheTypes.Bytes(c.KType, kvh * D);
        private readonly byte* VHead(KvCache c, int kvh) => c.VData(Layer) + KvCacheTypes.Bytes(c.VType, kvh * D);

        /// <summary>
        /// Scores of rows r0..r1-1 (row r = token t0 + r / g, head kvh·g + r % g) over keys j0..j1-1 (each row's own keys
        /// lo..len-1 within them): key tiles outer, the rows inner, consecutive rows with the same keys in the tile (a token's
        /// heads; tokens whose ranges cover the tile) up to <see cref="AttentionKernels.MaxRows"/> at a time. An F16 / Q8_0 tile
        /// read by at most DirectRows rows is read in place (widened in registers) rather than decoded into the scratch first:
        /// the same values and operations, so the same bits. Each score depends on its key alone, so any split of the keys
        /// gives the same scores.
        /// </summary>
        private readonly void ScoreKeys(int t0, int kvh, int r0, int r1, int j0, int j1, float[] sc, (int, int, int) own, float[] tile)
        {
            var cache = Caches[t0]!;
            byte* kHead = KHead(cache, kvh);
            // an F32 cache is always read in place; F16 / Q8_0 keys are decoded to the F32 tile when more rows than one pass read them
            bool decode = cache.KType != GgmlType.F32 && r1 - r0 > DirectRows;
            var type = decode ? GgmlType.F32 : cache.KType;
            long rowBytes = decode ? 4L * D : cache.KRowBytes;
            float** qs = stackalloc float*[4], ss = stackalloc float*[4];
            fixed (float* pq = Q, ps = sc, pt = tile)
                for (; j0 < j1; j0 += KeyTile)
                {
                    int end = Math.Min(j0 + KeyTile, j1);
                    if (decode) AttentionKernels.DecodeRows(cache.KType, kHead + (long)j0 * cache.KRowBytes, cache.KRowBytes, end - j0, D, pt);
                    for (int r = r0, rows; r < r1; r += rows)
                    {
                        var (a, m) = Pass(r, r1, t0, j0, end, out rows);
                        if (m > 0)
                        {
                            for (int i = 0; i < rows; i++) { qs[i] = pq + QOffset(r + i, t0, kvh); ss[i] = ps + ScoreBase(r + i, t0, kvh, own) + a; }
                            byte* keys = decode ? (byte*)(pt + (long)(a - j0) * D) : kHead + (long)a * cache.KRowBytes;
                            AttentionKernels.ScoresRows(type, qs, rows, D, keys, rowBytes, m, Scale, ss);
                        }
                    }
                }
        }

        /// <summary>Row r's keys within the tile j0..end-1: the first and how many (0 or less: none).</summary>
        private readonly (int A, int M) Range(int r, int t0, int j0, int end)
        {
            int a = Math.Max(j0, Lo(r, t0));
            return (a, Math.Min(end, Len(r, t0)) - a);
        }

        /// <summary>The kernel pass starting at row r (before r1) in the tile j0..end-1: the rows after it with the same keys, up to
        /// <see cref="AttentionKernels.MaxRows"/> in all (<paramref name="rows"/>), and those keys: the first and how many.</summary>
        private readonly (int A, int M) Pass(int r, int r1, int t0, int j0, int end, out int rows)
        {
            var range = Range(r, t0, j0, end);
            rows = 1;
            while (r + rows < r1 && rows < AttentionKernels.MaxRows && Range(r + rows, t0, j0, end) == range) rows++;
            return range;
        }

        /// <summary>
        /// Weighted sums of rows r0..r1-1 over dims c0..c1-1: acc = Σ_j p[j]·V[j] over keys j0..j1-1 (each row's own keys within
        /// them), from zero. acc: (r1 - r0, c1 - c0). Value tiles outer, rows inner (grouped as in <see cref="ScoreKeys"/>);
        /// each element's FMA chain runs over the keys in order, so a split of the dims gives the same bits (c0, c1:
        /// multiples of 32 for a Q8_0 cache unless the whole head).
        /// </summary>
        private readonly void WeightValues(int t0, int kvh, int r0, int r1, int j0, int j1, int c0, int c1, float[] sc, (int, int, int) own,
            float[] tile, float[] acc)
        {
            var cache = Caches[t0]!;
            byte* vHead = VHead(cache, kvh) + KvCacheTypes.Bytes(cache.VType, c0);
            int width = c1 - c0;
            bool decode = cache.VType != GgmlType.F32 && r1 - r0 > DirectRows;
            var type = decode ? GgmlType.F32 : cache.VType;
            long rowBytes = decode ? 4L * width : cache.VRowBytes;
            acc.AsSpan(0, (r1 - r0) * width).Clear();
            float** ps = stackalloc float*[4], os = stackalloc float*[4];
            fixed (float* pa = acc, psc = sc, pt = tile)
                for (; j0 < j1; j0 += KeyTile)
                {
                    int end = Math.Min(j0 + KeyTile, j1);
                    if (decode) AttentionKernels.DecodeRows(cache.VType, vHead + (long)j0 * cache.VRowBytes, cache.VRowBytes, end - j0, width, pt);
                    for (int r = r0, rows; r < r1; r += rows)
                    {
                        var (a, m) = Pass(r, r1, t0, j0, end, out rows);
                        if (m > 0)
                        {
                            for (int i = 0; i < rows; i++) { ps[i] = psc + ScoreBase(r + i, t0, kvh, own) + a; os[i] = pa + (r + i - r0) * width; }
                            byte* values = decode ? (byte*)(pt + (long)(a - j0) * width) : vHead + (long)a * cache.VRowBytes;
                            AttentionKernels.WeightedSumAccumulateRows(type, ps, rows, m, values, rowBytes, os, width);
                        }
                    }
                }
        }

        /// <summary>
        /// One softmax chunk of a row (query head h): sc, the row's scores of the chunk's keys, become its softmax p over
        /// them. Soft-cap, m_c = max, p = e^(s − m_c) in place, l_c = Σ p in double, p = p·(float)(1/l_c); on the row's first
        /// chunk the sink's logit joins m_c and e^(sink − m_c) joins l_c (after the keys' sum), as in
        /// <see cref="Ops.SoftmaxWithSink"/>. Then <paramref name="run"/> takes the chunk: the first sets M = m_c, L = l_c;
        /// a later one M' = max(M, m_c), a = e^(M − M'), b = e^(m_c − M'), L' = L·a + l_c·b, A = (float)(L·a / L'),
        /// B = (float)(l_c·b / L').
        /// </summary>
        private readonly void ChunkSoftmax(Span<float> sc, int h, bool first, ref Running run)
        {
            Cap(sc);
            bool sink = first && Sinks is not null;
            float mc = TensorPrimitives.Max(sc);
            if (sink) mc = MathF.Max(mc, Sinks![h]);
            double lc = FastExp.IsSupported ? Ops.ExpMinusMaxAndSum(sc, mc) : Ops.ExpMinusMaxAndSumReference(sc, mc);
            if (sink) lc += FastExp.Scalar(Sinks![h] - mc);
            TensorPrimitives.Multiply(sc, (float)(1.0 / lc), sc);
            if (first) { run = new Running { M = mc, L = lc, First = true }; return; }
            float m = MathF.Max(run.M, mc);
            double before = run.L * FastExp.Scalar(run.M - m), chunk = lc * FastExp.Scalar(mc - m), l = before + chunk;
            run = new Running { M = m, L = l, A = (float)(before / l), B = (float)(chunk / l) };
        }

        /// <summary>A chunk's weighted average acc into a row's output o (the same dims of both): o = acc on the row's first
        /// chunk, else o_i = o_i·A + acc_i·B element by element (each product rounded, then their sum).</summary>
        private static void Merge(Span<float> o, ReadOnlySpan<float> acc, in Running run)
        {
            if (run.First) { acc.CopyTo(o); return; }
            for (int i = 0; i < o.Length; i++) o[i] = o[i] * run.A + acc[i] * run.B;
        }

        // ---- a split step: (block, KV head, key segment) items score, (token, head) items run the softmax, (block, KV head, dim slice) items weigh

        /// <summary>All rows of a block and KV head over one segment of SegKeys keys.</summary>
        private readonly void ExecuteScores(int index)
        {
            int seg = index % Segments, bk = index / Segments, b = bk / KvHeads, kvh = bk % KvHeads;
            int t0 = Starts[b], rows = (Starts[b + 1] - t0) * Group;
            int j0 = Math.Max(seg * SegKeys, Lo(0, t0)), j1 = Math.Min((seg + 1) * SegKeys, Len(rows - 1, t0));
            if (j0 < j1) ScoreKeys(t0, kvh, 0, rows, j0, j1, Shared!, default, TileScratch(KeyTile * D));
        }

        /// <summary>One (token, head) row's softmax chunk by chunk (p in place of its scores), its state after each chunk kept.</summary>
        private readonly void ExecuteSoftmax(int index)
        {
            int t = index / Heads, h = index % Heads, lo = AttentionParams.FirstKey(Pos[t], Window, Chunk), len = Pos[t] + 1;
            var run = default(Running);
            for (int k0 = ChunkStart(lo); k0 < len; k0 += SoftmaxKeys)
            {
                int a = Math.Max(k0, lo), e = Math.Min(k0 + SoftmaxKeys, len);
                ChunkSoftmax(Shared.AsSpan(index * Ld + a, e - a), h, k0 <= lo, ref run);
                SharedRuns![index * Chunks + k0 / SoftmaxKeys] = run;
            }
        }

        /// <summary>All rows of a block and KV head, one slice of SliceDims output dims, a softmax chunk at a time as in
        /// <see cref="Execute"/>, with the states <see cref="ExecuteSoftmax"/> kept.</summary>
        private readonly void ExecuteValues(int index)
        {
            int slices = D / SliceDims, slice = index % slices, bk = index / slices, b = bk / KvHeads, kvh = bk % KvHeads;
            int t0 = Starts[b], rows = (Starts[b + 1] - t0) * Group, c0 = slice * SliceDims, c1 = c0 + SliceDims;
            int minLo = Lo(0, t0), maxLen = Len(rows - 1, t0);
            var acc = Sums(rows * SliceDims); // (rows, SliceDims): one chunk's weighted averages
            var tile = TileScratch(KeyTile * D);
            for (int k0 = ChunkStart(minLo); k0 < maxLen; k0 += SoftmaxKeys)
            {
                WeightValues(t0, kvh, 0, rows, Math.Max(k0, minLo), Math.Min(k0 + SoftmaxKeys, maxLen), c0, c1, Shared!, default, tile, acc);
                for (int r = 0; r < rows; r++)
                {
                    var (a, e) = KeysIn(r, t0, k0);
                    if (a >= e) continue;
                    var run = SharedRuns![RowIndex(r, t0, kvh) * Chunks + k0 / SoftmaxKeys]; // the row's state after this chunk
                    Merge(Out(r, t0, kvh)[c0..c1], acc.AsSpan(r * SliceDims, SliceDims), run);
                }
            }
        }

        /// <summary>
        /// Positions j0 .. j0+count-1 of <paramref name="width"/> elements of one head from <paramref name="head"/> (rows
        /// <paramref name="rowBytes"/> apart) as F32 rows <paramref name="stride"/> floats apart, the values at the start of
        /// each: an F32 cache in place (stride KvDim), an F16 / Q8_0 one decoded into <paramref name="tile"/> (stride width).
        /// </summary>
        private readonly ReadOnlySpan<float> Tile(GgmlType type, byte* head, int rowBytes, int j0, int count, int width, float[] tile, out int stride)
        {
            byte* first = head + (long)j0 * rowBytes;
            if (type == GgmlType.F32) { stride = KvDim; return new ReadOnlySpan<float>(first, (count - 1) * KvDim + width); }
            stride = width;
            fixed (float* pt = tile) AttentionKernels.DecodeRows(type, first, rowBytes, count, width, pt);
            return tile.AsSpan(0, count * width);
        }

        /// <summary>Where row r's query (in Q) and output (in Att) start.</summary>
        private readonly int QOffset(int r, int t0, int kvh) => (t0 + r / Group) * QDim + Head(r, kvh) * D;
        private readonly Span<float> QRow(int r, int t0, int kvh) => Q.AsSpan(QOffset(r, t0, kvh), D);
        private readonly Span<float> Out(int r, int t0, int kvh) => Att.AsSpan(QOffset(r, t0, kvh), D);

        /// <summary>One row without SIMD kernels (head dimensions <see cref="AttentionKernels.Supported"/> refuses: not a multiple of 8
        /// on AVX2, of 4 on the 128-bit path; no SIMD path at all), a key or value decoded at a time, with the same softmax
        /// chunks, <see cref="ChunkSoftmax"/> and <see cref="Merge"/>. buf: (KeyTile, d) the decoded key or value; sc: (≥ min(C,
        /// keys)) a chunk's scores; acc: (d) a chunk's weighted average.</summary>
        private readonly void Reference(int r, int t0, int kvh, float[] buf, Span<float> sc, Span<float> acc)
        {
            var cache = Caches[t0]!;
            byte* kHead = KHead(cache, kvh), vHead = VHead(cache, kvh);
            int d = D, lo = Lo(r, t0), len = Len(r, t0), h = Head(r, kvh);
            var qv = QRow(r, t0, kvh);
            var row = buf.AsSpan(0, d);
            var o = Out(r, t0, kvh);
            var run = default(Running);
            for (int k0 = ChunkStart(lo); k0 < len; k0 += SoftmaxKeys)
            {
                int a = Math.Max(k0, lo), e = Math.Min(k0 + SoftmaxKeys, len);
                var s = sc[..(e - a)];
                for (int j = a; j < e; j++)
                {
                    Tile(cache.KType, kHead, cache.KRowBytes, j, 1, d, buf, out _).CopyTo(row);
                    s[j - a] = TensorPrimitives.Dot(qv, row) * Scale;
                }
                ChunkSoftmax(s, h, k0 <= lo, ref run);
                acc.Clear();
                for (int j = a; j < e; j++)
                {
                    Tile(cache.VType, vHead, cache.VRowBytes, j, 1, d, buf, out _).CopyTo(row);
                    TensorPrimitives.MultiplyAdd(row, s[j - a], acc, acc);
                }
                Merge(o, acc, run);
            }
        }
    }

    [ThreadStatic] private static float[]? scratch;
    /// <summary>A thread's scores of one softmax chunk: (rows, min(C, keys)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] Scratch(int n) => GrowingScratch.Get(ref scratch, n, 1024);

    [ThreadStatic] private static float[]? sums;
    /// <summary>A thread's weighted averages of one softmax chunk: (rows, d), or (rows, dims of a slice) in a split step.</summary>
    private static float[] Sums(int n) => GrowingScratch.Get(ref sums, n, 1024);

    [ThreadStatic] private static Running[]? runs;
    /// <summary>A thread's softmax states of an item's rows: (rows).</summary>
    private static Running[] Runs(int n) => GrowingScratch.Get(ref runs, n, 64);

    [ThreadStatic] private static float[]? tileScratch;
    /// <summary>A thread's tile of decoded keys or values: (KeyTile, d), 32 KiB at d = 128.</summary>
    private static float[] TileScratch(int n) => tileScratch is { } s && s.Length >= n ? s : tileScratch = new float[n];

    [ThreadStatic] private static int[]? starts;
    private static int[] BlockStarts(int n) => starts is { } s && s.Length >= n ? s : starts = new int[Math.Max(n, 64)];
}
