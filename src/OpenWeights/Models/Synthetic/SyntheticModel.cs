using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Models.Synthetic;

/// <summary>What to store the 2-D weights as: a llama.cpp file preset (with its per-tensor recipe) or one pure type.</summary>
public readonly record struct SynthType(QuantPreset? Preset, GgmlType? Pure)
{
    public static SynthType Parse(string s)
    {
        string k = s.Trim().ToLowerInvariant();
        return k switch
        {
            "f16" => new(QuantPreset.F16, null),
            "bf16" => new(QuantPreset.BF16, null),
            "q8_0" => new(QuantPreset.Q8_0, null),
            "q4_0" => new(QuantPreset.Q4_0, null),
            "q4_k_m" => new(QuantPreset.Q4_K_M, null),
            "iq4_nl" => new(QuantPreset.IQ4_NL, null),
            "iq4_xs" => new(QuantPreset.IQ4_XS, null),
            "mxfp4_moe" => new(QuantPreset.MXFP4_MOE, null),
            _ when k.StartsWith("pure-") && GgmlTypes.TryParse(k[5..], out var t) && Quantize.CanQuantize(t) => new(null, t),
            "f32" => new(null, GgmlType.F32),
            _ => throw new OpenWeightsException($"unknown type '{s}' (choose f32, f16, bf16, q8_0, q4_0, q4_k_m, iq4_nl, iq4_xs, mxfp4_moe, or pure-<type> such as pure-q6_k)"),
        };
    }

    public override string ToString() => Preset?.ToString().ToLowerInvariant() ?? "pure-" + Pure.ToString()!.ToLowerInvariant();
}

