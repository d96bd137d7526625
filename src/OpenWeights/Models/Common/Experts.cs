using System.Numerics.Tensors;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Common;

/// <summary>
/// How router logits become expert probabilities (llama.cpp's llama_expert_gating_func_type; the numbers are the values
/// of <c>{arch}.expert_gating_func</c>).
/// </summary>
public enum ExpertGating
{
    /// <summary>softmax over all experts, then top-k of the probabilities (Mixtral, Qwen3-MoE, OLMoE, Phi-3.5-MoE).</summary>
    Softmax = 1,
    /// <summary>sigmoid of each logit (Llama 4, DeepSeek V3).</summary>
    Sigmoid = 2,
    /// <summary>top-k of the raw logits, then softmax over the k selected (gpt-oss).</summary>
    SoftmaxWeight = 3,
}

/// <summary>
/// A family's router, the arguments of llama.cpp's build_moe_ffn: the gating function; whether the k weights are divided
/// by their sum (norm_w, the sum clamped below at 6.1e-5 as llama.cpp does); a factor on them (scale_w; 1 = none);
/// whether they multiply the expert's input instead of its output (Llama 4); and whether top-k ranks the raw logits
/// instead of the gated probabilities (Llama 4: the same ranking, but the tie rule sees the logits).
/// </summary>
public sealed record ExpertRouting(ExpertGating Gating, bool NormalizeWeights, float WeightScale = 1f,
    bool WeightBeforeFfn = false, bool SelectOnLogits = false)
{
    /// <summary>(n_expert) added to the gated probabilities for the selection only, the weights staying unbiased (DeepSeek
    /// V3's e_score_correction_bias, GGUF exp_probs_b; one per layer); null = none.</summary>
    public float[]? SelectionBias { get; init; }

    /// <summary>Group-limited selection (DeepSeek V3): the experts in <see cref="Groups"/> equal consecutive groups, each
    /// scored by the sum of its 2 best selection scores; only the best <see cref="GroupsUsed"/> groups' experts may be
    /// picked. 0 or 1: no groups.</summary>
    public int Groups { get; init; }
    public int GroupsUsed { get; init; }

    /// <summary>The smallest gap seen between the last kept group's score and the best dropped group's (group-limited
    /// selection only; +∞ otherwise): as <see cref="ExpertLayer.MinSelectionMargin"/>, for tests comparing two engines.</summary>
    public RoutingStats Stats { get; init; } = new();
}

/// <summary>What routing has seen since load (see <see cref="ExpertRouting.Stats"/>).</summary>
public sealed class RoutingStats
{
    public float MinGroupMargin { get; set; } = float.PositiveInfinity;
}

/// <summary>The shared expert of a MoE layer (ffn_*_shexp): a dense gated feed-forward every token runs, its output added
/// to the routed experts' sum.</summary>
public sealed class SharedExpert(Linear gate, Linear up, Linear down)
{
    public Linear Gate { get; set; } = gate;   // (ffn_shexp, dim)
    public Linear Up { get; set; } = up;       // (ffn_shexp, dim)
    public Linear Down { get; set; } = down;   // (dim, ffn_shexp)
}

/// <summary>
/// A mixture-of-experts feed-forward (llama.cpp's build_moe_ffn): a router picks k of n experts per token, each a gated
/// feed-forward down(act(gate(x)) · up(x)), and the token's output is the weighted sum of its k experts' outputs (plus a
/// shared expert's, where the family has one).
/// The experts are the 3-D GGUF tensors ffn_gate_exps / ffn_up_exps (ggml [dim, ffn_exp, n_expert]) and ffn_down_exps
/// ([ffn_exp, dim, n_expert]) in their stored type; expert e is a <see cref="Linear"/> view of its rows (a byte range),
/// never a copy. A batch is grouped by expert: each expert with tokens multiplies all of them at once, so its weights
/// are read once per batch, and the experts' products run as one pool job (<see cref="WeightMatrix.MatMulMany"/>: gate and
/// up of every routed expert, then down), as llama.cpp's mul_mat_id does; a decode step reads only the k routed experts
/// (<see cref="ExpertBytesRead"/> counts them).
/// </summary>
public sealed class ExpertLayer
{
    public Linear Router { get; set; }          // (n_expert, dim) ffn_gate_inp (+ bias (n_expert))
    public Linear[] Gate { get; }               // n_expert × (ffn_exp, dim) views of ffn_gate_exps (+ bias rows)
    public Linear[] Up { get; }                 // n_expert × (ffn_exp, dim) views of ffn_up_exps
    public Linear[] Down { get; }               // n_expert × (dim, ffn_exp) views of ffn_down_exps
    public SharedExpert? Shared { get; init; }
    public ExpertRouting Routing { get; }
    public int Count => Gate.Length;
    public int Used { get; }
    public int FfnDim => Gate[0].Out;
    public int Dim => Down[0].Out;

