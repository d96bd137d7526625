using OpenWeights.Formats;
using System.Numerics.Tensors;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Llama;

/// <summary>
/// The Llama-family decoder (llama, qwen2), reading top to bottom like Meta's reference model.py:
/// embed -> for each layer { x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)) } -> rmsnorm -> output head.
/// Weights stay in the memory-mapped GGUF file in their stored type.
/// </summary>
/// <summary>Tokens to append to one sequence's KV cache in a batched forward pass.</summary>
public readonly record struct SequenceBatch(ReadOnlyMemory<int> Tokens, KvCache Cache);

public sealed class LlamaModel : IDisposable
{
    public ModelConfig Config { get; }
    /// <summary>Where the weights live (a GGUF file or a Hugging Face checkpoint); owned by the model when loaded by path.</summary>
    public ITensorSource Source { get; }
    public WeightMatrix TokenEmbedding { get; }       // (vocab, dim)
    public IReadOnlyList<LlamaLayer> Layers { get; }
    public float[] OutputNorm { get; }                 // (dim)
    public Linear Output { get; }                      // (vocab, dim); token_embd when tied
    public Rope Rope { get; }
    private readonly bool ownsFile;

    private LlamaModel(ITensorSource file, bool ownsFile, bool repack)
    {
        Source = file; this.ownsFile = ownsFile;
        var c = Config = ModelConfig.FromGguf(file);
        TokenEmbedding = LoadEmbedding(file, c);
        Layers = Enumerable.Range(0, c.Layers).Select(i => LlamaLayer.Load(file, c, i)).ToArray();
        OutputNorm = TensorLoader.Vector(file, OutputNorm_, c.Dim);
        Output = file.TryGetTensor(Architectures.Names.Output, out _)
            ? Linear.Load(file, Architectures.Names.Output, c.Dim, c.VocabSize)
            : new Linear(TokenEmbedding_, TokenEmbedding); // tied classifier
        float[]? freqFactors = file.TryGetTensor(RopeFreqs, out _) ? TensorLoader.Vector(file, RopeFreqs, c.RopeDims / 2) : null;
        Rope = c.CreateRope(freqFactors);
        if (repack) RepackWeights();
    }

    /// <summary>
    /// Gives every projection that has one its interleaved copy for the inference kernels (<see cref="WeightMatrix.Repack"/>),
    /// the matrices in parallel; the file-mapped pages of repacked tensors (GGUF, safetensors) are handed back to the OS.
    /// The copies are ordinary memory, which the OS cannot page out as it can a file map: when they would not fit in
    /// <paramref name="availableBytes"/> (default: the memory available now) less 256 MiB, nothing is repacked and the
    /// weights stay in the file map (slower kernels, but a model larger than RAM still runs). Returns the number of
    /// matrices repacked.
    /// </summary>
    public int RepackWeights(long? availableBytes = null)
    {
        var all = Layers.SelectMany(l => l.Projections).Append(Output).DistinctBy(p => p.Weight).ToArray();
        long need = all.Sum(p => p.Weight.RepackBytes);
        if (need == 0 || need > (availableBytes ?? Hardware.HardwareProbe.AvailableMemoryBytes()) - (256L << 20)) return 0;
        int done = 0;
        Parallel.ForEach(all, p =>
        {
            // only pages of a read-only file mapping may be handed back (anything else would lose its contents)
            bool mapped = Source.TryGetTensor(p.Name, out var t) && Source.IsFileMapped(t);
            if (p.Weight.Repack(releaseMappedSource: mapped)) Interlocked.Increment(ref done);
        });
        return done;
    }

    private const string OutputNorm_ = Architectures.Names.OutputNorm;
    private const string TokenEmbedding_ = Architectures.Names.TokenEmbedding;

    /// <summary>
    /// Loads a GGUF model. <paramref name="repack"/>: give the projections their interleaved copies for inference
    /// (<see cref="RepackWeights"/>); training, which decodes weight tiles itself, passes false.
    /// </summary>
    public static LlamaModel Load(string path, bool repack = true)
    {
        var f = GgufFile.Open(path);
        try { return new LlamaModel(f, ownsFile: true, repack); }
        catch { f.Dispose(); throw; }
    }

    /// <summary>Builds the model over a source the caller keeps and disposes.</summary>
    public static LlamaModel Load(ITensorSource file, bool repack = true) => new(file, ownsFile: false, repack);

    /// <summary>Builds the model over a source it then owns (disposed with the model).</summary>
    public static LlamaModel LoadOwned(ITensorSource source, bool repack = true)
    {
        try { return new LlamaModel(source, ownsFile: true, repack); }
        catch { source.Dispose(); throw; }
    }

