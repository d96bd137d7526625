using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;

namespace OpenWeights.Models.Common;

/// <summary>
/// Decode attention of the absorbed latent form (<see cref="LatentAttention"/>), flash-decoding style: each cached latent row
/// [c, kpe] (r + rope floats) is read once per layer and token for all heads together, instead of twice per head.
/// <code>
/// keys [0, len) of token t  →  chunks of ChunkKeys(len) keys (boundaries depend on len alone)      pool items (t, chunk)
/// per chunk, a tile of keys at a time:  K_tile = decode(rows)                                        (tile, r + rope) F32
///   per head h:  s = (q_h · K_tile) · scale;  m' = max(m_h, max s);  f = e^(m_h − m')                (tile)
///                l_h = l_h·f + Σ e^(s − m') (in double);  a_h = a_h·f + Σ_j e^(s_j − m')·c_j         a_h: (r)
/// per (t, h), chunks in order:  M = max_c m_c;  L = Σ_c l_c·e^(m_c − M);  lat = Σ_c (e^(m_c − M) / L)·a_c   (r)
/// </code>
/// The exponentials are <see cref="Ops.ExpMinusMaxAndSum"/>'s (FastExp, sums in double), as in the two-pass softmax.
/// The chunks and the order of every float operation depend on the token's key count alone, never on the thread count or
/// on which thread ran a chunk: the result is bit for bit the same at any thread count (and for any batch around the token).
/// It differs from the two-pass softmax of <see cref="LatentAttention.AttendPerHead"/> by float rounding only.
/// The SIMD work is that of <see cref="AttentionKernels.DecodeRows"/>, <see cref="AttentionKernels.Scores(ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, float, Span{float})"/>
/// and <see cref="AttentionKernels.WeightedSumAccumulate(ReadOnlySpan{float}, ReadOnlySpan{float}, int, Span{float})"/>
/// (each with its scalar fallback); <see cref="Reference"/> is the scalar reference of the whole step.
/// </summary>
public static unsafe class LatentDecode
{
    /// <summary>Keys per tile: 16 rows of r + rope = 576 floats are 36 KiB, resident in L1 while every head passes over them twice.</summary>
    public static int Tile = 16;

    /// <summary>Most chunks a token's keys fall into (a token's partial results: MaxChunks × heads × (r + 1) floats and MaxChunks × heads doubles at most).</summary>
    public const int MaxChunks = 32;

    /// <summary>Fewest keys per chunk; chunks are whole multiples of it (so of every tile size up to 64).</summary>
    public const int MinChunkKeys = 64;

    /// <summary>Keys per chunk of a token with <paramref name="len"/> keys: 64, or more so that there are at most MaxChunks.</summary>
    public static int ChunkKeys(int len)
    {
        int k = (len + MaxChunks - 1) / MaxChunks;
        return Math.Max(MinChunkKeys, (k + MinChunkKeys - 1) / MinChunkKeys * MinChunkKeys);
    }

    /// <summary>Chunks of a token with <paramref name="len"/> keys.</summary>
    public static int Chunks(int len) => (len + ChunkKeys(len) - 1) / ChunkKeys(len);

    /// <summary>
    /// lat[t, h] (r) = Σ_j softmax_j((q[t, h]·K[j])·scale)·K[j][..r] over token t's cached rows K[0 .. pos[t]] of
    /// <paramref name="layer"/> (rows of kvw = r + rope floats in the cache's K type). q: (n, heads, kvw); lat: (n, heads, r).
    /// Two pool passes: (token, chunk) items, then (token, head) items that combine the chunks in order.
    /// </summary>
    public static void Run(float[] q, float[] lat, KvCache?[] caches, int[] pos, int layer, int n, int heads, int r, int kvw, float scale, int threads)
    {
        var first = ItemStarts(n + 1); // token t's chunks are items first[t] .. first[t+1]-1
        int items = 0;
        for (int t = 0; t < n; t++) { first[t] = items; items += Chunks(pos[t] + 1); }
        first[n] = items;
        // partials: (items, heads, r) accumulators, then (items, heads) maxima; grown in units of one
        // token's most (MaxChunks), so that a decode step allocates once, not each time its context passes a chunk boundary
        int unit = MaxChunks * heads * (r + 1);
        var part = Partials((items + MaxChunks - 1) / MaxChunks * unit);
        var sums = Sums((items + MaxChunks - 1) / MaxChunks * MaxChunks * heads); // (items, heads) the softmax denominators
        var job = new Job
        {
            Q = q, Lat = lat, Caches = caches, Pos = pos, First = first, Part = part, Sum = sums, Layer = layer, Heads = heads, R = r,
            Kvw = kvw, Scale = scale, MaxBase = items * heads * r,
        };
        // the calling thread runs items too: its scratches exist before the first one (a decode step allocates nothing on it)
        TileScratch(Tile * kvw);
        ScoreScratch(Tile);
        job.Combine = false; WorkerPool.For(threads, items, ref job);
        job.Combine = true; WorkerPool.For(threads, n * heads, ref job);
    }