    /// <summary>Bytes of expert weights (gate, up, down of routed experts) this layer's MatMuls have read since load: each
    /// expert that gets tokens in a forward pass counts its three matrices once.</summary>
    public long ExpertBytesRead { get; set; }

    /// <summary>The smallest gap seen since load between a token's k-th selected and best unselected expert score (the gated
    /// probabilities; gpt-oss: the logits): how close routing came to a tie. Tests check it so that two engines are not
    /// compared on a near-tie that rounding could flip.</summary>
    public float MinSelectionMargin { get; set; } = float.PositiveInfinity;

    /// <summary>Bytes of one expert's gate, up and down matrices in their stored type.</summary>
    public long BytesPerExpert => MatrixBytes(Gate[0]) + MatrixBytes(Up[0]) + MatrixBytes(Down[0]);

    private static long MatrixBytes(Linear l) => l.Weight.RowBytes * l.Out;

    public ExpertLayer(Linear router, Linear[] gate, Linear[] up, Linear[] down, int used, ExpertRouting routing)
    {
        int n = router.Out;
        if (gate.Length != n || up.Length != n || down.Length != n) throw new ArgumentException($"{router.Name}: {n} experts but {gate.Length}/{up.Length}/{down.Length} expert matrices");
        if (used < 1 || used > n) throw new ArgumentOutOfRangeException(nameof(used), $"{used} experts per token of {n}");
        Router = router; Gate = gate; Up = up; Down = down; Used = used; Routing = routing;
    }

    /// <summary>Every matrix of the layer (router, experts, shared expert): for repacking and releasing.</summary>
    public IEnumerable<Linear> Matrices =>
        [Router, .. Gate, .. Up, .. Down, .. Shared is { } sh ? new[] { sh.Gate, sh.Up, sh.Down } : []];

