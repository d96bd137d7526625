using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Lora;

/// <summary>
/// llama.cpp GGUF LoRA adapters (what convert_lora_to_gguf.py writes and llama_adapter_lora_init reads):
/// <c>general.type = "adapter"</c>, <c>adapter.type = "lora"</c>, <c>adapter.lora.alpha</c> (float32),
/// <c>general.architecture</c> of the base; per adapted weight <c>{name}.lora_a</c> with ggml dims [in, r]
/// (A stored (r, in) row-major) and <c>{name}.lora_b</c> with ggml dims [r, out] (B stored (out, r)).
/// llama.cpp scales each pair by user_scale · alpha / r (r = that pair's rank; alpha = 0 means scale 1).
/// Q/K rows follow the GGUF base's order (interleaved for llama, as converted by llama.cpp).
/// </summary>
public static class GgufLoraAdapter
{
    public const string TypeKey = "general.type", AdapterTypeKey = "adapter.type", AlphaKey = "adapter.lora.alpha";

    /// <summary>
    /// Writes the adapter for a base model. <paramref name="model"/>: the base, whose Q/K row order the adapter's B
    /// rows follow (they are reordered to the GGUF convention of the architecture when the two differ).
    /// <paramref name="type"/>: F32, F16 or BF16.
    /// </summary>
    public static void Write(LoraAdapter adapter, string path, ModelConfig model, GgmlType type = GgmlType.F32) =>
        Write(LoraRotary.Convert(adapter, model, LoraRotary.ModelIsInterleaved(model), LoraRotary.GgufIsInterleaved(model.Architecture)),
            path, model.Architecture.Name, type);

