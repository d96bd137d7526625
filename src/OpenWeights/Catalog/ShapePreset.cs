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
        if (s.Moe is not null) throw new OpenWeightsException($"{s.Name}: mixture-of-experts models cannot be measured yet (dense models only)");
        var template = SynthPreset.All.FirstOrDefault(p => p.Architecture == arch && !p.Name.StartsWith("tiny-", StringComparison.Ordinal))
            ?? SynthPreset.All.FirstOrDefault(p => p.Architecture == arch)
            ?? throw new OpenWeightsException($"{s.Name}: architecture {arch} has no synthetic preset, so it cannot be measured");
        int Need(int? v, string what) => v is > 0 ? v.Value : throw new OpenWeightsException($"{s.Name}: the {what} is unknown, so a model of its shape cannot be built");
        int layers = Need(s.Layers, "layer count"), dim = Need(s.HiddenSize, "hidden size"), heads = Need(s.Heads, "head count");
        int kv = s.KvHeads ?? heads, vocab = Need(s.Vocab, "vocabulary size");
        int? keyLength = s.HeadDim is { } h && h != dim / heads ? h : null;
        if (keyLength is null && dim % heads != 0) throw new OpenWeightsException($"{s.Name}: hidden size {dim} is not a multiple of the head count {heads} and the head dimension is unknown");
        int hd = keyLength ?? dim / heads;
        bool tied = s.TiedEmbeddings ?? false;
        var known = SynthPreset.All.FirstOrDefault(p => p.Architecture == arch && p.Layers == layers && p.Dim == dim && p.Heads == heads && p.KvHeads == kv && p.VocabSize == vocab && p.HeadDim == hd);
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
            Name = s.Name, VocabSize = vocab, Dim = dim, Layers = layers, Heads = heads, KvHeads = kv, FfnDim = ffn,
            ContextLength = s.ContextLength ?? template.ContextLength, TiedEmbeddings = tied, KeyLength = keyLength,
            RopeDims = ropeDims, ExtraTensors = extraTensors, Extra = extra,
            Llama3RopeScaling = template.Llama3RopeScaling && hd == template.HeadDim,
        };
    }

    private const string SlidingWindowKey = "attention.sliding_window";

    /// <summary>A per-frequency table stretched or shrunk to <paramref name="length"/> entries (nearest entry, lowest frequency last).</summary>
    private static float[] Resample(float[] values, int length) =>
        Enumerable.Range(0, length).Select(i => values[(int)((long)i * values.Length / length)]).ToArray();
}
