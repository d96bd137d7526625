using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;

namespace OpenWeights;

/// <summary>
/// Typed metadata accessors with one-line errors, shared by every source. In the root namespace so that
/// `file.GetString(key)` reads the same everywhere in OpenWeights.
/// </summary>
public static class ModelMetadataExtensions
{
    private static string FileName(IModelMetadata m) => System.IO.Path.GetFileName(m.Path);

    public static bool Contains(this IModelMetadata m, string key) => m.Metadata.ContainsKey(key);

    public static string? GetString(this IModelMetadata m, string key) =>
        m.Metadata.TryGetValue(key, out var v) ? v as string ?? throw TypeError(m, key, v, "string") : null;

    /// <summary>Any integer type, widened to long; null when absent.</summary>
    public static long? GetInteger(this IModelMetadata m, string key)
    {
        if (!m.Metadata.TryGetValue(key, out var v)) return null;
        return v switch
        {
            byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint ui => ui, int i => i, long l => l,
            ulong ul => ul <= long.MaxValue ? (long)ul : throw new InvalidModelFileException($"{FileName(m)}: metadata {key} = {ul} is too large"),
            _ => throw TypeError(m, key, v, "integer"),
        };
    }

    /// <summary>Any numeric type as double; null when absent.</summary>
    public static double? GetNumber(this IModelMetadata m, string key)
    {
        if (!m.Metadata.TryGetValue(key, out var v)) return null;
        return v switch { float f => f, double d => d, _ => m.GetInteger(key) };
    }

    public static bool? GetBool(this IModelMetadata m, string key) =>
        m.Metadata.TryGetValue(key, out var v) ? v is bool b ? b : throw TypeError(m, key, v, "bool") : null;

    /// <summary>An array of the given element type (numeric arrays convert between widths).</summary>
    public static T[]? GetArray<T>(this IModelMetadata m, string key)
    {
        if (!m.Metadata.TryGetValue(key, out var v)) return null;
        if (v is T[] exact) return exact;
        if (v is Array a && typeof(T).IsPrimitive && a.GetType().GetElementType()!.IsPrimitive)
        {
            var r = new T[a.Length];
            try
            {
                for (int i = 0; i < a.Length; i++) r[i] = (T)Convert.ChangeType(a.GetValue(i)!, typeof(T), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (OverflowException)
            {
                throw new InvalidModelFileException($"{FileName(m)}: metadata {UntrustedText.Quote(key)} holds a value outside the range of {typeof(T).Name}");
            }
            return r;
        }
        throw TypeError(m, key, v, typeof(T).Name + "[]");
    }

    public static GgufTensorInfo GetTensor(this ITensorSource s, string name) =>
        s.TryGetTensor(name, out var t) ? t : throw new InvalidModelFileException($"{FileName(s)}: tensor {UntrustedText.Quote(name)} is missing");

    /// <summary>A tensor's raw bytes (for tensors below 2 GiB).</summary>
    public static unsafe ReadOnlySpan<byte> TensorData(this ITensorSource s, GgufTensorInfo t) =>
        t.ByteSize <= int.MaxValue ? new ReadOnlySpan<byte>(s.TensorPointer(t), (int)t.ByteSize)
        : throw new NotSupportedException($"tensor {t.Name} is larger than 2 GiB; use TensorPointer");

    private static InvalidModelFileException TypeError(IModelMetadata m, string key, object v, string want) =>
        new($"{FileName(m)}: metadata {UntrustedText.Quote(key)} is {v.GetType().Name}, expected {want}");
}