    /// <summary>
    /// The MoE feed-forward on the normed input in s.Xb (n, dim); its output is left in s.Xb.
    /// logits = router(x) -> probs = gating(logits) -> k experts by top-k -> weights (softmax over the k for
    /// SoftmaxWeight; / their sum when normalised; × scale) -> per expert with tokens: gather its tokens' rows, one
    /// MatMul each for gate, up, down -> each token sums its k weighted outputs in selection order (as llama.cpp adds
    /// its expert views) -> + shared expert.
    /// </summary>
    public void Forward(RunState s, int n, int threads, Activation act)
    {
        var m = s.Moe ?? throw new InvalidOperationException("the run state was made for a model without experts");
        int dim = Dim, k = Used, ne = Count, ffn = FfnDim;
        if (Shared is not null) s.Xb.AsSpan(0, n * dim).CopyTo(m.Input);
        Router.Forward(s.Xb, m.Logits, n, threads);   // (n, n_expert)
        for (int t = 0; t < n; t++)
        {
            var scores = m.Logits.AsSpan(t * ne, ne);
            var ids = m.Ids.AsSpan(t * k, k);
            Route(Routing, scores, ids, m.Weights.AsSpan(t * k, k), m.Heap);
            if (k < ne) MinSelectionMargin = MathF.Min(MinSelectionMargin, Margin(scores, ids));
        }

        // group the (token, slot) pairs by expert, tokens in batch order within each expert
        Array.Clear(m.Counts, 0, ne);
        for (int i = 0; i < n * k; i++) m.Counts[m.Ids[i]]++;
        m.Starts[0] = 0;
        for (int e = 0; e < ne; e++) m.Starts[e + 1] = m.Starts[e] + m.Counts[e];
        for (int e = 0; e < ne; e++) m.Counts[e] = m.Starts[e];
        for (int i = 0; i < n * k; i++) m.Order[m.Counts[m.Ids[i]]++] = i;
        for (int i = 0; i < n * k; i++) m.Position[m.Order[i]] = i;

        // xe = the rows routed to each expert, experts in order: (n·k, dim); one token without weights first reads x itself
        bool gather = n > 1 || Routing.WeightBeforeFfn;
        for (int i = 0; gather && i < n * k; i++)
        {
            int slot = m.Order[i];
            var row = m.Xe.AsSpan(i * dim, dim);
            s.Xb.AsSpan(slot / k * dim, dim).CopyTo(row);
            if (Routing.WeightBeforeFfn) TensorPrimitives.Multiply(row, m.Weights[slot], row);
        }
        ReadOnlySpan<float> xe = gather ? m.Xe : s.Xb;

        // he = gate(xe), he2 = up(xe): (n·k, ffn_exp), every routed expert's rows in one pool job; then he = act(he, he2)
        var parts = m.Parts;
        int p = 0;
        for (int e = 0; e < ne; e++)
        {
            int start = m.Starts[e], cnt = m.Starts[e + 1] - start;
            if (cnt == 0) continue;
            parts[p++] = new MatMulPart(Gate[e].Weight, gather ? start * dim : 0, start * ffn, cnt);
            parts[p++] = new MatMulPart(Up[e].Weight, gather ? start * dim : 0, n * k * ffn + start * ffn, cnt);
            ExpertBytesRead += BytesPerExpert;
        }
        WeightMatrix.MatMulMany(xe, m.He, parts.AsSpan(0, p), threads);
        var gateOut = m.He.AsSpan(0, n * k * ffn);
        var upOut = m.He.AsSpan(n * k * ffn, n * k * ffn);
        AddBiases(Gate, gateOut, ffn, m); AddBiases(Up, upOut, ffn, m);
        Activate(act, gateOut, upOut, threads);

        // ye = down(he): (n·k, dim), one pool job
        p = 0;
        for (int e = 0; e < ne; e++)
        {
            int start = m.Starts[e], cnt = m.Starts[e + 1] - start;
            if (cnt > 0) parts[p++] = new MatMulPart(Down[e].Weight, start * ffn, start * dim, cnt);
        }
        WeightMatrix.MatMulMany(m.He, m.Ye, parts.AsSpan(0, p), threads);
        AddBiases(Down, m.Ye.AsSpan(0, n * k * dim), dim, m);

        // out[t] = Σ_j w[t,j] · y[t,j], in selection order (each product rounded, then added: ggml_mul, then ggml_add)
        for (int t = 0; t < n; t++)
        {
            var o = s.Xb.AsSpan(t * dim, dim);
            for (int j = 0; j < k; j++)
            {
                int slot = t * k + j;
                var y = m.Ye.AsSpan(m.Position[slot] * dim, dim);
                if (!Routing.WeightBeforeFfn) TensorPrimitives.Multiply(y, m.Weights[slot], y);
                if (j == 0) y.CopyTo(o);
                else TensorPrimitives.Add(o, y, o);
            }
        }
        if (Shared is { } sh) AddShared(sh, s, m, n, threads, act);
    }

    /// <summary>y (n·k rows of <paramref name="width"/>, experts in order) += each row's expert's bias, where the experts have
    /// biases (gpt-oss): after the product, as <see cref="Linear.Forward"/> adds it.</summary>
    private void AddBiases(Linear[] experts, Span<float> y, int width, MoeScratch m)
    {
        if (experts[0].Bias is null) return;
        for (int e = 0; e < Count; e++)
            for (int i = m.Starts[e]; i < m.Starts[e + 1]; i++)
                TensorPrimitives.Add(y.Slice(i * width, width), experts[e].Bias, y.Slice(i * width, width));
    }

    /// <summary>s.Xb += shared(x), x (n, dim) the layer's input (kept in m.Input: the routed sum was written over s.Xb).</summary>
    private void AddShared(SharedExpert sh, RunState s, MoeScratch m, int n, int threads, Activation act)
    {
        int dim = Dim, f = sh.Gate.Out;
        sh.Gate.Forward(m.Input, m.He, n, threads);  // (n, ffn_shexp)
        sh.Up.Forward(m.Input, m.He2, n, threads);   // (n, ffn_shexp)
        Activate(act, m.He.AsSpan(0, n * f), m.He2.AsSpan(0, n * f), threads);
        sh.Down.Forward(m.He, m.Ye, n, threads);     // (n, dim)
        TensorPrimitives.Add(s.Xb.AsSpan(0, n * dim), m.Ye.AsSpan(0, n * dim), s.Xb.AsSpan(0, n * dim));
    }

