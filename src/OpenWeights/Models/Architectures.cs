using OpenWeights.Models.HuggingFace;
using OpenWeights.Formats;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Models;

/// <summary>The shape of a tensor in terms of the model's hyper-parameters (ggml order: input features first).</summary>
public enum TensorShape
{
    Dim,        // (dim) a norm over the residual stream
    HeadDim,    // (head_dim) a norm over each head (QK-norm of Qwen3, Gemma 3)
    QDim,       // (heads*head_dim) a norm or bias over the whole query projection (OLMo 2's QK-norm, Qwen2's bias)
    KvDim,      // (kv_heads*head_dim) the same over the key or value projection
    Heads,      // (heads) one value per query head (gpt-oss's attention sinks)
    Q,          // (heads*head_dim, dim)
    Kv,         // (kv_heads*head_dim, dim): K and V
    O,          // (dim, heads*head_dim)
    Ffn,        // (ffn, dim): gate and up
    Down,       // (dim, ffn)
    Qkv,        // (heads*head_dim + 2*kv_heads*head_dim, dim): Q, K, V fused (Phi-3)
    GateUp,     // (2*ffn, dim): gate and up fused (Phi-3)
    // multi-head latent attention (DeepSeek V2/V3; ModelConfig.Mla): nope = key_length_mla - rope, k_mla = key_length_mla
    MlaQA,      // (q_lora_rank, dim): attn_q_a, the query's down-projection
    MlaQANorm,  // (q_lora_rank): attn_q_a_norm
    MlaQB,      // (heads*k_mla, q_lora_rank): attn_q_b, the query's up-projection
    MlaQ,       // (heads*k_mla, dim): attn_q, the query in one projection (q_lora_rank 0, V2-Lite)
    MlaKvA,     // (kv_lora_rank + rope, dim): attn_kv_a_mqa, the latent and the shared rotary key
    MlaKvANorm, // (kv_lora_rank): attn_kv_a_norm
    MlaKB,      // ggml [nope, kv_lora_rank, heads]: attn_k_b, per head (kv_lora_rank, nope) = the key up-projection transposed
    MlaVB,      // ggml [kv_lora_rank, v_mla, heads]: attn_v_b, per head (v_mla, kv_lora_rank), the value up-projection
    MlaO,       // (dim, heads*v_mla): attn_output
    // mixture of experts (loaded only in MoE layers, ModelConfig.IsMoeLayer; the dense Ffn/Down/GateUp only in the others).
    // A table may list both kinds: a llama file with experts reads these, one without the dense ones.
    Router,         // (n_expert, dim): ffn_gate_inp, the router's logits
    RouterBias,     // (n_expert): ffn_gate_inp.bias
    ExpertFfn,      // ggml [dim, ffn_exp, n_expert]: gate and up of every expert, expert e = rows e*ffn_exp ..
    ExpertDown,     // ggml [ffn_exp, dim, n_expert]: down of every expert
    ExpertFfnBias,  // ggml [ffn_exp, n_expert]: per-expert bias of gate / up
    ExpertDownBias, // ggml [dim, n_expert]: per-expert bias of down
    SharedFfn,      // (ffn_shexp, dim): gate and up of the shared expert
    SharedDown,     // (dim, ffn_shexp): down of the shared expert
}

/// <summary>One tensor of a transformer block: its GGUF part name, its shape, and its Hugging Face name inside
/// <c>model.layers.N.</c>. The PEFT target of a projection is the last part of its Hugging Face module name.
/// <paramref name="InsteadOf"/>: the GGUF part name of a fused tensor this one may replace in a file (Phi-3's attn_q/k/v
/// instead of attn_qkv, which llama.cpp loads either way). Such an alternative is read only from files without the fused
/// tensor, is not written by the synthetic writer and is no LoRA target.</summary>
public sealed record BlockTensor(string Gguf, TensorShape Shape, string Hf, string? InsteadOf = null)
{
    /// <summary>"q_proj" for "self_attn.q_proj.weight"; null for norms and biases (LoRA wraps only projections).</summary>
    public string? PeftTarget => Gguf.EndsWith(".weight", StringComparison.Ordinal) && Shape is TensorShape.Q or TensorShape.Kv or TensorShape.O
        or TensorShape.Ffn or TensorShape.Down or TensorShape.Qkv or TensorShape.GateUp
        ? Hf[..Hf.LastIndexOf('.')].Split('.')[^1] : null;