    private struct Job : IPoolJob
    {
        public float[] Q, Lat, Part;
        public double[] Sum;
        public KvCache?[] Caches;
        public int[] Pos, First;
        public int Layer, Heads, R, Kvw, MaxBase;
        public float Scale;
        public bool Combine;

        public readonly void Execute(int index)
        {
            if (Combine) CombineChunks(index / Heads, index % Heads);
            else RunChunk(index);
        }

        /// <summary>One chunk of one token: per head the running max, sum and accumulator over the chunk's keys, a tile at a time.</summary>
        private readonly void RunChunk(int item)
        {
            int t = 0;
            while (First[t + 1] <= item) t++;
            int len = Pos[t] + 1, ck = ChunkKeys(len), j0 = (item - First[t]) * ck, j1 = Math.Min(len, j0 + ck);
            var cache = Caches[t]!;
            var acc = Part.AsSpan(item * Heads * R, Heads * R);  // (heads, r)
            var max = Part.AsSpan(MaxBase + item * Heads, Heads); // (heads)
            var sum = Sum.AsSpan(item * Heads, Heads);           // (heads)
            acc.Clear(); max.Fill(float.NegativeInfinity); sum.Clear();
            var tile = TileScratch(Tile * Kvw);
            var sc = ScoreScratch(Tile);
            byte* kd = cache.KData(Layer);
            for (int a = j0; a < j1; a += Tile)
            {
                int m = Math.Min(Tile, j1 - a);
                var rows = Rows(cache, kd, a, m, tile); // (m, kvw)
                for (int h = 0; h < Heads; h++)
                    Accumulate(Q.AsSpan((t * Heads + h) * Kvw, Kvw), rows, Kvw, Scale, sc.AsSpan(0, m), ref max[h], ref sum[h], acc.Slice(h * R, R));
            }
        }

        /// <summary>Rows a .. a+m-1 of the layer's latents as F32 (m, kvw): an F32 cache in place, F16 / Q8_0 decoded into the tile.</summary>
        private readonly ReadOnlySpan<float> Rows(KvCache cache, byte* kd, int a, int m, float[] tile)
        {
            byte* src = kd + (long)a * cache.KRowBytes;
            if (cache.KType == GgmlType.F32) return new ReadOnlySpan<float>(src, m * Kvw);
            fixed (float* pt = tile) AttentionKernels.DecodeRows(cache.KType, src, cache.KRowBytes, m, Kvw, pt);
            return tile.AsSpan(0, m * Kvw);
        }

        /// <summary>lat[t, h] = Σ_c (e^(m_c − M) / L)·a_c over token t's chunks in order, M = max_c m_c, L = Σ_c l_c·e^(m_c − M).</summary>
        private readonly void CombineChunks(int t, int h)
        {
            int i0 = First[t], i1 = First[t + 1];
            float mx = float.NegativeInfinity;
            double total = 0;
            for (int i = i0; i < i1; i++) mx = Math.Max(mx, Part[MaxBase + i * Heads + h]);
            for (int i = i0; i < i1; i++) total += Sum[i * Heads + h] * Math.Exp(Part[MaxBase + i * Heads + h] - mx);
            var o = Lat.AsSpan((t * Heads + h) * R, R);
            o.Clear();
            for (int i = i0; i < i1; i++)
                TensorPrimitives.MultiplyAdd(Part.AsSpan((i * Heads + h) * R, R), (float)(Math.Exp(Part[MaxBase + i * Heads + h] - mx) / total), o, o);
        }
    }

