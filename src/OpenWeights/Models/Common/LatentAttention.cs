using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using OpenWeights.Formats;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tensors.Threading;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Common;

/// <summary>
/// Multi-head latent attention (DeepSeek V2/V3, Kimi K2; llama.cpp's deepseek2 graph), per layer. With
/// r = kv_lora_rank, nope = key_length_mla − rope, v = value_length_mla:
/// <code>
/// q        = W_qb · rmsnorm(W_qa · x)  (or W_q · x when q_lora_rank = 0)     (heads, nope + rope)
/// [c, kpe] = W_kva · x;  c = rmsnorm(c);  kpe = rope(kpe)                   (r), (rope) shared by every head
/// cache    ← [c, kpe]                                                        r + rope floats per token and layer
/// k_h      = [W_uk_h · c, kpe],  v_h = W_uv_h · c                            decompressed key and value of head h
/// out      = W_o · concat_h softmax(q_h · k_h · scale) · v_h
/// </code>
/// The GGUF stores W_uk_h transposed (attn_k_b: per head (r, nope)) and W_uv_h as is (attn_v_b: per head (v, r)).
/// Two exact rewritings of the same attention:
/// <list type="bullet">
/// <item><b>absorbed</b> (decode; llama.cpp's MLA path): q_nope·(W_uk_h c) = (W_uk_hᵀ q_nope)·c, so the query becomes
/// [W_uk_hᵀ q_nope, q_pe] of r + rope and attends to the cached [c, kpe] directly (one "KV head" for all heads); the
/// result, a mix of latents (r), goes through W_uv_h afterwards. Nothing is decompressed.</item>
/// <item><b>expanded</b> (long prefills): k_h and v_h are decompressed for every cached position once per head, then
/// ordinary attention over nope + rope and v: cheaper when many queries share the decompression.</item>
/// </list>
/// </summary>
public sealed class LatentAttention
{
    public Linear? QA { get; }          // (q_lora_rank, dim) attn_q_a; null when q_lora_rank = 0
    public float[]? QANorm { get; }     // (q_lora_rank) attn_q_a_norm
    public Linear Q { get; }            // (heads*(nope+rope), q_lora_rank) attn_q_b, or (heads*(nope+rope), dim) attn_q
    public Linear KvA { get; }          // (r + rope, dim) attn_kv_a_mqa
    public float[] KvANorm { get; }     // (r) attn_kv_a_norm
    public Linear[] KB { get; }         // heads × (r, nope): views of attn_k_b, W_uk_hᵀ
    public Linear[] VB { get; }         // heads × (v, r): views of attn_v_b, W_uv_h
    public int Heads => KB.Length;
    public int Rank => KvANorm.Length;
    public int Nope => KB[0].In;
    public int ValueDim => VB[0].Out;

    public LatentAttention(Linear? qa, float[]? qaNorm, Linear q, Linear kva, float[] kvaNorm, Linear[] kb, Linear[] vb)
    {
        QA = qa; QANorm = qaNorm; Q = q; KvA = kva; KvANorm = kvaNorm; KB = kb; VB = vb;
    }

    /// <summary>Every matrix of the attention but the output projection (for repacking, byte counts and releasing).</summary>
    public IEnumerable<Linear> Matrices => (QA is null ? new[] { Q, KvA } : [QA, Q, KvA]).Concat(KB).Concat(VB);

    /// <summary>Loads block <paramref name="i"/>'s latent attention; attn_q_a / attn_q_a_norm / attn_q_b when q_lora_rank &gt; 0,
    /// else attn_q (as llama.cpp). A file with the unsplit attn_kv_b is refused (ModelConfig already names the missing keys).</summary>
    public static unsafe LatentAttention Load(ITensorSource f, ModelConfig c, int i)
    {
        var m = c.Mla ?? throw new InvalidOperationException($"{c.Architecture.Name} has no latent attention config");
        string B(string part) => Block(i, part);
        int heads = c.Heads, rope = c.RopeDims, nope = m.KeyLength - rope, r = m.KvLoraRank, qk = heads * m.KeyLength;
        Linear? qa = null; float[]? qaNorm = null; Linear q;
        if (m.QLoraRank > 0)
        {
            qa = Linear.Load(f, B(AttnQA), c.Dim, m.QLoraRank);
            qaNorm = TensorLoader.Vector(f, B(AttnQANorm), m.QLoraRank);
            q = Linear.Load(f, B(AttnQB), m.QLoraRank, qk);
        }
        else q = Linear.Load(f, B(AttnQ), c.Dim, qk);
        var kva = Linear.Load(f, B(AttnKvAMqa), c.Dim, r + rope);
        var kvaNorm = TensorLoader.Vector(f, B(AttnKvANorm), r);
        Linear[] PerHead(string name, int rows, int cols)
        {
            var t = f.GetTensor(B(name));
            if (t.Dimensions.Length != 3 || t.Dimensions[0] != cols || t.Dimensions[1] != rows || t.Dimensions[2] != heads)
                throw new InvalidModelFileException($"tensor {B(name)} has shape {t.ShapeText}, expected [{cols}, {rows}, {heads}]");
            byte* p = f.TensorPointer(t);
            long rowBytes = GgmlTypes.RowBytes(t.Type, cols);
            var views = new Linear[heads];
            for (int h = 0; h < heads; h++) views[h] = new Linear(B(name), new WeightMatrix(p + h * rows * rowBytes, t.Type, rows, cols));
            return views;
        }
        return new LatentAttention(qa, qaNorm, q, kva, kvaNorm, PerHead(AttnKB, r, nope), PerHead(AttnVB, m.ValueLength, r));
    }

