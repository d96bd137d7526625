using OpenWeights.Models;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Lora;

/// <summary>
/// Row order of the rotary projections (attn_q, attn_k). Hugging Face checkpoints (and so PEFT adapters) keep
/// q_proj/k_proj rows in HF order, rotated as NEOX pairs (i, i + head_dim/2). llama.cpp's convert_hf_to_gguf
/// permutes the Q/K rows of llama-architecture GGUFs so that the pairs become adjacent (2i, 2i+1) and rotates
/// them NORM style: per head, reshape (2, head_dim/2) -> swap -> (head_dim/2, 2). qwen2 GGUFs are not permuted.
/// A LoRA B matrix (out, rank) is indexed by output rows, so it must follow its weight's order.
/// </summary>
public static class LoraRotary
{
    /// <summary>HF order -> GGUF (interleaved) order: dst[h*hd + 2i + j] = src[h*hd + j*hd/2 + i].</summary>
    public static float[] HfToGguf(ReadOnlySpan<float> src, int rows, int cols, int nHead) => Permute(src, rows, cols, nHead, toGguf: true);

    /// <summary>GGUF (interleaved) order -> HF order, the inverse of <see cref="HfToGguf"/>.</summary>
    public static float[] GgufToHf(ReadOnlySpan<float> src, int rows, int cols, int nHead) => Permute(src, rows, cols, nHead, toGguf: false);

    private static float[] Permute(ReadOnlySpan<float> src, int rows, int cols, int nHead, bool toGguf)
    {
        if (src.Length != (long)rows * cols) throw new ArgumentException($"matrix has {src.Length} values, expected {rows}x{cols}");
        if (nHead <= 0 || rows % nHead != 0 || (rows / nHead) % 2 != 0)
            throw new OpenWeightsException($"cannot permute {rows} rotary rows into {nHead} heads of even size");
        int hd = rows / nHead, half = hd / 2;
        var dst = new float[src.Length];
        for (int h = 0; h < nHead; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    int g = h * hd + 2 * i + j, f = h * hd + j * half + i;
                    int from = toGguf ? f : g, to = toGguf ? g : f;
                    src.Slice(from * cols, cols).CopyTo(dst.AsSpan(to * cols, cols));
                }
        return dst;
    }

    /// <summary>True when the model's Q/K rows are in GGUF interleaved order (NORM rope, a llama GGUF), false for HF order.</summary>
    public static bool ModelIsInterleaved(ModelConfig c) => c.RopeStyle == RopeStyle.Norm;

    /// <summary>True when a GGUF file (model or LoRA) of this architecture stores Q/K rows interleaved (llama.cpp's convention).</summary>
    public static bool GgufIsInterleaved(ArchitectureSpec arch) => arch.Rope == RopeStyle.Norm;

    /// <summary>
    /// A copy of <paramref name="adapter"/> with the B rows of attn_q / attn_k reordered (HF -> GGUF when
    /// <paramref name="toGguf"/>, else GGUF -> HF); other projections and A are shared, not copied.
    /// </summary>
    public static LoraAdapter Reorder(LoraAdapter adapter, int heads, int kvHeads, bool toGguf, ArchitectureSpec? spec = null)
    {
        var w = new Dictionary<string, LoraWeights>(StringComparer.Ordinal);
        foreach (var (name, lw) in adapter.Weights)
        {
            var (_, peft) = LoraNames.ParseGguf(name, spec);
            int nHead = peft switch { "q_proj" => heads, "k_proj" => kvHeads, _ => 0 };
            if (nHead == 0) { w[name] = lw; continue; }
            var b = toGguf ? HfToGguf(lw.B, lw.Out, lw.Rank, nHead) : GgufToHf(lw.B, lw.Out, lw.Rank, nHead);
            w[name] = new LoraWeights { Target = lw.Target, Rank = lw.Rank, In = lw.In, Out = lw.Out, A = lw.A, B = b };
        }
        return WithWeights(adapter, w);
    }

    /// <summary>Converts an adapter between the row order of a model (<paramref name="fromInterleaved"/>) and another.</summary>
    public static LoraAdapter Convert(LoraAdapter adapter, ModelConfig c, bool fromInterleaved, bool toInterleaved) =>
        fromInterleaved == toInterleaved ? adapter : Reorder(adapter, c.Heads, c.KvHeads, toGguf: toInterleaved, c.Architecture);

    internal static LoraAdapter WithWeights(LoraAdapter a, Dictionary<string, LoraWeights> weights) => new()
    {
        Alpha = a.Alpha, Rank = a.Rank, UseRsLora = a.UseRsLora, TargetModules = a.TargetModules, BaseModel = a.BaseModel, Weights = weights,
    };
}

/// <summary>Parsing GGUF and Hugging Face tensor names of LoRA targets.</summary>
public static class LoraNames
{
    /// <summary>("blk.3.attn_q.weight") -> (3, "q_proj"); throws for names that are not a LoRA target.</summary>
    public static (int Layer, string Peft) ParseGguf(string name) => ParseGguf(name, null);

    /// <summary>As <see cref="ParseGguf(string)"/> in the names of <paramref name="spec"/> first ("blk.3.ffn_up.weight" is
    /// Phi-3's gate_up_proj, llama's up_proj).</summary>
    public static (int Layer, string Peft) ParseGguf(string name, ArchitectureSpec? spec)
    {
        var m = System.Text.RegularExpressions.Regex.Match(name, @"^blk\.(\d+)\.([a-z_]+)\.weight$");
        if (m.Success)
        {
            var t = (spec is null ? LoraTargets.Known : [.. LoraTargets.Of(spec), .. LoraTargets.Known]).FirstOrDefault(x => x.Gguf == m.Groups[2].Value);
            if (t.Peft is not null && int.TryParse(m.Groups[1].Value, out int layer)) return (layer, t.Peft);
        }
        if (m.Success && Architectures.Supported.SelectMany(a => a.Block).Any(t => t.IsExpert && t.Gguf == m.Groups[2].Value + ".weight"))
            throw new OpenWeightsException($"'{name}' adapts a mixture-of-experts tensor (router, experts or shared expert): LoRA on experts is not supported, only on the attention of MoE models");
        throw new OpenWeightsException($"'{name}' is not a projection LoRA can adapt (supported: {string.Join(", ", LoraTargets.Known.Select(x => "blk.N." + x.Gguf + ".weight").Distinct())})");
    }

    /// <summary>Layer, then the order of <see cref="LoraTargets.Known"/> (llama's q..down first): the order files list tensors in.</summary>
    public static IEnumerable<LoraWeights> Ordered(LoraAdapter a, ArchitectureSpec? spec = null) =>
        a.Weights.Values.OrderBy(w => ParseGguf(w.Target, spec).Layer).ThenBy(w => IndexOf(ParseGguf(w.Target, spec).Peft));

    private static int IndexOf(string peft)
    {
        for (int i = 0; i < LoraTargets.Known.Count; i++) if (LoraTargets.Known[i].Peft == peft) return i;
        return int.MaxValue;
    }

    /// <summary>The scale llama.cpp and PEFT apply to one pair: alpha / rank (alpha / sqrt(rank) with rsLoRA), the rank being this pair's.</summary>
    public static float ScaleOf(LoraAdapter a, LoraWeights w) => a.UseRsLora ? a.Alpha / MathF.Sqrt(w.Rank) : a.Alpha / w.Rank;
}
