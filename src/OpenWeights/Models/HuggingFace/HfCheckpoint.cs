using OpenWeights.Formats.HuggingFace;
using OpenWeights.Formats;
using System.Runtime.InteropServices;
using System.Text.Json;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.HuggingFace;

/// <summary>
/// A Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c>, or shards listed in
/// <c>model.safetensors.index.json</c>; tokenizer from <c>tokenizer.json</c> + <c>tokenizer_config.json</c>)
/// presented as a GGUF would present it: metadata under GGUF keys, tensors under GGUF names and ggml dimension
/// order, pointing straight into the memory-mapped safetensors files (no copies). Everything that differs between
/// families comes from the architecture's entry in <see cref="Architectures.Supported"/>: its Hugging Face classes, its
/// block tensor table (HF name -> GGUF part, shape), its rotary pairing, its norm offset and its config.json mapping
/// (<see cref="HfFamilies"/>).
/// </summary>
/// <remarks>
/// Q/K rows of HF checkpoints are not permuted the way llama.cpp's converter permutes them for the architectures whose
/// GGUF rotary pairing is NORM (llama, smollm3), so instead of permuting, the metadata says
/// <c>openweights.rope.style = "neox"</c>: NEOX pairing (i, i+d/2) on the unpermuted rows is the same rotation as NORM
/// pairing on permuted ones. <see cref="HfConverter"/> permutes when it writes a GGUF. Gemma's RMS norms are the one
/// place where values change: HF stores w, the GGUF w + 1 (<see cref="ArchitectureSpec.NormWeightOffset"/>), so those
/// small vectors are computed into memory of their own.
/// </remarks>
public sealed unsafe class HfCheckpoint : ITensorSource
{
    public const string RopeStyleKey = "openweights.rope.style";

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
    /// <summary>Our architecture name (llama, qwen2, gemma2, ...).</summary>
    public string Architecture => Spec.Name;
    /// <summary>The architecture's naming table entry the checkpoint is read by.</summary>
    public ArchitectureSpec Spec { get; }
    /// <summary>The weight files opened (one, or the shards).</summary>
    public IReadOnlyList<string> WeightFiles => files.Select(f => f.Path).ToList();
    /// <summary>Whether Q/K rows are in Hugging Face order where the GGUF's are permuted: exactly when the architecture's GGUF
    /// rotary pairing is NORM (llama, smollm3), as convert_hf_to_gguf.py permutes them (LlamaModel.permute).</summary>
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
            Spec = cfg.Spec;
            QkNeedsPermute = Spec.Rope == RopeStyle.Norm;
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
        // the keys convert_hf_to_gguf.py's TextModel writes for every family, then the family's own (HfFamily.Map)
        string a = c.Spec.Name;
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
        if (c.HeadDimExplicit || c.HeadDim * c.Heads != c.Hidden)
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
        foreach (var (key, value) in c.FamilyKeys) Set($"{a}.{key}", value);
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

        if (c.Multimodal) source = TextPart(source);
        Validate(dir, c, source.ToDictionary(kv => kv.Key, kv => kv.Value.Info, StringComparer.Ordinal));

