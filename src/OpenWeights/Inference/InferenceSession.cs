using OpenWeights.Models.Common;
using OpenWeights.Models;

namespace OpenWeights.Inference;

/// <summary>
/// One conversation's state on a model: its KV cache, scratch buffers and the tokens evaluated so far.
/// Evaluating a new prompt reuses the longest common prefix already in the cache (multi-turn chat).
/// </summary>
public sealed class InferenceSession
{
    public DecoderModel Model { get; }
    public int ContextSize { get; }
    public int Threads { get; }
    public int BatchSize { get; }
    private readonly KvCache cache;
    private readonly RunState state;
    private readonly List<int> tokens;

    /// <summary>Tokens in the cache, in order.</summary>
    public IReadOnlyList<int> Tokens => tokens;

    /// <summary>Logits after the last evaluated token: (vocab).</summary>
    public ReadOnlySpan<float> Logits => state.Logits;

    /// <summary>The element types of the session's KV cache.</summary>
    public KvCacheTypes CacheTypes { get; }

    /// <summary>A session of up to <paramref name="contextSize"/> tokens. <paramref name="cacheTypes"/>: the KV cache's key and
    /// value types (default <see cref="KvCacheTypes.Default"/>, F16 as llama.cpp's; F32 is exact, Q8_0 the smallest).</summary>
    public InferenceSession(DecoderModel model, int contextSize = 4096, int threads = 0, int batchSize = 256, KvCacheTypes? cacheTypes = null)
    {
        if (contextSize <= 0) throw new OpenWeightsException($"context size {contextSize} must be positive");
        Model = model;
        ContextSize = Math.Min(contextSize, model.Config.ContextLength);
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        BatchSize = Math.Max(1, Math.Min(batchSize, ContextSize));
        CacheTypes = cacheTypes ?? KvCacheTypes.Default;
        cache = model.CreateCache(ContextSize, CacheTypes);
        tokens = new List<int>(ContextSize); // never grows while decoding
        state = model.CreateState(BatchSize, ContextSize);
    }

    public int Remaining => ContextSize - tokens.Count;

    public void Reset() { tokens.Clear(); cache.Clear(); }

    /// <summary>Appends tokens to the context and returns the last one's logits.</summary>
    public ReadOnlySpan<float> Evaluate(ReadOnlySpan<int> input, CancellationToken ct = default)
    {
        if (tokens.Count + input.Length > ContextSize)
            throw new OpenWeightsException($"context overflow: {tokens.Count + input.Length} tokens exceed the context size {ContextSize}");
        for (int i = 0; i < input.Length; i += BatchSize)
        {
            ct.ThrowIfCancellationRequested();
            var chunk = input.Slice(i, Math.Min(BatchSize, input.Length - i));
            Model.Forward(chunk, cache, state, Threads);
            foreach (var t in chunk) tokens.Add(t);
        }
        return state.Logits;
    }

    /// <summary>Makes the context equal to <paramref name="prompt"/>, keeping the common prefix already evaluated.</summary>
    public ReadOnlySpan<float> EvaluatePrompt(ReadOnlySpan<int> prompt, CancellationToken ct = default)
    {
        if (prompt.Length == 0) throw new OpenWeightsException("the prompt is empty (no tokens)");
        int common = 0;
        while (common < tokens.Count && common < prompt.Length && tokens[common] == prompt[common]) common++;
        if (common == prompt.Length) common--; // re-evaluate the last token to get its logits
        tokens.RemoveRange(common, tokens.Count - common);
        cache.Length = common;
        return Evaluate(prompt[common..], ct);
    }
}
