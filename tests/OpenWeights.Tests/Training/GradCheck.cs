using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Tests.Training;

/// <summary>
/// Central finite differences against an analytic gradient. Everything runs in F32, so the tolerance is set by
/// float rounding: with step h the difference quotient carries about ε·|L|/h of rounding error (ε ≈ 6e-8) plus
/// h²·|L'''|/6 of truncation error; h = 1e-2 on O(1) inputs keeps both near 1e-4 relative, and the checks demand
/// a relative error (‖analytic − numeric‖ / ‖numeric‖ over the checked entries) below 1e-2.
/// </summary>
internal static class GradCheck
{
    public static double RelError(Func<double> loss, float[] param, ReadOnlySpan<float> analytic, IEnumerable<int> indices, float h = 1e-2f)
    {
        double num2 = 0, diff2 = 0;
        foreach (int i in indices)
        {
            float keep = param[i];
            param[i] = keep + h; double lp = loss();
            param[i] = keep - h; double lm = loss();
            param[i] = keep;
            double numeric = (lp - lm) / (2.0 * h);
            num2 += numeric * numeric;
            diff2 += (numeric - analytic[i]) * (numeric - analytic[i]);
        }
        return Math.Sqrt(diff2) / Math.Max(Math.Sqrt(num2), 1e-12);
    }

    public static IEnumerable<int> All(int n) => Enumerable.Range(0, n);
    public static IEnumerable<int> Sample(int n, int count, int seed) { var r = new Random(seed); return Enumerable.Range(0, count).Select(_ => r.Next(n)).Distinct().ToArray(); }

    /// <summary>
    /// The <paramref name="count"/> entries of largest |analytic| among <paramref name="pool"/> random ones: where the
    /// gradient is large enough that the difference quotient's F32 rounding (≈ ε·|L|/h) is small beside it. Deep models
    /// have entries whose true gradient is near that noise floor; a wrong backward still shows on the large ones.
    /// </summary>
    public static IEnumerable<int> Largest(ReadOnlySpan<float> analytic, int pool, int count, int seed)
    {
        var a = analytic.ToArray();
        return Sample(a.Length, pool, seed).OrderByDescending(i => Math.Abs(a[i])).Take(count).ToArray();
    }

    public static float[] Random(int n, int seed, float scale = 1f) { var r = new Random(seed); return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray(); }

    public static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b) { double s = 0; for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i]; return s; }

    /// <summary>
    /// Writes a tiny llama or qwen2 GGUF (dim 32, 2 layers, 4 heads / 2 kv heads, ffn 64, vocab 64) with random weights of
    /// the given type for matrices. llama gets llama3-style rope freq factors; qwen2 gets QKV biases and NEOX rope.
    /// </summary>
    public static void WriteTinyModel(string path, string arch, GgmlType type, int seed = 1, float std = 0.3f)
    {
        int dim = 32, layers = 2, heads = 4, kvHeads = 2, ffn = 64, vocab = 64, hd = dim / heads;
        var w = new GgufWriter();
        w.Set("general.architecture", arch)
         .Set($"{arch}.context_length", 256u).Set($"{arch}.embedding_length", (uint)dim).Set($"{arch}.block_count", (uint)layers)
         .Set($"{arch}.feed_forward_length", (uint)ffn).Set($"{arch}.attention.head_count", (uint)heads)
         .Set($"{arch}.attention.head_count_kv", (uint)kvHeads).Set($"{arch}.attention.layer_norm_rms_epsilon", 1e-5f)
         .Set($"{arch}.rope.freq_base", 10000f).Set($"{arch}.rope.dimension_count", (uint)hd).Set($"{arch}.vocab_size", (uint)vocab);
        int s = seed;
        void Mat(string name, int inF, int outF)
        {
            var data = Random(inF * outF, s++, std * MathF.Sqrt(3f));
            if (type == GgmlType.F32) { w.AddTensor(name, [inF, outF], data); return; }
            long rowBytes = GgmlTypes.RowBytes(type, inF);
            var bytes = new byte[rowBytes * outF];
            for (int r = 0; r < outF; r++) Quantize.Row(type, data.AsSpan(r * inF, inF), bytes.AsSpan((int)(r * rowBytes), (int)rowBytes));
            w.AddTensor(name, type, [inF, outF], bytes);
        }
        void Vec(string name, int n, float center, float spread) => w.AddTensor(name, [n], Random(n, s++, spread).Select(x => center + x).ToArray());
        Mat(TokenEmbedding, dim, vocab);
        if (arch == "llama") w.AddTensor(RopeFreqs, [hd / 2], Enumerable.Range(0, hd / 2).Select(i => 1f + i).ToArray());
        for (int l = 0; l < layers; l++)
        {
            Vec(Block(l, AttnNorm), dim, 1f, 0.2f);
            Mat(Block(l, AttnQ), dim, heads * hd); Mat(Block(l, AttnK), dim, kvHeads * hd); Mat(Block(l, AttnV), dim, kvHeads * hd);
            if (arch == "qwen2") { Vec(Block(l, AttnQBias), heads * hd, 0, 0.2f); Vec(Block(l, AttnKBias), kvHeads * hd, 0, 0.2f); Vec(Block(l, AttnVBias), kvHeads * hd, 0, 0.2f); }
            Mat(Block(l, AttnOut), heads * hd, dim);
            Vec(Block(l, FfnNorm), dim, 1f, 0.2f);
            Mat(Block(l, FfnGate), dim, ffn); Mat(Block(l, FfnUp), dim, ffn); Mat(Block(l, FfnDown), ffn, dim);
        }
        Vec(OutputNorm, dim, 1f, 0.2f);
        Mat(Output, dim, vocab);
        w.Write(path);
    }
}
