using OpenWeights.Models;
using OpenWeights.Models.Common;

namespace OpenWeights.Lora;

/// <summary>
/// Which adapter each row of a batched forward pass takes, for the calling thread (the one that runs the pass: the
/// projections are called on it). Row t of the batch takes adapter <c>rows[t]</c>; 0 is none. Unset (null), every row
/// takes none, so a pass on another thread (embeddings) sees only the adapters applied to every request.
/// </summary>
public static class LoraRouting
{
    [ThreadStatic] private static int[]? rows;

    /// <summary>The adapter id of each row of the passes this thread runs next (null: none); at least as long as the batch.</summary>
    public static void Set(int[]? rowAdapters) => rows = rowAdapters;

    internal static int[]? Current => rows;
}

/// <summary>
/// A projection with adapters selected per row: y = W·x + b for every row, then, for the rows routed to adapter k,
/// y += scale_k · B_k·(A_k·x). The base product runs once for the whole batch; each adapter's low-rank update runs only on
/// its rows (a run of consecutive rows at a time), row by row, so a row's result does not depend on the other rows: a
/// request in a batch that mixes adapters gets the same numbers as alone (given a batch-invariant base product).
/// </summary>
public sealed class RoutedLoraLinear : Linear
{
    private sealed record Piece(int Id, AppliedLora Lora, float[] BTransposed);

    /// <summary>The wrapped projection (it may itself carry the adapters applied to every row: a <see cref="LoraLinear"/>).</summary>
    public Linear Base { get; }
    private volatile Piece[] pieces = []; // copied on write: a pass reads one array while adapters come and go
    private readonly object writeLock = new();

    public RoutedLoraLinear(Linear @base) : base(@base.Name, @base.Weight, @base.Bias)
    {
        if (@base is RoutedLoraLinear) throw new ArgumentException("already routed", nameof(@base));
        Base = @base;
    }

    /// <summary>The adapter ids with a pair on this projection.</summary>
    public IReadOnlyList<int> Ids => [.. pieces.Select(p => p.Id)];

    internal void Add(int id, AppliedLora lora)
    {
        lora.Weights.Validate();
        if (lora.Weights.In != In || lora.Weights.Out != Out)
            throw new OpenWeightsException($"LoRA for {Name} is {lora.Weights.Out}x{lora.Weights.In}, the projection is {Out}x{In}");
        var piece = new Piece(id, lora, LoraLinear.Transpose(lora.Weights.B, lora.Weights.Out, lora.Weights.Rank));
        lock (writeLock) pieces = [.. pieces.Where(p => p.Id != id), piece];
    }

    internal void Remove(int id)
    {
        lock (writeLock) pieces = [.. pieces.Where(p => p.Id != id)];
    }

    /// <summary>Y = Base(X), then each run of rows routed to an adapter of this projection gets its update. X: (n, In), Y: (n, Out).</summary>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int n, int threads)
    {
        Base.Forward(x, y, n, threads);
        var routes = LoraRouting.Current;
        var ps = pieces;
        if (routes is null || ps.Length == 0) return;
        if (routes.Length < n) throw new InvalidOperationException($"LoRA routing holds {routes.Length} rows, the pass has {n}");
        for (int t = 0; t < n;)
        {
            int id = routes[t], end = t + 1;
            while (end < n && routes[end] == id) end++;
            if (id != 0 && Find(ps, id) is { } p)
                LoraLinear.AddUpdate(p.Lora, p.BTransposed, x.Slice(t * In, (end - t) * In), y.Slice(t * Out, (end - t) * Out), end - t, In, Out, threads);
            t = end;
        }
    }

    private static Piece? Find(Piece[] ps, int id)
    {
        foreach (var p in ps) if (p.Id == id) return p;
        return null;
    }
}

/// <summary>
/// The adapters a model serves per request: each registered adapter gets an id (never reused) and its pairs on the model's
/// projections (wrapped once in <see cref="RoutedLoraLinear"/>); a pass applies adapter k to the rows that
/// <see cref="LoraRouting.Set"/> routes to k. Adding or removing an adapter is safe while passes run on other requests
/// (each projection swaps its list whole); removing one that running rows still use is the caller's to prevent.
/// </summary>
public sealed class RoutedAdapters(DecoderModel model)
{
    private int lastId;
    private readonly object gate = new();

    /// <summary>Wraps the projections <paramref name="adapter"/> adapts (already validated against the model) and returns its id.</summary>
    public int Add(LoraAdapter adapter, float scale = 1f)
    {
        lock (gate)
        {
            int id = ++lastId;
            var arch = model.Config.Architecture;
            var added = new List<RoutedLoraLinear>();
            try
            {
                foreach (var w in LoraNames.Ordered(adapter, arch))
                {
                    var (layer, _) = LoraNames.ParseGguf(w.Target, arch);
                    if (layer >= model.Layers.Count) throw new OpenWeightsException($"LoRA adapts {w.Target} but the model has {model.Layers.Count} layers");
                    string part = w.Target[(w.Target.IndexOf('.', 4) + 1)..]; // "blk.3.attn_q.weight" -> "attn_q.weight"
                    var L = model.Layers[layer];
                    float s = LoraNames.ScaleOf(adapter, w) * scale;
                    foreach (var (p, piece) in LoraLoader.Split(model.Config, part, w))
                    {
                        if (L.GetProjection(p) is not RoutedLoraLinear r) { r = new RoutedLoraLinear(L.GetProjection(p)); L.SetProjection(p, r); }
                        r.Add(id, new AppliedLora(piece, s));
                        added.Add(r);
                    }
                }
            }
            catch { foreach (var r in added) r.Remove(id); throw; }
            return id;
        }
    }

    /// <summary>Takes adapter <paramref name="id"/>'s pairs off the model (the wrappers stay, empty: a no-op on the base).</summary>
    public void Remove(int id)
    {
        lock (gate)
            foreach (var L in model.Layers)
                foreach (var p in L.Projections)
                    if (p is RoutedLoraLinear r) r.Remove(id);
    }
}