    /// <summary>"self_attn.q_proj" for "self_attn.q_proj.weight": the module path PEFT names.</summary>
    public string HfModule => Hf[..Hf.LastIndexOf('.')];

    /// <summary>A tensor of a mixture-of-experts layer (router, experts, shared expert): read only in MoE layers.</summary>
    public bool IsExpert => Shape >= TensorShape.Router;

    /// <summary>A tensor of the dense feed-forward (gate, up, down): read only in dense layers.</summary>
    public bool IsDenseFfn => Shape is TensorShape.Ffn or TensorShape.Down or TensorShape.GateUp;
}

/// <summary>
/// What distinguishes one architecture from another, as data (llama.cpp's llama-arch.cpp): the GGUF architecture name,
/// the family class that runs it, the rotary pairing of its GGUF files, the tensors of each block with their Hugging Face
/// names, the Hugging Face classes it is converted from, and whether the family runs mixture-of-experts blocks (a llama
/// GGUF may hold Mixtral's experts; the dense family does not run them). Loading is naming: this table is the only place the names
/// of an architecture's tensors appear.
/// </summary>
/// <param name="NormWeightOffset">What the GGUF adds to every RMS norm weight of a Hugging Face checkpoint (Gemma: 1, since
/// its norms scale by 1 + w and convert_hf_to_gguf.py stores w + 1); 0 for the others.</param>
/// <param name="Hf">The family's own config.json fields and their GGUF keys (<see cref="HfFamilies"/>); null when the common
/// keys are all it has.</param>
public sealed record ArchitectureSpec(
    string Name, string Description, RopeStyle Rope, IReadOnlyList<BlockTensor> Block,
    Func<ITensorSource, ModelConfig, DecoderModel> Create, IReadOnlyList<string> HfClasses, bool Experts = false,
    float NormWeightOffset = 0, Formats.HuggingFace.HfFamily? Hf = null)
{
    /// <summary>Where the experts' feed-forward length comes from when the family has experts (llama.cpp's rule per
    /// architecture; see <see cref="ExpertFfnRule"/>).</summary>
    public ExpertFfnRule ExpertFfn { get; init; } = ExpertFfnRule.KeyOrFfn;

    /// <summary>The router of the family's MoE layers (llama.cpp's build_moe_ffn arguments for the architecture), from the
    /// config (which may carry <c>{arch}.expert_weights_scale</c> and friends); required when <see cref="Experts"/>.</summary>
    public Func<ModelConfig, Common.ExpertRouting>? Routing { get; init; }

    /// <summary>The shared expert is as wide as a routed one (llama.cpp's llama4: n_ff_shexp = n_ff_exp, the
    /// expert_shared_feed_forward_length key not read); otherwise its width is that key.</summary>
    public bool SharedExpertFfnIsExpertFfn { get; init; }

    /// <summary>Multi-head latent attention (DeepSeek): the block's attention tensors are the Mla* shapes
    /// (<see cref="ModelConfig.Mla"/>, <see cref="Common.LatentAttention"/>), not Q/K/V.</summary>
    public bool LatentAttention { get; init; }

    /// <summary>The shared expert is expert_shared_count routed experts wide (llama.cpp's deepseek2: n_ff_exp × n_expert_shared).</summary>
    public bool SharedExpertFfnFromCount { get; init; }

    /// <summary>The projections LoRA may target, PEFT name -> block tensor, in block order.</summary>
    public IEnumerable<BlockTensor> Projections => Block.Where(t => t.PeftTarget is not null && t.InsteadOf is null);

    /// <summary>Whether a block tensor with this GGUF part name belongs to the architecture.</summary>
    public bool HasTensor(string gguf) => Block.Any(t => t.Gguf == gguf);
}

/// <summary>
/// llama.cpp's rule for the experts' feed-forward length per architecture: <c>{arch}.expert_feed_forward_length</c> or,
/// when absent, <c>feed_forward_length</c> (KeyOrFfn); or feed_forward_length / expert_used_count (KeyOrFfnOverUsed,
/// qwen3moe); or always feed_forward_length, the key ignored (Ffn: llama with experts, olmoe).
/// </summary>
public enum ExpertFfnRule { KeyOrFfn, KeyOrFfnOverUsed, Ffn }

public static class Architectures
{
    private static BlockTensor T(string gguf, TensorShape shape, string hf) => new(gguf, shape, hf);

