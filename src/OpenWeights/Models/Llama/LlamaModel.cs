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
public sealed class LlamaModel : IDisposable
{
    public ModelConfig Config { get; }
    public GgufFile File { get; }
    public WeightMatrix TokenEmbedding { get; }       // (vocab, dim)
    public IReadOnlyList<LlamaLayer> Layers { get; }
    public float[] OutputNorm { get; }                 // (dim)
    public Linear Output { get; }                      // (vocab, dim); token_embd when tied
    public Rope Rope { get; }
    private readonly bool ownsFile;

    private LlamaModel(GgufFile file, bool ownsFile)
    {
        File = file; this.ownsFile = ownsFile;
        var c = Config = ModelConfig.FromGguf(file);
        TokenEmbedding = LoadEmbedding(file, c);
        Layers = Enumerable.Range(0, c.Layers).Select(i => LlamaLayer.Load(file, c, i)).ToArray();
        OutputNorm = TensorLoader.Vector(file, OutputNorm_, c.Dim);
        Output = file.TryGetTensor(Architectures.Names.Output, out _)
            ? Linear.Load(file, Architectures.Names.Output, c.Dim, c.VocabSize)
            : new Linear(TokenEmbedding_, TokenEmbedding); // tied classifier
        float[]? freqFactors = file.TryGetTensor(RopeFreqs, out _) ? TensorLoader.Vector(file, RopeFreqs, c.RopeDims / 2) : null;
        Rope = new Rope(c.RopeDims, c.Architecture.Rope, c.RopeBase, c.RopeFreqScale, freqFactors);
    }

    private const string OutputNorm_ = Architectures.Names.OutputNorm;
    private const string TokenEmbedding_ = Architectures.Names.TokenEmbedding;

    public static LlamaModel Load(string path)
    {
        var f = GgufFile.Open(path);
        try { return new LlamaModel(f, ownsFile: true); }
        catch { f.Dispose(); throw; }
    }

    public static LlamaModel Load(GgufFile file) => new(file, ownsFile: false);

    private static unsafe WeightMatrix LoadEmbedding(GgufFile f, ModelConfig c)
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
        var c = Config;
        int n = tokens.Length, start = cache.Length;
        if (n == 0) return;
        if (n > s.MaxBatch) throw new ArgumentException($"batch of {n} tokens exceeds {s.MaxBatch}");
        if (start + n > cache.Capacity) throw new OpenWeightsException($"context overflow: {start + n} tokens exceed the context size {cache.Capacity}");
        int dim = c.Dim;

        // x = embed(tokens): (n, dim)
        for (int t = 0; t < n; t++)
        {
            int tok = tokens[t];
            if ((uint)tok >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tok} is outside the vocabulary (0..{c.VocabSize - 1})");
            TokenEmbedding.DecodeRow(tok, s.X.AsSpan(t * dim, dim));
        }
        int half = c.RopeDims / 2;
        for (int t = 0; t < n; t++) Rope.Angles(start + t, s.Cos.AsSpan(t * half, half), s.Sin.AsSpan(t * half, half));

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
                s.K.AsSpan(t * c.KvDim, c.KvDim).CopyTo(cache.K(l, start + t));
                s.V.AsSpan(t * c.KvDim, c.KvDim).CopyTo(cache.V(l, start + t));
            }
            Attention.Causal(s.Q, cache.KLayer(l), cache.VLayer(l), s.Att, n, start, c.Heads, c.KvHeads, c.HeadDim, threads);
            L.Wo.Forward(s.Att, s.Xb, n, threads);
            TensorPrimitives.Add(s.X.AsSpan(0, n * dim), s.Xb.AsSpan(0, n * dim), s.X.AsSpan(0, n * dim));

            // x = h + ffn(rmsnorm(h)), ffn = down(silu(gate(x)) * up(x))
            for (int t = 0; t < n; t++) Ops.RmsNorm(s.X.AsSpan(t * dim, dim), L.FfnNorm, s.Xb.AsSpan(t * dim, dim), c.RmsEps);
            L.WGate.Forward(s.Xb, s.Hb, n, threads);
            L.WUp.Forward(s.Xb, s.Hb2, n, threads);
            Ops.SwiGlu(s.Hb.AsSpan(0, n * c.FfnDim), s.Hb2.AsSpan(0, n * c.FfnDim));
            L.WDown.Forward(s.Hb, s.Xb, n, threads);
            TensorPrimitives.Add(s.X.AsSpan(0, n * dim), s.Xb.AsSpan(0, n * dim), s.X.AsSpan(0, n * dim));
        }
        cache.Length = start + n;

        // logits = output(rmsnorm(x)): only the rows asked for
        if (!allLogits.IsEmpty)
        {
            if (allLogits.Length < n * c.VocabSize) throw new ArgumentException("allLogits must hold (n, vocab)");
            for (int t = 0; t < n; t++) Ops.RmsNorm(s.X.AsSpan(t * dim, dim), OutputNorm, s.Xb.AsSpan(t * dim, dim), c.RmsEps);
            Output.Forward(s.Xb, allLogits, n, threads);
            allLogits.Slice((n - 1) * c.VocabSize, c.VocabSize).CopyTo(s.Logits);
        }
        else
        {
            Ops.RmsNorm(s.X.AsSpan((n - 1) * dim, dim), OutputNorm, s.Xb.AsSpan(0, dim), c.RmsEps);
            Output.Forward(s.Xb, s.Logits, 1, threads);
        }
    }

    /// <summary>Mean-pooled, L2-normalised final hidden state of a token sequence (embeddings).</summary>
    public float[] Embed(ReadOnlySpan<int> tokens, int threads)
    {
        var cache = CreateCache(Math.Max(1, tokens.Length));
        int batch = Math.Min(tokens.Length, 512);
        var s = CreateState(Math.Max(1, batch), Math.Max(1, tokens.Length));
        var sum = new float[Config.Dim];
        for (int i = 0; i < tokens.Length; i += batch)
        {
            int n = Math.Min(batch, tokens.Length - i);
            Forward(tokens.Slice(i, n), cache, s, threads);
            for (int t = 0; t < n; t++)
            {
                var h = s.X.AsSpan(t * Config.Dim, Config.Dim);
                Ops.RmsNorm(h, OutputNorm, s.Xb.AsSpan(0, Config.Dim), Config.RmsEps);
                TensorPrimitives.Add(sum, s.Xb.AsSpan(0, Config.Dim), sum);
            }
        }
        float norm = TensorPrimitives.Norm(sum);
        if (norm > 0) TensorPrimitives.Divide(sum, norm, sum);
        return sum;
    }

    public void Dispose() { if (ownsFile) File.Dispose(); }
}
