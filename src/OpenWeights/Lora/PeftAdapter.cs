using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models;

namespace OpenWeights.Lora;

/// <summary>
/// Hugging Face PEFT LoRA adapters: a folder with <c>adapter_config.json</c> and <c>adapter_model.safetensors</c>,
/// tensors named <c>base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight</c> (r, in) and
/// <c>.lora_B.weight</c> (out, r). PEFT files keep q_proj/k_proj rows in Hugging Face order; pass the base
/// <see cref="ModelConfig"/> to convert from/to the row order our engine uses for that model (see <see cref="LoraRotary"/>).
/// </summary>
public static partial class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>
    /// Writes <paramref name="dir"/>/adapter_config.json and adapter_model.safetensors (F32, or F16/BF16).
    /// <paramref name="architecture"/>: whose Hugging Face module names to write (default: <paramref name="model"/>'s; without
    /// either, the first family naming each projection, llama's first).
    /// <paramref name="model"/>: the base the adapter was built for, whose Q/K row order the adapter's B rows follow;
    /// null when the adapter is already in Hugging Face order.
    /// </summary>
    public static void Write(LoraAdapter adapter, string dir, ModelConfig? model = null, float dropout = 0f,
        SafetensorsDType dtype = SafetensorsDType.F32, string? baseModelNameOrPath = null, ArchitectureSpec? architecture = null)
    {
        architecture ??= model?.Architecture; // whose Hugging Face module names (Phi-3: qkv_proj, gate_up_proj)
        if (dtype is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            throw new OpenWeightsException($"PEFT adapters are written as F32, F16 or BF16, not {dtype}");
        if (model is not null) adapter = LoraRotary.Convert(adapter, model, LoraRotary.ModelIsInterleaved(model), toInterleaved: false);
        if (adapter.Weights.Count == 0) throw new OpenWeightsException("the adapter has no weights");
        var st = new SafetensorsWriter();
        var modules = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var w in LoraNames.Ordered(adapter, architecture))
        {
            w.Validate();
            if (w.Rank != adapter.Rank) throw new OpenWeightsException($"LoRA {w.Target}: rank {w.Rank} differs from the adapter's rank {adapter.Rank}; PEFT files without rank_pattern need one rank");
            var (layer, peft) = LoraNames.ParseGguf(w.Target, architecture);
            modules.Add(peft);
            string module = LoraTargets.PeftModule(peft, layer, architecture);
            st.Add(module + ".lora_A.weight", dtype, [w.Rank, w.In], Encode(w.A, dtype));
            st.Add(module + ".lora_B.weight", dtype, [w.Out, w.Rank], Encode(w.B, dtype));
        }
        var targets = adapter.TargetModules.Count > 0 ? adapter.TargetModules.ToList() : [.. modules];
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModelNameOrPath ?? adapter.BaseModel,
            ["r"] = adapter.Rank,
            ["lora_alpha"] = adapter.Alpha,
            ["lora_dropout"] = dropout,
            ["target_modules"] = new JsonArray([.. targets.Select(t => (JsonNode)t!)]),
            ["use_rslora"] = adapter.UseRsLora,
            ["use_dora"] = false,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["modules_to_save"] = null,
            ["layers_to_transform"] = null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
            ["revision"] = null,
        };
        Directory.CreateDirectory(dir);
        st.Write(Path.Combine(dir, WeightsFile));
        string cfgPath = Path.Combine(dir, ConfigFile), tmp = cfgPath + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(tmp, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, cfgPath, overwrite: true);
    }

    private static byte[] Encode(float[] v, SafetensorsDType dtype)
    {
        switch (dtype)
        {
            case SafetensorsDType.F32: return System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
            case SafetensorsDType.F16:
                {
                    var h = new Half[v.Length];
                    System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(v, h);
                    return System.Runtime.InteropServices.MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
                }
            default:
                {
                    var b = new ushort[v.Length];
                    for (int i = 0; i < v.Length; i++) b[i] = OpenWeights.Tensors.Quant.HalfConvert.Fp32ToBf16(v[i]);
                    return System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()).ToArray();
                }
        }
    }

    /// <summary>True for a PEFT folder, its adapter_config.json or its adapter_model.safetensors.</summary>
    public static bool IsPeft(string path) =>
        Directory.Exists(path) ? File.Exists(Path.Combine(path, ConfigFile)) || File.Exists(Path.Combine(path, WeightsFile))
        : path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || Path.GetFileName(path).Equals(ConfigFile, StringComparison.OrdinalIgnoreCase);

    /// <summary>Reads a PEFT adapter (folder, adapter_config.json or adapter_model.safetensors), B rows in Hugging Face order;
    /// module names are those of <paramref name="architecture"/> (llama's when null).</summary>
    public static LoraAdapter Read(string path, ArchitectureSpec? architecture = null)
    {
        var known = architecture is null ? LoraTargets.All : LoraTargets.Of(architecture);
        string dir = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        string cfgPath = Path.Combine(dir, ConfigFile);
        string stPath = path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? path : Path.Combine(dir, WeightsFile);
        if (!File.Exists(cfgPath)) throw new OpenWeightsException($"{path}: no {ConfigFile} next to the adapter weights");
        if (!File.Exists(stPath))
            throw new OpenWeightsException(File.Exists(Path.Combine(dir, "adapter_model.bin"))
                ? $"{dir}: adapter_model.bin (PyTorch pickle) is not supported; save the adapter with safe_serialization=True"
                : $"{dir}: {WeightsFile} is missing");

        var cfg = ReadConfig(cfgPath);
        var weights = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        using var st = SafetensorsFile.Open(stPath);
        var pairs = new Dictionary<string, (SafetensorsTensorInfo? A, SafetensorsTensorInfo? B, int Layer, string Peft)>(StringComparer.Ordinal);
        foreach (var t in st.Tensors)
        {
            var m = HfLoraName().Match(t.Name);
            if (ExpertLoraName().IsMatch(t.Name))
                throw new OpenWeightsException($"{Path.GetFileName(stPath)}: tensor '{t.Name}' adapts a mixture-of-experts module (experts or router): LoRA on experts is not supported, only on the attention of MoE models");
            if (!m.Success)
                throw new OpenWeightsException($"{Path.GetFileName(stPath)}: tensor '{t.Name}' is not a LoRA A/B matrix of a supported projection ({string.Join(", ", known.Select(x => x.Peft))})");
            string hfPath = m.Groups[2].Value;
            var target = known.FirstOrDefault(x => x.HfPath == hfPath);
            if (target.Peft is null) throw new OpenWeightsException($"{Path.GetFileName(stPath)}: tensor '{t.Name}' adapts '{hfPath}', which is not supported ({string.Join(", ", known.Select(x => x.Peft))})");
            int layer = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            string gguf = LoraTargets.GgufWeight(target.Peft, layer, architecture);
            pairs.TryGetValue(gguf, out var p);
            p.Layer = layer; p.Peft = target.Peft;
            if (m.Groups[3].Value == "A") { if (p.A is not null) throw Dup(t.Name); p.A = t; }
            else { if (p.B is not null) throw Dup(t.Name); p.B = t; }
            pairs[gguf] = p;
        }
        if (pairs.Count == 0) throw new OpenWeightsException($"{Path.GetFileName(stPath)}: no LoRA tensors");
        foreach (var (gguf, p) in pairs)
        {
            if (p.A is null || p.B is null) throw new OpenWeightsException($"{Path.GetFileName(stPath)}: {LoraTargets.PeftModule(p.Peft, p.Layer, architecture)} has lora_{(p.A is null ? "A" : "B")} missing");
            if (p.A.Shape.Length != 2 || p.B.Shape.Length != 2 || p.A.Shape[0] != p.B.Shape[1])
                throw new OpenWeightsException($"{LoraTargets.PeftModule(p.Peft, p.Layer, architecture)}: lora_A [{string.Join(", ", p.A.Shape)}] and lora_B [{string.Join(", ", p.B.Shape)}] do not pair up as (r, in) and (out, r)");
            int r = (int)p.A.Shape[0];
            if (r != cfg.Rank) throw new OpenWeightsException($"{LoraTargets.PeftModule(p.Peft, p.Layer, architecture)}: rank {r} differs from r = {cfg.Rank} in {ConfigFile}");
            var w = new LoraWeights { Target = gguf, Rank = r, In = (int)p.A.Shape[1], Out = (int)p.B.Shape[0], A = st.ReadF32(p.A), B = st.ReadF32(p.B) };
            w.Validate();
            weights[gguf] = w;
        }
        var modules = cfg.TargetModules ?? [.. pairs.Values.Select(p => p.Peft).Distinct().OrderBy(x => x, StringComparer.Ordinal)];
        return new LoraAdapter { Alpha = cfg.Alpha, Rank = cfg.Rank, UseRsLora = cfg.UseRsLora, TargetModules = modules, BaseModel = cfg.BaseModel, Weights = weights };

        OpenWeightsException Dup(string n) => new($"{Path.GetFileName(stPath)}: duplicate LoRA tensor '{n}'");
    }

    /// <summary>Reads a PEFT adapter with its B rows in the row order of <paramref name="model"/>.</summary>
    public static LoraAdapter Read(string path, ModelConfig model) =>
        LoraRotary.Convert(Read(path, model.Architecture), model, fromInterleaved: false, toInterleaved: LoraRotary.ModelIsInterleaved(model));

    private sealed record Config(int Rank, float Alpha, bool UseRsLora, IReadOnlyList<string>? TargetModules, string? BaseModel);

    private static Config ReadConfig(string cfgPath)
    {
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(cfgPath)) as JsonObject ?? throw new OpenWeightsException($"{cfgPath}: not a JSON object"); }
        catch (JsonException e) { throw new OpenWeightsException($"{cfgPath}: invalid JSON ({e.Message})"); }
        string file = Path.GetFileName(cfgPath);
        string? peftType = Str("peft_type");
        if (peftType is not null && !peftType.Equals("LORA", StringComparison.OrdinalIgnoreCase))
            throw new OpenWeightsException($"{file}: peft_type is {peftType}; only LORA adapters are supported");
        if (Bool("use_dora")) throw new OpenWeightsException($"{file}: DoRA adapters (use_dora) are not supported");
        if (Bool("fan_in_fan_out")) throw new OpenWeightsException($"{file}: fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported");
        string? bias = Str("bias");
        if (bias is not null && bias != "none") throw new OpenWeightsException($"{file}: bias = \"{bias}\" is not supported (only \"none\")");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (o[key] is JsonObject pat && pat.Count > 0)
                throw new OpenWeightsException($"{file}: {key} is not supported (per-module ranks/alphas: {string.Join(", ", pat.Select(kv => kv.Key))})");
        if (o["modules_to_save"] is JsonArray mts && mts.Count > 0)
            throw new OpenWeightsException($"{file}: modules_to_save ({string.Join(", ", mts)}) is not supported: the adapter carries full weights");
        int r = o["r"] is JsonValue rv && rv.TryGetValue(out double rd) && rd >= 1 && rd == Math.Floor(rd) ? (int)rd
            : throw new OpenWeightsException($"{file}: 'r' is missing or not a positive integer");
        float alpha = o["lora_alpha"] is JsonValue av && av.TryGetValue(out double ad) ? (float)ad
            : o["lora_alpha"] is null ? r : throw new OpenWeightsException($"{file}: 'lora_alpha' is not a number");
        IReadOnlyList<string>? targets = o["target_modules"] switch
        {
            JsonArray a => [.. a.Select(x => x?.GetValue<string>() ?? "")],
            _ => null, // a regex string or absent: taken from the tensors
        };
        return new Config(r, alpha, Bool("use_rslora"), targets, Str("base_model_name_or_path"));

        string? Str(string k) => o[k] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        bool Bool(string k) => o[k] is JsonValue v && v.TryGetValue(out bool b) && b;
    }

    // base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight (mlp.down_proj, Llama 4's feed_forward.up_proj, ...),
    // optionally with an adapter name (".default") or without the "base_model.model." prefix; the module is then looked up
    // in the architecture's table.
    [GeneratedRegex(@"^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.([a-z_]+\.[a-z_]+)\.lora_(A|B)(?:\.[A-Za-z0-9_\-]+)?\.weight$")]
    private static partial Regex HfLoraName();

    // an expert or router module of a MoE checkpoint: mlp.experts.3.gate_proj, block_sparse_moe.experts.3.w1, mlp.gate, block_sparse_moe.gate
    [GeneratedRegex(@"layers\.\d+\.(?:mlp|block_sparse_moe|feed_forward)\.(?:experts\.|gate\.lora|router\.|shared_expert)")]
    private static partial Regex ExpertLoraName();
}
