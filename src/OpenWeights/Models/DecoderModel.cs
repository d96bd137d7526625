using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models;

/// <summary>Tokens to append to one sequence's KV cache in a batched forward pass.</summary>
public readonly record struct SequenceBatch(ReadOnlyMemory<int> Tokens, KvCache Cache);

/// <summary>
/// The model interface every consumer takes (inference session, scheduler, server, chat client, LoRA, training, fit
/// measurement, CLI): a decoder-only transformer over memory-mapped weights.
/// embed -> for each layer: Block(l) -> final norm -> output head. What a family does inside a block (norm placement,
/// QK-norm, sliding windows, soft-caps, GeGLU, rotary variants) is its own class's <see cref="Block"/>, one file per
/// family (Models/Llama, Models/Gemma, ...), built from <see cref="Blocks"/>; everything around it lives here once.
/// Weights stay in the memory-mapped file in their stored type. <see cref="Load(string, bool)"/> picks the family from
/// <c>general.architecture</c> (<see cref="Architectures"/>).
/// </summary>
public abstract class DecoderModel : IDisposable
{
    public ModelConfig Config { get; }
    /// <summary>Where the weights live (a GGUF file or a Hugging Face checkpoint); owned by the model when loaded by path.</summary>
    public ITensorSource Source { get; }
    public WeightMatrix TokenEmbedding { get; }       // (vocab, dim)
    public IReadOnlyList<DecoderLayer> Layers { get; }
    public float[] OutputNorm { get; }                 // (dim)
    /// <summary>(dim) added after the final norm, when the file has one (Phi-3.5-MoE); else null.</summary>
    public float[]? OutputNormBias { get; }
    public Linear Output { get; }                      // (vocab, dim); token_embd when tied
    /// <summary>The rotary embedding of full-attention layers (for training and for families with one).</summary>
    public Rope Rope { get; }
    private bool ownsSource;
    private const string OutputNormBiasName = Architectures.Names.OutputNormBias;

    protected DecoderModel(ITensorSource source, ModelConfig c)
    {
        Source = source;
        Config = c;
        TokenEmbedding = LoadEmbedding(source, c);
        Layers = Enumerable.Range(0, c.Layers).Select(i => DecoderLayer.Load(source, c, i)).ToArray();
        OutputNorm = TensorLoader.Vector(source, Architectures.Names.OutputNorm, c.Dim);
        OutputNormBias = source.TryGetTensor(OutputNormBiasName, out _) ? TensorLoader.Vector(source, OutputNormBiasName, c.Dim) : null;
        Output = source.TryGetTensor(Architectures.Names.Output, out _)
            ? Linear.Load(source, Architectures.Names.Output, c.Dim, c.VocabSize, source.TryGetTensor(OutputBias, out _) ? OutputBias : null)
            : new Linear(Architectures.Names.TokenEmbedding, TokenEmbedding); // tied classifier
        float[]? freqFactors = source.TryGetTensor(RopeFreqs, out _) ? TensorLoader.Vector(source, RopeFreqs, c.RopeDims / 2) : null;
        Rope = c.CreateRope(freqFactors);
        ropes = [Rope];
        defaultAttention = new LayerAttention(Rope: 0, AttentionParams.Default(c.HeadDim));
    }

    /// <summary>The family's own metadata key <c>{arch}.{key}</c> as a number, or null when absent.</summary>
    protected double? Number(string key) => Source.GetNumber($"{Config.Architecture.Name}.{key}");

    /// <summary>The family's own metadata key <c>{arch}.{key}</c>; a file without it is refused, naming the key.</summary>
    protected double RequireNumber(string key) => Number(key)
        ?? throw new InvalidModelFileException($"{Path.GetFileName(Source.Path)}: metadata {Config.Architecture.Name}.{key} is missing (required by {Config.Architecture.Name} models)");

    // ---- the family's part -------------------------------------------------------------------------------------