    /// <summary>
    /// One head over one tile of rows (m, kvw), online softmax: s = (q·k_j)·scale; the running max moves to m' = max(max, max s)
    /// and rescales the sum and the accumulator by e^(max − m') when it grows; then p = e^(s − m'), sum += Σ p,
    /// acc (r) += Σ_j p_j·rows[j][..r] (the FMA chain of each element in key order).
    /// </summary>
    private static void Accumulate(ReadOnlySpan<float> q, ReadOnlySpan<float> rows, int kvw, float scale, Span<float> s, ref float max, ref double sum, Span<float> acc)
    {
        AttentionKernels.Scores(q, rows, kvw, s.Length, scale, s);
        float m = Math.Max(max, TensorPrimitives.Max(s));
        if (m > max)
        {
            if (max != float.NegativeInfinity) // the first tile finds the accumulator and the sum still zero
            {
                double f = Math.Exp(max - m);
                sum *= f;
                TensorPrimitives.Multiply(acc, (float)f, acc);
            }
            max = m;
        }
        sum += FastExp.IsSupported ? Ops.ExpMinusMaxAndSum(s, m) : Ops.ExpMinusMaxAndSumReference(s, m);
        AttentionKernels.WeightedSumAccumulate(s, rows, kvw, acc);
    }

    /// <summary>
    /// Scalar reference of <see cref="Run"/>: per (token, head), each row decoded on its own (<see cref="KvCache.ReadK"/>), the
    /// scores, a two-pass softmax and the weighted sum of the latents in plain loops (in double, as a yardstick for both kernels).
    /// </summary>
    public static void Reference(float[] q, float[] lat, KvCache?[] caches, int[] pos, int layer, int n, int heads, int r, int kvw, float scale)
    {
        var row = new float[kvw];
        for (int t = 0; t < n; t++)
        {
            int len = pos[t] + 1;
            var k = new float[len * kvw]; // (len, kvw)
            for (int j = 0; j < len; j++) { caches[t]!.ReadK(layer, j, row); row.CopyTo(k, j * kvw); }
            for (int h = 0; h < heads; h++)
            {
                int qb = (t * heads + h) * kvw;
                var s = new double[len];
                double mx = double.NegativeInfinity, total = 0;
                for (int j = 0; j < len; j++)
                {
                    double d = 0;
                    for (int c = 0; c < kvw; c++) d += (double)q[qb + c] * k[j * kvw + c];
                    s[j] = d * scale;
                    mx = Math.Max(mx, s[j]);
                }
                for (int j = 0; j < len; j++) { s[j] = Math.Exp(s[j] - mx); total += s[j]; }
                for (int c = 0; c < r; c++)
                {
                    double o = 0;
                    for (int j = 0; j < len; j++) o += s[j] * k[j * kvw + c];
                    lat[(t * heads + h) * r + c] = (float)(o / total);
                }
            }
        }
    }

    [ThreadStatic] private static float[]? tiles, scores;
    private static float[] TileScratch(int n) => tiles is { } a && a.Length >= n ? a : tiles = new float[n];
    private static float[] ScoreScratch(int n) => OpenWeights.Tensors.Memory.GrowingScratch.Get(ref scores, n, 64);

    [ThreadStatic] private static float[]? partials; // the calling thread's: steps may run on several threads at once
    private static float[] Partials(int n) => partials is { } a && a.Length >= n ? a : partials = new float[n];
    [ThreadStatic] private static double[]? sumPartials;
    private static double[] Sums(int n) => sumPartials is { } a && a.Length >= n ? a : sumPartials = new double[n];

    [ThreadStatic] private static int[]? itemStarts;
    private static int[] ItemStarts(int n) => itemStarts is { } a && a.Length >= n ? a : itemStarts = new int[Math.Max(n, 8)];
}
