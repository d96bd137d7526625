using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models;

/// <summary>
/// What distinguishes one architecture from another, as data (llama.cpp's llama-arch.cpp): the GGUF
/// architecture name, the rotary pairing and which optional tensors it carries. Loading is naming.
/// </summary>
public sealed record ArchitectureSpec(string Name, string Family, RopeStyle Rope, bool QkvBias, string Description);

public static class Architectures
{
    public static readonly IReadOnlyList<ArchitectureSpec> Supported =
    [
        // Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama: GGUF converters permute Q/K so NORM pairing applies.
        new("llama", "llama", RopeStyle.Norm, QkvBias: false, "Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama"),
        // differs from Llama: biases on Q/K/V; rotary pairs (i, i+d/2) as in the HF checkpoint.
        new("qwen2", "llama", RopeStyle.Neox, QkvBias: true, "Qwen 2 / 2.5"),
    ];

    public static ArchitectureSpec Get(string? name)
    {
        if (string.IsNullOrEmpty(name)) throw new InvalidModelFileException("the model file does not name its architecture (general.architecture is missing)");
        return Supported.FirstOrDefault(a => a.Name == name)
            ?? throw new OpenWeightsException($"unsupported architecture '{name}' (supported: {string.Join(", ", Supported.Select(a => a.Name))})");
    }

    /// <summary>GGUF tensor names, one place for all of them.</summary>
    public static class Names
    {
        public const string TokenEmbedding = "token_embd.weight";
        public const string OutputNorm = "output_norm.weight";
        public const string Output = "output.weight";
        public const string RopeFreqs = "rope_freqs.weight";
        public static string Block(int i, string part) => $"blk.{i}.{part}";
        public const string AttnNorm = "attn_norm.weight", AttnQ = "attn_q.weight", AttnK = "attn_k.weight", AttnV = "attn_v.weight", AttnOut = "attn_output.weight";
        public const string AttnQBias = "attn_q.bias", AttnKBias = "attn_k.bias", AttnVBias = "attn_v.bias";
        public const string FfnNorm = "ffn_norm.weight", FfnGate = "ffn_gate.weight", FfnUp = "ffn_up.weight", FfnDown = "ffn_down.weight";
    }
}
