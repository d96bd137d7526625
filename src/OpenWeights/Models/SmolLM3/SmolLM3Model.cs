using OpenWeights.Formats;
using OpenWeights.Models.Common;

namespace OpenWeights.Models.SmolLM3;

/// <summary>
/// The SmolLM3 decoder (SmolLM3-3B), reading like transformers' modeling_smollm3.py: the Llama block, except that
/// every fourth layer attends without rotary embedding (NoPE): layers 3, 7, 11, ... (0-based) neither rotate their
/// queries nor their keys. In Hugging Face configs this is <c>no_rope_layers</c> (1 = rotary) built from
/// <c>no_rope_layer_interval</c> 4; GGUF files carry no key for it: llama.cpp hard-codes the step
/// (<c>n_no_rope_layer_step = 4</c>, use_rope = (il + 1) % 4 != 0), and so does this class.
/// </summary>
public sealed class SmolLM3Model : Llama.LlamaModel
{
    /// <summary>Every this many layers, the last one has no rotary embedding (llama.cpp's n_no_rope_layer_step).</summary>
    public const int NoRopeLayerStep = 4;

    private readonly LayerAttention noRope;

    public SmolLM3Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        // llama.cpp requires the norm epsilon of a smollm3 file
        RequireNumber("attention.layer_norm_rms_epsilon");
        noRope = base.AttentionOf(0) with { Rope = -1 };
    }

    /// <summary>Whether layer <paramref name="layer"/> rotates queries and keys (HF: no_rope_layers[layer] == 1).</summary>
    public static bool UsesRope(int layer) => (layer + 1) % NoRopeLayerStep != 0;

    // differs from Llama: every fourth layer has no rotary table (NoPE)
    public override LayerAttention AttentionOf(int layer) => UsesRope(layer) ? base.AttentionOf(layer) : noRope;
}