    /// <summary>
    /// The attention of layer <paramref name="layer"/> on the normed input in s.Xb (n, dim); its output (after
    /// <paramref name="wo"/>) is left in s.Xb. Appends each token's [c, kpe] to its cache. <paramref name="expanded"/>: decompress
    /// keys and values (prefill) instead of absorbing the up-projections into query and output (decode). Rotary tables: s.Cos[0] / s.Sin[0].
    /// </summary>
    public void Forward(Linear wo, int layer, RunState s, ModelConfig c, int n, int threads, Rope rope, float scale, bool expanded)
    {
        var x = Scratch.For(s, c);
        int heads = Heads, r = Rank, nope = Nope, rp = c.RopeDims, kq = nope + rp, kvw = r + rp, half = rp / 2, vd = ValueDim;
        // q = W_qb · rmsnorm(W_qa · x), or W_q · x: (n, heads*(nope+rope))
        if (QA is { } qa)
        {
            qa.Forward(s.Xb, x.QA, n, threads);                        // (n, q_lora_rank)
            Blocks.RmsNorm(x.QA, QANorm!, x.QA, n, c.RmsEps);
            Q.Forward(x.QA, x.Q, n, threads);
        }
        else Q.Forward(s.Xb, x.Q, n, threads);
        KvA.Forward(s.Xb, s.K, n, threads);                            // (n, r + rope): [c, kpe]
        for (int t = 0; t < n; t++)
        {
            var cos = s.Cos[0].AsSpan(t * half, half); var sin = s.Sin[0].AsSpan(t * half, half);
            var qt = x.Q.AsSpan(t * heads * kq, heads * kq);
            for (int h = 0; h < heads; h++) rope.Apply(qt.Slice(h * kq + nope, rp), 1, rp, cos, sin);   // q_pe
            var kv = s.K.AsSpan(t * kvw, kvw);
            rope.Apply(kv.Slice(r, rp), 1, rp, cos, sin);                                             // k_pe
            Ops.RmsNorm(kv[..r], KvANorm, kv[..r], c.RmsEps);                                          // c = rmsnorm(c)
            s.TokenCache[t]!.StoreK(layer, s.TokenPos[t], kv);                                      // in the cache's K type (llama.cpp keeps the latent in its K cache)
        }
        if (expanded) Expanded(x, s, layer, n, threads, heads, nope, rp, r, vd, scale);
        else Absorbed(x, s, layer, n, threads, heads, nope, rp, r, vd, scale);
        wo.Forward(x.VOut, s.Xb, n, threads);                          // (n, dim)
    }