    /// <summary>min over the selected of score − max over the others.</summary>
    private static float Margin(ReadOnlySpan<float> scores, ReadOnlySpan<int> ids)
    {
        float minSel = float.PositiveInfinity, maxOther = float.NegativeInfinity;
        foreach (int id in ids) minSel = MathF.Min(minSel, scores[id]);
        for (int e = 0; e < scores.Length; e++)
            if (!ids.Contains(e)) maxOther = MathF.Max(maxOther, scores[e]);
        return minSel - maxOther;
    }

    private static void Activate(Activation act, Span<float> g, ReadOnlySpan<float> u, int threads) => Blocks.Activate(act, g, u, threads);

    /// <summary>
    /// One token's routing: k expert ids and their weights from the router's logits (n_expert), in the order and with the
    /// arithmetic of llama.cpp's build_moe_ffn. <paramref name="heap"/>: (n_expert) scratch. The logits are overwritten
    /// by the selection scores: the gated probabilities (+ the selection bias, −∞ outside the chosen groups, when the
    /// router has them).
    /// </summary>
    public static void Route(ExpertRouting r, Span<float> logits, Span<int> ids, Span<float> weights, int[] heap)
    {
        int k = ids.Length, ne = logits.Length;
        // probs = gating(logits); selection ranks probs (Llama 4: the logits)
        Span<float> sel = logits;
        if (r.SelectOnLogits) { TopK(logits, ids, heap); sel = default; }
        switch (r.Gating)
        {
            case ExpertGating.Softmax: Softmax(logits); break;
            case ExpertGating.Sigmoid: TensorPrimitives.Sigmoid(logits, logits); break;
            case ExpertGating.SoftmaxWeight: break; // the logits themselves; softmax over the selected below
        }
        bool biased = !sel.IsEmpty && (r.SelectionBias is not null || r.Groups > 1);
        // n_expert ≤ ModelConfig.MaxExperts (checked at load): the scores fit on the stack
        Span<float> scores = biased ? stackalloc float[ne] : default;
        if (biased)
        {
            // DeepSeek: selection = probs + bias, groups masked; the weights below read the unbiased probs
            SelectionScores(r, logits, scores, heap);
            TopK(scores, ids, heap);
        }
        else if (!sel.IsEmpty) TopK(sel, ids, heap);
        for (int j = 0; j < k; j++) weights[j] = logits[ids[j]];
        if (biased) scores.CopyTo(logits); // the scores the selection ranked (ExpertLayer's margin reads them)
        if (r.Gating == ExpertGating.SoftmaxWeight) Softmax(weights);
        if (r.NormalizeWeights)
        {
            float sum = 0;
            for (int j = 0; j < k; j++) sum += weights[j];
            sum = MathF.Max(sum, 6.103515625e-5f); // llama.cpp clamps the sum at the smallest F16 normal
            for (int j = 0; j < k; j++) weights[j] /= sum;
        }
        if (r.WeightScale != 1f) for (int j = 0; j < k; j++) weights[j] *= r.WeightScale;
    }