    /// <summary>
    /// One transformer block on the batch's residual stream s.X (n, dim), in place. The tokens' caches and positions are
    /// in s.TokenCache / s.TokenPos; the rotary tables of <see cref="Ropes"/> in s.Cos / s.Sin.
    /// </summary>
    protected abstract void Block(int layer, RunState s, int n, int threads);

    /// <summary>The rotary embeddings whose cos/sin tables each forward pass fills (index = <see cref="LayerAttention.Rope"/>),
    /// for a state made for this context.
    /// Must not allocate (it runs every forward pass): return arrays built at load.</summary>
    public virtual IReadOnlyList<Rope> Ropes(int context) => ropes;
    private readonly Rope[] ropes;

    /// <summary>How layer <paramref name="layer"/> attends: its rotary table (-1: none) and scoring (scale, window, soft-cap).
    /// Families with sliding windows, NoPE layers or a custom query scale override it; Block and training both read it.</summary>
    public virtual LayerAttention AttentionOf(int layer) => defaultAttention;
    private readonly LayerAttention defaultAttention;

    /// <summary>Whether the GGUF's post_attention_norm (<see cref="DecoderLayer.AttnPostNorm"/>) is the feed-forward's
    /// pre-norm, as in gpt-oss's files, rather than a norm on the attention output before the residual add (Gemma 2/3,
    /// OLMo 2). Training's generic block reads it.</summary>
    public virtual bool PostAttentionNormIsFfnNorm => false;

    /// <summary>The feed-forward non-linearity (SwiGLU for Llama, GeGLU for Gemma).</summary>
    public virtual Activation FeedForwardActivation => Activation.SiLU;

    /// <summary>The factor on the token embeddings before the first layer (Gemma: √dim); 1 for Llama.</summary>
    public virtual float EmbeddingScale => 1f;

    /// <summary>Final logits become cap·tanh(logits/cap) (Gemma 2's final_logit_softcapping); 0 = none.</summary>
    public virtual float FinalLogitSoftcap => 0f;

    /// <summary>After the token embedding lookup, x: (n, dim).</summary>
    protected virtual void ScaleEmbeddings(Span<float> x)
    {
        if (EmbeddingScale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(x, EmbeddingScale, x);
    }

    /// <summary>On the final logits, (rows, vocab).</summary>
    protected virtual void FinishLogits(Span<float> logits)
    {
        float cap = FinalLogitSoftcap;
        if (cap <= 0) return;
        System.Numerics.Tensors.TensorPrimitives.Multiply(logits, 1f / cap, logits);
        System.Numerics.Tensors.TensorPrimitives.Tanh(logits, logits);
        System.Numerics.Tensors.TensorPrimitives.Multiply(logits, cap, logits);
    }

    // ---- loading -----------------------------------------------------------------------------------------------

    /// <summary>
    /// Loads a GGUF model of any supported architecture. <paramref name="repack"/>: give the projections their interleaved
    /// copies for inference (<see cref="RepackWeights"/>); training, which decodes weight tiles itself, passes false.
    /// </summary>
    public static DecoderModel Load(string path, bool repack = true) => LoadOwned(GgufFile.Open(path), repack);

    /// <summary>Builds the model over a source the caller keeps and disposes.</summary>
    public static DecoderModel Load(ITensorSource source, bool repack = true)
    {
        var config = ModelConfig.FromGguf(source);
        var m = config.Architecture.Create(source, config);
        if (repack) m.RepackWeights();
        return m;
    }

    /// <summary>Builds the model over a source it then owns (disposed with the model).</summary>
    public static DecoderModel LoadOwned(ITensorSource source, bool repack = true)
    {
        try
        {
            var m = Load(source, repack);
            m.ownsSource = true;
            return m;
        }
        catch { source.Dispose(); throw; }
    }

    private static unsafe WeightMatrix LoadEmbedding(ITensorSource f, ModelConfig c)
    {
        var t = f.GetTensor(Architectures.Names.TokenEmbedding);
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != c.Dim || t.Dimensions[1] != c.VocabSize)
            throw new InvalidModelFileException($"tensor {Architectures.Names.TokenEmbedding} has shape {t.ShapeText}, expected [{c.Dim}, {c.VocabSize}]");
        return new WeightMatrix(f.TensorPointer(t), t.Type, c.VocabSize, c.Dim);
    }