/// <summary>
/// Writes a random-weight GGUF with a preset's exact shape, metadata and a working tokenizer, so that
/// benchmarks and tests run on realistic shapes without downloading anything. Weights are a
/// deterministic function of (seed, tensor name, row), whatever the thread count.
/// </summary>
public static class SyntheticModel
{
    public static void Write(SynthPreset p, SynthType type, string path, ulong seed = 42, int threads = 0, IProgress<GgufWriteProgress>? progress = null)
    {
        if (threads <= 0) threads = Environment.ProcessorCount;
        var w = new GgufWriter { Progress = progress };
        string a = p.Architecture;
        var vocab = SynthVocab.For(p);
        w.Set("general.architecture", a)
         .Set("general.name", p.GeneralName ?? $"synthetic {p.Name}")
         .Set("general.file_type", (uint)FileType(type))
         .Set($"{a}.context_length", (uint)p.ContextLength)
         .Set($"{a}.embedding_length", (uint)p.Dim)
         .Set($"{a}.block_count", (uint)p.Layers)
         .Set($"{a}.feed_forward_length", (uint)p.FfnDim)
         .Set($"{a}.attention.head_count", (uint)p.Heads)
         .Set($"{a}.attention.head_count_kv", (uint)p.KvHeads)
         .Set($"{a}.attention.layer_norm_rms_epsilon", p.RmsEps)
         .Set($"{a}.rope.freq_base", p.RopeBase)
         .Set($"{a}.rope.dimension_count", (uint)(p.RopeDims ?? p.HeadDim))
         .Set("tokenizer.ggml.model", "gpt2")
         .Set("tokenizer.ggml.pre", p.TokenizerPre)
         .Set("tokenizer.ggml.tokens", vocab.Tokens)
         .Set("tokenizer.ggml.token_type", vocab.TokenTypes)
         .Set("tokenizer.ggml.merges", vocab.Merges)
         .Set("tokenizer.ggml.bos_token_id", (uint)vocab.Bos)
         .Set("tokenizer.ggml.eos_token_id", (uint)vocab.Eos)
         .Set("tokenizer.ggml.eot_token_id", (uint)vocab.Eot)
         .Set("tokenizer.ggml.add_bos_token", p.AddBos)
         .Set("tokenizer.chat_template", p.ChatTemplate);
        if (p.KeyLength is { } kl) w.Set($"{a}.attention.key_length", (uint)kl).Set($"{a}.attention.value_length", (uint)kl);
        if (p.Mla is { } mla)
        {
            // as convert_hf_to_gguf.py's DeepseekV2Model: the cached latent's widths as the MQA key / value, the heads' own as *_mla
            // q_lora_rank 0 written too: llama.cpp requires the key except of its "lite" layer counts (26, 27)
            w.Set($"{a}.attention.q_lora_rank", (uint)mla.QLoraRank);
            w.Set($"{a}.attention.kv_lora_rank", (uint)mla.KvLoraRank)
             .Set($"{a}.attention.key_length", (uint)(mla.KvLoraRank + mla.Rope)).Set($"{a}.attention.value_length", (uint)mla.KvLoraRank)
             .Set($"{a}.attention.key_length_mla", (uint)mla.KeyLength).Set($"{a}.attention.value_length_mla", (uint)mla.Value)
             .Set($"{a}.rope.dimension_count", (uint)mla.Rope);
        }
        if (p.LeadingDenseBlocks > 0) w.Set($"{a}.leading_dense_block_count", (uint)p.LeadingDenseBlocks);
        if (p.ExpertCount > 0)
        {
            w.Set($"{a}.expert_count", (uint)p.ExpertCount).Set($"{a}.expert_used_count", (uint)p.ExpertsUsed);
            if (p.ExpertFfnDim > 0) w.Set($"{a}.expert_feed_forward_length", (uint)p.ExpertFfnDim);
            if (p.SharedExpertFfnDim > 0) w.Set($"{a}.expert_shared_feed_forward_length", (uint)p.SharedExpertFfnDim);
            if (p.MoeLayerStep > 1) w.Set($"{a}.interleave_moe_layer_step", (uint)p.MoeLayerStep);
        }
        foreach (var (key, value) in p.Extra) w.Set($"{a}.{key}", value);
        if (p.RopeScaling is { } rs)
        {
            w.Set($"{a}.rope.scaling.type", rs.Type).Set($"{a}.rope.scaling.factor", rs.Factor);
            if (rs.OriginalContext > 0) w.Set($"{a}.rope.scaling.original_context_length", (uint)rs.OriginalContext);
            if (rs.AttnFactor != 1f) w.Set($"{a}.rope.scaling.attn_factor", rs.AttnFactor);
        }

        foreach (var t in Plan(p, type))
        {
            ulong tseed = seed ^ Hash(t.Name);
            float[]? fixedValues = t.Name == RopeFreqs ? Llama3FreqFactors(p) : p.ExtraTensors.GetValueOrDefault(t.Name);
            bool isNorm = t.Dims.Length == 1 && fixedValues is null && t.Std == 0;
            var (name, tt, dims, std) = (t.Name, t.Type, t.Dims, t.Std);
            w.AddTensor(name, tt, dims, t.Bytes, s => WriteTensor(s, tt, dims, tseed, std, isNorm, fixedValues, threads));
        }
        w.Write(path);
    }

    /// <summary>One tensor of a synthetic model: GGUF name, stored type, ggml dims, bytes, and the spread of its random values.</summary>
    public sealed record PlannedTensor(string Name, GgmlType Type, long[] Dims, long Bytes, int Layer, float Std);