    /// <summary>
    /// DeepSeek's selection scores (llama.cpp's build_moe_ffn, after modeling_deepseek.py's MoEGate): s = probs + bias (a float
    /// add, as ggml_add); with groups, each group of n_expert / groups consecutive experts is scored by the sum of its two
    /// best s (ggml_argsort_top_k of 2, then a row sum), the best <see cref="ExpertRouting.GroupsUsed"/> groups are kept
    /// (argsort top-k again, the same tie rule) and every expert of the other groups gets −∞. probs, scores: (n_expert).
    /// </summary>
    public static void SelectionScores(ExpertRouting r, ReadOnlySpan<float> probs, Span<float> scores, int[] heap)
    {
        int ne = probs.Length;
        if (r.SelectionBias is { } b)
        {
            if (b.Length != ne) throw new ArgumentException($"selection bias of {b.Length} for {ne} experts");
            TensorPrimitives.Add(probs, b, scores);
        }
        else probs.CopyTo(scores);
        int groups = r.Groups;
        if (groups <= 1) return;
        int per = ne / groups;
        Span<float> groupScore = stackalloc float[groups];
        Span<int> top2 = stackalloc int[2];
        for (int g = 0; g < groups; g++)
        {
            var v = scores.Slice(g * per, per);
            TopK(v, top2, heap);
            groupScore[g] = (float)((double)v[top2[0]] + v[top2[1]]); // ggml_sum_rows: a double sum of the two, rounded once
        }
        Span<int> kept = stackalloc int[r.GroupsUsed];
        TopK(groupScore, kept, heap);
        float bestDropped = float.NegativeInfinity;
        for (int g = 0; g < groups; g++)
            if (!kept.Contains(g))
            {
                bestDropped = MathF.Max(bestDropped, groupScore[g]);
                scores.Slice(g * per, per).Fill(float.NegativeInfinity);
            }
        r.Stats.MinGroupMargin = MathF.Min(r.Stats.MinGroupMargin, groupScore[kept[^1]] - bestDropped);
    }

