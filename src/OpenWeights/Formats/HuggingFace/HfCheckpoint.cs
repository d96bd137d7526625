using System.Runtime.InteropServices;
using System.Text.Json;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Formats.HuggingFace;

/// <summary>
/// A Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c>, or shards listed in
/// <c>model.safetensors.index.json</c>; tokenizer from <c>tokenizer.json</c> + <c>tokenizer_config.json</c>)
/// presented as a GGUF would present it: metadata under GGUF keys, tensors under GGUF names and ggml dimension
/// order, pointing straight into the memory-mapped safetensors files (no copies).
/// </summary>
/// <remarks>
/// Q/K rows of HF llama checkpoints are not permuted the way llama.cpp's converter permutes them, so instead of
/// permuting, the metadata says <c>openweights.rope.style = "neox"</c>: NEOX pairing (i, i+d/2) on the
/// unpermuted rows is the same rotation as NORM pairing on permuted ones. <see cref="HfConverter"/> permutes when
/// it writes a GGUF.
/// </remarks>
public sealed unsafe class HfCheckpoint : ITensorSource
{
    public const string RopeStyleKey = "openweights.rope.style";

    /// <summary>Hugging Face architecture class -> our architecture name.</summary>
    public static readonly IReadOnlyDictionary<string, string> ArchitectureMap = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["LlamaForCausalLM"] = "llama",
        ["MistralForCausalLM"] = "llama",
        ["Qwen2ForCausalLM"] = "qwen2",
    };

    /// <summary>HF tensor name suffix inside <c>model.layers.N.</c> -> GGUF block tensor name.</summary>
    private static readonly Dictionary<string, string> LayerNames = new(StringComparer.Ordinal)
    {
        ["input_layernorm.weight"] = AttnNorm,
        ["self_attn.q_proj.weight"] = AttnQ,
        ["self_attn.k_proj.weight"] = AttnK,
        ["self_attn.v_proj.weight"] = AttnV,
        ["self_attn.o_proj.weight"] = AttnOut,
        ["self_attn.q_proj.bias"] = AttnQBias,
        ["self_attn.k_proj.bias"] = AttnKBias,
        ["self_attn.v_proj.bias"] = AttnVBias,
        ["post_attention_layernorm.weight"] = FfnNorm,
        ["mlp.gate_proj.weight"] = FfnGate,
        ["mlp.up_proj.weight"] = FfnUp,
        ["mlp.down_proj.weight"] = FfnDown,
    };

    private readonly List<SafetensorsFile> files = [];
    private readonly Dictionary<string, GgufTensorInfo> byName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, nint> pointers = new(StringComparer.Ordinal);
    private readonly List<GgufTensorInfo> tensors = [];
    private readonly Dictionary<string, object> metadata = new(StringComparer.Ordinal);
    private readonly List<string> keys = [];
    private readonly List<nint> owned = [];
    private bool disposed;

    /// <summary>The checkpoint folder.</summary>
    public string Path { get; }
    public IReadOnlyDictionary<string, object> Metadata => metadata;
    /// <summary>Metadata keys in the order a GGUF writer should write them.</summary>
    public IReadOnlyList<string> MetadataKeys => keys;
    public IReadOnlyList<GgufTensorInfo> Tensors => tensors;
    /// <summary>Our architecture name (llama, qwen2).</summary>
    public string Architecture { get; }
    /// <summary>The weight files opened (one, or the shards).</summary>
    public IReadOnlyList<string> WeightFiles => files.Select(f => f.Path).ToList();
    /// <summary>Whether Q/K rows are in Hugging Face order (llama/mistral), i.e. need llama.cpp's permutation for a GGUF.</summary>
    public bool QkNeedsPermute { get; }

    /// <summary>Whether a folder looks like a Hugging Face checkpoint (holds a config.json).</summary>
    public static bool IsCheckpointDir(string path) => Directory.Exists(path) && File.Exists(System.IO.Path.Combine(path, "config.json"));

    public static HfCheckpoint Open(string dir)
    {
        if (File.Exists(dir)) throw new OpenWeightsException($"{dir} is a file; a Hugging Face checkpoint is a folder holding config.json");
        if (!Directory.Exists(dir)) throw new OpenWeightsException($"folder not found: {dir}");
        if (!File.Exists(System.IO.Path.Combine(dir, "config.json"))) throw new OpenWeightsException($"{dir} holds no config.json (not a Hugging Face checkpoint)");
        return new HfCheckpoint(System.IO.Path.GetFullPath(dir));
    }

    private HfCheckpoint(string dir)
    {
        Path = dir;
        try
        {
            var cfg = HfConfig.Load(System.IO.Path.Combine(dir, "config.json"));
            Architecture = cfg.Architecture;
            QkNeedsPermute = Architecture == "llama";
            SetHyperParameters(cfg);
            OpenWeightFiles(dir, cfg);
            HfTokenizer.AddMetadata(dir, cfg.VocabSize, Set);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private void Set(string key, object value)
    {
        if (!metadata.ContainsKey(key)) keys.Add(key);
        metadata[key] = value;
    }

    private void SetHyperParameters(HfConfig c)
    {
        string a = c.Architecture;
        Set("general.architecture", a);
        Set("general.name", c.Name ?? System.IO.Path.GetFileName(Path.TrimEnd('/', '\\')));
        Set($"{a}.vocab_size", (uint)c.VocabSize);
        Set($"{a}.context_length", (uint)c.ContextLength);
        Set($"{a}.embedding_length", (uint)c.Hidden);
        Set($"{a}.block_count", (uint)c.Layers);
        Set($"{a}.feed_forward_length", (uint)c.Ffn);
        Set($"{a}.attention.head_count", (uint)c.Heads);
        Set($"{a}.attention.head_count_kv", (uint)c.KvHeads);
        Set($"{a}.rope.freq_base", (float)c.RopeTheta);
        Set($"{a}.attention.layer_norm_rms_epsilon", (float)c.RmsEps);
        if (c.HeadDim != c.Hidden / c.Heads || c.Hidden % c.Heads != 0)
        {
            Set($"{a}.attention.key_length", (uint)c.HeadDim);
            Set($"{a}.attention.value_length", (uint)c.HeadDim);
        }
        Set($"{a}.rope.dimension_count", (uint)c.HeadDim);
        if (c.RopeScalingType is "linear" or "yarn")
        {
            Set($"{a}.rope.scaling.type", c.RopeScalingType);
            Set($"{a}.rope.scaling.factor", (float)c.RopeFactor);
        }
        if (c.RopeScalingType == "yarn")
        {
            // as llama.cpp's converter writes a yarn rope_scaling
            Set($"{a}.rope.scaling.original_context_length", (uint)c.OriginalContext);
            if (c.YarnAttentionFactor is { } af) Set($"{a}.rope.scaling.yarn_attn_factor", (float)af);
            if (c.YarnBetaFast is { } bf) Set($"{a}.rope.scaling.yarn_beta_fast", (float)bf);
            if (c.YarnBetaSlow is { } bs) Set($"{a}.rope.scaling.yarn_beta_slow", (float)bs);
        }
        if (QkNeedsPermute) Set(RopeStyleKey, "neox");
    }

    private void OpenWeightFiles(string dir, HfConfig c)
    {
        string single = System.IO.Path.Combine(dir, "model.safetensors");
        string index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
        var source = new Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)>(StringComparer.Ordinal);
        if (File.Exists(index))
        {
            var map = ReadIndex(index);
            var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, file) in map)
            {
                if (!opened.TryGetValue(file, out var sf))
                {
                    string p = System.IO.Path.Combine(dir, file);
                    if (!File.Exists(p)) throw new InvalidModelFileException($"model.safetensors.index.json: shard {UntrustedText.Quote(file)} is missing");
                    sf = SafetensorsFile.Open(p);
                    files.Add(sf);
                    opened[file] = sf;
                }
                if (!sf.TryGetTensor(name, out var ti)) throw new InvalidModelFileException($"model.safetensors.index.json: tensor {UntrustedText.Quote(name)} is not in {UntrustedText.Quote(file)}");
                source[name] = (sf, ti);
            }
        }
        else if (File.Exists(single))
        {
            var sf = SafetensorsFile.Open(single);
            files.Add(sf);
            foreach (var t in sf.Tensors) source[t.Name] = (sf, t);
        }
        else
        {
            string hint = Directory.EnumerateFiles(dir, "*.bin").Any() ? " (PyTorch .bin checkpoints are not supported; use the safetensors weights)" : "";
            throw new InvalidModelFileException($"{dir} holds neither model.safetensors nor model.safetensors.index.json{hint}");
        }

        Validate(dir, c, source.ToDictionary(kv => kv.Key, kv => kv.Value.Info, StringComparer.Ordinal));

        // Present them in GGUF order: embeddings, rope factors, blocks, output norm, output.
        var mapped = new List<(string Gguf, SafetensorsFile File, SafetensorsTensorInfo Info, int Order)>();
        foreach (var (hf, (sf, ti)) in source)
        {
            var (gguf, order) = MapName(hf);
            if (gguf is null) continue;
            mapped.Add((gguf, sf, ti, order));
        }
        foreach (var (gguf, sf, ti, _) in mapped.OrderBy(m => m.Order).ThenBy(m => m.Gguf, StringComparer.Ordinal))
        {
            var type = ti.DType switch
            {
                SafetensorsDType.F32 => GgmlType.F32,
                SafetensorsDType.F16 => GgmlType.F16,
                SafetensorsDType.BF16 => GgmlType.BF16,
                _ => throw new InvalidModelFileException($"{System.IO.Path.GetFileName(sf.Path)}: tensor {UntrustedText.Quote(ti.Name)} has dtype {ti.DType}; only F32, F16 and BF16 are supported"),
            };
            if (ti.Shape.Length is 0 or > 2) throw new InvalidModelFileException($"{System.IO.Path.GetFileName(sf.Path)}: tensor {UntrustedText.Quote(ti.Name)} has {ti.Shape.Length} dimensions, expected 1 or 2");
            var dims = ti.Shape.Reverse().ToArray(); // HF [out, in] row-major = ggml [in, out]
            if (byName.ContainsKey(gguf)) throw new InvalidModelFileException($"{UntrustedText.Quote(ti.Name)}: two tensors map to {gguf}");
            Add(new GgufTensorInfo(gguf, dims, type, ti.Begin, ti.ByteSize), (nint)sf.TensorPointer(ti));
            if (gguf == TokenEmbedding && c.RopeScalingType == "llama3")
            {
                var f = RopeScaling.Llama3FreqFactors(c.HeadDim, c.RopeTheta, c.RopeFactor, c.LowFreqFactor, c.HighFreqFactor, c.OriginalContext);
                nint p = (nint)NativeMemory.Alloc((nuint)(f.Length * sizeof(float)));
                owned.Add(p);
                f.AsSpan().CopyTo(new Span<float>((void*)p, f.Length));
                Add(new GgufTensorInfo(RopeFreqs, [f.Length], GgmlType.F32, 0, f.Length * sizeof(float)), p);
            }
        }
        if (!byName.ContainsKey(TokenEmbedding)) throw new InvalidModelFileException($"{dir}: tensor model.embed_tokens.weight is missing");
    }

    /// <summary>A tensor the config implies: Hugging Face name, shape in [out, in] order, and the config fields the shape comes from.</summary>
    internal sealed record ExpectedTensor(string Name, long[] Shape, string From, bool Required = true);

    /// <summary>Every tensor a llama/mistral/qwen2 checkpoint with this config holds, in file order.</summary>
    internal static List<ExpectedTensor> ExpectedTensors(HfConfig c)
    {
        long h = c.Hidden, q = (long)c.Heads * c.HeadDim, kv = (long)c.KvHeads * c.HeadDim, ffn = c.Ffn;
        const string H = "hidden_size", Q = "num_attention_heads × head_dim", KV = "num_key_value_heads × head_dim", F = "intermediate_size";
        var r = new List<ExpectedTensor> { new("model.embed_tokens.weight", [c.VocabSize, h], "vocab_size, " + H) };
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            r.Add(new(p + "input_layernorm.weight", [h], H));
            r.Add(new(p + "self_attn.q_proj.weight", [q, h], $"{Q}, {H}"));
            r.Add(new(p + "self_attn.k_proj.weight", [kv, h], $"{KV}, {H}"));
            r.Add(new(p + "self_attn.v_proj.weight", [kv, h], $"{KV}, {H}"));
            r.Add(new(p + "self_attn.o_proj.weight", [h, q], $"{H}, {Q}"));
            r.Add(new(p + "self_attn.q_proj.bias", [q], Q, Required: false));
            r.Add(new(p + "self_attn.k_proj.bias", [kv], KV, Required: false));
            r.Add(new(p + "self_attn.v_proj.bias", [kv], KV, Required: false));
            r.Add(new(p + "post_attention_layernorm.weight", [h], H));
            r.Add(new(p + "mlp.gate_proj.weight", [ffn, h], $"{F}, {H}"));
            r.Add(new(p + "mlp.up_proj.weight", [ffn, h], $"{F}, {H}"));
            r.Add(new(p + "mlp.down_proj.weight", [h, ffn], $"{H}, {F}"));
        }
        r.Add(new("model.norm.weight", [h], H));
        // lm_head may be absent when the embeddings are tied, which is also what a config without tie_word_embeddings usually means
        r.Add(new("lm_head.weight", [c.VocabSize, h], "vocab_size, " + H, Required: c.TieExplicit && !c.TiedEmbeddings));
        return r;
    }

    /// <summary>
    /// The problems of a checkpoint against its config.json, in file order: expected tensors missing or of another shape or
    /// type, then tensors the config does not account for (more layers than num_hidden_layers, unknown names).
    /// </summary>
    internal static List<string> Problems(HfConfig c, IReadOnlyDictionary<string, SafetensorsTensorInfo> tensors)
    {
        var problems = new List<string>();
        var expected = ExpectedTensors(c);
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in expected)
        {
            known.Add(e.Name);
            if (!tensors.TryGetValue(e.Name, out var t))
            {
                if (e.Required) problems.Add($"tensor {e.Name} is missing" + (e.Name.StartsWith("lm_head", StringComparison.Ordinal) ? " (tie_word_embeddings is false)" : ""));
                continue;
            }
            if (!t.Shape.SequenceEqual(e.Shape))
                problems.Add($"tensor {e.Name} has shape [{string.Join(", ", t.Shape)}] where config.json implies [{string.Join(", ", e.Shape)}] ({e.From})");
            else if (t.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
                problems.Add($"tensor {e.Name} has dtype {t.DType}; only F32, F16 and BF16 are supported");
        }
        foreach (var name in tensors.Keys.Order(StringComparer.Ordinal))
        {
            if (known.Contains(name) || name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) continue;
            const string prefix = "model.layers.";
            int dot = name.StartsWith(prefix, StringComparison.Ordinal) ? name.IndexOf('.', prefix.Length) : -1;
            bool beyond = dot > 0 && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer)
                && layer >= c.Layers && LayerNames.ContainsKey(name[(dot + 1)..]);
            problems.Add(beyond ? $"unexpected tensor {UntrustedText.Quote(name)} (config.json: num_hidden_layers = {c.Layers})"
                : $"unexpected tensor {UntrustedText.Quote(name)} (not part of a llama/mistral/qwen2 model)");
        }
        return problems;
    }

    /// <summary>Refuses a checkpoint that contradicts its config.json, naming the first problem and counting the others.</summary>
    private static void Validate(string dir, HfConfig c, IReadOnlyDictionary<string, SafetensorsTensorInfo> tensors)
    {
        var problems = Problems(c, tensors);
        if (problems.Count == 0) return;
        string more = problems.Count switch { 1 => "", 2 => " (and 1 more problem)", var n => $" (and {n - 1} more problems)" };
        throw new InvalidModelFileException($"{dir}: the checkpoint does not match its config.json: {problems[0]}{more}");
    }

    private void Add(GgufTensorInfo t, nint p) { tensors.Add(t); byName[t.Name] = t; pointers[t.Name] = p; }

    /// <summary>GGUF name and sort order of a Hugging Face tensor name; null for tensors that are not weights (rotary caches).</summary>
    public static (string? Name, int Order) MapName(string hf)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return (TokenEmbedding, 0);
            case "model.norm.weight": return (OutputNorm, int.MaxValue - 1);
            case "lm_head.weight": return (Output, int.MaxValue);
        }
        if (hf.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) return (null, 0); // a cache some exports save, per layer or once
        const string prefix = "model.layers.";
        if (hf.StartsWith(prefix, StringComparison.Ordinal))
        {
            int dot = hf.IndexOf('.', prefix.Length);
            if (dot > 0 && int.TryParse(hf.AsSpan(prefix.Length, dot - prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer))
            {
                string rest = hf[(dot + 1)..];
                if (LayerNames.TryGetValue(rest, out var g)) return (Block(layer, g), 2 + layer);
            }
        }
        throw new InvalidModelFileException($"unexpected tensor {UntrustedText.Quote(hf)} in the checkpoint (not part of a llama/mistral/qwen2 model)");
    }

    private static List<(string Tensor, string File)> ReadIndex(string path)
    {
        using var doc = HfJson.Parse(path, "model.safetensors.index.json");
        return HfJson.Read("model.safetensors.index.json", () =>
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new InvalidModelFileException("model.safetensors.index.json has no weight_map object");
            var r = new List<(string, string)>();
            foreach (var p in wm.EnumerateObject())
            {
                string? f = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
                if (string.IsNullOrEmpty(f) || f.Contains("..") || System.IO.Path.IsPathRooted(f) || f.Contains('/') || f.Contains('\\'))
                    throw new InvalidModelFileException($"model.safetensors.index.json: tensor {UntrustedText.Quote(p.Name)} names an invalid shard {UntrustedText.Quote(f)}");
                r.Add((p.Name, f));
            }
            if (r.Count == 0) throw new InvalidModelFileException("model.safetensors.index.json: weight_map is empty");
            return r;
        });
    }

    public bool TryGetTensor(string name, out GgufTensorInfo info) => byName.TryGetValue(name, out info!);

    public byte* TensorPointer(GgufTensorInfo t)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return pointers.TryGetValue(t.Name, out var p) ? (byte*)p : throw new ArgumentException($"tensor {t.Name} is not in this checkpoint");
    }

    /// <summary>Tensors point into the read-only safetensors maps, except the few this checkpoint computed itself.</summary>
    public bool IsFileMapped(GgufTensorInfo t) => pointers.TryGetValue(t.Name, out var p) && !owned.Contains(p);

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var f in files) f.Dispose();
        foreach (var p in owned) NativeMemory.Free((void*)p);
        owned.Clear();
    }
}

