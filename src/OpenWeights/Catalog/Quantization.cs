namespace OpenWeights.Catalog;

/// <summary>
/// A weight format and its effective bits per weight over a whole model file (all tensors, including the
/// embedding and output tensors that a mix keeps at higher precision).
/// </summary>
public sealed record QuantType(string Name, double BitsPerWeight, string Basis)
{
    public long WeightBytes(long parameters) => (long)Math.Ceiling(parameters * BitsPerWeight / 8.0);
}

/// <summary>
/// The quantizations the fit estimator knows. Sources:
/// - Block formats (ggml-common.h): Q8_0 = 32 int8 + one fp16 scale = 34 bytes per 32 weights = 8.5 bpw;
///   Q4_0 = 32 4-bit + one fp16 scale = 18 bytes per 32 = 4.5 bpw (real Q4_0 files run a little higher
///   because llama.cpp keeps the output tensor at Q6_K).
/// - K-quant mixes (Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K) mix block types per tensor, so their bpw is an effective
///   figure measured by llama.cpp on Llama-3.1-8B (tools/quantize/README.md): F16 16.00, Q8_0 8.50, Q6_K 6.56,
///   Q5_K_M 5.70, Q4_K_M 4.89, Q3_K_M ~4.0, Q2_K 3.16. The mix varies slightly by model, so these are estimates
///   (Llama 3.1 Q4_K_M files: 8B 4.9 GB, 70B 43.1 GB, 405B 249.1 GB, all ≈ params × 4.89 / 8).
/// - NF4 (QLoRA): 4-bit NormalFloat with double quantization: 4 bits + 0.127 bits of quantization constants
///   (the QLoRA paper: double quantization saves ~0.37 of the 0.5 bits/param that 64-weight fp32 absmax blocks cost).
/// </summary>
public static class Quantization
{
    public static readonly QuantType F32 = new("F32", 32.0, "4 bytes per weight");
    public static readonly QuantType F16 = new("F16", 16.0, "2 bytes per weight");
    public static readonly QuantType BF16 = new("BF16", 16.0, "2 bytes per weight");
    public static readonly QuantType Q8_0 = new("Q8_0", 8.5, "block of 32: 32 int8 + fp16 scale = 34 bytes");
    public static readonly QuantType Q6_K = new("Q6_K", 6.56, "llama.cpp measured on Llama-3.1-8B");
    public static readonly QuantType Q5_K_M = new("Q5_K_M", 5.70, "llama.cpp measured on Llama-3.1-8B");
    public static readonly QuantType Q4_K_M = new("Q4_K_M", 4.89, "llama.cpp measured on Llama-3.1-8B (mix of Q4_K and Q6_K)");
    public static readonly QuantType Q4_0 = new("Q4_0", 4.5, "block of 32: 16 bytes of nibbles + fp16 scale = 18 bytes");
    public static readonly QuantType Q3_K_M = new("Q3_K_M", 4.0, "llama.cpp measured on Llama-3.1-8B (~4.0)");
    public static readonly QuantType Q2_K = new("Q2_K", 3.16, "llama.cpp measured on Llama-3.1-8B");
    public static readonly QuantType NF4 = new("NF4", 4.127, "QLoRA NF4 + double quantization");

    /// <summary>Candidates for "best quantization that fits", best quality first.</summary>
    public static readonly IReadOnlyList<QuantType> Ladder = [F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K];

    public static readonly IReadOnlyList<QuantType> All = [F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K, NF4];

    public static QuantType Parse(string name) =>
        All.FirstOrDefault(q => string.Equals(q.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OpenWeightsException($"unknown quantization '{name}' (expected one of {string.Join(", ", All.Select(q => q.Name))})");
}