    /// <summary>In place: x = exp(x - max) / Σ exp(x - max), the sum in double (as ggml's soft_max).</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        double sum = 0;
        for (int i = 0; i < x.Length; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < x.Length; i++) x[i] *= inv;
    }

    /// <summary>
    /// The k largest of v, largest first, as llama.cpp's build_moe_ffn picks them on the CPU, ties included:
    /// ggml_argsort_top_k, i.e. the indices 0..n-1 sorted by std::sort (libstdc++) with comparator v[a] &gt; v[b], the first k
    /// kept. libstdc++'s std::sort is introsort (median-of-three quicksort down to 16-element ranges, heapsort past
    /// 2·log2(n) levels) followed by insertion sort: for n ≤ 16 it is a stable sort (equal values keep the lower index
    /// first); above 16 the partitions reorder equal values, so a tie at the k-th place is decided by the partition steps
    /// written out here. <paramref name="heap"/>: (v.Length) scratch.
    /// </summary>
    public static void TopK(ReadOnlySpan<float> v, Span<int> ids, int[] heap)
    {
        int k = ids.Length, n = v.Length;
        if (k > n) throw new ArgumentException($"top-{k} of {n}");
        var a = heap.AsSpan(0, n);
        for (int i = 0; i < n; i++) a[i] = i;
        if (n > 1)
        {
            IntroSortLoop(v, a, 0, n, 2 * Log2(n));
            FinalInsertionSort(v, a);
        }
        a[..k].CopyTo(ids);
    }

    // the comparator: a sorts before b when its value is larger
    private static bool Comp(ReadOnlySpan<float> v, int a, int b) => v[a] > v[b];

    private const int SortThreshold = 16; // libstdc++'s _S_threshold

    private static int Log2(int n) => 31 - System.Numerics.BitOperations.LeadingZeroCount((uint)n);

    private static void IntroSortLoop(ReadOnlySpan<float> v, Span<int> a, int first, int last, int depth)
    {
        while (last - first > SortThreshold)
        {
            if (depth == 0) { HeapSort(v, a.Slice(first, last - first)); return; }
            depth--;
            int cut = PartitionPivot(v, a, first, last);
            IntroSortLoop(v, a, cut, last, depth);
            last = cut;
        }
    }

    /// <summary>Median of a[first+1], a[mid], a[last-1] moved to a[first], then Hoare partition around it.</summary>
    private static int PartitionPivot(ReadOnlySpan<float> v, Span<int> a, int first, int last)
    {
        int mid = first + (last - first) / 2, x = first + 1, y = mid, z = last - 1;
        int m;
        if (Comp(v, a[x], a[y])) m = Comp(v, a[y], a[z]) ? y : Comp(v, a[x], a[z]) ? z : x;
        else m = Comp(v, a[x], a[z]) ? x : Comp(v, a[y], a[z]) ? z : y;
        (a[first], a[m]) = (a[m], a[first]);
        int pivot = a[first], lo = first + 1, hi = last;
        while (true)
        {
            while (Comp(v, a[lo], pivot)) lo++;
            hi--;
            while (Comp(v, pivot, a[hi])) hi--;
            if (lo >= hi) return lo;
            (a[lo], a[hi]) = (a[hi], a[lo]);
            lo++;
        }
    }

    private static void FinalInsertionSort(ReadOnlySpan<float> v, Span<int> a)
    {
        if (a.Length > SortThreshold)
        {
            InsertionSort(v, a[..SortThreshold]);
            for (int i = SortThreshold; i < a.Length; i++) LinearInsert(v, a, i); // unguarded: a[0..16) holds a smaller element
        }
        else InsertionSort(v, a);
    }

    private static void InsertionSort(ReadOnlySpan<float> v, Span<int> a)
    {
        for (int i = 1; i < a.Length; i++)
        {
            if (Comp(v, a[i], a[0]))
            {
                int val = a[i];
                a[..i].CopyTo(a[1..]);
                a[0] = val;
            }
            else LinearInsert(v, a, i);
        }
    }

    /// <summary>Moves a[i] left past every element it sorts before (strictly: equal values stay in order).</summary>
    private static void LinearInsert(ReadOnlySpan<float> v, Span<int> a, int i)
    {
        int val = a[i], j = i - 1;
        while (Comp(v, val, a[j])) { a[j + 1] = a[j]; j--; }
        a[j + 1] = val;
    }

    /// <summary>libstdc++'s heap sort fallback (std::__partial_sort over the whole range): make_heap, then sort_heap.</summary>
    private static void HeapSort(ReadOnlySpan<float> v, Span<int> h)
    {
        int len = h.Length;
        if (len >= 2)
            for (int parent = (len - 2) / 2; ; parent--)
            {
                AdjustHeap(v, h, parent, h[parent]);
                if (parent == 0) break;
            }
        for (int last = len - 1; last > 0; last--)
        {
            int value = h[last];
            h[last] = h[0];
            AdjustHeap(v, h[..last], 0, value);
        }
    }

    /// <summary>Sifts the hole at <paramref name="hole"/> down to a leaf (taking the child that comp ranks first), then
    /// pushes <paramref name="value"/> up from there: the two-phase heap adjustment of libstdc++'s heap algorithms.</summary>
    private static void AdjustHeap(ReadOnlySpan<float> v, Span<int> h, int hole, int value)
    {
        int len = h.Length, top = hole, child = hole;
        while (child < (len - 1) / 2)
        {
            child = 2 * (child + 1);
            if (Comp(v, h[child], h[child - 1])) child--;
            h[hole] = h[child];
            hole = child;
        }
        if ((len & 1) == 0 && child == (len - 2) / 2)
        {
            child = 2 * (child + 1);
            h[hole] = h[child - 1];
            hole = child - 1;
        }
        int parent = (hole - 1) / 2;
        while (hole > top && Comp(v, h[parent], value))
        {
            h[hole] = h[parent];
            hole = parent;
            parent = (hole - 1) / 2;
        }
        h[hole] = value;
    }

    /// <summary>
    /// Loads the MoE tensors of block <paramref name="i"/> by the architecture's table: router (+ bias), the 3-D expert
    /// tensors split into per-expert views (+ per-expert biases), and the shared expert when the table has one.
    /// </summary>
    public static unsafe ExpertLayer Load(ITensorSource f, ModelConfig c, int i, ExpertRouting routing)
    {
        var spec = c.Architecture;
        string B(string part) => Block(i, part);
        bool Has(string gguf) => spec.HasTensor(gguf);
        foreach (var part in (string[])[FfnGate, FfnUp, FfnDown])
            if (!f.TryGetTensor(B(FfnGateExps), out _) && f.TryGetTensor(B(LegacyExpert(part[..^".weight".Length], 0)), out _))
                throw new InvalidModelFileException($"{Path.GetFileName(f.Path)}: tensor {B(LegacyExpert(part[..^".weight".Length], 0))}: one tensor per expert is an old GGUF layout (before llama.cpp merged experts into {FfnGateExps}); convert the model again");
        float[]? Bias(string name, int count) => Has(name) ? TensorLoader.Vector(f, B(name), count) : null;
        var router = Linear.Load(f, B(FfnGateInp), c.Dim, c.ExpertCount, Has(FfnGateInpBias) ? B(FfnGateInpBias) : null);
        // DeepSeek V3's selection bias, per layer (optional, as in llama.cpp: V2 files have none)
        if (Has(ExpProbsB) && f.TryGetTensor(B(ExpProbsB), out _))
            routing = routing with { SelectionBias = TensorLoader.Vector(f, B(ExpProbsB), c.ExpertCount) };
        int ne = c.ExpertCount, ffn = c.ExpertFfnDim;
        Linear[] Experts(string name, int rows, int cols, string biasName)
        {
            var t = f.GetTensor(B(name));
            if (t.Dimensions.Length != 3 || t.Dimensions[0] != cols || t.Dimensions[1] != rows || t.Dimensions[2] != ne)
                throw new InvalidModelFileException($"tensor {B(name)} has shape {t.ShapeText}, expected [{cols}, {rows}, {ne}]");
            var bias = Bias(biasName, ne * rows);
            byte* p = f.TensorPointer(t);
            long rowBytes = GgmlTypes.RowBytes(t.Type, cols);
            var r = new Linear[ne];
            for (int e = 0; e < ne; e++)
                r[e] = new Linear(B(name), new WeightMatrix(p + e * rows * rowBytes, t.Type, rows, cols), bias?.AsSpan(e * rows, rows).ToArray());
            return r;
        }
        var layer = new ExpertLayer(router,
            Experts(FfnGateExps, ffn, c.Dim, FfnGateExpsBias), Experts(FfnUpExps, ffn, c.Dim, FfnUpExpsBias),
            Experts(FfnDownExps, c.Dim, ffn, FfnDownExpsBias), c.ExpertsUsed, routing)
        {
            Shared = Has(FfnGateShexp)
                ? new SharedExpert(
                    Linear.Load(f, B(FfnGateShexp), c.Dim, c.SharedExpertFfnDim),
                    Linear.Load(f, B(FfnUpShexp), c.Dim, c.SharedExpertFfnDim),
                    Linear.Load(f, B(FfnDownShexp), c.SharedExpertFfnDim, c.Dim))
                : null,
        };
        return layer;
    }
}

