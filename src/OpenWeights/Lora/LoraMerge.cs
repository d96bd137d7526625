using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Lora;

/// <summary>What type merged (adapted) tensors are stored as.</summary>
public readonly record struct MergeType(QuantPreset? Preset, GgmlType? Pure)
{
    /// <summary>Keep each adapted tensor's type.</summary>
    public static MergeType Same => new(null, null);

    /// <summary>The names <see cref="Parse"/> accepts.</summary>
    public const string Choices = "same, f32, f16, bf16, q8_0, q4_0 or q4_k_m";

    public static MergeType Parse(string s) => s.Trim().ToLowerInvariant() switch
    {
        "same" => Same,
        "f32" => new(null, GgmlType.F32),
        "f16" => new(QuantPreset.F16, null),
        "bf16" => new(QuantPreset.BF16, null),
        "q8_0" => new(QuantPreset.Q8_0, null),
        "q4_0" => new(QuantPreset.Q4_0, null),
        "q4_k_m" => new(QuantPreset.Q4_K_M, null),
        _ => throw new OpenWeightsException($"unknown merge type '{s}' (choose {Choices})"),
    };
}

/// <summary>
/// Bakes LoRA adapters into a GGUF model: W' = W + Σ scale·B·A for each adapted weight, one row at a time
/// (dequantize, add, requantize), other tensors copied byte for byte and all metadata kept. Never holds
/// more than one row of a base tensor in F32; the output is written atomically.
/// </summary>
public static class LoraMerge
{
    public sealed record Result(int MergedTensors, int CopiedTensors, long Bytes);

    public static Result Merge(string modelPath, IReadOnlyList<LoraSpec> adapters, string outPath, MergeType type, int threads = 0,
        IProgress<GgufWriteProgress>? progress = null)
    {
        if (adapters.Count == 0) throw new OpenWeightsException("merge needs at least one adapter");
        if (Path.GetFullPath(outPath) == Path.GetFullPath(modelPath)) throw new OpenWeightsException("the output must not overwrite the input model");
        using var f = GgufFile.Open(modelPath);
        var config = ModelConfig.FromGguf(f);
        var updates = new Dictionary<string, List<AppliedLora>>(StringComparer.Ordinal);
        foreach (var spec in adapters)
        {
            var a = LoraLoader.Load(spec.Path, f, config);
            foreach (var w in a.Weights.Values)
            {
                if (!updates.TryGetValue(w.Target, out var list)) updates[w.Target] = list = [];
                list.Add(new AppliedLora(w, LoraNames.ScaleOf(a, w) * spec.Scale));
            }
        }

        var writer = new GgufWriter { Progress = progress };
        writer.CopyMetadata(f);
        bool tied = !f.TryGetTensor(Architectures.Names.Output, out _);
        int merged = 0, copied = 0;
        foreach (var t in f.Tensors)
        {
            if (!updates.TryGetValue(t.Name, out var ups))
            {
                var info = t;
                writer.AddTensor(t.Name, t.Type, t.Dimensions, t.ByteSize, s => CopyBytes(f, info, s));
                copied++;
                continue;
            }
            if (!Dequantize.CanDequantize(t.Type)) throw new OpenWeightsException($"{t.Name}: tensor type {t.Type} cannot be dequantized for merging");
            int layer = LoraNames.ParseGguf(t.Name).Layer;
            var outType = type.Pure ?? (type.Preset is { } p
                ? QuantRecipe.TypeFor(p, t.Name, layer, config.Layers, t.Dimensions[0], t.Dimensions.Length, tied, t.Type)
                : t.Type);
            if (!Quantize.CanQuantize(outType)) throw new OpenWeightsException($"{t.Name}: cannot write tensor type {outType}; choose another merge type ({MergeType.Choices})");
            int cols = (int)t.Dimensions[0], rows = (int)t.Dimensions[1];
            long inRow = GgmlTypes.RowBytes(t.Type, cols), outRow = GgmlTypes.RowBytes(outType, cols);
            var src = t;
            writer.AddTensor(t.Name, outType, t.Dimensions, outRow * rows, s => WriteMerged(f, src, ups, outType, rows, cols, inRow, outRow, s));
            merged++;
        }
        writer.Write(outPath);
        return new Result(merged, copied, new FileInfo(outPath).Length);
    }

    /// <summary>Row o of W' = W[o] + Σ scale · Σ_k B[o,k]·A[k]; rows go out as they are made.</summary>
    private static void WriteMerged(GgufFile f, GgufTensorInfo t, List<AppliedLora> ups, GgmlType outType, int rows, int cols, long inRow, long outRow, Stream s)
    {
        var row = new float[cols];
        var buf = new byte[outRow];
        for (int o = 0; o < rows; o++)
        {
            Dequantize.Row(t.Type, RowBytes(f, t, o, inRow), row);
            AddDelta(ups, o, row);
            Quantize.Row(outType, row, buf);
            s.Write(buf);
        }
    }

    private static unsafe ReadOnlySpan<byte> RowBytes(GgufFile f, GgufTensorInfo t, int row, long rowBytes) =>
        new(f.TensorPointer(t) + row * rowBytes, (int)rowBytes);

    private static unsafe void CopyBytes(GgufFile f, GgufTensorInfo t, Stream s)
    {
        byte* p = f.TensorPointer(t);
        for (long off = 0; off < t.ByteSize; off += 1 << 24)
            s.Write(new ReadOnlySpan<byte>(p + off, (int)Math.Min(1 << 24, t.ByteSize - off)));
    }

    /// <summary>row += Σ scale · Σ_k B[o,k] · A[k, :].</summary>
    public static void AddDelta(IEnumerable<AppliedLora> ups, int o, Span<float> row)
    {
        foreach (var u in ups)
        {
            var w = u.Weights;
            for (int k = 0; k < w.Rank; k++)
            {
                float c = u.Scale * w.B[o * w.Rank + k];
                if (c != 0) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(w.A.AsSpan(k * w.In, w.In), c, row, row);
            }
        }
    }
}