    /// <summary>Every tensor a synthetic model of this shape and type holds, with the type the llama.cpp recipe gives it.</summary>
    public static IReadOnlyList<PlannedTensor> Plan(SynthPreset p, SynthType type)
    {
        var spec = Architectures.Get(p.Architecture);
        SynthMla M = p.Mla ?? new SynthMla(0, 0, 0, 0, 0);
        int hd = p.HeadDim, q = p.Heads * hd, kv = p.KvHeads * hd, ne = p.ExpertCount, fe = p.EffectiveExpertFfnDim, fs = spec.SharedExpertFfnIsExpertFfn ? fe : p.SharedExpertFfnDim;
        var tensors = new List<(string Name, long[] Dims, int Layer, float Std)>
        {
            (TokenEmbedding, [p.Dim, p.VocabSize], -1, 0.02f),
        };
        if (p.Llama3RopeScaling) tensors.Add((RopeFreqs, [(p.RopeDims ?? hd) / 2], -1, 0));
        foreach (var (name, values) in p.ExtraTensors) tensors.Add((name, [values.Length], -1, 0));
        // every block tensor of the architecture's naming table, in its order; ggml dims are (input features, rows)
        long[] Dims(TensorShape s) => s switch
        {
            TensorShape.Dim => [p.Dim], TensorShape.HeadDim => [hd], TensorShape.QDim => [q], TensorShape.KvDim => [kv], TensorShape.Heads => [p.Heads],
            TensorShape.Q => [p.Dim, q], TensorShape.Kv => [p.Dim, kv], TensorShape.O => [q, p.Dim],
            TensorShape.Ffn => [p.Dim, p.FfnDim], TensorShape.Down => [p.FfnDim, p.Dim],
            TensorShape.Qkv => [p.Dim, q + 2 * kv], TensorShape.GateUp => [p.Dim, 2 * p.FfnDim],
            // mixture of experts: router, 3-D expert tensors (input features, rows, experts), per-expert biases, shared expert
            TensorShape.Router => [p.Dim, ne], TensorShape.RouterBias => [ne],
            TensorShape.ExpertFfn => [p.Dim, fe, ne], TensorShape.ExpertDown => [fe, p.Dim, ne],
            TensorShape.ExpertFfnBias => [fe, ne], TensorShape.ExpertDownBias => [p.Dim, ne],
            TensorShape.SharedFfn => [p.Dim, fs], TensorShape.SharedDown => [fs, p.Dim],
            // multi-head latent attention
            TensorShape.MlaQA => [p.Dim, M.QLoraRank], TensorShape.MlaQANorm => [M.QLoraRank], TensorShape.MlaQB => [M.QLoraRank, p.Heads * M.KeyLength],
            TensorShape.MlaQ => [p.Dim, p.Heads * M.KeyLength], TensorShape.MlaKvA => [p.Dim, M.KvLoraRank + M.Rope], TensorShape.MlaKvANorm => [M.KvLoraRank],
            TensorShape.MlaKB => [M.Nope, M.KvLoraRank, p.Heads], TensorShape.MlaVB => [M.KvLoraRank, M.Value, p.Heads],
            TensorShape.MlaO => [p.Heads * M.Value, p.Dim],
            _ => throw new ArgumentOutOfRangeException(nameof(s)),
        };
        // latent attention: attn_q_a / attn_q_a_norm / attn_q_b, or attn_q alone when q_lora_rank is 0 (V2-Lite)
        bool Written(BlockTensor t) => p.Mla is { QLoraRank: 0 }
            ? t.Gguf is not (AttnQA or AttnQANorm or AttnQB)
            : t.InsteadOf is null;
        for (int i = 0; i < p.Layers; i++)
        {
            // a MoE layer has the expert tensors and not the dense feed-forward's, a dense layer the other way round
            bool moe = ModelConfig.IsMoeLayer(ne, p.MoeLayerStep, i, p.LeadingDenseBlocks);
            foreach (var t in spec.Block.Where(t => Written(t) && (moe ? !t.IsDenseFfn : !t.IsExpert) && (t.Gguf != ExpProbsB || p.SelectionBias))) // an alternative layout is not written
            {
                bool norm = t.Shape is TensorShape.Dim or TensorShape.HeadDim && !t.Gguf.EndsWith(".bias", StringComparison.Ordinal)
                    || t.Gguf.EndsWith("_norm.weight", StringComparison.Ordinal); // gpt-oss's attn_output.bias (dim) is no norm
                // attention sinks are logits (gpt-oss's learned ones are of order 1), not small weights
                float std = norm ? 0 : t.Shape == TensorShape.Router ? p.RouterStd : t.Shape == TensorShape.Heads ? 1f
                    : t.Gguf == ExpProbsB ? 0.05f : 0.02f; // the selection bias moves scores of order 0.1

                tensors.Add((Block(i, t.Gguf), Dims(t.Shape), i, std));
            }
        }
        tensors.Add((OutputNorm, [p.Dim], -1, 0));
        if (!p.TiedEmbeddings) tensors.Add((Output, [p.Dim, p.VocabSize], -1, 0.02f));

        return tensors.Select(x =>
        {
            GgmlType t = x.Dims.Length == 1 ? GgmlType.F32
                : !QuantRecipe.AllowsQuantization(x.Name, x.Dims.Length) ? GgmlType.F32 // routers, biases: F32 whatever the type
                : type.Pure ?? QuantRecipe.TypeFor(type.Preset!.Value, x.Name, x.Layer, p.Layers, x.Dims[0], x.Dims.Length, tiedEmbeddings: p.TiedEmbeddings,
                    nExpert: ne, nGqa: p.Heads / Math.Max(1, p.KvHeads), expertCount: x.Dims.Length >= 3 ? x.Dims[2] : 1);
            return new PlannedTensor(x.Name, t, x.Dims, GgufWriter.ExpectedBytes(t, x.Dims), x.Layer, x.Std);
        }).ToList();
    }