    /// <summary>The tensors of a mixture-of-experts layer with gated experts (Mixtral, Qwen3-MoE, OLMoE): router and the
    /// 3-D gate / up / down expert tensors. Hugging Face stores one 2-D tensor per expert (mlp.experts.N.*), which the
    /// converter stacks; checkpoints with experts are not read here (the HF names are for reference only).</summary>
    public static readonly IReadOnlyList<BlockTensor> MoeTensors =
    [
        T(Names.FfnGateInp, TensorShape.Router, "mlp.gate.weight"),
        T(Names.FfnGateExps, TensorShape.ExpertFfn, "mlp.experts.gate_proj.weight"),
        T(Names.FfnUpExps, TensorShape.ExpertFfn, "mlp.experts.up_proj.weight"),
        T(Names.FfnDownExps, TensorShape.ExpertDown, "mlp.experts.down_proj.weight"),
    ];

    /// <summary>The Llama block: pre-norms, Q/K/V/O attention, SwiGLU feed-forward (HF names of LlamaForCausalLM).</summary>
    public static readonly IReadOnlyList<BlockTensor> LlamaBlock =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.FfnNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnGate, TensorShape.Ffn, "mlp.gate_proj.weight"),
        T(Names.FfnUp, TensorShape.Ffn, "mlp.up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "mlp.down_proj.weight"),
    ];

    /// <summary>Qwen 2: the Llama block with biases on Q, K and V.</summary>
    public static readonly IReadOnlyList<BlockTensor> Qwen2Block =
    [
        .. LlamaBlock,
        T(Names.AttnQBias, TensorShape.QDim, "self_attn.q_proj.bias"),
        T(Names.AttnKBias, TensorShape.KvDim, "self_attn.k_proj.bias"),
        T(Names.AttnVBias, TensorShape.KvDim, "self_attn.v_proj.bias"),
    ];

    /// <summary>Qwen 3: the Llama block with an RMS norm over each query and key head (head_dim), no biases.</summary>
    public static readonly IReadOnlyList<BlockTensor> Qwen3Block =
    [
        .. LlamaBlock,
        T(Names.AttnQNorm, TensorShape.HeadDim, "self_attn.q_norm.weight"),
        T(Names.AttnKNorm, TensorShape.HeadDim, "self_attn.k_norm.weight"),
    ];

    /// <summary>
    /// Llama 4 (Llama4ForConditionalGeneration's language model): the Llama block whose feed-forward is, in MoE layers, a
    /// router, 3-D experts and a shared expert (HF: feed_forward.router, feed_forward.experts.gate_up_proj / down_proj
    /// fused over the experts, feed_forward.shared_expert.*); dense layers keep feed_forward.{gate,up,down}_proj.
    /// </summary>
    public static readonly IReadOnlyList<BlockTensor> Llama4Block =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.FfnNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnGate, TensorShape.Ffn, "feed_forward.gate_proj.weight"),
        T(Names.FfnUp, TensorShape.Ffn, "feed_forward.up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "feed_forward.down_proj.weight"),
        T(Names.FfnGateInp, TensorShape.Router, "feed_forward.router.weight"),
        T(Names.FfnGateExps, TensorShape.ExpertFfn, "feed_forward.experts.gate_proj.weight"),
        T(Names.FfnUpExps, TensorShape.ExpertFfn, "feed_forward.experts.up_proj.weight"),
        T(Names.FfnDownExps, TensorShape.ExpertDown, "feed_forward.experts.down_proj.weight"),
        T(Names.FfnGateShexp, TensorShape.SharedFfn, "feed_forward.shared_expert.gate_proj.weight"),
        T(Names.FfnUpShexp, TensorShape.SharedFfn, "feed_forward.shared_expert.up_proj.weight"),
        T(Names.FfnDownShexp, TensorShape.SharedDown, "feed_forward.shared_expert.down_proj.weight"),
    ];

    /// <summary>Qwen 3 MoE: Qwen 3's attention (per-head QK-norm), the feed-forward norm, and a MoE instead of the MLP.</summary>
    public static readonly IReadOnlyList<BlockTensor> Qwen3MoeBlock =
    [
        .. Qwen3Block.Where(t => !t.IsDenseFfn),
        .. MoeTensors,
    ];

    /// <summary>OLMoE: Llama's pre-norm block with OLMo 2's RMS norm over the whole query and key projections
    /// (heads*head_dim, kv_heads*head_dim) and a MoE instead of the MLP.</summary>
    public static readonly IReadOnlyList<BlockTensor> OlmoeBlock =
    [
        .. LlamaBlock.Where(t => !t.IsDenseFfn),
        T(Names.AttnQNorm, TensorShape.QDim, "self_attn.q_norm.weight"),
        T(Names.AttnKNorm, TensorShape.KvDim, "self_attn.k_norm.weight"),
        .. MoeTensors,
    ];

    /// <summary>OLMo 2: no pre-norms; RMS norms after attention and after the feed-forward, and an RMS norm over the whole
    /// query and key projections (heads*head_dim, kv_heads*head_dim). Its Hugging Face post_attention_layernorm is a
    /// post-norm (Llama's of the same name is the pre-norm of the feed-forward).</summary>
    public static readonly IReadOnlyList<BlockTensor> Olmo2Block =
    [
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.AttnQNorm, TensorShape.QDim, "self_attn.q_norm.weight"),
        T(Names.AttnKNorm, TensorShape.KvDim, "self_attn.k_norm.weight"),
        T(Names.AttnPostNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnGate, TensorShape.Ffn, "mlp.gate_proj.weight"),
        T(Names.FfnUp, TensorShape.Ffn, "mlp.up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "mlp.down_proj.weight"),
        T(Names.FfnPostNorm, TensorShape.Dim, "post_feedforward_layernorm.weight"),
    ];

    /// <summary>
    /// Phi-3 / 3.5 / 4 (Phi3ForCausalLM): the Llama block with Q, K, V fused into attn_qkv (Q | K | V rows) and gate and
    /// up fused into ffn_up (gate rows first). A file may hold attn_q/attn_k/attn_v instead of attn_qkv (llama.cpp's
    /// create_tensor_qkv loads either).
    /// </summary>
    public static readonly IReadOnlyList<BlockTensor> Phi3Block =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQkv, TensorShape.Qkv, "self_attn.qkv_proj.weight"),
        new(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight", InsteadOf: Names.AttnQkv),
        new(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight", InsteadOf: Names.AttnQkv),
        new(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight", InsteadOf: Names.AttnQkv),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.FfnNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnUp, TensorShape.GateUp, "mlp.gate_up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "mlp.down_proj.weight"),
    ];

    /// <summary>
    /// Phi-3.5-MoE (PhiMoEForCausalLM): separate Q/K/V, biases on Q, K, V, the attention output and both norms (the Hugging
    /// Face norms are LayerNorms with a bias; llama.cpp runs RMS norm + bias on the same tensors), and a mixture of 16
    /// experts instead of the MLP (block_sparse_moe: gate = the router, experts w1 = gate, w3 = up, w2 = down, stacked by
    /// the converter into the 3-D tensors).
    /// </summary>
    public static readonly IReadOnlyList<BlockTensor> PhiMoeBlock =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnNormBias, TensorShape.Dim, "input_layernorm.bias"),
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnQBias, TensorShape.QDim, "self_attn.q_proj.bias"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnKBias, TensorShape.KvDim, "self_attn.k_proj.bias"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnVBias, TensorShape.KvDim, "self_attn.v_proj.bias"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.AttnOutBias, TensorShape.Dim, "self_attn.o_proj.bias"),
        T(Names.FfnNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnNormBias, TensorShape.Dim, "post_attention_layernorm.bias"),
        T(Names.FfnGateInp, TensorShape.Router, "block_sparse_moe.gate.weight"),
        T(Names.FfnGateExps, TensorShape.ExpertFfn, "block_sparse_moe.experts.w1.weight"),
        T(Names.FfnUpExps, TensorShape.ExpertFfn, "block_sparse_moe.experts.w3.weight"),
        T(Names.FfnDownExps, TensorShape.ExpertDown, "block_sparse_moe.experts.w2.weight"),
    ];

    /// <summary>Gemma 2: RMS norms before and after both attention and feed-forward (HF names of Gemma2ForCausalLM; the
    /// GGUF norms hold 1 + w, the Hugging Face ones w).</summary>
    public static readonly IReadOnlyList<BlockTensor> Gemma2Block =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.AttnPostNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnNorm, TensorShape.Dim, "pre_feedforward_layernorm.weight"),
        T(Names.FfnGate, TensorShape.Ffn, "mlp.gate_proj.weight"),
        T(Names.FfnUp, TensorShape.Ffn, "mlp.up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "mlp.down_proj.weight"),
        T(Names.FfnPostNorm, TensorShape.Dim, "post_feedforward_layernorm.weight"),
    ];

    /// <summary>Gemma 3: the Gemma 2 block with QK-norm, one (head_dim) weight shared by every query / key head.</summary>
    public static readonly IReadOnlyList<BlockTensor> Gemma3Block =
    [
        .. Gemma2Block,
        T(Names.AttnQNorm, TensorShape.HeadDim, "self_attn.q_norm.weight"),
        T(Names.AttnKNorm, TensorShape.HeadDim, "self_attn.k_norm.weight"),
    ];

    /// <summary>
    /// gpt-oss (GptOssForCausalLM): attention with biases on Q, K, V and O and a learned sink logit per query head; the
    /// feed-forward's pre-norm stored as post_attention_norm (llama.cpp's name for Hugging Face's post_attention_layernorm);
    /// every feed-forward a mixture of experts with a router bias and per-expert biases on gate, up and down. Hugging Face
    /// checkpoints fuse gate and up (interleaved rows, gate_up_proj) in MXFP4 blocks; they are not read here (the HF names
    /// are for reference only).
    /// </summary>
    public static readonly IReadOnlyList<BlockTensor> GptOssBlock =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQ, TensorShape.Q, "self_attn.q_proj.weight"),
        T(Names.AttnK, TensorShape.Kv, "self_attn.k_proj.weight"),
        T(Names.AttnV, TensorShape.Kv, "self_attn.v_proj.weight"),
        T(Names.AttnOut, TensorShape.O, "self_attn.o_proj.weight"),
        T(Names.AttnQBias, TensorShape.QDim, "self_attn.q_proj.bias"),
        T(Names.AttnKBias, TensorShape.KvDim, "self_attn.k_proj.bias"),
        T(Names.AttnVBias, TensorShape.KvDim, "self_attn.v_proj.bias"),
        T(Names.AttnOutBias, TensorShape.Dim, "self_attn.o_proj.bias"),
        T(Names.AttnSinks, TensorShape.Heads, "self_attn.sinks"),
        T(Names.AttnPostNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnGateInp, TensorShape.Router, "mlp.router.weight"),
        T(Names.FfnGateInpBias, TensorShape.RouterBias, "mlp.router.bias"),
        T(Names.FfnGateExps, TensorShape.ExpertFfn, "mlp.experts.gate_up_proj"),
        T(Names.FfnUpExps, TensorShape.ExpertFfn, "mlp.experts.gate_up_proj"),
        T(Names.FfnDownExps, TensorShape.ExpertDown, "mlp.experts.down_proj"),
        T(Names.FfnGateExpsBias, TensorShape.ExpertFfnBias, "mlp.experts.gate_up_proj_bias"),
        T(Names.FfnUpExpsBias, TensorShape.ExpertFfnBias, "mlp.experts.gate_up_proj_bias"),
        T(Names.FfnDownExpsBias, TensorShape.ExpertDownBias, "mlp.experts.down_proj_bias"),
    ];

    /// <summary>
    /// DeepSeek V2 / V3 / R1, Kimi K2 (DeepseekV2ForCausalLM / DeepseekV3ForCausalLM, GGUF deepseek2): multi-head latent
    /// attention (a low-rank query, q_lora_rank 0 in V2-Lite: one attn_q; keys and values from a normed latent plus one
    /// shared rotary key; the key / value up-projections split per head into attn_k_b / attn_v_b as llama.cpp's converter
    /// writes them), pre-norms, and a dense feed-forward in the leading layers, a mixture of experts with shared experts and
    /// an optional selection bias (exp_probs_b) in the others. Not read from Hugging Face checkpoints.
    /// </summary>
    public static readonly IReadOnlyList<BlockTensor> DeepSeek2Block =
    [
        T(Names.AttnNorm, TensorShape.Dim, "input_layernorm.weight"),
        T(Names.AttnQA, TensorShape.MlaQA, "self_attn.q_a_proj.weight"),
        T(Names.AttnQANorm, TensorShape.MlaQANorm, "self_attn.q_a_layernorm.weight"),
        T(Names.AttnQB, TensorShape.MlaQB, "self_attn.q_b_proj.weight"),
        new(Names.AttnQ, TensorShape.MlaQ, "self_attn.q_proj.weight", InsteadOf: Names.AttnQA),
        T(Names.AttnKvAMqa, TensorShape.MlaKvA, "self_attn.kv_a_proj_with_mqa.weight"),
        T(Names.AttnKvANorm, TensorShape.MlaKvANorm, "self_attn.kv_a_layernorm.weight"),
        T(Names.AttnKB, TensorShape.MlaKB, "self_attn.kv_b_proj.weight"),
        T(Names.AttnVB, TensorShape.MlaVB, "self_attn.kv_b_proj.weight"),
        T(Names.AttnOut, TensorShape.MlaO, "self_attn.o_proj.weight"),
        T(Names.FfnNorm, TensorShape.Dim, "post_attention_layernorm.weight"),
        T(Names.FfnGate, TensorShape.Ffn, "mlp.gate_proj.weight"),
        T(Names.FfnUp, TensorShape.Ffn, "mlp.up_proj.weight"),
        T(Names.FfnDown, TensorShape.Down, "mlp.down_proj.weight"),
        .. MoeTensors,
        T(Names.ExpProbsB, TensorShape.RouterBias, "mlp.gate.e_score_correction_bias"),
        T(Names.FfnGateShexp, TensorShape.SharedFfn, "mlp.shared_experts.gate_proj.weight"),
        T(Names.FfnUpShexp, TensorShape.SharedFfn, "mlp.shared_experts.up_proj.weight"),
        T(Names.FfnDownShexp, TensorShape.SharedDown, "mlp.shared_experts.down_proj.weight"),
    ];

    /// <summary>Every architecture the engine runs. A family added here is runnable (and listed as such in the catalog).</summary>
    public static readonly IReadOnlyList<ArchitectureSpec> Supported =
    [
        // Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama: GGUF converters permute Q/K so NORM pairing applies.
        // A llama file with experts (expert_count > 0) is Mixtral: every layer's feed-forward is a softmax top-k MoE with the
        // k weights renormalised (llama.cpp's llama builder), the experts' length feed_forward_length.
        new("llama", "Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama, Mixtral", RopeStyle.Norm, [.. LlamaBlock, .. MoeTensors],
            (f, c) => new Llama.LlamaModel(f, c), ["LlamaForCausalLM", "MistralForCausalLM"], Experts: true, Hf: HfFamilies.Llama)
        {
            ExpertFfn = ExpertFfnRule.Ffn,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.Softmax, NormalizeWeights: true),
        },
        // differs from Llama: biases on Q/K/V; rotary pairs (i, i+d/2) as in the HF checkpoint.
        new("qwen2", "Qwen 2 / 2.5", RopeStyle.Neox, Qwen2Block,
            (f, c) => new Llama.LlamaModel(f, c), ["Qwen2ForCausalLM"]),
        // differs from Llama: QK-norm per head before rotary, head_dim given on its own (attention.key_length), NEOX pairing.
        new("qwen3", "Qwen 3 (dense)", RopeStyle.Neox, Qwen3Block,
            (f, c) => new Qwen3.Qwen3Model(f, c), ["Qwen3ForCausalLM"]),
        // differs from Llama: Qwen 3's attention (QK-norm per head, head_dim of its own); every feed-forward a MoE: softmax
        // top-k (8 of 128) renormalised; experts' length expert_feed_forward_length (else feed_forward_length / k).
        new("qwen3moe", "Qwen 3 MoE (30B-A3B, 235B-A22B)", RopeStyle.Neox, Qwen3MoeBlock,
            (f, c) => new Qwen3.Qwen3MoeModel(f, c), [], Experts: true)
        {
            ExpertFfn = ExpertFfnRule.KeyOrFfnOverUsed,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.Softmax, NormalizeWeights: true),
        },
        // differs from Llama: no rotary embedding on every 4th layer (NoPE). Converters permute Q/K as for Llama: NORM pairing.
        new("smollm3", "SmolLM3", RopeStyle.Norm, LlamaBlock,
            (f, c) => new SmolLM3.SmolLM3Model(f, c), ["SmolLM3ForCausalLM"], Hf: HfFamilies.SmolLM3),
        // differs from Llama: post-norms only (after attention and feed-forward), QK-norm over the whole projection, NEOX pairing.
        new("olmo2", "OLMo 2", RopeStyle.Neox, Olmo2Block,
            (f, c) => new Olmo2.Olmo2Model(f, c), ["Olmo2ForCausalLM"]),
        // differs from Llama: QK-norm over the whole projection (as OLMo 2, but Llama's pre-norms), NEOX pairing; every
        // feed-forward a MoE: softmax top-k (8 of 64) NOT renormalised, experts' length feed_forward_length.
        new("olmoe", "OLMoE", RopeStyle.Neox, OlmoeBlock, (f, c) => new Olmoe.OlmoeModel(f, c), [], Experts: true)
        {
            ExpertFfn = ExpertFfnRule.Ffn,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.Softmax, NormalizeWeights: false),
        },
        // differs from Llama: fused QKV and gate-up tensors, partial rotary (Phi-4-mini), LongRoPE factor tables; NEOX
        // pairing (llama.cpp's LLAMA_ROPE_TYPE_NEOX for phi3).
        new("phi3", "Phi-3 / 3.5 / 4 (mini)", RopeStyle.Neox, Phi3Block,
            (f, c) => new Phi3.Phi3Model(f, c), ["Phi3ForCausalLM"], Hf: HfFamilies.Phi3),
        // differs from Llama: Phi-3's LongRoPE attention (NEOX, factor tables, attn_factor) with separate Q/K/V; biases on
        // Q/K/V/O, the norms (RMS norm + bias, as llama.cpp) and the output head; every feed-forward a MoE: softmax top-2
        // of 16 renormalised (llama.cpp's phi3 graph, MoE branch); the experts' length feed_forward_length.
        new("phimoe", "Phi-3.5-MoE", RopeStyle.Neox, PhiMoeBlock,
            (f, c) => new PhiMoe.PhiMoeModel(f, c), [], Experts: true)
        {
            ExpertFfn = ExpertFfnRule.Ffn,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.Softmax, NormalizeWeights: true),
        },
        // differs from Llama: √dim embeddings, pre and post norms, GeGLU, alternating sliding-window / global layers,
        // attention and final logit soft-caps; rotary pairs (i, i+d/2).
        new("gemma2", "Gemma 2", RopeStyle.Neox, Gemma2Block,
            (f, c) => new Gemma.Gemma2Model(f, c), ["Gemma2ForCausalLM"], NormWeightOffset: 1, Hf: HfFamilies.Gemma2),
        // differs from Llama: as Gemma 2 without soft-caps, plus QK-norm, 5 sliding : 1 global layers with their own
        // rotary base. Gemma3ForConditionalGeneration's text part converts to the same GGUF (the vision tower is not run).
        new("gemma3", "Gemma 3 (text)", RopeStyle.Neox, Gemma3Block,
            (f, c) => new Gemma.Gemma3Model(f, c), ["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"], NormWeightOffset: 1, Hf: HfFamilies.Gemma3),
        // differs from Llama: dense and MoE layers interleaved (interleave_moe_layer_step), sigmoid top-1 on the router's
        // logits with the weight applied to the expert's input, a shared expert as wide as a routed one; NoPE every 4th
        // layer with attention temperature, 8192-chunks and unweighted QK-norm on the others (Llama4Model). The converter
        // does not permute Q/K (its rotary is HF's complex pairs (2i, 2i+1)): NORM pairing. Not read from HF checkpoints.
        new("llama4", "Llama 4 (Scout, Maverick; text)", RopeStyle.Norm, Llama4Block,
            (f, c) => new Llama4.Llama4Model(f, c), [], Experts: true)
        {
            SharedExpertFfnIsExpertFfn = true,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.Sigmoid, NormalizeWeights: false, WeightBeforeFfn: true, SelectOnLogits: true),
        },
        // differs from Llama: biases on Q/K/V/O, attention sinks, a 128-token window on even layers, NEOX pairing with YaRN;
        // every feed-forward a MoE: the top 4 of 32 / 128 raw router logits (+ bias), softmax over those 4 (SOFTMAX_WEIGHT),
        // experts with biases and the clamped SwiGLU; experts' length expert_feed_forward_length (llama.cpp requires it).
        new("gpt-oss", "gpt-oss (20b, 120b)", RopeStyle.Neox, GptOssBlock,
            (f, c) => new GptOss.GptOssModel(f, c), [], Experts: true)
        {
            ExpertFfn = ExpertFfnRule.KeyOrFfn,
            Routing = c => new Common.ExpertRouting(Common.ExpertGating.SoftmaxWeight, NormalizeWeights: false),
        },

        // differs from Llama: multi-head latent attention (a cache of the normed latent and one rotary key per token), NORM
        // pairing on the rotary part, YaRN with DeepSeek's mscale on the attention scale; leading dense layers, then a MoE:
        // softmax (V2) or sigmoid (V3) gating, exp_probs_b added for selection only, group-limited selection, normalised
        // weights × expert_weights_scale, shared experts (expert_shared_count × expert_feed_forward_length wide).
        new("deepseek2", "DeepSeek V2 / V3 / R1, Kimi K2", RopeStyle.Norm, DeepSeek2Block,
            (f, c) => new DeepSeek.DeepSeek2Model(f, c), [], Experts: true)
        {
            LatentAttention = true,
            SharedExpertFfnFromCount = true,
            Routing = c => new Common.ExpertRouting(c.ExpertGatingFunc ?? Common.ExpertGating.Softmax, c.ExpertWeightsNorm ?? false,
                // llama.cpp multiplies by the key's value, 0 when absent (published files all carry it); 1 here
                c.ExpertWeightsScale ?? 1f)
            {
                Groups = c.ExpertGroupCount, GroupsUsed = c.ExpertGroupsUsed,
            },
        },
    ];

    public static ArchitectureSpec Get(string? name)
    {
        if (string.IsNullOrEmpty(name)) throw new InvalidModelFileException("the model file does not name its architecture (general.architecture is missing)");
        return Supported.FirstOrDefault(a => a.Name == name)
            ?? throw new OpenWeightsException($"unsupported architecture '{name}' (supported: {string.Join(", ", Supported.Select(a => a.Name))})");
    }

    /// <summary>The architecture converted from a Hugging Face class ("Qwen2ForCausalLM" -> qwen2), or null.</summary>
    public static ArchitectureSpec? FromHfClass(string hfClass) => Supported.FirstOrDefault(a => a.HfClasses.Contains(hfClass));

    /// <summary>GGUF tensor names (llama.cpp's LLM_TENSOR_NAMES), one place for all of them.</summary>
    public static class Names
    {
        public const string TokenEmbedding = "token_embd.weight";
        public const string OutputNorm = "output_norm.weight";
        public const string Output = "output.weight";
        public const string RopeFreqs = "rope_freqs.weight";
        public const string RopeFactorsLong = "rope_factors_long.weight", RopeFactorsShort = "rope_factors_short.weight";
        public static string Block(int i, string part) => $"blk.{i}.{part}";
        public const string AttnNorm = "attn_norm.weight", AttnQ = "attn_q.weight", AttnK = "attn_k.weight", AttnV = "attn_v.weight", AttnOut = "attn_output.weight";
        public const string AttnQkv = "attn_qkv.weight";
        public const string AttnQBias = "attn_q.bias", AttnKBias = "attn_k.bias", AttnVBias = "attn_v.bias";
        public const string AttnOutBias = "attn_output.bias", AttnSinks = "attn_sinks.weight";
        public const string AttnQNorm = "attn_q_norm.weight", AttnKNorm = "attn_k_norm.weight";
        public const string AttnPostNorm = "post_attention_norm.weight";
        public const string FfnNorm = "ffn_norm.weight", FfnGate = "ffn_gate.weight", FfnUp = "ffn_up.weight", FfnDown = "ffn_down.weight";
        public const string FfnPostNorm = "post_ffw_norm.weight";
        // biases on the norms and the attention output (Phi-3.5-MoE), and on the final norm and the output head
        public const string AttnNormBias = "attn_norm.bias", FfnNormBias = "ffn_norm.bias"; // attn_output.bias: AttnOutBias above
        public const string OutputNormBias = "output_norm.bias", OutputBias = "output.bias";
        // mixture of experts: router (+ bias), 3-D expert tensors (+ per-expert biases), shared expert
        public const string FfnGateInp = "ffn_gate_inp.weight", FfnGateInpBias = "ffn_gate_inp.bias";
        public const string FfnGateExps = "ffn_gate_exps.weight", FfnUpExps = "ffn_up_exps.weight", FfnDownExps = "ffn_down_exps.weight";
        public const string FfnGateExpsBias = "ffn_gate_exps.bias", FfnUpExpsBias = "ffn_up_exps.bias", FfnDownExpsBias = "ffn_down_exps.bias";
        // multi-head latent attention (DeepSeek) and the expert selection bias
        public const string AttnQA = "attn_q_a.weight", AttnQANorm = "attn_q_a_norm.weight", AttnQB = "attn_q_b.weight";
        public const string AttnKvAMqa = "attn_kv_a_mqa.weight", AttnKvANorm = "attn_kv_a_norm.weight";
        public const string AttnKB = "attn_k_b.weight", AttnVB = "attn_v_b.weight", AttnKvB = "attn_kv_b.weight";
        public const string ExpProbsB = "exp_probs_b.bias";
        public const string FfnGateShexp = "ffn_gate_shexp.weight", FfnUpShexp = "ffn_up_shexp.weight", FfnDownShexp = "ffn_down_shexp.weight";
        /// <summary>Old Mixtral GGUFs: one 2-D tensor per expert ("ffn_gate.3.weight"); refused with a message.</summary>
        public static string LegacyExpert(string part, int expert) => $"{part}.{expert}.weight";
    }
}
