using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// Writes a Hugging Face checkpoint folder from a synthetic GGUF of any architecture in the table, the inverse of llama.cpp's
/// converter: Q/K rows un-permuted where the GGUF's rotary pairing is NORM, Gemma's norms less their +1, tensors under the
/// table's HF names in [out, in] order, config.json with every GGUF key of the file written back as the family's field
/// (a key it cannot place fails the fixture), tokenizer.json and tokenizer_config.json.
/// </summary>
public static class HfFixture
{
    public const string Llama3Split = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2Split = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>GGUF keys (without the architecture prefix) every family's config.json holds, read by the common mapping.</summary>
    private static readonly HashSet<string> CommonKeys =
    [
        "vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
        "attention.key_length", "attention.value_length", "rope.scaling.type", "rope.scaling.factor",
    ];

    public static void Write(string gguf, string dir, int shards = 1, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        Directory.CreateDirectory(dir);
        using var g = GgufFile.Open(gguf);
        var c = ModelConfig.FromGguf(g);
        var spec = c.Architecture;
        string arch = spec.Name;
        bool tied = !g.TryGetTensor(Output, out _);
        // the tokenizer's style follows the synthetic vocabulary (Llama 3's special tokens or not), whatever the architecture
        bool llamaTok = g.GetArray<string>("tokenizer.ggml.tokens")!.Contains("<|begin_of_text|>");

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(spec.HfClasses[0]),
            ["model_type"] = arch,
            ["_name_or_path"] = "test/" + Path.GetFileName(dir),
            ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.Dim,
            ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads,
            ["num_key_value_heads"] = c.KvHeads,
            ["intermediate_size"] = c.FfnDim,
            ["max_position_embeddings"] = c.ContextLength,
            ["rms_norm_eps"] = (double)c.RmsEps,
            ["rope_theta"] = (double)c.RopeBase,
            ["tie_word_embeddings"] = tied,
            ["torch_dtype"] = dtype == SafetensorsDType.F32 ? "float32" : dtype == SafetensorsDType.F16 ? "float16" : "bfloat16",
            ["hidden_act"] = "silu",
        };
        if (g.Contains($"{arch}.attention.key_length")) config["head_dim"] = c.HeadDim;
        var used = new HashSet<string>(); // GGUF keys (without the prefix) written back as config.json fields beyond the common ones
        if (g.TryGetTensor(RopeFreqs, out _))
            config["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 };
        else if (c.RopeScalingType == "linear")
            config["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = (double)(1f / c.RopeFreqScale) };
        else if (c.RopeYarn is { } yarn)
        {
            var rs = new JsonObject { ["rope_type"] = "yarn", ["factor"] = (double)(1f / c.RopeFreqScale), ["original_max_position_embeddings"] = yarn.OriginalContext };
            used.Add("rope.scaling.original_context_length");
            foreach (var (key, field) in new[] { ("yarn_attn_factor", "attention_factor"), ("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow") })
                if (g.GetNumber($"{arch}.rope.scaling.{key}") is { } v) { rs[field] = v; used.Add("rope.scaling." + key); }
            config["rope_scaling"] = rs;
        }
        else config["rope_scaling"] = null;
        FamilyConfig(g, c, config, used);
        foreach (var key in g.Metadata.Keys.Where(k => k.StartsWith(arch + ".", StringComparison.Ordinal)))
            if (!CommonKeys.Contains(key[(arch.Length + 1)..]) && !used.Contains(key[(arch.Length + 1)..]))
                throw new InvalidOperationException($"HfFixture does not know which config.json field {key} comes from");
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        // tensors
        var all = new List<(string Name, long[] Shape, byte[] Data)>();
        foreach (var t in g.Tensors)
        {
            if (t.Name is RopeFreqs or RopeFactorsLong or RopeFactorsShort) continue; // generated from config.json
            string hf = HfName(spec, t.Name);
            int cols = (int)t.Dimensions[0];
            long rows = t.Dimensions.Length == 1 ? 1 : t.Dimensions[1];
            var f = new float[t.ElementCount];
            long rb = GgmlTypes.RowBytes(t.Type, cols);
            var data = g.TensorData(t);
            for (long r = 0; r < rows; r++) RowDecoder.Decode(t.Type, data.Slice((int)(r * rb), (int)rb), f.AsSpan((int)(r * cols), cols));
            string part = t.Name.StartsWith("blk.", StringComparison.Ordinal) ? t.Name.Split('.', 3)[2] : "";
            if (spec.Rope == RopeStyle.Norm && part is AttnQ or AttnK or AttnQBias or AttnKBias)
            {
                // GGUF row r came from HF row PermutedSourceRow(r): undo it (a bias: each element is a row)
                int width = t.Dimensions.Length == 1 ? 1 : cols;
                long n = f.Length / width;
                var u = new float[f.Length];
                for (long r = 0; r < n; r++)
                    f.AsSpan((int)(r * width), width).CopyTo(u.AsSpan((int)(HfConverter.PermutedSourceRow(r, c.HeadDim) * width), width));
                f = u;
            }
            if (spec.NormWeightOffset != 0 && t.Name.EndsWith("norm.weight", StringComparison.Ordinal))
                for (int i = 0; i < f.Length; i++) f[i] -= spec.NormWeightOffset; // HF stores w where the GGUF holds w + 1
            all.Add((hf, t.Dimensions.Reverse().ToArray(), Encode(f, dtype)));
        }
        if (shards <= 1)
        {
            var w = new SafetensorsWriter().SetMetadata("format", "pt");
            foreach (var (n, s, d) in all) w.Add(n, dtype, s, d);
            w.Write(Path.Combine(dir, "model.safetensors"));
        }
        else
        {
            var map = new JsonObject();
            int per = (all.Count + shards - 1) / shards;
            for (int k = 0; k < shards; k++)
            {
                string file = $"model-{k + 1:00000}-of-{shards:00000}.safetensors";
                var w = new SafetensorsWriter().SetMetadata("format", "pt");
                foreach (var (n, s, d) in all.Skip(k * per).Take(per)) { w.Add(n, dtype, s, d); map[n] = file; }
                w.Write(Path.Combine(dir, file));
            }
            var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = all.Sum(x => (long)x.Data.Length) }, ["weight_map"] = map };
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), index.ToJsonString());
        }
        WriteTokenizer(g, dir, llamaTok);
    }

    /// <summary>
    /// The inverse of each family's config.json mapping (HfFamilies): writes the fields its GGUF keys come from and adds
    /// those keys (without the architecture prefix) to <paramref name="used"/>. Written independently of the mapping, so a key the mapping gets wrong
    /// does not come back the same.
    /// </summary>
    private static void FamilyConfig(GgufFile g, ModelConfig c, JsonObject config, HashSet<string> used)
    {
        string a = c.Architecture.Name;
        double? Num(string key) { if (!g.Contains($"{a}.{key}")) return null; used.Add(key); return g.GetNumber($"{a}.{key}"); }
        switch (a)
        {
            case "gemma2":
                config["attn_logit_softcapping"] = Num("attn_logit_softcapping");
                config["final_logit_softcapping"] = Num("final_logit_softcapping");
                config["sliding_window"] = Num("attention.sliding_window");
                config["query_pre_attn_scalar"] = c.Layers == 46 ? c.Dim / c.Heads : c.HeadDim;
                config["layer_types"] = new JsonArray(Enumerable.Range(0, c.Layers).Select(i => (JsonNode)(i % 2 == 0 ? "sliding_attention" : "full_attention")).ToArray());
                config["hidden_activation"] = "gelu_pytorch_tanh";
                break;
            case "gemma3":
                config["final_logit_softcapping"] = Num("final_logit_softcapping");
                config["sliding_window"] = Num("attention.sliding_window");
                config["sliding_window_pattern"] = 6;
                config["rope_local_base_freq"] = Num("rope.freq_base_swa");
                config["query_pre_attn_scalar"] = c.Layers == 62 ? c.Dim / c.Heads : c.HeadDim;
                config["hidden_activation"] = "gelu_pytorch_tanh";
                break;
            case "phi3":
                config["partial_rotary_factor"] = (double)c.RopeDims * c.Heads / c.Dim;
                used.Add("rope.dimension_count");
                config["original_max_position_embeddings"] = Num("rope.scaling.original_context_length") ?? c.ContextLength;
                config["sliding_window"] = Num("attention.sliding_window") is { } sw and > 0 ? sw : null;
                if (g.TryGetTensor(RopeFactorsLong, out var lf) && g.TryGetTensor(RopeFactorsShort, out var sf))
                {
                    JsonArray Values(GgufTensorInfo t) => new(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(g.TensorData(t)).ToArray().Select(x => (JsonNode)(double)x).ToArray());
                    config["rope_scaling"] = new JsonObject { ["type"] = "longrope", ["long_factor"] = Values(lf), ["short_factor"] = Values(sf) };
                    used.Add("rope.scaling.attn_factor"); // derived from the two context lengths
                }
                break;
            case "smollm3":
                config["no_rope_layer_interval"] = 4;
                config["no_rope_layers"] = new JsonArray(Enumerable.Range(0, c.Layers).Select(i => (JsonNode)((i + 1) % 4 != 0 ? 1 : 0)).ToArray());
                break;
        }
    }

    /// <summary>
    /// Rewrites a text-only folder (one model.safetensors) in the layout of a multimodal checkpoint: config.json's fields
    /// nested in text_config under a top-level <paramref name="topModelType"/> and <paramref name="architectures"/> (none when
    /// null), the language model's tensors under "model.language_model." (<paramref name="newerNames"/>, transformers 4.52+)
    /// or "language_model.model." / "language_model.lm_head", and a vision tensor beside them.
    /// </summary>
    public static void ToMultimodal(string dir, string topModelType, string? architectures, bool newerNames)
    {
        string cfg = Path.Combine(dir, "config.json");
        var text = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        text.Remove("architectures");
        var top = new JsonObject { ["model_type"] = topModelType, ["text_config"] = text, ["vision_config"] = new JsonObject { ["hidden_size"] = 8 } };
        if (architectures is not null) top["architectures"] = new JsonArray(architectures);
        File.WriteAllText(cfg, top.ToJsonString());
        string st = Path.Combine(dir, "model.safetensors");
        var w = new SafetensorsWriter().SetMetadata("format", "pt");
        using (var f = SafetensorsFile.Open(st))
            foreach (var t in f.Tensors)
            {
                string n = newerNames
                    ? (t.Name.StartsWith("model.", StringComparison.Ordinal) ? "model.language_model." + t.Name["model.".Length..] : t.Name)
                    : "language_model." + t.Name;
                w.Add(n, t.DType, t.Shape, f.TensorData(t).ToArray());
            }
        w.Add(newerNames ? "model.vision_tower.patch_embed.weight" : "vision_tower.patch_embed.weight", SafetensorsDType.F32, [2, 2], new byte[16]);
        w.Add("multi_modal_projector.linear.weight", SafetensorsDType.F32, [2], new byte[8]);
        w.Write(st);
    }

    private static byte[] Encode(float[] f, SafetensorsDType dtype)
    {
        var t = dtype switch { SafetensorsDType.F32 => GgmlType.F32, SafetensorsDType.F16 => GgmlType.F16, _ => GgmlType.BF16 };
        var b = new byte[GgmlTypes.RowBytes(t, f.Length)];
        Quantize.Row(t, f, b);
        return b;
    }

    /// <summary>The Hugging Face name of a GGUF tensor, by the architecture's naming table.</summary>
    public static string HfName(ArchitectureSpec spec, string gguf)
    {
        switch (gguf)
        {
            case TokenEmbedding: return "model.embed_tokens.weight";
            case OutputNorm: return "model.norm.weight";
            case Output: return "lm_head.weight";
        }
        var parts = gguf.Split('.', 3); // blk, N, rest
        var t = spec.Block.FirstOrDefault(b => b.Gguf == parts[2]) ?? throw new ArgumentException($"{gguf} is not in the {spec.Name} table");
        return $"model.layers.{parts[1]}.{t.Hf}";
    }

    private static void WriteTokenizer(GgufFile g, string dir, bool llama)
    {
        var tokens = g.GetArray<string>("tokenizer.ggml.tokens")!;
        var types = g.GetArray<int>("tokenizer.ggml.token_type")!;
        var merges = g.GetArray<string>("tokenizer.ggml.merges")!;
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] == 1) vocab[tokens[i]] = i;
            else added.Add(new JsonObject { ["id"] = i, ["content"] = tokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        }
        JsonNode ByteLevel(bool trim) => new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = trim, ["use_regex"] = false };
        var tok = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = llama ? Llama3Split : Qwen2Split }, ["behavior"] = "Isolated", ["invert"] = false },
                    ByteLevel(llama)),
            },
            ["post_processor"] = llama
                ? new JsonObject
                {
                    ["type"] = "Sequence",
                    ["processors"] = new JsonArray(ByteLevel(false), new JsonObject
                    {
                        ["type"] = "TemplateProcessing",
                        ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                    }),
                }
                : ByteLevel(false),
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["byte_fallback"] = false,
                ["vocab"] = vocab,
                // Llama 3 style "a b" strings; newer (Qwen) files use [a, b] pairs
                ["merges"] = llama ? new JsonArray(merges.Select(m => (JsonNode)JsonValue.Create(m)!).ToArray())
                    : new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m.Split(' ')[0], m.Split(' ')[1])).ToArray()),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tok.ToJsonString());
        string template = g.GetString("tokenizer.chat_template")!;
        var cfg = llama
            ? new JsonObject
            {
                ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = "<|end_of_text|>",
                ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "default", ["template"] = template }, new JsonObject { ["name"] = "tool_use", ["template"] = "{{ 'tools' }}" }),
            }
            : new JsonObject { ["bos_token"] = null, ["eos_token"] = new JsonObject { ["content"] = "<|endoftext|>", ["special"] = true }, ["add_bos_token"] = false, ["chat_template"] = template };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString());
    }
}