/// <summary>The fields of a Hugging Face config.json the llama-family readers need; one-line errors.</summary>
internal sealed record HfConfig
{
    public required string Architecture { get; init; }
    public string? Name { get; init; }
    public int VocabSize { get; init; }
    public int Hidden { get; init; }
    public int Layers { get; init; }
    public int Heads { get; init; }
    public int KvHeads { get; init; }
    public int HeadDim { get; init; }
    public int Ffn { get; init; }
    public int ContextLength { get; init; }
    public double RmsEps { get; init; }
    public double RopeTheta { get; init; }
    public bool TiedEmbeddings { get; init; }
    public bool TieExplicit { get; init; }
    public string? RopeScalingType { get; init; }
    public double RopeFactor { get; init; } = 1;
    public double LowFreqFactor { get; init; } = 1;
    public double HighFreqFactor { get; init; } = 4;
    public int OriginalContext { get; init; } = 8192;
    public double? YarnAttentionFactor { get; init; }
    public double? YarnBetaFast { get; init; }
    public double? YarnBetaSlow { get; init; }

    public static HfConfig Load(string path)
    {
        using var doc = HfJson.Parse(path, "config.json");
        return HfJson.Read("config.json", () =>
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException("config.json is not a JSON object");
            JsonElement? Get(string k) => r.TryGetProperty(k, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
            string? archClass = Get("architectures") is { ValueKind: JsonValueKind.Array } arr && arr.GetArrayLength() > 0 && arr[0].ValueKind == JsonValueKind.String ? arr[0].GetString() : null;
            string? modelType = Get("model_type") is { ValueKind: JsonValueKind.String } mt ? mt.GetString() : null;
            string arch = archClass is not null
                ? HfCheckpoint.ArchitectureMap.TryGetValue(archClass, out var a1) ? a1
                    : throw new OpenWeightsException($"unsupported Hugging Face architecture {UntrustedText.Quote(archClass)} (supported: {string.Join(", ", HfCheckpoint.ArchitectureMap.Keys)})")
                : modelType is not null && ModelTypeMap(modelType) is { } a2 ? a2
                : throw new InvalidModelFileException($"config.json names no supported architecture (architectures: none, model_type: {(modelType is null ? "none" : UntrustedText.Quote(modelType))})");
            int Int(string k, int? def = null)
            {
                var v = Get(k);
                if (v is null) return def ?? throw new InvalidModelFileException($"config.json: {k} is missing");
                if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetInt64(out long x)) throw new InvalidModelFileException($"config.json: {k} is not an integer");
                if (x <= 0 || x > 1 << 24) throw new InvalidModelFileException($"config.json: {k} = {x} is out of range");
                return (int)x;
            }
            double Num(string k, double def, JsonElement? obj = null)
            {
                JsonElement? v = obj is { } o ? (o.TryGetProperty(k, out var e) && e.ValueKind != JsonValueKind.Null ? e : null) : Get(k);
                if (v is null) return def;
                if (v.Value.ValueKind != JsonValueKind.Number) throw new InvalidModelFileException($"config.json: {k} is not a number");
                double d = v.Value.GetDouble();
                if (!double.IsFinite(d) || d <= 0) throw new InvalidModelFileException($"config.json: {k} = {d} must be positive");
                return d;
            }
            int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
            int headDim = Int("head_dim", hidden % heads == 0 ? hidden / heads : null);
            int kv = Int("num_key_value_heads", heads);
            if (headDim % 2 != 0) throw new InvalidModelFileException($"config.json: head_dim {headDim} is odd (rotary embeddings rotate pairs of dimensions)");
            if (heads % kv != 0) throw new InvalidModelFileException($"config.json: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}");
            if (arch == "llama" && Get("attention_bias") is { ValueKind: JsonValueKind.True }) throw new OpenWeightsException("config.json: attention_bias = true is not supported for llama models");
            bool tieExplicit = Get("tie_word_embeddings") is { } tie && tie.ValueKind is JsonValueKind.True or JsonValueKind.False;
            bool tied = Get("tie_word_embeddings") is { ValueKind: JsonValueKind.True };
            string? scalingType = null;
            double factor = 1, low = 1, high = 4; int orig = 8192;
            double? yarnAttn = null, betaFast = null, betaSlow = null;
            if (Get("rope_scaling") is { } rs)
            {
                if (rs.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException("config.json: rope_scaling is not an object");
                scalingType = (rs.TryGetProperty("rope_type", out var t) || rs.TryGetProperty("type", out t)) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                factor = Num("factor", 1, rs);
                switch (scalingType)
                {
                    case "llama3":
                        low = Num("low_freq_factor", 1, rs); high = Num("high_freq_factor", 4, rs);
                        double o = Num("original_max_position_embeddings", 8192, rs);
                        if (o > 1 << 24) throw new InvalidModelFileException($"config.json: original_max_position_embeddings = {o} is out of range");
                        orig = (int)o;
                        if (high <= low) throw new InvalidModelFileException("config.json: rope_scaling high_freq_factor must exceed low_freq_factor");
                        break;
                    case "linear": break;
                    case "yarn":
                        // transformers' _compute_yarn_parameters: the ramp spans original_max_position_embeddings (default
                        // max_position_embeddings); attention_factor replaces 0.1·ln(factor) + 1; beta_fast / beta_slow default 32 / 1
                        double yo = Num("original_max_position_embeddings", Int("max_position_embeddings", 4096), rs);
                        if (yo > 1 << 24 || yo != Math.Floor(yo)) throw new InvalidModelFileException($"config.json: original_max_position_embeddings = {yo} is not a context length");
                        orig = (int)yo;
                        double? Opt(string k) => rs.TryGetProperty(k, out var e) && e.ValueKind != JsonValueKind.Null ? Num(k, 1, rs) : null;
                        yarnAttn = Opt("attention_factor"); betaFast = Opt("beta_fast"); betaSlow = Opt("beta_slow");
                        foreach (var k in new[] { "mscale", "mscale_all_dim" })
                            if (rs.TryGetProperty(k, out var e) && e.ValueKind != JsonValueKind.Null) throw new OpenWeightsException($"config.json: rope_scaling {k} (DeepSeek-style YaRN magnitude) is not supported");
                        if (rs.TryGetProperty("truncate", out var tr) && tr.ValueKind == JsonValueKind.False) throw new OpenWeightsException("config.json: rope_scaling truncate = false is not supported");
                        break;
                    case "default" or null: scalingType = null; break;
                    default: throw new OpenWeightsException($"config.json: rope_scaling type {UntrustedText.Quote(scalingType)} is not supported (supported: llama3, linear, yarn)");
                }
            }
            string? name = Get("_name_or_path") is { ValueKind: JsonValueKind.String } n && !string.IsNullOrWhiteSpace(n.GetString()) ? System.IO.Path.GetFileName(n.GetString()!.TrimEnd('/')) : null;
            return new HfConfig
            {
                Architecture = arch,
                Name = name,
                VocabSize = Int("vocab_size"),
                Hidden = hidden,
                Layers = Int("num_hidden_layers"),
                Heads = heads,
                KvHeads = kv,
                HeadDim = headDim,
                Ffn = Int("intermediate_size"),
                ContextLength = Int("max_position_embeddings", 4096),
                RmsEps = Num("rms_norm_eps", 1e-6),
                RopeTheta = Num("rope_theta", 10000),
                TiedEmbeddings = tied,
                TieExplicit = tieExplicit,
                RopeScalingType = scalingType,
                RopeFactor = factor,
                LowFreqFactor = low,
                HighFreqFactor = high,
                OriginalContext = orig,
                YarnAttentionFactor = yarnAttn,
                YarnBetaFast = betaFast,
                YarnBetaSlow = betaSlow,
            };
        });
    }

    private static string? ModelTypeMap(string t) => t switch { "llama" or "mistral" => "llama", "qwen2" => "qwen2", _ => null };
}
