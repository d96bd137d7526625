using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// The seed corpus of the format fuzzers, written by our own writers (GgufWriter, SafetensorsWriter, System.Text.Json):
/// small files that cover every GGUF value type, both tokenizer families, several safetensors dtypes and a complete
/// Hugging Face checkpoint (config.json + model.safetensors + tokenizer.json + tokenizer_config.json) of a tiny llama.
/// The committed copy lives in Fuzz/corpus/; <see cref="FormatCorpus"/> finds it, and
/// <c>OPENWEIGHTS_WRITE_CORPUS=1</c> rewrites it (FormatCorpusTests).
/// </summary>
public static class FormatSeeds
{
    /// <summary>The tiny checkpoint's shape.</summary>
    public const int Vocab = 272, Hidden = 16, Layers = 1, Heads = 2, KvHeads = 1, HeadDim = 8, Ffn = 32;

    public static void WriteAll(string corpus)
    {
        Directory.CreateDirectory(Path.Combine(corpus, "gguf"));
        WriteGpt2Gguf(Path.Combine(corpus, "gguf", "gpt2-vocab.gguf"));
        WriteSpmGguf(Path.Combine(corpus, "gguf", "spm-vocab.gguf"));
        Directory.CreateDirectory(Path.Combine(corpus, "safetensors"));
        WriteDtypesSafetensors(Path.Combine(corpus, "safetensors", "dtypes.safetensors"));
        string ckpt = Path.Combine(corpus, "checkpoint");
        WriteCheckpoint(ckpt);
        File.Copy(Path.Combine(ckpt, "model.safetensors"), Path.Combine(corpus, "safetensors", "tiny-llama.safetensors"), overwrite: true);
        Directory.CreateDirectory(Path.Combine(corpus, "tokenizer"));
        File.Copy(Path.Combine(ckpt, "tokenizer.json"), Path.Combine(corpus, "tokenizer", "byte-level.json"), overwrite: true);
        File.WriteAllText(Path.Combine(corpus, "tokenizer", "sentencepiece.json"), SpmTokenizerText);
    }

    private static GgufWriter Common(string name)
    {
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("general.name", name)
            .Set("general.alignment", 32u)
            .Set("test.u8", (byte)7).Set("test.i8", (sbyte)-7).Set("test.u16", (ushort)700).Set("test.i16", (short)-700)
            .Set("test.u32", 70000u).Set("test.i32", -70000).Set("test.f32", 0.5f).Set("test.bool", true)
            .Set("test.u64", 1UL << 40).Set("test.i64", -(1L << 40)).Set("test.f64", 0.25)
            .Set("test.strings", new[] { "a", "bc", "" })
            .Set("test.nested", new Array[] { new uint[] { 1, 2 }, new uint[] { 3 } })
            .Set("llama.context_length", 64u).Set("llama.embedding_length", 32u).Set("llama.block_count", 1u)
            .Set("llama.attention.head_count", 2u).Set("llama.rope.dimension_count", 16u);
        var rnd = new Random(5);
        float[] F(int n) { var f = new float[n]; for (int i = 0; i < n; i++) f[i] = (float)(rnd.NextDouble() - 0.5); return f; }
        w.AddTensor("output_norm.weight", [32], F(32));
        var q = new byte[GgmlTypes.RowBytes(GgmlType.Q8_0, 32) * 2];
        Quantize.Row(GgmlType.Q8_0, F(64), q);
        w.AddTensor("blk.0.attn_q.weight", GgmlType.Q8_0, [32, 2], q);
        var h = new byte[GgmlTypes.RowBytes(GgmlType.F16, 32) * 2];
        Quantize.Row(GgmlType.F16, F(64), h);
        w.AddTensor("blk.0.attn_k.weight", GgmlType.F16, [32, 2], h);
        return w;
    }

    /// <summary>A GGUF with a byte-level BPE (gpt2) vocabulary: 256 byte tokens, a few merges, special tokens.</summary>
    public static void WriteGpt2Gguf(string path)
    {
        var (tokens, types, merges) = ByteLevelVocab();
        Common("seed gpt2")
            .Set("tokenizer.ggml.model", "gpt2").Set("tokenizer.ggml.pre", "llama-bpe")
            .Set("tokenizer.ggml.tokens", tokens).Set("tokenizer.ggml.token_type", types).Set("tokenizer.ggml.merges", merges)
            .Set("tokenizer.ggml.bos_token_id", (uint)Array.IndexOf(tokens, "<|begin_of_text|>"))
            .Set("tokenizer.ggml.eos_token_id", (uint)Array.IndexOf(tokens, "<|end_of_text|>"))
            .Set("tokenizer.ggml.add_bos_token", true)
            .Set("tokenizer.chat_template", SynthPreset.ChatMl)
            .Write(path);
    }

