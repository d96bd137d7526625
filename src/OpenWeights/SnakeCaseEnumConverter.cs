using System.Text.Json;
using System.Text.Json.Serialization;

namespace OpenWeights;

/// <summary>Writes an enum as snake_case text ("does_not_fit"), whatever converters the serializer options carry.</summary>
public sealed class SnakeCaseEnumConverter<T> : JsonStringEnumConverter<T> where T : struct, Enum
{
    public SnakeCaseEnumConverter() : base(JsonNamingPolicy.SnakeCaseLower) { }
}
