using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Catalog;

/// <summary>Synthetic-model presets with a catalog model's exact shape, for measuring its speed without its weights.</summary>
public static class ShapePreset
{
    /// <summary>
    /// A preset with the model's exact shape. The family's own settings (sliding window, soft-caps, rotary bases, QK-norm
    /// layout, tokenizer) come from a preset of the same architecture (<see cref="SynthPreset.All"/>); the dimensions from
    /// the shape. The feed-forward size comes from the shape, else from a known preset of the same dimensions, else from
    /// the parameter count (rounded to a multiple of 256; the estimate is added to <paramref name="assumptions"/>).
    /// </summary>
    public static SynthPreset For(ModelShape s, List<string>? assumptions = null)
    {
        string runs = string.Join(", ", Architectures.Supported.Select(a => a.Name));
        string arch = s.Architecture ?? throw new OpenWeightsException($"{s.Name}: the engine cannot run this architecture, so its speed cannot be measured (it runs {runs})");
        if (!Architectures.Supported.Any(a => a.Name == arch)) throw new OpenWeightsException($"{s.Name}: architecture {arch} cannot be measured (the engine runs {runs})");
        var spec = Architectures.Get(arch);
        if (s.Moe is not null && !spec.Experts) throw new OpenWeightsException($"{s.Name}: the engine runs {arch} models without experts only, so this mixture of experts cannot be measured");
        var template = SynthPreset.All.FirstOrDefault(p => p.Architecture == arch && !p.Name.StartsWith("tiny-", StringComparison.Ordinal))
            ?? SynthPreset.All.FirstOrDefault(p => p.Architecture == arch)
            ?? throw new OpenWeightsException($"{s.Name}: architecture {arch} has no synthetic preset, so it cannot be measured");
        // latent attention (DeepSeek): the catalog gives no KV heads or head size (the MLA ranks instead); the shape is a
        // preset's when layers, width, heads, vocabulary and experts agree
        if (s.Mla is not null)
            return SynthPreset.All.FirstOrDefault(p => p.Architecture == arch && p.Mla is not null && p.Layers == s.Layers && p.Dim == s.HiddenSize
                    && p.Heads == s.Heads && p.VocabSize == s.Vocab && p.ExpertCount == (s.Moe?.Experts ?? 0)) is { } mlaPreset
                ? mlaPreset with { Name = s.Name }
                : throw new OpenWeightsException($"{s.Name}: no synthetic preset has its latent-attention shape, so it cannot be measured (presets: {string.Join(", ", SynthPreset.All.Where(p => p.Mla is not null).Select(p => p.Name))})");
        int Need(int? v, string what) => v is > 0 ? v.Value : throw new OpenWeightsException($"{s.Name}: the {what} is unknown, so a model of its shape cannot be built");
        int layers = Need(s.Layers, "layer count"), dim = Need(s.HiddenSize, "hidden size"), heads = Need(s.Heads, "head count");
        int kv = s.KvHeads ?? heads, vocab = Need(s.Vocab, "vocabulary size");
        int? keyLength = s.HeadDim is { } h && h != dim / heads ? h : null;
        if (keyLength is null && dim % heads != 0) throw new OpenWeightsException($"{s.Name}: hidden size {dim} is not a multiple of the head count {heads} and the head dimension is unknown");
        int hd = keyLength ?? dim / heads;
        bool tied = s.TiedEmbeddings ?? false;
        var known = SynthPreset.All.FirstOrDefault(p => p.Architecture == arch && p.Layers == layers && p.Dim == dim && p.Heads == heads && p.KvHeads == kv && p.VocabSize == vocab && p.HeadDim == hd
            && p.ExpertCount == (s.Moe?.Experts ?? 0) && p.ExpertsUsed == (s.Moe?.ExpertsPerToken ?? 0) && (s.Moe?.ExpertFfn is not { } ef || ef == p.EffectiveExpertFfnDim));
        if (s.Moe is { } moe)
        {
            if (known is not null) return known with { Name = s.Name };
            return Experts(template, s, moe, spec, layers, dim, heads, kv, vocab, keyLength, tied, assumptions);
        }
        int ffn;
        if (s.FfnHidden is > 0) ffn = s.FfnHidden.Value;
        else if (known is not null) ffn = known.FfnDim;
        else
        {
            long q = (long)heads * hd, kvd = (long)kv * hd;
            long fixedParams = (long)vocab * dim * (tied ? 1 : 2) + dim + layers * (dim * (q + 2 * kvd) + q * dim + 2L * dim);
            double f = (s.TotalParams - fixedParams) / (3.0 * dim * layers);
            ffn = (int)Math.Max(256, Math.Round(f / 256) * 256);
            assumptions?.Add($"feed-forward size {ffn} estimated from the parameter count (the catalog does not give it)");
        }
        if (known is not null && known.FfnDim == ffn) return known with { Name = s.Name };
        // Partial rotary is the template checkpoint's own (Phi-4-mini rotates 96 of 128 dims); a model with another head
        // size rotates its whole head, as Phi-3.5-mini (96 of 96) does. Per-frequency tables follow the rotated size.
        int? ropeDims = template.RopeDims is { } rd && hd == template.HeadDim ? rd : null;
        int pairs = (ropeDims ?? hd) / 2;
        var extraTensors = template.ExtraTensors.ToDictionary(t => t.Key, t => t.Value.Length == pairs ? t.Value : Resample(t.Value, pairs));
        // the catalog's sliding window (Gemma 3 4B and larger: 1024, not 1B's 512)
        var extra = template.Extra;
        if (s.LocalAttention is { Kind: "sliding", Window: > 0 } la && extra.ContainsKey(SlidingWindowKey))
            extra = new Dictionary<string, object>(extra) { [SlidingWindowKey] = (uint)la.Window };
        return template with
        {
            ExpertCount = 0, ExpertsUsed = 0, ExpertFfnDim = 0, SharedExpertFfnDim = 0, MoeLayerStep = 1,
            Name = s.Name, VocabSize = vocab, Dim = dim, Layers = layers, Heads = heads, KvHeads = kv, FfnDim = ffn,
            ContextLength = s.ContextLength ?? template.ContextLength, TiedEmbeddings = tied, KeyLength = keyLength,
            RopeDims = ropeDims, ExtraTensors = extraTensors, Extra = extra,
            Llama3RopeScaling = template.Llama3RopeScaling && hd == template.HeadDim,
        };
    }