    /// <summary>
    /// Gives every projection that has one its interleaved copy for the inference kernels (<see cref="WeightMatrix.Repack"/>),
    /// the matrices in parallel; the file-mapped pages of repacked tensors (GGUF, safetensors) are handed back to the OS.
    /// The copies are ordinary memory, which the OS cannot page out as it can a file map, so they must fit in
    /// <paramref name="availableBytes"/> (default: the memory available now) less 256 MiB:
    /// - everything fits: everything is repacked;
    /// - a mixture of experts that does not fit whole: only its dense part is repacked (attention, output, routers, shared
    ///   experts: read by every token) when that fits, and the routed experts stay in the file map, where the OS keeps the
    ///   hot ones resident and pages the rest in from disk as the router picks them (a model larger than RAM runs, at the
    ///   speed `fit` estimates for the file map);
    /// - otherwise nothing is repacked and the weights stay in the file map (slower kernels, but a model larger than RAM
    ///   still runs).
    /// Returns the number of matrices repacked.
    /// </summary>
    public int RepackWeights(long? availableBytes = null)
    {
        var (dense, routed) = RepackPlan(availableBytes ?? OpenWeights.Tensors.Memory.SystemMemory.AvailableBytes());
        var chosen = dense.Concat(routed).ToArray();
        int done = 0;
        Parallel.ForEach(chosen, p =>
        {
            // only pages of a read-only file mapping may be handed back (anything else would lose its contents)
            bool mapped = Source.TryGetTensor(p.Name, out var t) && Source.IsFileMapped(t);
            if (p.Weight.Repack(releaseMappedSource: mapped)) Interlocked.Increment(ref done);
        });
        return done;
    }

    /// <summary>What <see cref="RepackWeights"/> repacks under a budget: (dense part, routed experts), either empty.</summary>
    public (IReadOnlyList<Linear> Dense, IReadOnlyList<Linear> Routed) RepackPlan(long availableBytes)
    {
        var (dense, routed) = RepackableMatrices();
        long room = availableBytes - (256L << 20);
        long needDense = dense.Sum(p => p.Weight.RepackBytes), needRouted = routed.Sum(p => p.Weight.RepackBytes);
        if (needDense + needRouted == 0) return ([], []);
        if (needDense + needRouted <= room) return (dense, routed);
        if (routed.Length > 0 && needDense <= room) return (dense, []);
        return ([], []);
    }

    /// <summary>Every matrix of the model once: the dense part (read by every token) and the routed experts (read only when picked).</summary>
    public (Linear[] Dense, Linear[] Routed) RepackableMatrices()
    {
        var routed = Layers.Where(l => l.Experts is not null)
            .SelectMany(l => l.Experts!.Gate.Concat(l.Experts.Up).Concat(l.Experts.Down))
            .DistinctBy(p => p.Weight).ToArray();
        var routedSet = routed.Select(p => p.Weight).ToHashSet();
        var dense = Layers.SelectMany(l => l.Matrices).Append(Output)
            .Where(p => !routedSet.Contains(p.Weight)).DistinctBy(p => p.Weight).ToArray();
        return (dense, routed);
    }

    // ---- running -----------------------------------------------------------------------------------------------

    public RunState CreateState(int maxBatch, int context) => new(Config, maxBatch, context, Ropes(context).Count);
    /// <summary>A cache for one sequence of up to <paramref name="context"/> tokens, F32 keys and values (the exact cache:
    /// training and the tests that compare with an F32 llama.cpp cache); keys only for latent attention (DeepSeek: per token
    /// and layer kv_lora_rank + rope elements, in the K type).</summary>
    public KvCache CreateCache(int context) => CreateCache(context, KvCacheTypes.F32);

