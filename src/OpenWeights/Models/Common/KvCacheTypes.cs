using OpenWeights.Tensors.Quant;

namespace OpenWeights.Models.Common;

/// <summary>
/// The element types of a KV cache's keys and values: F32, F16 or Q8_0 each (llama.cpp's type_k / type_v; its default is
/// F16 for both). F16 halves the bytes attention reads per key against F32, Q8_0 (blocks of 32: an f16 scale and 32 int8)
/// brings them to 34/128. Values are converted when stored (F16: round to nearest even; Q8_0: as ggml's CPU
/// quantize_row_q8_0) and read back to F32 a tile of keys at a time by attention.
/// </summary>
public readonly record struct KvCacheTypes(GgmlType K, GgmlType V)
{
    /// <summary>F32 keys and values: exact (training, and tests that compare with an F32 llama.cpp cache).</summary>
    public static KvCacheTypes F32 => new(GgmlType.F32, GgmlType.F32);

    /// <summary>F16 keys and values, the default of inference sessions and the server (as llama.cpp's).</summary>
    public static KvCacheTypes F16 => new(GgmlType.F16, GgmlType.F16);

    public static KvCacheTypes Q8_0 => new(GgmlType.Q8_0, GgmlType.Q8_0);

    /// <summary>The types an inference session uses unless told otherwise.</summary>
    public static KvCacheTypes Default => F16;

    /// <summary>The values the CLI and the library accept.</summary>
    public const string Names = "f32, f16 or q8_0";

    /// <summary>"f32", "f16" or "q8_0" (any case) → the type; anything else is an error naming the accepted values.</summary>
    public static GgmlType Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "q8_0" => GgmlType.Q8_0,
        _ => throw new OpenWeightsException($"unknown KV cache type '{text}': expected {Names}"),
    };

    public static string Name(GgmlType t) => t switch
    {
        GgmlType.F32 => "f32", GgmlType.F16 => "f16", GgmlType.Q8_0 => "q8_0",
        _ => throw new OpenWeightsException($"{t} is not a KV cache type ({Names})"),
    };

    /// <summary>Bytes of n elements of a cache type (n a multiple of 32 for Q8_0).</summary>
    public static long Bytes(GgmlType t, long n) => t switch
    {
        GgmlType.F32 => 4 * n,
        GgmlType.F16 => 2 * n,
        GgmlType.Q8_0 => n / 32 * 34,
        _ => throw new OpenWeightsException($"{t} is not a KV cache type ({Names})"),
    };

    /// <summary>Throws unless both types are cache types and a head of <paramref name="headDim"/> elements splits into
    /// whole Q8_0 blocks where Q8_0 is asked for.</summary>
    public void Validate(int headDim)
    {
        foreach (var t in new[] { K, V })
        {
            Name(t);
            if (t == GgmlType.Q8_0 && headDim % 32 != 0)
                throw new OpenWeightsException($"a q8_0 KV cache needs a head dimension that is a multiple of 32 (this model's is {headDim}); use f16 or f32");
        }
    }

    public override string ToString() => K == V ? Name(K) : $"K {Name(K)}, V {Name(V)}";
}
