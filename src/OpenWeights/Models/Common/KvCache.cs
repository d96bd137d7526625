namespace OpenWeights.Models.Common;

/// <summary>Keys and values of every past position, per layer. K, V: (layers, capacity, kv_heads*head_dim), F32.
/// A latent-attention cache (DeepSeek's MLA) holds keys only: per token the normed latent and the rotary key, the latent
/// doubling as the value (<see cref="HasValues"/> false).</summary>
public sealed class KvCache
{
    public int Layers { get; }
    public int Capacity { get; }
    public int KvDim { get; }
    private readonly float[][] k, v;

    /// <summary>Positions filled so far (the next token goes here).</summary>
    public int Length { get; set; }

    /// <summary>Whether the cache stores values beside the keys (false: keys only, a latent-attention cache).</summary>
    public bool HasValues { get; }

    public KvCache(int layers, int capacity, int kvDim, bool values = true)
    {
        Layers = layers; Capacity = capacity; KvDim = kvDim; HasValues = values;
        k = new float[layers][]; v = new float[layers][];
        for (int l = 0; l < layers; l++) { k[l] = new float[(long)capacity * kvDim]; v[l] = values ? new float[(long)capacity * kvDim] : []; }
    }

    public long Bytes => (HasValues ? 2L : 1L) * Layers * Capacity * KvDim * sizeof(float);

    public Span<float> K(int layer, int pos) => k[layer].AsSpan(pos * KvDim, KvDim);
    public Span<float> V(int layer, int pos) => v[layer].AsSpan(pos * KvDim, KvDim);
    /// <summary>All keys / values of a layer: (Capacity, KvDim).</summary>
    public float[] KLayer(int layer) => k[layer];
    public float[] VLayer(int layer) => v[layer];

    public void Clear() => Length = 0;
}