    /// <summary>A cache in <paramref name="types"/> (inference sessions and the server default to F16: <see cref="KvCacheTypes.Default"/>).
    /// Q8_0 needs heads (the latent row, for latent attention) in whole blocks of 32.</summary>
    public KvCache CreateCache(int context, KvCacheTypes types)
    {
        types.Validate(Config.Mla is null ? Config.HeadDim : Config.KvDim);
        return new(Config.Layers, context, Config.KvDim, types, values: Config.Mla is null);
    }

    /// <summary>
    /// Runs tokens at positions cache.Length .. cache.Length+n-1 and appends them to the cache.
    /// Writes the last token's logits to state.Logits; when <paramref name="allLogits"/> is given: (n, vocab), every token's.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache cache, RunState s, int threads, Span<float> allLogits = default)
    {
        if (tokens.Length == 0) return;
        if (tokens.Length > s.MaxBatch) throw new ArgumentException($"batch of {tokens.Length} tokens exceeds {s.MaxBatch}");
        tokens.CopyTo(s.TokenIds); // no per-call array: the segment's tokens live in the run state
        Span<SequenceBatch> one = [new SequenceBatch(s.TokenIds.AsMemory(0, tokens.Length), cache)];
        if (!allLogits.IsEmpty)
        {
            if (allLogits.Length < tokens.Length * Config.VocabSize) throw new ArgumentException("allLogits must hold (n, vocab)");
            ForwardCore(one, s, threads, allLogits, allRows: true);
            allLogits.Slice((tokens.Length - 1) * Config.VocabSize, Config.VocabSize).CopyTo(s.Logits);
        }
        else ForwardCore(one, s, threads, s.Logits, allRows: false);
    }

    /// <summary>
    /// One pass over the weights for several independent sequences (continuous batching): each segment's
    /// tokens are appended to its own KV cache. lastLogits: (segments, vocab), each segment's last token.
    /// </summary>
    public void Forward(ReadOnlySpan<SequenceBatch> segments, RunState s, int threads, Span<float> lastLogits)
    {
        if (lastLogits.Length < segments.Length * Config.VocabSize) throw new ArgumentException("lastLogits must hold (segments, vocab)");
        ForwardCore(segments, s, threads, lastLogits, allRows: false);
    }