    private static unsafe WeightMatrix LoadEmbedding(ITensorSource f, ModelConfig c)
    {
        var t = f.GetTensor(TokenEmbedding_);
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != c.Dim || t.Dimensions[1] != c.VocabSize)
            throw new InvalidModelFileException($"tensor {TokenEmbedding_} has shape {t.ShapeText}, expected [{c.Dim}, {c.VocabSize}]");
        return new WeightMatrix(f.TensorPointer(t), t.Type, c.VocabSize, c.Dim);
    }

    public RunState CreateState(int maxBatch, int context) => new(Config, maxBatch, context);
    public KvCache CreateCache(int context) => new(Config.Layers, context, Config.KvDim);

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
        int dim = c.Dim, half = c.RopeDims / 2;

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
                if ((uint)tok >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(segments), $"token id {tok} is outside the vocabulary (0..{c.VocabSize - 1})");
                s.TokenCache[n] = seg.Cache;
                s.TokenPos[n] = seg.Cache.Length + i;
                n++;
            }
        }

        // x = embed(tokens): (n, dim)
        int k = 0;
        foreach (var seg in segments)
            foreach (var tok in seg.Tokens.Span) { TokenEmbedding.DecodeRow(tok, s.X.AsSpan(k * dim, dim)); k++; }
        for (int t = 0; t < n; t++) Rope.Angles(s.TokenPos[t], s.Cos.AsSpan(t * half, half), s.Sin.AsSpan(t * half, half));

        for (int l = 0; l < c.Layers; l++)
        {
            var L = Layers[l];
            // h = x + attention(rmsnorm(x))
            for (int t = 0; t < n; t++) Ops.RmsNorm(s.X.AsSpan(t * dim, dim), L.AttnNorm, s.Xb.AsSpan(t * dim, dim), c.RmsEps);
            L.Wq.Forward(s.Xb, s.Q, n, threads);
            L.Wk.Forward(s.Xb, s.K, n, threads);
            L.Wv.Forward(s.Xb, s.V, n, threads);
            for (int t = 0; t < n; t++)
            {
                var cos = s.Cos.AsSpan(t * half, half); var sin = s.Sin.AsSpan(t * half, half);
                Rope.Apply(s.Q.AsSpan(t * c.QDim, c.QDim), c.Heads, c.HeadDim, cos, sin);
                Rope.Apply(s.K.AsSpan(t * c.KvDim, c.KvDim), c.KvHeads, c.HeadDim, cos, sin);
                s.K.AsSpan(t * c.KvDim, c.KvDim).CopyTo(s.TokenCache[t]!.K(l, s.TokenPos[t]));
                s.V.AsSpan(t * c.KvDim, c.KvDim).CopyTo(s.TokenCache[t]!.V(l, s.TokenPos[t]));
            }
            Attention.Causal(s.Q, s.TokenCache, s.TokenPos, l, s.Att, n, c.Heads, c.KvHeads, c.HeadDim, threads);
            L.Wo.Forward(s.Att, s.Xb, n, threads);
            TensorPrimitives.Add(s.X.AsSpan(0, n * dim), s.Xb.AsSpan(0, n * dim), s.X.AsSpan(0, n * dim));

            // x = h + ffn(rmsnorm(h)), ffn = down(silu(gate(x)) * up(x))
            for (int t = 0; t < n; t++) Ops.RmsNorm(s.X.AsSpan(t * dim, dim), L.FfnNorm, s.Xb.AsSpan(t * dim, dim), c.RmsEps);
            L.WGate.Forward(s.Xb, s.Hb, n, threads);
            L.WUp.Forward(s.Xb, s.Hb2, n, threads);
            Ops.SwiGlu(s.Hb.AsSpan(0, n * c.FfnDim), s.Hb2.AsSpan(0, n * c.FfnDim), threads);
            L.WDown.Forward(s.Hb, s.Xb, n, threads);
            TensorPrimitives.Add(s.X.AsSpan(0, n * dim), s.Xb.AsSpan(0, n * dim), s.X.AsSpan(0, n * dim));
        }
        foreach (var seg in segments) seg.Cache.Length += seg.Tokens.Length;
        for (int t = 0; t < n; t++) s.TokenCache[t] = null;

        // logits = output(rmsnorm(x)): every row, or each segment's last row
        if (allRows)
        {
            for (int t = 0; t < n; t++) Ops.RmsNorm(s.X.AsSpan(t * dim, dim), OutputNorm, s.Xb.AsSpan(t * dim, dim), c.RmsEps);
            Output.Forward(s.Xb, logitsOut, n, threads);
        }
        else
        {
            int row = 0, end = 0;
            foreach (var seg in segments)
            {
                end += seg.Tokens.Length;
                Ops.RmsNorm(s.X.AsSpan((end - 1) * dim, dim), OutputNorm, s.Xb.AsSpan(row * dim, dim), c.RmsEps);
                row++;
            }
            Output.Forward(s.Xb, logitsOut, segments.Length, threads);
        }
    }

    /// <summary>Mean-pooled, L2-normalised final hidden state of a token sequence (embeddings).</summary>
    public float[] Embed(ReadOnlySpan<int> tokens, int threads)
    {
        var run = new EmbeddingRun(this, tokens.ToArray(), 512);
        while (!run.Step(threads)) { }
        return run.Result();
    }

    public void Dispose()
    {
        foreach (var p in Layers.SelectMany(l => l.Projections).Append(Output)) p.Weight.ReleasePacked();
        if (ownsFile) Source.Dispose();
    }
}
