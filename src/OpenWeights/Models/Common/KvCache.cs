using System.Runtime.InteropServices;
using System.Numerics.Tensors;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Models.Common;

/// <summary>Keys and values of every past position, per layer. K, V: (layers, capacity, kv_heads*head_dim), each in its
/// own element type (<see cref="KvCacheTypes"/>: F32, F16 or Q8_0; F32 unless asked, as training needs).
/// A latent-attention cache (DeepSeek's MLA) holds keys only: per token the normed latent and the rotary key, the latent
/// doubling as the value (<see cref="HasValues"/> false).
/// <para>Memory: the planes live in one native block sized for the whole capacity, but reserved, not filled: the operating
/// system backs a page with memory only when a position in it is first written, so a cache costs what its sequence has
/// held (<see cref="ResidentBytes"/>), in pages of a few positions, not its capacity (the virtual-memory way to page a KV
/// cache: attention still reads each layer's rows as one contiguous array). <see cref="Release"/> gives the pages past a
/// position back (Linux: <c>madvise(MADV_DONTNEED)</c>).</para></summary>
public sealed unsafe class KvCache : IDisposable
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
    // one zeroed native block: per layer a K plane (capacity, KvDim) in KType, then a V plane in VType; each plane starts
    // on a page boundary, so the pages of a plane's first n rows are its own (Release frees them without touching others)
    private byte* block;
    private readonly long kPlane, vPlane, layerStride, blockBytes;
    private int highWater; // positions written since the block was new or last released (their pages are resident)

    /// <summary>Positions filled so far (the next token goes here).</summary>
    public int Length
    {
        get => length;
        set
        {
            if ((uint)value > (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(value), value, $"a cache position is 0..{Capacity}");
            length = value;
            if (value > highWater) highWater = value;
        }
    }
    private int length;

    /// <summary>Whether the cache stores values beside the keys (false: keys only, a latent-attention cache).</summary>
    public bool HasValues { get; }

    public KvCache(int layers, int capacity, int kvDim, bool values = true) : this(layers, capacity, kvDim, KvCacheTypes.F32, values) { }

    /// <summary>A cache with keys and values in <paramref name="types"/>; Q8_0 needs kvDim (and every head in it) in
    /// whole blocks of 32, which the caller checks against the head dimension (<see cref="KvCacheTypes.Validate"/>).</summary>
    public KvCache(int layers, int capacity, int kvDim, KvCacheTypes types, bool values = true)
    {
        if (layers < 1 || capacity < 1 || kvDim < 1) throw new ArgumentOutOfRangeException(nameof(capacity), $"a cache of {layers} layers, {capacity} positions, {kvDim} elements");
        Layers = layers; Capacity = capacity; KvDim = kvDim; HasValues = values; Types = types;
        if ((types.K == GgmlType.Q8_0 || (values && types.V == GgmlType.Q8_0)) && kvDim % 32 != 0)
            throw new OpenWeightsException($"a q8_0 KV cache needs rows in whole blocks of 32 (this one has {kvDim} elements)");
        KRowBytes = (int)KvCacheTypes.Bytes(types.K, kvDim);
        VRowBytes = values ? (int)KvCacheTypes.Bytes(types.V, kvDim) : 0;
        kPlane = PageUp((long)capacity * KRowBytes);
        vPlane = PageUp((long)capacity * VRowBytes);
        if (Math.Max((long)capacity * KvDim, (long)capacity * Math.Max(KRowBytes, VRowBytes)) > Array.MaxLength)
            throw new OpenWeightsException($"a KV cache layer of {capacity} positions x {kvDim} elements is too large");
        layerStride = kPlane + vPlane;
        blockBytes = layerStride * layers + Page; // + a page: the block's start is rounded up to a page boundary
        // calloc: a large block comes straight from mmap (zero pages the system fills only when written), a small one is cleared
        raw = (byte*)NativeMemory.AllocZeroed((nuint)blockBytes);
        block = (byte*)(((nint)raw + Page - 1) & ~(nint)(Page - 1));
        pressure = Math.Min(blockBytes, 16L << 20); // the GC's view of it, capped: most of a long context is never touched
        GC.AddMemoryPressure(pressure);
    }

    private byte* raw;
    private readonly long pressure;
    private const int Page = 4096;
    private static long PageUp(long n) => (n + Page - 1) & ~(long)(Page - 1);

    ~KvCache() => Free();

    /// <summary>Returns the cache's memory now (the cache must not be used afterwards).</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (block == null) return;
        block = null;
        NativeMemory.Free(raw);
        GC.RemoveMemoryPressure(pressure);
    }

    private byte* Block => block != null ? block : throw new ObjectDisposedException(nameof(KvCache));

    /// <summary>Bytes of memory the cache's written positions occupy (every layer's keys and values up to the highest
    /// position written since it was new or released, in whole pages): what it costs, as opposed to <see cref="Bytes"/>.</summary>
    public long ResidentBytes => Layers * (PageUp((long)highWater * KRowBytes) + PageUp((long)highWater * VRowBytes));

    /// <summary>Positions written since the cache was new or released: the memory it holds is theirs.</summary>
    public int HighWater => highWater;

    /// <summary>Bytes of the cache's block that the system backs with memory now (Linux: <c>mincore</c>; -1 elsewhere):
    /// what <see cref="ResidentBytes"/> claims, measured.</summary>
    internal long MeasuredResidentBytes() => PageRelease.Supported ? PageRelease.ResidentBytes(Block, layerStride * Layers) : -1;

    /// <summary>Bytes one position takes over all layers (keys and values).</summary>
    public long BytesPerPosition => (long)Layers * (KRowBytes + VRowBytes);

    /// <summary>
    /// Gives back the memory of positions from <paramref name="keep"/> on (the cache then holds at most
    /// <paramref name="keep"/> positions; their contents read as zero until written again). Pages are returned to the
    /// system (Linux: in place; elsewhere a release of every position takes a new block, and a partial one only shortens
    /// the cache).
    /// </summary>
    public void Release(int keep = 0)
    {
        if ((uint)keep > (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(keep));
        if (Length > keep) Length = keep;
        if (highWater <= keep) return;
        if (keep == 0 && !PageRelease.Supported)
        {
            // no way to return pages in place here: a new (untouched) block instead of the old one
            var fresh = (byte*)NativeMemory.AllocZeroed((nuint)blockBytes);
            NativeMemory.Free(raw);
            raw = fresh;
            block = (byte*)(((nint)raw + Page - 1) & ~(nint)(Page - 1));
            highWater = 0;
            return;
        }
        if (PageRelease.Supported)
        {
            for (int l = 0; l < Layers; l++)
            {
                ReleasePlane(KData(l), KRowBytes, keep, highWater);
                if (HasValues) ReleasePlane(VData(l), VRowBytes, keep, highWater);
            }
            highWater = keep;
        }
    }

    private static void ReleasePlane(byte* plane, int rowBytes, int keep, int end)
    {
        long from = PageUp((long)keep * rowBytes), to = PageUp((long)end * rowBytes);
        if (to > from) PageRelease.Discard(plane + from, to - from);
    }

    /// <summary>Copies positions [0, <paramref name="count"/>) of every layer from <paramref name="source"/> (same shape and
    /// types) and makes them this cache's contents (Length = count): a prefix computed once, used again.</summary>
    public void CopyPrefixFrom(KvCache source, int count)
    {
        if (source.Layers != Layers || source.KvDim != KvDim || source.Types != Types || source.HasValues != HasValues)
            throw new ArgumentException("the caches differ in shape or types");
        if ((uint)count > (uint)Math.Min(source.Length, Capacity)) throw new ArgumentOutOfRangeException(nameof(count));
        for (int l = 0; l < Layers; l++)
        {
            Buffer.MemoryCopy(source.KData(l), KData(l), kPlane, (long)count * KRowBytes);
            if (HasValues) Buffer.MemoryCopy(source.VData(l), VData(l), vPlane, (long)count * VRowBytes);
        }
        Length = count;
    }

    /// <summary>Layer <paramref name="layer"/>'s keys / values of positions [start, start + count) as raw rows (count x
    /// KRowBytes, then count x VRowBytes): what a prompt cache keeps of a block of positions.</summary>
    public void ReadRows(int layer, int start, int count, Span<byte> keys, Span<byte> values)
    {
        CheckRange(start, count);
        new ReadOnlySpan<byte>(KData(layer) + (long)start * KRowBytes, count * KRowBytes).CopyTo(keys);
        if (HasValues) new ReadOnlySpan<byte>(VData(layer) + (long)start * VRowBytes, count * VRowBytes).CopyTo(values);
    }

    /// <summary>Writes rows read by <see cref="ReadRows"/> back at positions [start, start + count) (Length unchanged).</summary>
    public void WriteRows(int layer, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        CheckRange(start, count);
        if (keys.Length != count * KRowBytes || values.Length != count * VRowBytes) throw new ArgumentException("rows of another shape");
        keys.CopyTo(new Span<byte>(KData(layer) + (long)start * KRowBytes, count * KRowBytes));
        if (HasValues) values.CopyTo(new Span<byte>(VData(layer) + (long)start * VRowBytes, count * VRowBytes));
        if (start + count > highWater) highWater = start + count;
    }

    private void CheckRange(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Capacity) throw new ArgumentOutOfRangeException(nameof(start), $"positions {start}..{start + count} of {Capacity}");
    }

    /// <summary>Bytes the cache may grow to: every position of every layer (address space, not memory: see <see cref="ResidentBytes"/>).</summary>
    public long Bytes => (long)Layers * Capacity * (KRowBytes + VRowBytes);

    /// <summary>Layer <paramref name="layer"/>'s keys / values: (Capacity, KvDim) in KType / VType, rows KRowBytes / VRowBytes apart.</summary>
    public byte* KData(int layer) => Block + CheckLayer(layer) * layerStride;
    public byte* VData(int layer) => HasValues ? Block + CheckLayer(layer) * layerStride + kPlane : throw new InvalidOperationException("a latent cache holds no values");
    private long CheckLayer(int layer) => (uint)layer < (uint)Layers ? layer : throw new ArgumentOutOfRangeException(nameof(layer));

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
    public Span<float> K(int layer, int pos) => KLayer(layer).Slice(pos * KvDim, KvDim);
    public Span<float> V(int layer, int pos) => VLayer(layer).Slice(pos * KvDim, KvDim);
    /// <summary>All keys / values of a layer of an F32 cache: (Capacity, KvDim). The span (like <see cref="KData"/>'s
    /// pointer) points into the cache's native memory: keep the cache referenced while it is used.</summary>
    public Span<float> KLayer(int layer) => KType == GgmlType.F32 ? new Span<float>(KData(layer), Capacity * KvDim)
        : throw new InvalidOperationException($"the keys are {KvCacheTypes.Name(KType)}, not f32");
    public Span<float> VLayer(int layer) => VType == GgmlType.F32 && HasValues ? new Span<float>(VData(layer), Capacity * KvDim)
        : throw new InvalidOperationException($"the values are {KvCacheTypes.Name(VType)}, not f32");

    public void Clear() => Length = 0;
}