    private static LlamaFileType FileType(SynthType t) => t.Preset switch
    {
        QuantPreset.F16 => LlamaFileType.MostlyF16,
        QuantPreset.BF16 => LlamaFileType.MostlyBF16,
        QuantPreset.Q8_0 => LlamaFileType.MostlyQ8_0,
        QuantPreset.Q4_0 => LlamaFileType.MostlyQ4_0,
        QuantPreset.Q4_K_M => LlamaFileType.MostlyQ4_K_M,
        QuantPreset.IQ4_NL => LlamaFileType.MostlyIQ4_NL,
        QuantPreset.IQ4_XS => LlamaFileType.MostlyIQ4_XS,
        QuantPreset.MXFP4_MOE => LlamaFileType.MostlyMXFP4_MOE,
        _ => t.Pure == GgmlType.F32 ? LlamaFileType.AllF32 : LlamaFileType.Guessed,
    };

    private enum LlamaFileType : uint { AllF32 = 0, MostlyF16 = 1, MostlyQ4_0 = 2, MostlyQ8_0 = 7, MostlyQ4_K_M = 15, MostlyIQ4_NL = 25, MostlyIQ4_XS = 30, MostlyBF16 = 32, MostlyMXFP4_MOE = 38, Guessed = 1024 }

    /// <summary>llama3 rope scaling as llama.cpp's converter stores it: one divisor per rotary frequency.</summary>
    public static float[] Llama3FreqFactors(SynthPreset p, float factor = 32, float lowFreqFactor = 1, float highFreqFactor = 4, int originalContext = 8192) =>
        RopeScaling.Llama3FreqFactors(p.HeadDim, p.RopeBase, factor, lowFreqFactor, highFreqFactor, originalContext);

    private static void WriteTensor(Stream s, GgmlType t, long[] dims, ulong seed, float std, bool isNorm, float[]? fixedValues, int threads)
    {
        if (fixedValues is not null) { s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(fixedValues.AsSpan())); return; }
        int cols = (int)dims[0];
        long rows = 1;
        for (int d = 1; d < dims.Length; d++) rows *= dims[d]; // a 3-D expert tensor: n_expert × rows, row after row
        int rowBytes = (int)GgmlTypes.RowBytes(t, cols);
        int chunkRows = (int)Math.Max(1, Math.Min(rows, (4 << 20) / Math.Max(1, rowBytes)));
        var buf = new byte[(long)chunkRows * rowBytes];
        for (long r0 = 0; r0 < rows; r0 += chunkRows)
        {
            int n = (int)Math.Min(chunkRows, rows - r0);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, () => new float[cols], (i, _, row) =>
            {
                FillRow(row, seed, r0 + i, std, isNorm);
                if (t == GgmlType.F32) System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()).CopyTo(buf.AsSpan(i * rowBytes, rowBytes));
                else Quantize.Row(t, row, buf.AsSpan(i * rowBytes, rowBytes));
                return row;
            }, _ => { });
            s.Write(buf, 0, n * rowBytes);
        }
    }

    /// <summary>Uniform values with the given standard deviation (norm weights: around 1).</summary>
    private static void FillRow(float[] row, ulong seed, long r, float std, bool isNorm)
    {
        ulong state = seed + (ulong)r * 0x9E3779B97F4A7C15UL;
        float amp = isNorm ? 0.1f : std * 1.7320508f;
        for (int i = 0; i < row.Length; i++)
        {
            float u = (SplitMix(ref state) >> 40) * (1.0f / (1 << 24)) * 2f - 1f;
            row[i] = isNorm ? 1f + amp * u : amp * u;
        }
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Hash(string s)
    {
        ulong h = 1469598103934665603UL;
        foreach (char c in s) { h ^= c; h *= 1099511628211UL; }
        return h;
    }
}