/// <summary>Scratch of the MoE feed-forward for a batch of up to maxBatch tokens, allocated once with the run state.</summary>
public sealed class MoeScratch
{
    public readonly float[] Logits;   // (batch, n_expert) router logits, then gated probabilities
    public readonly int[] Ids;        // (batch, k) selected experts
    public readonly float[] Weights;  // (batch, k) their weights
    public readonly int[] Heap;       // (n_expert) top-k scratch
    public readonly int[] Counts;     // (n_expert)
    public readonly int[] Starts;     // (n_expert + 1) offsets of each expert's slots in Order
    public readonly int[] Order;      // (batch*k) slots t*k+j grouped by expert
    public readonly int[] Position;   // (batch*k) where slot t*k+j is in Order
    public readonly MatMulPart[] Parts; // (2·n_expert) the expert products of one pool job
    public readonly float[] Xe;       // (batch·k, dim) the rows routed to each expert, experts in order
    public readonly float[] He;       // (2, batch·k, ffn_exp) gate, then up outputs; the shared expert: (batch, ffn_shexp)
    public readonly float[] He2;      // (batch, max(ffn_exp, ffn_shexp)) the shared expert's up
    public readonly float[] Ye;       // (batch·k, dim) the experts' outputs, experts in order (the shared expert: (batch, dim))
    public readonly float[] Input;    // (batch, dim) the layer input, for a shared expert

    public MoeScratch(ModelConfig c, int maxBatch)
    {
        int ne = c.ExpertCount, k = c.ExpertsUsed;
        Logits = new float[maxBatch * ne]; Ids = new int[maxBatch * k]; Weights = new float[maxBatch * k];
        Heap = new int[ne]; Counts = new int[ne]; Starts = new int[ne + 1]; Order = new int[maxBatch * k]; Position = new int[maxBatch * k];
        Parts = new MatMulPart[2 * ne];
        Xe = new float[maxBatch * k * c.Dim];
        int shexp = Math.Max(c.ExpertFfnDim, c.SharedExpertFfnDim); // a shared expert is at most this wide (tests lend an expert)
        He = new float[Math.Max(2L * maxBatch * k * c.ExpertFfnDim, (long)maxBatch * shexp)];
        He2 = new float[maxBatch * shexp];
        Ye = new float[(long)maxBatch * k * c.Dim]; Input = new float[maxBatch * c.Dim];
    }
}
