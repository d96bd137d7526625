using OpenWeights.Formats;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models.Gemma;

/// <summary>
/// Gemma 3, text part (gemma-3-270m/1b/4b/12b/27b), reading like Hugging Face's modeling_gemma3.py: the Gemma 2 block
/// (√dim embeddings, norms before and after attention and feed-forward, GeGLU) without soft-capping, with QK-norm (RMS
/// norm of each query and key head before rotary), five sliding-window layers to one global layer, and two rotary
/// embeddings: sliding-window layers rotate with base 10 000 and no scaling, global layers with rope.freq_base (1 000 000)
/// and the file's rope scaling (linear, factor 8, on 4B and larger).
/// Keys (llama.cpp's llama_model_gemma3): attention.sliding_window (absent or 0: every layer global),
/// attention.sliding_window_pattern (period, default 6), rope.freq_base_swa (default 10 000),
/// final_logit_softcapping (default none); attention.layer_norm_rms_epsilon is required.
/// </summary>
public sealed class Gemma3Model : DecoderModel
{
    private readonly LayerAttention[] attention;  // (layers) rope table, query scale, window of each layer
    private readonly Rope[] ropes;                // [global layers, sliding-window layers]
    private readonly float finalSoftcap;

    public Gemma3Model(ITensorSource source, ModelConfig c) : base(source, c)
    {
        RequireNumber("attention.layer_norm_rms_epsilon");
        int window = (int)(Number("attention.sliding_window") ?? 0);
        finalSoftcap = (float)(Number("final_logit_softcapping") ?? 0.0);
        // differs from Llama: sliding-window layers rotate with their own base and without the global layers' scaling
        ropes = [Rope, new Rope(c.RopeDims, c.RopeStyle, (float)(Number("rope.freq_base_swa") ?? 10000.0))];
        bool[] sliding = window > 0 ? Gemma2Model.SlidingLayers(source, c, defaultPeriod: 6) : new bool[c.Layers];
        float scale = Gemma2Model.QueryScale(c, layers27B: 62);
        attention = new LayerAttention[c.Layers];
        for (int l = 0; l < c.Layers; l++)
            attention[l] = new LayerAttention(sliding[l] ? 1 : 0, new AttentionParams(scale, sliding[l] ? window : 0));
    }

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;
    public override LayerAttention AttentionOf(int layer) => attention[layer];
    // differs from Llama: GeGLU (tanh-approximated GELU) instead of SwiGLU
    public override Activation FeedForwardActivation => Activation.GeluTanh;
    // differs from Llama: the embeddings are scaled by √dim (llama.cpp: sqrtf(n_embd) in float)
    public override float EmbeddingScale => MathF.Sqrt(Config.Dim);
    public override float FinalLogitSoftcap => finalSoftcap;

    // the Gemma 2 block; the QK-norm is the layers' (Blocks.SelfAttention applies it)
    protected override void Block(int l, RunState s, int n, int threads) => Gemma2Model.SandwichBlock(this, l, s, n, threads, ropes);
}