/// <summary>Returning pages of memory to the operating system while keeping their addresses (Linux: <c>madvise</c> with
/// <c>MADV_DONTNEED</c>: the pages read as zero afterwards and cost nothing until written again).</summary>
internal static unsafe partial class PageRelease
{
    private const int MadvDontNeed = 4;
    private static readonly Lazy<bool> supported = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return madvise(null, 0, MadvDontNeed) == 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    });

    public static bool Supported => supported.Value;

    /// <summary>Discards [p, p + bytes): both page-aligned.</summary>
    public static void Discard(byte* p, long bytes)
    {
        if (madvise(p, (nuint)bytes, MadvDontNeed) != 0)
            throw new OpenWeightsException($"madvise failed (errno {Marshal.GetLastPInvokeError()})");
    }

    /// <summary>Bytes of [p, p + bytes) (p page-aligned) backed by memory now.</summary>
    public static long ResidentBytes(byte* p, long bytes)
    {
        const int page = 4096;
        long pages = (bytes + page - 1) / page, resident = 0;
        var vec = new byte[Math.Min(pages, 1 << 20)];
        for (long at = 0; at < pages; at += vec.Length)
        {
            long n = Math.Min(vec.Length, pages - at);
            fixed (byte* v = vec)
                if (mincore(p + at * page, (nuint)(n * page), v) != 0) throw new OpenWeightsException($"mincore failed (errno {Marshal.GetLastPInvokeError()})");
            for (int i = 0; i < n; i++) resident += vec[i] & 1;
        }
        return resident * page;
    }

    [LibraryImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static partial int mincore(void* addr, nuint length, byte* vec);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);
}