        // Present them in GGUF order: embeddings, rope factors, blocks, output norm, output.
        var mapped = new List<(string Gguf, SafetensorsFile File, SafetensorsTensorInfo Info, int Order)>();
        foreach (var (hf, (sf, ti)) in source)
        {
            var (gguf, order) = MapName(c.Spec, hf);
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
            if (c.Spec.NormWeightOffset != 0 && gguf.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                // differs from Llama (Gemma): HF stores w for RMS norms that scale by (1 + w); the GGUF holds w + 1
                var w = new float[dims[0]];
                RowDecoder.Decode(type, new ReadOnlySpan<byte>(sf.TensorPointer(ti), (int)ti.ByteSize), w);
                for (int i = 0; i < w.Length; i++) w[i] += c.Spec.NormWeightOffset;
                AddOwned(gguf, w);
            }
            else Add(new GgufTensorInfo(gguf, dims, type, ti.Begin, ti.ByteSize), (nint)sf.TensorPointer(ti));
            if (gguf == TokenEmbedding)
            {
                // tensors the converter generates from config.json come next, as in llama.cpp's files
                if (c.RopeScalingType == "llama3")
                    AddOwned(RopeFreqs, RopeScaling.Llama3FreqFactors(c.HeadDim, c.RopeTheta, c.RopeFactor, c.LowFreqFactor, c.HighFreqFactor, c.OriginalContext));
                foreach (var (name, values) in c.FamilyTensors) AddOwned(name, values);
            }
        }
        if (!byName.ContainsKey(TokenEmbedding)) throw new InvalidModelFileException($"{dir}: tensor model.embed_tokens.weight is missing");
    }

    /// <summary>
    /// The language model of a multimodal checkpoint (config.json with a text_config, e.g. Gemma3ForConditionalGeneration),
    /// under the names of the text-only model: "language_model.model.layers..." (older transformers) and
    /// "model.language_model.layers..." (newer) become "model.layers...", and the vision tower and projector are left out,
    /// as convert_hf_to_gguf.py does.
    /// </summary>
    private static Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)> TextPart(Dictionary<string, (SafetensorsFile File, SafetensorsTensorInfo Info)> all)
    {
        string[] vision = ["vision_tower.", "multi_modal_projector.", "vision_model.", "model.vision_tower.", "model.multi_modal_projector.", "model.vision_model."];
        var text = new Dictionary<string, (SafetensorsFile, SafetensorsTensorInfo)>(StringComparer.Ordinal);
        foreach (var (name, v) in all)
        {
            if (vision.Any(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            string n = name.StartsWith("model.language_model.", StringComparison.Ordinal) ? "model." + name["model.language_model.".Length..]
                : name.StartsWith("language_model.", StringComparison.Ordinal) ? name["language_model.".Length..] : name;
            if (!text.TryAdd(n, v)) throw new InvalidModelFileException($"tensors {UntrustedText.Quote(name)} and another both hold {UntrustedText.Quote(n)}");
        }
        return text;
    }

    /// <summary>A tensor the config implies: Hugging Face name, shape in [out, in] order, and the config fields the shape comes from.</summary>
    internal sealed record ExpectedTensor(string Name, long[] Shape, string From, bool Required = true);

    /// <summary>Every tensor a checkpoint with this config holds, in file order: the architecture's block table
    /// (<see cref="ArchitectureSpec.Block"/>) for each layer between the embeddings and the final norm.</summary>
    internal static List<ExpectedTensor> ExpectedTensors(HfConfig c)
    {
        long h = c.Hidden, hd = c.HeadDim, q = (long)c.Heads * c.HeadDim, kv = (long)c.KvHeads * c.HeadDim, ffn = c.Ffn;
        const string H = "hidden_size", HD = "head_dim", Q = "num_attention_heads × head_dim", KV = "num_key_value_heads × head_dim", F = "intermediate_size";
        (long[] Shape, string From) Of(TensorShape s) => s switch
        {
            TensorShape.Dim => ([h], H), TensorShape.HeadDim => ([hd], HD), TensorShape.QDim => ([q], Q), TensorShape.KvDim => ([kv], KV),
            TensorShape.Heads => ([c.Heads], "num_attention_heads"),
            TensorShape.Q => ([q, h], $"{Q}, {H}"), TensorShape.Kv => ([kv, h], $"{KV}, {H}"), TensorShape.O => ([h, q], $"{H}, {Q}"),
            TensorShape.Ffn => ([ffn, h], $"{F}, {H}"), TensorShape.Down => ([h, ffn], $"{H}, {F}"),
            TensorShape.Qkv => ([q + 2 * kv, h], $"{Q} + 2 × {KV}, {H}"), TensorShape.GateUp => ([2 * ffn, h], $"2 × {F}, {H}"),
            _ => throw new ArgumentOutOfRangeException(nameof(s)),
        };
        var r = new List<ExpectedTensor> { new("model.embed_tokens.weight", [c.VocabSize, h], "vocab_size, " + H) };
        for (int l = 0; l < c.Layers; l++)
            // Phi-3's separate q/k/v are a GGUF alternative; HF files hold qkv_proj. Checkpoints with experts are not read.
            foreach (var t in c.Spec.Block.Where(t => t.InsteadOf is null && !t.IsExpert))
            {
                var (shape, from) = Of(t.Shape);
                r.Add(new($"model.layers.{l}.{t.Hf}", shape, from));
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
                && layer >= c.Layers && c.Spec.Block.Any(t => t.Hf == name[(dot + 1)..]);
            problems.Add(beyond ? $"unexpected tensor {UntrustedText.Quote(name)} (config.json: num_hidden_layers = {c.Layers})"
                : $"unexpected tensor {UntrustedText.Quote(name)} (not part of a {c.Spec.Name} model)");
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

    /// <summary>A 1-D F32 tensor this checkpoint computed (rope factors, Gemma's shifted norms), in memory it frees.</summary>
    private void AddOwned(string name, float[] values)
    {
        nint p = (nint)NativeMemory.Alloc((nuint)(values.Length * sizeof(float)));
        owned.Add(p);
        values.AsSpan().CopyTo(new Span<float>((void*)p, values.Length));
        Add(new GgufTensorInfo(name, [values.Length], GgmlType.F32, 0, values.Length * sizeof(float)), p);
    }

    /// <summary>GGUF name and sort order of a Hugging Face tensor name, by the architecture's naming table; null for tensors
    /// that are not weights (rotary caches).</summary>
    public static (string? Name, int Order) MapName(ArchitectureSpec spec, string hf)
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
                if (spec.Block.FirstOrDefault(t => t.Hf == rest) is { } part) return (Block(layer, part.Gguf), 2 + layer);
            }
        }
        throw new InvalidModelFileException($"unexpected tensor {UntrustedText.Quote(hf)} in the checkpoint (not part of a {spec.Name} model)");
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

/// <summary>The fields of a Hugging Face config.json every family shares, and what the family's own mapping
/// (<see cref="ArchitectureSpec.Hf"/>) made of the rest; one-line errors.</summary>
internal sealed record HfConfig
{
    public required ArchitectureSpec Spec { get; init; }
    public string Architecture => Spec.Name;
    public string? Name { get; init; }
    public int VocabSize { get; init; }
    public int Hidden { get; init; }
    public int Layers { get; init; }
    public int Heads { get; init; }
    public int KvHeads { get; init; }
    public int HeadDim { get; init; }
    /// <summary>Whether config.json gives head_dim (convert_hf_to_gguf.py then writes attention.key_length / value_length).</summary>
    public bool HeadDimExplicit { get; init; }
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
    /// <summary>Whether config.json describes a multimodal model whose text_config is the language model read here.</summary>
    public bool Multimodal { get; init; }
    /// <summary>The family's GGUF keys (without the architecture prefix), set after the common ones.</summary>
    public IReadOnlyList<(string Key, object Value)> FamilyKeys { get; init; } = [];
    /// <summary>The family's generated F32 tensors (Phi-3's rope factors).</summary>
    public IReadOnlyList<(string Name, float[] Values)> FamilyTensors { get; init; } = [];

    /// <summary>config.json's top level with text_config's fields over it (written, not built as a JsonObject, so that a
    /// file repeating a key is read as JsonDocument reads it rather than failing here).</summary>
    private static JsonDocument Merged(JsonElement root, JsonElement text)
    {
        var overridden = new HashSet<string>(text.EnumerateObject().Select(p => p.Name), StringComparer.Ordinal);
        var buffer = new System.IO.MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var p in root.EnumerateObject())
                if (p.Name != "text_config" && !overridden.Contains(p.Name)) p.WriteTo(w);
            foreach (var p in text.EnumerateObject()) p.WriteTo(w);
            w.WriteEndObject();
        }
        return JsonDocument.Parse(buffer.ToArray());
    }

    /// <summary>model_type values that name an architecture other than their own (Mistral is run as llama).</summary>
    private static readonly Dictionary<string, string> ModelTypeAliases = new(StringComparer.Ordinal)
    {
        ["mistral"] = "llama",
        ["gemma3_text"] = "gemma3",
    };

    /// <summary>The architecture of a config: by its architectures[0] class, else by model_type; one line naming what is
    /// not supported and what is.</summary>
    private static ArchitectureSpec Resolve(string? archClass, string? modelType)
    {
        if (archClass is not null)
            return Architectures.FromHfClass(archClass)
                ?? throw new OpenWeightsException($"unsupported Hugging Face architecture {UntrustedText.Quote(archClass)} (supported: {string.Join(", ", Architectures.Supported.SelectMany(a => a.HfClasses))})");
        if (modelType is not null)
        {
            string name = ModelTypeAliases.TryGetValue(modelType, out var alias) ? alias : modelType;
            if (Architectures.Supported.FirstOrDefault(a => a.Name == name) is { } spec) return spec;
        }
        var types = Architectures.Supported.Select(a => a.Name).Concat(ModelTypeAliases.Where(kv => Architectures.Supported.Any(a => a.Name == kv.Value)).Select(kv => kv.Key));
        throw new InvalidModelFileException($"config.json names no supported architecture (architectures: none, model_type: {(modelType is null ? "none" : UntrustedText.Quote(modelType))}; supported model types: {string.Join(", ", types)})");
    }

    public static HfConfig Load(string path)
    {
        using var file = HfJson.Parse(path, "config.json");
        if (file.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException("config.json is not a JSON object");
        // a multimodal config nests the language model's fields in text_config: read them over the top level, as
        // convert_hf_to_gguf.py does ({**hparams, **text_config})
        bool multimodal = file.RootElement.TryGetProperty("text_config", out var tc) && tc.ValueKind == JsonValueKind.Object;
        using var doc = multimodal ? Merged(file.RootElement, tc) : null;
        return HfJson.Read("config.json", () =>
        {
            var r = (doc ?? file).RootElement;
            JsonElement? Get(string k) => r.TryGetProperty(k, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
            string? archClass = Get("architectures") is { ValueKind: JsonValueKind.Array } arr && arr.GetArrayLength() > 0 && arr[0].ValueKind == JsonValueKind.String ? arr[0].GetString() : null;
            string? modelType = Get("model_type") is { ValueKind: JsonValueKind.String } mt ? mt.GetString() : null;
            var spec = Resolve(archClass, modelType);
            var family = spec.Hf;
            double? Default(string k) => family is not null && family.Defaults.TryGetValue(k, out var d) ? d : null;
            int Int(string k, int? def = null)
            {
                var v = Get(k);
                if (v is null) return Default(k) is { } d ? (int)d : def ?? throw new InvalidModelFileException($"config.json: {k} is missing");
                if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetInt64(out long x)) throw new InvalidModelFileException($"config.json: {k} is not an integer");
                if (x <= 0 || x > 1 << 24) throw new InvalidModelFileException($"config.json: {k} = {x} is out of range");
                return (int)x;
            }
            double Num(string k, double def, JsonElement? obj = null)
            {
                JsonElement? v = obj is { } o ? (o.TryGetProperty(k, out var e) && e.ValueKind != JsonValueKind.Null ? e : null) : Get(k);
                if (v is null) return obj is null && Default(k) is { } d ? d : def;
                if (v.Value.ValueKind != JsonValueKind.Number) throw new InvalidModelFileException($"config.json: {k} is not a number");
                double x = v.Value.GetDouble();
                if (!double.IsFinite(x) || x <= 0) throw new InvalidModelFileException($"config.json: {k} = {x} must be positive");
                return x;
            }
            int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
            bool headDimExplicit = Get("head_dim") is not null || Default("head_dim") is not null;
            int headDim = Int("head_dim", hidden % heads == 0 ? hidden / heads : null);
            int kv = Int("num_key_value_heads", heads);
            if (headDim % 2 != 0) throw new InvalidModelFileException($"config.json: head_dim {headDim} is odd (rotary embeddings rotate pairs of dimensions)");
            if (heads % kv != 0) throw new InvalidModelFileException($"config.json: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}");
            bool tieExplicit = Get("tie_word_embeddings") is { } tie && tie.ValueKind is JsonValueKind.True or JsonValueKind.False;
            bool tied = Get("tie_word_embeddings") is { ValueKind: JsonValueKind.True };
            string? scalingType = null;
            double factor = 1, low = 1, high = 4; int orig = 8192;
            double? yarnAttn = null, betaFast = null, betaSlow = null;
            if (Get("rope_scaling") is { } rs)
            {
                if (rs.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException("config.json: rope_scaling is not an object");
                scalingType = (rs.TryGetProperty("rope_type", out var t) || rs.TryGetProperty("type", out t)) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                if (scalingType is not null && family is not null && family.RopeScalingTypes.Contains(scalingType)) scalingType = null; // the family maps it
                else
                {
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
                        default:
                            var supported = new[] { "llama3", "linear", "yarn" }.Concat(family?.RopeScalingTypes ?? []);
                            throw new OpenWeightsException($"config.json: rope_scaling type {UntrustedText.Quote(scalingType)} is not supported for {spec.Name} (supported: {string.Join(", ", supported)})");
                    }
                }
            }
            string? name = Get("_name_or_path") is { ValueKind: JsonValueKind.String } n && !string.IsNullOrWhiteSpace(n.GetString()) ? System.IO.Path.GetFileName(n.GetString()!.TrimEnd('/')) : null;
            var familyOut = new HfFamilyMetadata();
            family?.Map(new HfConfigJson(r, family.Defaults), familyOut);
            return new HfConfig
            {
                Spec = spec,
                Name = name,
                VocabSize = Int("vocab_size"),
                Hidden = hidden,
                Layers = Int("num_hidden_layers"),
                Heads = heads,
                KvHeads = kv,
                HeadDim = headDim,
                HeadDimExplicit = headDimExplicit,
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
                Multimodal = multimodal,
                FamilyKeys = familyOut.Keys,
                FamilyTensors = familyOut.Tensors,
                YarnAttentionFactor = yarnAttn,
                YarnBetaFast = betaFast,
                YarnBetaSlow = betaSlow,
            };
        });
    }
}