    /// <summary>Absorbed form: q_h ← [W_uk_hᵀ q_nope_h, q_pe_h] (r + rope) in s.Q; attention over the cached [c, kpe] gives a
    /// latent per head (r) in x.Lat; v_h = W_uv_h · latent into x.VOut (n, heads*v).</summary>
    private void Absorbed(Scratch x, RunState s, int layer, int n, int threads, int heads, int nope, int rp, int r, int vd, float scale)
    {
        int kq = nope + rp, kvw = r + rp;
        for (int h = 0; h < heads; h++)
        {
            for (int t = 0; t < n; t++) x.Q.AsSpan(t * heads * kq + h * kq, nope).CopyTo(x.HeadIn.AsSpan(t * nope, nope));
            KB[h].Forward(x.HeadIn, x.HeadOut, n, threads);             // (n, r): W_uk_hᵀ q_nope
            for (int t = 0; t < n; t++)
            {
                var qh = s.Q.AsSpan((t * heads + h) * kvw, kvw);
                x.HeadOut.AsSpan(t * r, r).CopyTo(qh);
                x.Q.AsSpan(t * heads * kq + h * kq + nope, rp).CopyTo(qh[r..]);
            }
        }
        if (OneReadPerToken) LatentDecode.Run(s.Q, x.Lat, s.TokenCache, s.TokenPos, layer, n, heads, r, kvw, scale, threads);
        else AttendPerHead(s.Q, x.Lat, s.TokenCache, s.TokenPos, layer, n, heads, r, kvw, scale, threads);
        for (int h = 0; h < heads; h++)
        {
            for (int t = 0; t < n; t++) x.Lat.AsSpan((t * heads + h) * r, r).CopyTo(x.HeadIn.AsSpan(t * r, r));
            VB[h].Forward(x.HeadIn, x.HeadOut, n, threads);             // (n, v)
            for (int t = 0; t < n; t++) x.HeadOut.AsSpan(t * vd, vd).CopyTo(x.VOut.AsSpan((t * heads + h) * vd, vd));
        }
    }

    /// <summary>
    /// Which kernel the absorbed form's attention runs: <see cref="LatentDecode"/> (true: each cached row read once per token
    /// for all heads) or <see cref="AttendPerHead"/> (false). Measured (bench --latent-attention, one DeepSeek-V2-Lite layer,
    /// 2 threads, quiet machine): one token, F16 / Q8_0 cache, 2.2-2.6x faster at 512 keys, 3.1-3.7x at 4,096 and 8,192 (F16
    /// 8,192: 9.3 → 2.6 ms); F32 cache 0.9x at 512 (0.17 vs 0.18 ms), 1.2x at 4,096, 2.1x at 8,192; 1 to 31 tokens of one
    /// sequence (F16, 64 to 4,096 keys) 1.6-3.7x. The per-head path stays as the two-pass baseline of the tests and the benchmark.
    /// </summary>
    public static bool OneReadPerToken = true;

    /// <summary>
    /// The absorbed attention one (token, head) item at a time: lat[t, h] (r) = softmax((q[t, h]·K[j])·scale)·K[j][..r] over token
    /// t's cached rows K[0 .. pos[t]] (kvw = r + rope floats). q: (n, heads, kvw); lat: (n, heads, r). F16 / Q8_0 rows are
    /// decoded a tile at a time for the scores and again for the weighted sum, per head.
    /// </summary>
    public static void AttendPerHead(float[] q, float[] lat, KvCache?[] caches, int[] pos, int layer, int n, int heads, int r, int kvw, float scale, int threads)
    {
        var job = new AbsorbedJob { Q = q, Lat = lat, Caches = caches, Pos = pos, Layer = layer, Heads = heads, R = r, Kvw = kvw, Scale = scale };
        WorkerPool.For(threads, n * heads, ref job);
    }

    /// <summary>Attention of one (token, head) in the latent space: scores against the cached [c, kpe] rows (r + rope), the
    /// softmax, then Σ p_j c_j (the first r floats of each row). Lat: (n, heads, r).</summary>
    private struct AbsorbedJob : IPoolJob
    {
        public float[] Q, Lat;
        public KvCache?[] Caches;
        public int[] Pos;
        public int Layer, Heads, R, Kvw;
        public float Scale;

        public readonly unsafe void Execute(int index)
        {
            int t = index / Heads, h = index % Heads, len = Pos[t] + 1;
            var cache = Caches[t]!;
            var q = Q.AsSpan((t * Heads + h) * Kvw, Kvw);
            var sc = ScoreScratch(len).AsSpan(0, len);
            var o = Lat.AsSpan((t * Heads + h) * R, R);
            o.Clear();
            if (cache.KType == GgmlType.F32)
            {
                var k = cache.KLayer(Layer);
                AttentionKernels.Scores(q, k, Kvw, len, Scale, sc);
                Ops.Softmax(sc);
                AttentionKernels.WeightedSumAccumulate(sc, k, Kvw, o);
                return;
            }
            // F16 / Q8_0 latents: decoded a tile of keys at a time, for the scores and again for the weighted sum
            var tile = TileScratch(Attention.KeyTile * Kvw);
            byte* kd = cache.KData(Layer);
            for (int j0 = 0; j0 < len; j0 += Attention.KeyTile)
            {
                int m = Math.Min(Attention.KeyTile, len - j0);
                fixed (float* pt = tile) AttentionKernels.DecodeRows(cache.KType, kd + (long)j0 * cache.KRowBytes, cache.KRowBytes, m, Kvw, pt);
                AttentionKernels.Scores(q, tile, Kvw, m, Scale, sc.Slice(j0, m));
            }
            Ops.Softmax(sc);
            for (int j0 = 0; j0 < len; j0 += Attention.KeyTile)
            {
                int m = Math.Min(Attention.KeyTile, len - j0);
                fixed (float* pt = tile) AttentionKernels.DecodeRows(cache.KType, kd + (long)j0 * cache.KRowBytes, cache.KRowBytes, m, Kvw, pt);
                AttentionKernels.WeightedSumAccumulate(sc.Slice(j0, m), tile, Kvw, o);
            }
        }
    }