    private const string SlidingWindowKey = "attention.sliding_window";

    /// <summary>
    /// A mixture of experts' preset: the experts from the shape; one expert's feed-forward size from the catalog, else
    /// from the routed parameters (<see cref="FitEstimator.MoeOf"/>) over layers × experts × 3 × dim, rounded to a multiple
    /// of 256 (stated in <paramref name="assumptions"/>). A shared expert or dense layers between MoE layers need sizes the
    /// catalog does not give: refused with one line.
    /// </summary>
    private static SynthPreset Experts(SynthPreset template, ModelShape s, MoeFacts moe, ArchitectureSpec spec, int layers, int dim, int heads, int kv,
        int vocab, int? keyLength, bool tied, List<string>? assumptions)
    {
        if (moe.SharedExperts > 0) throw new OpenWeightsException($"{s.Name}: the size of its shared expert is unknown, so a model of its shape cannot be built");
        if (moe.MoeLayerStep > 1) throw new OpenWeightsException($"{s.Name}: the feed-forward size of its dense layers is unknown, so a model of its shape cannot be built");
        int ffn;
        if (moe.ExpertFfn is > 0) ffn = moe.ExpertFfn.Value;
        else
        {
            var split = FitEstimator.MoeOf(s) ?? throw new OpenWeightsException($"{s.Name}: its experts' size cannot be told from its parameter counts");
            ffn = (int)Math.Max(256, Math.Round(split.RoutedExpertParams / (3.0 * dim * layers * moe.Experts) / 256) * 256);
            assumptions?.Add($"expert feed-forward size {ffn} estimated from the routed parameters (the catalog does not give it)");
        }
        // the dense feed-forward length: what the family reads the expert size from when it has no key of its own (llama: the
        // whole length; qwen3moe: length / experts per token), so the file says the same either way
        int ffnKey = spec.ExpertFfn switch
        {
            ExpertFfnRule.KeyOrFfnOverUsed => ffn * moe.ExpertsPerToken,
            _ => ffn,
        };
        return template with
        {
            Name = s.Name, VocabSize = vocab, Dim = dim, Layers = layers, Heads = heads, KvHeads = kv, FfnDim = ffnKey,
            ContextLength = s.ContextLength ?? template.ContextLength, TiedEmbeddings = tied, KeyLength = keyLength,
            ExpertCount = moe.Experts, ExpertsUsed = moe.ExpertsPerToken, ExpertFfnDim = ffn, SharedExpertFfnDim = 0, MoeLayerStep = 1,
            RopeDims = template.RopeDims is { } rd && (keyLength ?? dim / heads) == template.HeadDim ? rd : null,
            ExtraTensors = (keyLength ?? dim / heads) == template.HeadDim ? template.ExtraTensors : new Dictionary<string, float[]>(),
            Llama3RopeScaling = template.Llama3RopeScaling && (keyLength ?? dim / heads) == template.HeadDim,
        };
    }

    /// <summary>A per-frequency table stretched or shrunk to <paramref name="length"/> entries (nearest entry, lowest frequency last).</summary>
    private static float[] Resample(float[] values, int length) =>
        Enumerable.Range(0, length).Select(i => values[(int)((long)i * values.Length / length)]).ToArray();
}
