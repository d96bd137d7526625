using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Models.Common;

/// <summary>Keys and values of every past position, per layer. K, V: (layers, capacity, kv_heads*head_dim), each in its
/// own element type (<see cref="KvCacheTypes"/>: F32, F16 or Q8_0; F32 unless asked, as training needs).
/// A latent-attention cache (DeepSeek's MLA) holds keys only: per token the normed latent and the rotary key, the latent
/// doubling as the value (<see cref="HasValues"/> false).</summary>
public sealed unsafe class KvCache
{
    public int Layers { get; }
    public int Capacity { get; }
    public int KvDim { get; }
    public KvCacheTypes Types { get; }
    public GgmlType KType => Types.K;
    public GgmlType VType => Types.V;
    /// <summary>Bytes of one position's keys / values in a layer (KvDim elements of KType / VType).</summary>
    public int KRowBytes { get; }
    public int VRowBytes { get; }
    // per layer: (capacity, KvDim) as float[] (F32) or byte[] (F16, Q8_0); pinned, so attention reads them by pointer
    private readonly Array[] k, v;

    /// <summary>Positions filled so far (the next token goes here).</summary>
    public int Length { get; set; }

    /// <summary>Whether the cache stores values beside the keys (false: keys only, a latent-attention cache).</summary>
    public bool HasValues { get; }

    public KvCache(int layers, int capacity, int kvDim, bool values = true) : this(layers, capacity, kvDim, KvCacheTypes.F32, values) { }

    /// <summary>A cache with keys and values in <paramref name="types"/>; Q8_0 needs kvDim (and every head in it) in
    /// whole blocks of 32, which the caller checks against the head dimension (<see cref="KvCacheTypes.Validate"/>).</summary>
    public KvCache(int layers, int capacity, int kvDim, KvCacheTypes types, bool values = true)
    {
        Layers = layers; Capacity = capacity; KvDim = kvDim; HasValues = values; Types = types;
        if ((types.K == GgmlType.Q8_0 || (values && types.V == GgmlType.Q8_0)) && kvDim % 32 != 0)
            throw new OpenWeightsException($"a q8_0 KV cache needs rows in whole blocks of 32 (this one has {kvDim} elements)");
        KRowBytes = (int)KvCacheTypes.Bytes(types.K, kvDim);
        VRowBytes = values ? (int)KvCacheTypes.Bytes(types.V, kvDim) : 0;
        k = new Array[layers]; v = new Array[layers];
        for (int l = 0; l < layers; l++)
        {
            k[l] = Plane(types.K, capacity, kvDim);
            v[l] = values ? Plane(types.V, capacity, kvDim) : Array.Empty<float>();
        }
    }

    private static Array Plane(GgmlType t, int capacity, int kvDim) => t == GgmlType.F32
        ? GC.AllocateArray<float>(capacity * kvDim, pinned: true)
        : GC.AllocateArray<byte>((int)KvCacheTypes.Bytes(t, (long)capacity * kvDim), pinned: true);

    public long Bytes => (long)Layers * Capacity * (KRowBytes + VRowBytes);

    /// <summary>Layer <paramref name="layer"/>'s keys / values: (Capacity, KvDim) in KType / VType, rows KRowBytes / VRowBytes apart.</summary>
    public byte* KData(int layer) => Data(k[layer]);
    public byte* VData(int layer) => Data(v[layer]);
    private static byte* Data(Array a) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a)); // pinned: the address holds

    /// <summary>Stores position <paramref name="pos"/>'s keys (KvDim floats), converted to KType.</summary>
    public void StoreK(int layer, int pos, ReadOnlySpan<float> x) => Store(KType, KData(layer) + (long)pos * KRowBytes, x);
    public void StoreV(int layer, int pos, ReadOnlySpan<float> x) => Store(VType, VData(layer) + (long)pos * VRowBytes, x);

    /// <summary>Position <paramref name="pos"/>'s keys / values as F32 (exactly what attention reads).</summary>
    public void ReadK(int layer, int pos, Span<float> dst) => Read(KType, KData(layer) + (long)pos * KRowBytes, dst);
    public void ReadV(int layer, int pos, Span<float> dst) => Read(VType, VData(layer) + (long)pos * VRowBytes, dst);

    private void Store(GgmlType t, byte* dst, ReadOnlySpan<float> x)
    {
        if (x.Length != KvDim) throw new ArgumentException($"a cache row has {KvDim} elements, not {x.Length}");
        switch (t)
        {
            case GgmlType.F32: x.CopyTo(new Span<float>(dst, KvDim)); break;
            case GgmlType.F16: TensorPrimitives.ConvertToHalf(x, new Span<Half>(dst, KvDim)); break; // round to nearest even
            default: fixed (float* px = x) QuantDot.QuantizeQ8_0(px, dst, KvDim); break;        // ggml's from_float for q8_0
        }
    }

    private void Read(GgmlType t, byte* src, Span<float> dst)
    {
        fixed (float* pd = dst) AttentionKernels.DecodeRows(t, src, 0, 1, KvDim, pd);
    }

    /// <summary>One position's keys / values of an F32 cache, writable.</summary>
    public Span<float> K(int layer, int pos) => KLayer(layer).AsSpan(pos * KvDim, KvDim);
    public Span<float> V(int layer, int pos) => VLayer(layer).AsSpan(pos * KvDim, KvDim);
    /// <summary>All keys / values of a layer of an F32 cache: (Capacity, KvDim).</summary>
    public float[] KLayer(int layer) => k[layer] as float[] ?? throw new InvalidOperationException($"the keys are {KvCacheTypes.Name(KType)}, not f32");
    public float[] VLayer(int layer) => v[layer] as float[] ?? throw new InvalidOperationException($"the values are {KvCacheTypes.Name(VType)}, not f32");

    public void Clear() => Length = 0;
}