    /// <summary>A GGUF with a SentencePiece (llama) vocabulary: unk/bos/eos, 256 byte tokens, a few pieces with scores.</summary>
    public static void WriteSpmGguf(string path)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); }
        foreach (var p in new[] { "▁", "a", "b", "c", "▁a", "▁b", "ab", "▁ab", "hello", "▁hello", "▁w", "or", "ld" }) { tokens.Add(p); types.Add(1); }
        var scores = tokens.Select((_, i) => types[i] == 1 ? -(float)i : 0f).ToArray();
        Common("seed spm")
            .Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens.ToArray()).Set("tokenizer.ggml.scores", scores).Set("tokenizer.ggml.token_type", types.ToArray())
            .Set("tokenizer.ggml.bos_token_id", 1u).Set("tokenizer.ggml.eos_token_id", 2u).Set("tokenizer.ggml.unknown_token_id", 0u)
            .Set("tokenizer.ggml.add_space_prefix", true)
            .Write(path);
    }

    /// <summary>Byte-level vocabulary of <see cref="Vocab"/> tokens: bytes, merges of a few letter pairs, specials last.</summary>
    public static (string[] Tokens, int[] Types, string[] Merges) ByteLevelVocab()
    {
        var b2u = SynthVocab.ByteToUnicode();
        var tokens = new List<string>();
        for (int b = 0; b < 256; b++) tokens.Add(b2u[b].ToString());
        char sp = b2u[' '];
        var merges = new List<string>();
        foreach (var (a, c) in new[] { (sp, 'h'), ('e', 'l'), ('l', 'o'), (sp, 'w'), ('o', 'r'), ('l', 'd'), ('e', 'r'), ('i', 'n') })
        {
            merges.Add($"{a} {c}");
            tokens.Add($"{a}{c}");
        }
        var types = Enumerable.Repeat(1, tokens.Count).ToList();
        string[] specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];
        while (tokens.Count < Vocab - specials.Length) { tokens.Add($"<|reserved_{tokens.Count}|>"); types.Add(3); }
        foreach (var s in specials) { tokens.Add(s); types.Add(3); }
        return ([.. tokens], [.. types], [.. merges]);
    }

    public static void WriteDtypesSafetensors(string path)
    {
        var w = new SafetensorsWriter().SetMetadata("format", "pt").SetMetadata("note", "seed");
        w.Add("f32", [2, 3], [1f, 2f, 3f, 4f, 5f, 6f]);
        w.Add("f16", SafetensorsDType.F16, [4], new byte[8]);
        w.Add("bf16", SafetensorsDType.BF16, [2, 2], new byte[8]);
        w.Add("i64", SafetensorsDType.I64, [1], new byte[8]);
        w.Add("u8", SafetensorsDType.U8, [3], [1, 2, 3]);
        w.Add("empty", SafetensorsDType.F32, [0], []);
        w.Write(path);
    }

    /// <summary>A complete Hugging Face llama checkpoint of the tiny shape: random F16 weights, tied embeddings.</summary>
    public static void WriteCheckpoint(string dir)
    {
        Directory.CreateDirectory(dir);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = Vocab, ["hidden_size"] = Hidden, ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads, ["num_key_value_heads"] = KvHeads, ["head_dim"] = HeadDim,
            ["intermediate_size"] = Ffn, ["max_position_embeddings"] = 128,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = true,
            ["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64 },
            ["torch_dtype"] = "float16", ["hidden_act"] = "silu",
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var rnd = new Random(11);
        var w = new SafetensorsWriter().SetMetadata("format", "pt");
        void Add(string name, params long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var f = new float[n];
            for (int i = 0; i < n; i++) f[i] = shape.Length == 1 ? 1f : (float)(rnd.NextDouble() - 0.5) * 0.2f;
            var b = new byte[n * 2];
            Quantize.Row(GgmlType.F16, f, b);
            w.Add(name, SafetensorsDType.F16, shape, b);
        }
        Add("model.embed_tokens.weight", Vocab, Hidden);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", Hidden);
            Add(p + "self_attn.q_proj.weight", Heads * HeadDim, Hidden);
            Add(p + "self_attn.k_proj.weight", KvHeads * HeadDim, Hidden);
            Add(p + "self_attn.v_proj.weight", KvHeads * HeadDim, Hidden);
            Add(p + "self_attn.o_proj.weight", Hidden, Heads * HeadDim);
            Add(p + "post_attention_layernorm.weight", Hidden);
            Add(p + "mlp.gate_proj.weight", Ffn, Hidden);
            Add(p + "mlp.up_proj.weight", Ffn, Hidden);
            Add(p + "mlp.down_proj.weight", Hidden, Ffn);
        }
        Add("model.norm.weight", Hidden);
        w.Write(Path.Combine(dir, "model.safetensors"));

        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), ByteLevelTokenizerJson().ToJsonString());
        var tc = new JsonObject
        {
            ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = new JsonObject { ["content"] = "<|end_of_text|>", ["special"] = true },
            ["add_bos_token"] = true,
            ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "default", ["template"] = SynthPreset.Llama3 }, new JsonObject { ["name"] = "tool_use", ["template"] = "{{ 'tools' }}" }),
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tc.ToJsonString());
    }

    public static JsonObject ByteLevelTokenizerJson()
    {
        var (tokens, types, merges) = ByteLevelVocab();
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (types[i] == 1) vocab[tokens[i]] = i;
            else added.Add(new JsonObject { ["id"] = i, ["content"] = tokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        }
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Formats.HfFixture.Llama3Split }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(merges.Select((m, i) => i % 2 == 0 ? (JsonNode)JsonValue.Create(m)! : new JsonArray(m.Split(' ')[0], m.Split(' ')[1])).ToArray()),
            },
        };
    }

    public static JsonObject SpmTokenizerJson() => (JsonObject)JsonNode.Parse(SpmTokenizerText)!;

    /// <summary>A SentencePiece-style BPE tokenizer.json (byte_fallback), as text: tests edit it with string replacements.</summary>
    public const string SpmTokenizerText = """
        {"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
         "pre_tokenizer": null,
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace"}, {"type": "ByteFallback"}]},
         "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
                   "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x00>": 3, "▁": 4, "a": 5, "▁a": 6, "b": 7, "ab": 8},
                   "merges": ["▁ a", "a b"]}}
        """;
}
