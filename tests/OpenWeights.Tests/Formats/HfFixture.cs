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
/// Writes a Hugging Face checkpoint folder from a synthetic GGUF, the inverse of llama.cpp's converter: Q/K rows
/// un-permuted for llama, tensors under HF names in [out, in] order, config.json, tokenizer.json and tokenizer_config.json.
/// </summary>
public static class HfFixture
{
    public const string Llama3Split = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2Split = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static void Write(string gguf, string dir, int shards = 1, SafetensorsDType dtype = SafetensorsDType.F32)
    {
        Directory.CreateDirectory(dir);
        using var g = GgufFile.Open(gguf);
        var c = ModelConfig.FromGguf(g);
        string arch = c.Architecture.Name;
        bool llama = arch == "llama";
        bool tied = !g.TryGetTensor(Output, out _);

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"),
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
        if (g.TryGetTensor(RopeFreqs, out _))
            config["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 };
        else if (c.RopeYarn is { } yarn)
            config["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = (double)(1f / c.RopeFreqScale), ["original_max_position_embeddings"] = yarn.OriginalContext };
        else config["rope_scaling"] = null;
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        // tensors
        var all = new List<(string Name, long[] Shape, byte[] Data)>();
        foreach (var t in g.Tensors)
        {
            if (t.Name == RopeFreqs) continue;
            string hf = HfName(t.Name);
            int cols = (int)t.Dimensions[0];
            long rows = t.Dimensions.Length == 1 ? 1 : t.Dimensions[1];
            var f = new float[t.ElementCount];
            long rb = GgmlTypes.RowBytes(t.Type, cols);
            var data = g.TensorData(t);
            for (long r = 0; r < rows; r++) RowDecoder.Decode(t.Type, data.Slice((int)(r * rb), (int)rb), f.AsSpan((int)(r * cols), cols));
            if (llama && (t.Name.EndsWith(AttnQ) || t.Name.EndsWith(AttnK)))
            {
                // GGUF row r came from HF row PermutedSourceRow(r): undo it
                var u = new float[f.Length];
                for (long r = 0; r < rows; r++)
                    f.AsSpan((int)(r * cols), cols).CopyTo(u.AsSpan((int)(HfConverter.PermutedSourceRow(r, c.HeadDim) * cols), cols));
                f = u;
            }
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
        WriteTokenizer(g, dir, llama);
    }

    private static byte[] Encode(float[] f, SafetensorsDType dtype)
    {
        var t = dtype switch { SafetensorsDType.F32 => GgmlType.F32, SafetensorsDType.F16 => GgmlType.F16, _ => GgmlType.BF16 };
        var b = new byte[GgmlTypes.RowBytes(t, f.Length)];
        Quantize.Row(t, f, b);
        return b;
    }

    public static string HfName(string gguf)
    {
        switch (gguf)
        {
            case TokenEmbedding: return "model.embed_tokens.weight";
            case OutputNorm: return "model.norm.weight";
            case Output: return "lm_head.weight";
        }
        var parts = gguf.Split('.', 3); // blk, N, rest
        string rest = parts[2] switch
        {
            AttnNorm => "input_layernorm.weight",
            AttnQ => "self_attn.q_proj.weight", AttnK => "self_attn.k_proj.weight", AttnV => "self_attn.v_proj.weight", AttnOut => "self_attn.o_proj.weight",
            AttnQBias => "self_attn.q_proj.bias", AttnKBias => "self_attn.k_proj.bias", AttnVBias => "self_attn.v_proj.bias",
            FfnNorm => "post_attention_layernorm.weight",
            FfnGate => "mlp.gate_proj.weight", FfnUp => "mlp.up_proj.weight", FfnDown => "mlp.down_proj.weight",
            var x => throw new ArgumentException(x),
        };
        return $"model.layers.{parts[1]}.{rest}";
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
