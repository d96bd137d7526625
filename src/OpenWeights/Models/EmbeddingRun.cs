using System.Numerics.Tensors;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models;

/// <summary>
/// One embedding computed a chunk of tokens at a time (<see cref="Step"/>), so that a caller can interleave it with
/// other work: the mean-pooled, L2-normalised final hidden state of the tokens (<see cref="DecoderModel.Embed"/>).
/// </summary>
public sealed class EmbeddingRun
{
    private readonly DecoderModel model;
    private readonly ReadOnlyMemory<int> tokens;
    private readonly int chunk;
    private readonly KvCache cache;
    private readonly RunState state;
    private readonly float[] sum;
    private int done;

    /// <param name="chunk">the most tokens one <see cref="Step"/> runs</param>
    public EmbeddingRun(DecoderModel model, ReadOnlyMemory<int> tokens, int chunk)
    {
        if (chunk < 1) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "at least one token per step");
        this.model = model; this.tokens = tokens;
        this.chunk = Math.Max(1, Math.Min(chunk, tokens.Length));
        cache = model.CreateCache(Math.Max(1, tokens.Length));
        state = model.CreateState(this.chunk, Math.Max(1, tokens.Length));
        sum = new float[model.Config.Dim];
    }

    /// <summary>Every token has run.</summary>
    public bool IsComplete => done >= tokens.Length;

    /// <summary>Runs the next chunk; true once every token has run.</summary>
    public bool Step(int threads)
    {
        if (IsComplete) return true;
        int dim = model.Config.Dim;
        int n = Math.Min(chunk, tokens.Length - done);
        model.Forward(tokens.Span.Slice(done, n), cache, state, threads);
        for (int t = 0; t < n; t++)
        {
            Ops.RmsNorm(state.X.AsSpan(t * dim, dim), model.OutputNorm, state.Xb.AsSpan(0, dim), model.Config.RmsEps);
            if (model.OutputNormBias is { } ob) TensorPrimitives.Add(state.Xb.AsSpan(0, dim), ob, state.Xb.AsSpan(0, dim));
            TensorPrimitives.Add(sum, state.Xb.AsSpan(0, dim), sum);
        }
        done += n;
        if (IsComplete) cache.Dispose(); // its memory now: the pooled sum is all that is left to read
        return IsComplete;
    }

    /// <summary>The embedding (once complete).</summary>
    public float[] Result()
    {
        if (!IsComplete) throw new InvalidOperationException("the embedding has tokens left to run");
        var r = (float[])sum.Clone();
        float norm = TensorPrimitives.Norm(r);
        if (norm > 0) TensorPrimitives.Divide(r, norm, r);
        return r;
    }
}