    /// <summary>Writes the adapter as is (B rows already in the GGUF order of <paramref name="architecture"/>).</summary>
    public static void Write(LoraAdapter adapter, string path, string architecture, GgmlType type = GgmlType.F32)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)) throw new OpenWeightsException($"GGUF LoRA adapters are written as F32, F16 or BF16, not {type}");
        if (adapter.Weights.Count == 0) throw new OpenWeightsException("the adapter has no weights");
        var w = new GgufWriter()
            .Set("general.architecture", architecture)
            .Set(TypeKey, "adapter")
            .Set(AdapterTypeKey, "lora");
        if (adapter.BaseModel is { } bm) w.Set("general.base_model.0.repo_url", bm);
        // llama.cpp applies alpha / r: store the alpha that gives our scale (rsLoRA: alpha · sqrt(r) / r = alpha / sqrt(r)).
        bool mixed = adapter.Weights.Values.Any(x => x.Rank != adapter.Rank);
        if (adapter.UseRsLora && mixed) throw new OpenWeightsException("rsLoRA adapters with several ranks cannot be expressed as one GGUF alpha");
        float alpha = adapter.UseRsLora ? adapter.Alpha * MathF.Sqrt(adapter.Rank) : adapter.Alpha;
        w.Set(AlphaKey, alpha);
        foreach (var lw in LoraNames.Ordered(adapter, Architectures.Supported.FirstOrDefault(a => a.Name == architecture)))
        {
            lw.Validate();
            w.AddTensor(lw.Target + ".lora_a", type, [lw.In, lw.Rank], Encode(lw.A, type));
            w.AddTensor(lw.Target + ".lora_b", type, [lw.Rank, lw.Out], Encode(lw.B, type));
        }
        w.Write(path);
    }

    private static byte[] Encode(float[] v, GgmlType type)
    {
        var buf = new byte[GgmlTypes.RowBytes(type, v.Length)];
        Quantize.Row(type, v, buf);
        return buf;
    }

    /// <summary>True when the file starts with the GGUF magic.</summary>
    public static bool IsGguf(string path)
    {
        if (!File.Exists(path)) return false;
        using var f = File.OpenRead(path);
        Span<byte> m = stackalloc byte[4];
        return f.Read(m) == 4 && BitConverter.ToUInt32(m) == GgufFile.Magic;
    }

    /// <summary>Reads a GGUF LoRA adapter; B rows in the file's (GGUF) order. Returns the base architecture too.</summary>
    public static (LoraAdapter Adapter, string Architecture) Read(string path)
    {
        using var f = GgufFile.Open(path);
        string file = Path.GetFileName(path);
        string? gtype = f.GetString(TypeKey);
        if (gtype != "adapter")
            throw new OpenWeightsException(gtype is null or "model"
                ? $"{file} is a model, not a LoRA adapter (general.type is {gtype ?? "absent"})"
                : $"{file}: general.type is '{gtype}', expected 'adapter'");
        string? atype = f.GetString(AdapterTypeKey);
        if (atype != "lora") throw new OpenWeightsException($"{file}: adapter.type is '{atype ?? "absent"}', only 'lora' is supported");
        string arch = f.GetString("general.architecture") ?? throw new OpenWeightsException($"{file}: general.architecture is missing");
        float alpha = (float)(f.GetNumber(AlphaKey) ?? 0);

        var pairs = new Dictionary<string, (GgufTensorInfo? A, GgufTensorInfo? B)>(StringComparer.Ordinal);
        foreach (var t in f.Tensors)
        {
            bool isA = t.Name.EndsWith(".lora_a", StringComparison.Ordinal), isB = t.Name.EndsWith(".lora_b", StringComparison.Ordinal);
            if (!isA && !isB) throw new OpenWeightsException($"{file}: tensor '{t.Name}' is not supported (only .lora_a/.lora_b pairs)");
            string target = t.Name[..^7];
            LoraNames.ParseGguf(target); // validates
            pairs.TryGetValue(target, out var p);
            if (isA) p.A = t; else p.B = t;
            pairs[target] = p;
        }
        if (pairs.Count == 0) throw new OpenWeightsException($"{file}: no LoRA tensors");
        var weights = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        foreach (var (target, p) in pairs)
        {
            if (p.A is null || p.B is null) throw new OpenWeightsException($"{file}: {target} has lora_{(p.A is null ? "a" : "b")} missing");
            if (p.A.Dimensions.Length != 2 || p.B.Dimensions.Length != 2 || p.A.Dimensions[1] != p.B.Dimensions[0])
                throw new OpenWeightsException($"{file}: {target}.lora_a {p.A.ShapeText} and .lora_b {p.B.ShapeText} do not pair up as [in, r] and [r, out]");
            var lw = new LoraWeights
            {
                Target = target, Rank = (int)p.A.Dimensions[1], In = (int)p.A.Dimensions[0], Out = (int)p.B.Dimensions[1],
                A = Decode(f, p.A, file), B = Decode(f, p.B, file),
            };
            lw.Validate();
            weights[target] = lw;
        }
        int rank = weights.Values.First().Rank;
        // alpha = 0 means "no scaling" in llama.cpp (scale = user scale): alpha = r gives alpha / r = 1.
        bool mixed = weights.Values.Any(x => x.Rank != rank);
        if (alpha == 0 && mixed) throw new OpenWeightsException($"{file}: adapter.lora.alpha is absent and ranks differ between tensors");
        var modules = weights.Keys.Select(k => LoraNames.ParseGguf(k).Peft).Distinct().ToList();
        var adapter = new LoraAdapter { Alpha = alpha == 0 ? rank : alpha, Rank = rank, TargetModules = modules, Weights = weights };
        return (adapter, arch);
    }

    private static float[] Decode(GgufFile f, GgufTensorInfo t, string file)
    {
        if (!Dequantize.CanDequantize(t.Type)) throw new OpenWeightsException($"{file}: tensor {t.Name} has type {t.Type}, which cannot be read");
        var r = new float[t.ElementCount];
        Dequantize.Row(t.Type, f.TensorData(t), r);
        return r;
    }

    /// <summary>Reads a GGUF LoRA adapter with its B rows in the row order of <paramref name="model"/>; the architectures must match.</summary>
    public static LoraAdapter Read(string path, ModelConfig model)
    {
        var (a, arch) = Read(path);
        if (arch != model.Architecture.Name)
            throw new OpenWeightsException($"{Path.GetFileName(path)} is a LoRA for a {arch} model, not {model.Architecture.Name}");
        return LoraRotary.Convert(a, model, LoraRotary.GgufIsInterleaved(model.Architecture), LoraRotary.ModelIsInterleaved(model));
    }
}