    /// <summary>Expanded form: per (sequence, head), k_nope = W_uk_h · c and v = W_uv_h · c for every cached position
    /// (the up-projections decoded to F32 once), then softmax((q_nope·k_nope + q_pe·kpe)·scale) · v into x.VOut; the dots of
    /// both run in the attention kernels (<see cref="AttentionKernels.ScoresRows"/>, several latents per pass).</summary>
    private void Expanded(Scratch x, RunState s, int layer, int n, int threads, int heads, int nope, int rp, int r, int vd, float scale)
    {
        // segments: runs of consecutive tokens of one cache
        int segs = 0;
        for (int t = 0; t < n; t++)
            if (t == 0 || s.TokenCache[t] != s.TokenCache[t - 1]) x.SegStart[segs++] = t;
        x.SegStart[segs] = n;
        var job = new ExpandedJob
        {
            Att = this, Q = x.Q, VOut = x.VOut, Caches = s.TokenCache, Pos = s.TokenPos, SegStart = x.SegStart, Layer = layer,
            Heads = heads, Nope = nope, Rope = rp, R = r, V = vd, Scale = scale,
        };
        WorkerPool.For(threads, segs * heads, ref job);
    }

    private struct ExpandedJob : IPoolJob
    {
        public LatentAttention Att;
        public float[] Q, VOut;
        public KvCache?[] Caches;
        public int[] Pos, SegStart;
        public int Layer, Heads, Nope, Rope, R, V;
        public float Scale;

        public readonly unsafe void Execute(int index)
        {
            int seg = index / Heads, h = index % Heads, t0 = SegStart[seg], t1 = SegStart[seg + 1];
            int len = 0;
            for (int t = t0; t < t1; t++) len = Math.Max(len, Pos[t] + 1);
            int r = R, nope = Nope, rp = Rope, v = V, kvw = r + rp, kq = nope + rp;
            var k = Latents(Caches[t0]!, len, kvw, Layer);      // (len, r + rope) as F32
            var buf = ExpandScratch(nope * r + v * r + len * (kq + v));
            var wk = buf.AsSpan(0, nope * r);                    // (nope, r) W_uk_h
            var wv = buf.AsSpan(nope * r, v * r);                // (v, r) W_uv_h
            var kf = buf.AsSpan(nope * r + v * r, len * kq);     // (len, nope + rope) keys [W_uk_h c_j, kpe_j]
            var vv = buf.AsSpan(nope * r + v * r + len * kq, len * v); // (len, v) values W_uv_h c_j
            DecodeTransposed(Att.KB[h].Weight, wk, r, nope);
            for (int i = 0; i < v; i++) Att.VB[h].Weight.DecodeRow(i, wv.Slice(i * r, r));
            var sc = ScoreScratch(len);
            float** xs = stackalloc float*[4], ys = stackalloc float*[4];
            fixed (float* pk = k, pwk = wk, pwv = wv, pkf = kf, pvv = vv, pq = Q, po = VOut, ps = sc)
            {
                // decompression: each key and value element is a dot of a weight row with c_j (r floats), run by the
                // attention score kernel with the weight rows as its "keys" and up to MaxRows latents as its query rows
                int group = Math.Min(4, AttentionKernels.MaxRows);
                for (int j = 0; j < len; j += group)
                {
                    int rows = Math.Min(group, len - j);
                    for (int i = 0; i < rows; i++) { xs[i] = pk + (long)(j + i) * kvw; ys[i] = pkf + (long)(j + i) * kq; }
                    AttentionKernels.ScoresRows(GgmlType.F32, xs, rows, r, (byte*)pwk, 4L * r, nope, 1f, ys);
                    for (int i = 0; i < rows; i++) ys[i] = pvv + (long)(j + i) * v;
                    AttentionKernels.ScoresRows(GgmlType.F32, xs, rows, r, (byte*)pwv, 4L * r, v, 1f, ys);
                    for (int i = 0; i < rows; i++) new Span<float>(pk + (long)(j + i) * kvw + r, rp).CopyTo(new Span<float>(pkf + (long)(j + i) * kq + nope, rp));
                }
                // attention of each token over its keys 0..pos: scores, softmax, weighted values (the SIMD kernels)
                for (int t = t0; t < t1; t++)
                {
                    int m = Pos[t] + 1;
                    xs[0] = pq + ((long)t * Heads + h) * kq; ys[0] = ps;
                    AttentionKernels.ScoresRows(GgmlType.F32, xs, 1, kq, (byte*)pkf, 4L * kq, m, Scale, ys);
                    Ops.Softmax(sc.AsSpan(0, m));
                    var o = VOut.AsSpan((t * Heads + h) * v, v);
                    o.Clear();
                    xs[0] = ps; ys[0] = po + ((long)t * Heads + h) * v;
                    AttentionKernels.WeightedSumAccumulateRows(GgmlType.F32, xs, 1, m, (byte*)pvv, 4L * v, ys, v);
                }
            }
        }