    private void ForwardCore(ReadOnlySpan<SequenceBatch> segments, RunState s, int threads, Span<float> logitsOut, bool allRows)
    {
        var c = Config;
        int dim = c.Dim, half = c.RopeDims / 2, vocab = c.VocabSize;

        // Lay the segments out as one batch of n tokens, each with its own cache and position.
        int n = 0;
        foreach (var seg in segments)
        {
            int len = seg.Tokens.Length;
            if (len == 0) throw new ArgumentException("empty segment");
            if (seg.Cache.Length + len > seg.Cache.Capacity)
                throw new OpenWeightsException($"context overflow: {seg.Cache.Length + len} tokens exceed the context size {seg.Cache.Capacity}");
            if (n + len > s.MaxBatch) throw new ArgumentException($"batch of {n + len} tokens exceeds {s.MaxBatch}");
            var toks = seg.Tokens.Span;
            for (int i = 0; i < len; i++)
            {
                int tok = toks[i];
                if ((uint)tok >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(segments), $"token id {tok} is outside the vocabulary (0..{vocab - 1})");
                s.TokenCache[n] = seg.Cache;
                s.TokenPos[n] = seg.Cache.Length + i;
                n++;
            }
        }

        // x = embed(tokens): (n, dim)
        int k = 0;
        foreach (var seg in segments)
            foreach (var tok in seg.Tokens.Span) { TokenEmbedding.DecodeRow(tok, s.X.AsSpan(k * dim, dim)); k++; }
        ScaleEmbeddings(s.X.AsSpan(0, n * dim));
        var ropes = Ropes(s.Context);
        for (int r = 0; r < ropes.Count; r++)
            for (int t = 0; t < n; t++) ropes[r].Angles(s.TokenPos[t], s.Cos[r].AsSpan(t * half, half), s.Sin[r].AsSpan(t * half, half));

        for (int l = 0; l < c.Layers; l++) Block(l, s, n, threads);
        foreach (var seg in segments) seg.Cache.Length += seg.Tokens.Length;
        for (int t = 0; t < n; t++) s.TokenCache[t] = null;

        // logits = output(rmsnorm(x)): every row, or each segment's last row
        int rows;
        if (allRows)
        {
            Blocks.RmsNorm(s.X, OutputNorm, OutputNormBias, s.Xb, n, c.RmsEps);
            rows = n;
        }
        else
        {
            int row = 0, end = 0;
            foreach (var seg in segments)
            {
                end += seg.Tokens.Length;
                Ops.RmsNorm(s.X.AsSpan((end - 1) * dim, dim), OutputNorm, s.Xb.AsSpan(row * dim, dim), c.RmsEps);
                if (OutputNormBias is { } ob) System.Numerics.Tensors.TensorPrimitives.Add(s.Xb.AsSpan(row * dim, dim), ob, s.Xb.AsSpan(row * dim, dim));
                row++;
            }
            rows = segments.Length;
        }
        Output.Forward(s.Xb, logitsOut, rows, threads);
        FinishLogits(logitsOut[..(rows * vocab)]);
    }

    /// <summary>Mean-pooled, L2-normalised final hidden state of a token sequence (embeddings).</summary>
    public float[] Embed(ReadOnlySpan<int> tokens, int threads)
    {
        var run = new EmbeddingRun(this, tokens.ToArray(), 512);
        while (!run.Step(threads)) { }
        return run.Result();
    }

    // ---- mixture of experts: what a token reads -----------------------------------------------------------------

    /// <summary>Bytes of expert weights the MoE layers' MatMuls have read since load (each expert that gets tokens in a
    /// forward pass counts its gate, up and down once; see <see cref="ExpertLayer.ExpertBytesRead"/>). 0 for a dense model.
    /// Read it before and after a decode step for the expert bytes that step read.</summary>
    public long ExpertBytesRead => Layers.Sum(l => l.Experts?.ExpertBytesRead ?? 0);

    /// <summary>
    /// Weight bytes one decode step reads at most, in their stored types: every matrix that is not a routed expert (attention,
    /// dense feed-forwards, routers, shared experts, the output head) plus k routed experts per MoE layer; the token
    /// embedding's one row is left out. For a dense model, all its matrices. Compare with the file's total for a MoE model.
    /// </summary>
    public long ActiveWeightBytes
    {
        get
        {
            static long Bytes(Linear l) => l.Weight.RowBytes * l.Out;
            long total = Bytes(Output);
            foreach (var l in Layers)
            {
                total += l.Projections.Sum(Bytes);
                if (l.Experts is { } x)
                {
                    total += Bytes(x.Router) + x.Used * x.BytesPerExpert;
                    if (x.Shared is { } sh) total += Bytes(sh.Gate) + Bytes(sh.Up) + Bytes(sh.Down);
                }
            }
            return total;
        }
    }

    /// <summary>The rotary embedding a layer uses in a state made for this context (null for a NoPE layer).</summary>
    public Rope? RopeOf(LayerAttention a, int context) => a.Rope < 0 ? null : Ropes(context)[a.Rope];

    public void Dispose()
    {
        foreach (var p in Layers.SelectMany(l => l.Matrices).Append(Output)) p.Weight.ReleasePacked();
        if (ownsSource) Source.Dispose();
        GC.SuppressFinalize(this);
    }
}
