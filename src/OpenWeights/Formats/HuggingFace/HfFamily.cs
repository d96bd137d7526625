using System.Text.Json;

namespace OpenWeights.Formats.HuggingFace;

/// <summary>
/// What an architecture adds to the common reading of a Hugging Face config.json (the keys every family shares are read
/// by <see cref="HfCheckpoint"/>): its own config fields mapped to GGUF keys and extra tensors, as llama.cpp's
/// convert_hf_to_gguf.py writes them for that family.
/// </summary>
/// <param name="Map">Reads the family's fields and sets their GGUF keys (without the <c>{arch}.</c> prefix); may override a
/// common key (Phi-3's partial rotary dimension count).</param>
public sealed record HfFamily(Action<HfConfigJson, HfFamilyMetadata> Map)
{
    /// <summary>Values of common fields when config.json leaves them out (Gemma 3's converter defaults: head_dim 256, ...).</summary>
    public IReadOnlyDictionary<string, double> Defaults { get; init; } = new Dictionary<string, double>();

    /// <summary>rope_scaling types the family maps itself (Phi-3's longrope: factor tensors), not refused by the common reader.</summary>
    public IReadOnlyList<string> RopeScalingTypes { get; init; } = [];
}

/// <summary>config.json for a family's mapping: typed fields, and a one-line <see cref="InvalidModelFileException"/> naming
/// the key when a value is of the wrong kind or out of range.</summary>
public sealed class HfConfigJson
{
    private readonly JsonElement root;
    private readonly IReadOnlyDictionary<string, double> defaults;

    /// <param name="defaults">The family's values for fields config.json leaves out (<see cref="HfFamily.Defaults"/>).</param>
    internal HfConfigJson(JsonElement root, IReadOnlyDictionary<string, double>? defaults = null)
    {
        this.root = root;
        this.defaults = defaults ?? new Dictionary<string, double>();
    }

    /// <summary>The value of a key, null when absent or JSON null.</summary>
    public JsonElement? Get(string key) => root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public bool Has(string key) => Get(key) is not null;

    /// <summary>A positive integer (at most 2^24), or the family's default, or null when absent.</summary>
    public int? Int(string key) => Get(key) is { } v ? IntOf(key, v) : defaults.TryGetValue(key, out var d) ? (int)d : null;

    public int RequireInt(string key) => Int(key) ?? throw new InvalidModelFileException($"config.json: {key} is missing");

    /// <summary>A finite number, or the family's default, or null when absent.</summary>
    public double? Number(string key) => Get(key) is { } v ? NumberOf(key, v) : defaults.TryGetValue(key, out var d) ? d : null;

    public double RequireNumber(string key) => Number(key) ?? throw new InvalidModelFileException($"config.json: {key} is missing");

    /// <summary>A string, or null when absent.</summary>
    public string? String(string key) => Get(key) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InvalidModelFileException($"config.json: {key} is not a string")
        : null;

    /// <summary>An array of numbers, or null when absent (<paramref name="obj"/>: inside that object, e.g. rope_scaling).</summary>
    public double[]? Numbers(string key, JsonElement? obj = null)
    {
        JsonElement? v = obj is { } o ? (o.TryGetProperty(key, out var e) && e.ValueKind != JsonValueKind.Null ? e : null) : Get(key);
        if (v is null) return null;
        if (v.Value.ValueKind != JsonValueKind.Array) throw new InvalidModelFileException($"config.json: {key} is not an array");
        return v.Value.EnumerateArray().Select(x => NumberOf(key, x)).ToArray();
    }

    private static int IntOf(string key, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x)) throw new InvalidModelFileException($"config.json: {key} is not an integer");
        if (x <= 0 || x > 1 << 24) throw new InvalidModelFileException($"config.json: {key} = {x} is out of range");
        return (int)x;
    }

    private static double NumberOf(string key, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number) throw new InvalidModelFileException($"config.json: {key} is not a number");
        double d = v.GetDouble();
        if (!double.IsFinite(d)) throw new InvalidModelFileException($"config.json: {key} = {d} is not a finite number");
        return d;
    }
}

/// <summary>Where a family's mapping puts what it read: GGUF keys (without the <c>{arch}.</c> prefix) and extra F32 tensors.</summary>
public sealed class HfFamilyMetadata
{
    internal List<(string Key, object Value)> Keys { get; } = [];
    internal List<(string Name, float[] Values)> Tensors { get; } = [];

    /// <summary>A GGUF key under the architecture's prefix, typed as GGUF wants it (uint for counts, float for floats).</summary>
    public void Set(string key, object value) => Keys.Add((key, value));

    /// <summary>A 1-D F32 tensor the converter generates from config.json (Phi-3's rope_factors_long.weight).</summary>
    public void AddTensor(string ggufName, float[] values) => Tensors.Add((ggufName, values));
}