        /// <summary>W_uk_h (nope, r) from attn_k_b's per-head matrix, stored transposed (r rows of nope).</summary>
        private static void DecodeTransposed(WeightMatrix kb, Span<float> dst, int r, int nope)
        {
            var row = TileScratch(nope);
            for (int i = 0; i < r; i++)
            {
                kb.DecodeRow(i, row);
                for (int e = 0; e < nope; e++) dst[e * r + i] = row[e];
            }
        }
    }

    /// <summary>The first <paramref name="len"/> cached [c, kpe] rows of a layer as F32: an F32 cache's own array, else
    /// decoded into a per-thread scratch (grown by half again at least, as <see cref="ExpandScratch"/>).</summary>
    private static unsafe Span<float> Latents(KvCache cache, int len, int kvw, int layer)
    {
        if (cache.KType == GgmlType.F32) return cache.KLayer(layer);
        var a = OpenWeights.Tensors.Memory.GrowingScratch.Get(ref latents, len * kvw);
        fixed (float* p = a) AttentionKernels.DecodeRows(cache.KType, cache.KData(layer), cache.KRowBytes, len, kvw, p);
        return a;
    }

    [ThreadStatic] private static float[]? scores, expand, tiles, latents;
    private static float[] TileScratch(int n) => tiles is { } a && a.Length >= n ? a : tiles = new float[n];
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] ScoreScratch(int n) => OpenWeights.Tensors.Memory.GrowingScratch.Get(ref scores, n, 1024);
    /// <summary>The expanded form's per-thread scratch; it grows with the context (by half again at least: a prompt in
    /// 256-token chunks then leaves a few outgrown arrays on the large-object heap, not one per chunk).</summary>
    private static float[] ExpandScratch(int n) => OpenWeights.Tensors.Memory.GrowingScratch.Get(ref expand, n);

    /// <summary>The scratch of latent attention for one run state (made once per state, at its first forward pass).</summary>
    private sealed class Scratch
    {
        public readonly float[] QA;       // (batch, q_lora_rank)
        public readonly float[] Q;        // (batch, heads*(nope+rope)) the query before absorption
        public readonly float[] HeadIn;   // (batch, max(nope, r)) one head's rows gathered
        public readonly float[] HeadOut;  // (batch, max(r, v)) one head's projected rows
        public readonly float[] Lat;      // (batch, heads*r) attention output in the latent space
        public readonly float[] VOut;     // (batch, heads*v) attention output, the input of W_o
        public readonly int[] SegStart;   // (batch + 1) where each sequence's tokens start

        private static readonly ConditionalWeakTable<RunState, Scratch> States = new();

        private Scratch(RunState s, ModelConfig c)
        {
            var m = c.Mla!;
            int b = s.MaxBatch, nope = m.KeyLength - c.RopeDims, r = m.KvLoraRank;
            QA = new float[b * Math.Max(1, m.QLoraRank)]; Q = new float[b * c.Heads * m.KeyLength];
            HeadIn = new float[b * Math.Max(nope, r)]; HeadOut = new float[b * Math.Max(r, m.ValueLength)];
            Lat = new float[b * c.Heads * r]; VOut = new float[b * c.Heads * m.ValueLength]; SegStart = new int[b + 1];
        }

        public static Scratch For(RunState s, ModelConfig c)
        {
            if (States.TryGetValue(s, out var x)) return x; // no closure: a decode step allocates nothing
            x = new Scratch(s, c);
            States.AddOrUpdate(s, x);
            return x;
        }
    }
}
