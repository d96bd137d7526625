namespace OpenWeights.Formats.Gguf;

/// <summary>Metadata value types as numbered in the GGUF specification.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// How GGUF metadata values appear in .NET: scalars as byte, sbyte, ushort, short, uint, int, float, bool,
/// string, ulong, long, double; arrays of scalars as typed arrays (string[], int[], float[], ...); arrays of
/// arrays as <see cref="Array"/>[] whose elements are themselves such arrays.
/// </summary>
public static class GgufValues
{
    public static GgufValueType TypeOf(object value) => value switch
    {
        byte => GgufValueType.UInt8, sbyte => GgufValueType.Int8, ushort => GgufValueType.UInt16,
        short => GgufValueType.Int16, uint => GgufValueType.UInt32, int => GgufValueType.Int32,
        float => GgufValueType.Float32, bool => GgufValueType.Bool, string => GgufValueType.String,
        ulong => GgufValueType.UInt64, long => GgufValueType.Int64, double => GgufValueType.Float64,
        Array => GgufValueType.Array,
        _ => throw new ArgumentException($"GGUF cannot store a value of type {value.GetType().Name}"),
    };

    /// <summary>The element type of an array value (string[] -> String, int[][] -> Array, ...).</summary>
    public static GgufValueType ElementTypeOf(Array a)
    {
        var t = a.GetType().GetElementType()!;
        if (t.IsArray || t == typeof(Array)) return GgufValueType.Array;
        return Type.GetTypeCode(t) switch
        {
            TypeCode.Byte => GgufValueType.UInt8, TypeCode.SByte => GgufValueType.Int8,
            TypeCode.UInt16 => GgufValueType.UInt16, TypeCode.Int16 => GgufValueType.Int16,
            TypeCode.UInt32 => GgufValueType.UInt32, TypeCode.Int32 => GgufValueType.Int32,
            TypeCode.Single => GgufValueType.Float32, TypeCode.Boolean => GgufValueType.Bool,
            TypeCode.String => GgufValueType.String, TypeCode.UInt64 => GgufValueType.UInt64,
            TypeCode.Int64 => GgufValueType.Int64, TypeCode.Double => GgufValueType.Float64,
            _ => throw new ArgumentException($"GGUF cannot store an array of {t.Name}"),
        };
    }

    internal static int ScalarSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };
}
