using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using N = OpenWeights.Models.Architectures.Names;
using static OpenWeights.Models.Architectures.Names;
using static OpenWeights.Tests.Training.GradCheck;

namespace OpenWeights.Tests.Training;

/// <summary>How a synthetic test family differs from Llama: each of the DecoderModel knobs a real family turns.</summary>
public sealed record Knobs
{
    public int Window { get; init; }                  // sliding window of the even layers (0: none)
    public float AttnSoftcap { get; init; }           // Gemma 2's attention score soft-cap
    public float QueryScale { get; init; }            // 0: 1/√head_dim
    public bool GeGlu { get; init; }
    public float EmbeddingScale { get; init; } = 1f;
    public float FinalSoftcap { get; init; }
    public int QkNorm { get; init; }                  // 0: none, 1: per head (Qwen 3, Gemma 3), 2: whole projection (OLMo 2)
    public bool PostNorms { get; init; }              // post-attention and post-ffn norms (Gemma, OLMo 2)
    public bool NoPreNorms { get; init; }             // no attn_norm / ffn_norm (OLMo 2)
    public bool NoPeLastLayer { get; init; }          // the last layer without rotary (SmolLM3's NoPE layers)
    public bool LocalRope { get; init; }              // even layers rotate by a second table (Gemma 3's local base)
    public bool QkvBias { get; init; }
    public bool Fused { get; init; }                  // Phi-3's fused attn_qkv and gate|up ffn_up

    /// <summary>Knob sets named after the family that turns them.</summary>
    public static Knobs Named(string name) => name switch
    {
        "llama" => new Knobs(),
        "qwen2" => new Knobs { QkvBias = true },
        "gemma2" => new Knobs { Window = 4, AttnSoftcap = 3f, QueryScale = 0.25f, GeGlu = true, EmbeddingScale = MathF.Sqrt(32), FinalSoftcap = 4f, PostNorms = true },
        "gemma3" => new Knobs { Window = 4, QueryScale = 0.3f, GeGlu = true, EmbeddingScale = MathF.Sqrt(32), QkNorm = 1, PostNorms = true, LocalRope = true },
        "qwen3" => new Knobs { QkNorm = 1 },
        "olmo2" => new Knobs { QkNorm = 2, PostNorms = true, NoPreNorms = true },
        "smollm3" => new Knobs { NoPeLastLayer = true },
        "phi3" => new Knobs { Fused = true },
        _ => throw new ArgumentException(name),
    };

    /// <summary>The block's tensors with these knobs (the naming table of the synthetic family).</summary>
    public IReadOnlyList<BlockTensor> Block()
    {
        var b = new List<BlockTensor>();
        void T(string g, TensorShape s, string hf) => b.Add(new BlockTensor(g, s, hf));
        if (!NoPreNorms) T(AttnNorm, TensorShape.Dim, "input_layernorm.weight");
        if (Fused) T(AttnQkv, TensorShape.Qkv, "self_attn.qkv_proj.weight");
        else { T(AttnQ, TensorShape.Q, "self_attn.q_proj.weight"); T(AttnK, TensorShape.Kv, "self_attn.k_proj.weight"); T(AttnV, TensorShape.Kv, "self_attn.v_proj.weight"); }
        if (QkvBias) { T(AttnQBias, TensorShape.QDim, "self_attn.q_proj.bias"); T(AttnKBias, TensorShape.KvDim, "self_attn.k_proj.bias"); T(AttnVBias, TensorShape.KvDim, "self_attn.v_proj.bias"); }
        if (QkNorm == 1) { T(AttnQNorm, TensorShape.HeadDim, "self_attn.q_norm.weight"); T(AttnKNorm, TensorShape.HeadDim, "self_attn.k_norm.weight"); }
        if (QkNorm == 2) { T(AttnQNorm, TensorShape.QDim, "self_attn.q_norm.weight"); T(AttnKNorm, TensorShape.KvDim, "self_attn.k_norm.weight"); }
        T(AttnOut, TensorShape.O, "self_attn.o_proj.weight");
        if (PostNorms) T(Architectures.Names.AttnPostNorm, TensorShape.Dim, "post_attention_layernorm.weight");
        if (!NoPreNorms) T(FfnNorm, TensorShape.Dim, "pre_feedforward_layernorm.weight");
        if (Fused) T(FfnUp, TensorShape.GateUp, "mlp.gate_up_proj.weight");
        else { T(FfnGate, TensorShape.Ffn, "mlp.gate_proj.weight"); T(FfnUp, TensorShape.Ffn, "mlp.up_proj.weight"); }
        T(FfnDown, TensorShape.Down, "mlp.down_proj.weight");
        if (PostNorms) T(Architectures.Names.FfnPostNorm, TensorShape.Dim, "post_feedforward_layernorm.weight");
        return b;
    }
}

/// <summary>
/// A test family: the generic decoder block built from <see cref="Blocks"/> with every DecoderModel knob overridden by
/// <see cref="Knobs"/>. Inference runs its Block; training runs LoraModel's own block from the same knobs, so the two
/// agreeing checks LoraModel's reading of each knob against the shared inference pieces.
/// </summary>
public sealed class KnobModel : DecoderModel
{
    private readonly Knobs k;
    private readonly Rope[] ropes;

    private KnobModel(ITensorSource source, ModelConfig c, Knobs knobs) : base(source, c)
    {
        k = knobs;
        ropes = knobs.LocalRope ? [Rope, new Rope(c.RopeDims, c.RopeStyle, 100f)] : [Rope];
    }

    /// <summary>Writes a tiny model with these knobs' tensors (dim 32, 2 layers, 4 heads / 2 kv heads of 8, ffn 64, vocab 64)
    /// and loads it over <paramref name="file"/> (which the caller disposes).</summary>
    public static KnobModel Create(string path, Knobs knobs, out GgufFile file, int seed = 1, float std = 0.3f)
    {
        Write(path, knobs, seed, std);
        file = GgufFile.Open(path);
        var spec = new ArchitectureSpec("llama", "test family", RopeStyle.Norm, knobs.Block(), (f, c) => new KnobModel(f, c, knobs), []);
        var config = ModelConfig.FromGguf(file) with { Architecture = spec };
        return new KnobModel(file, config, knobs);
    }

    private static void Write(string path, Knobs k, int seed, float std)
    {
        int dim = 32, layers = 2, heads = 4, kvHeads = 2, ffn = 64, vocab = 64, hd = dim / heads;
        var w = new GgufWriter();
        const string a = "llama";
        w.Set("general.architecture", a)
         .Set($"{a}.context_length", 256u).Set($"{a}.embedding_length", (uint)dim).Set($"{a}.block_count", (uint)layers)
         .Set($"{a}.feed_forward_length", (uint)ffn).Set($"{a}.attention.head_count", (uint)heads)
         .Set($"{a}.attention.head_count_kv", (uint)kvHeads).Set($"{a}.attention.layer_norm_rms_epsilon", 1e-5f)
         .Set($"{a}.rope.freq_base", 10000f).Set($"{a}.rope.dimension_count", (uint)hd).Set($"{a}.vocab_size", (uint)vocab);
        int s = seed;
        void Mat(string name, int inF, int outF) => w.AddTensor(name, [inF, outF], Random(inF * outF, s++, std * MathF.Sqrt(3f)));
        void Vec(string name, int n, float center, float spread) => w.AddTensor(name, [n], Random(n, s++, spread).Select(x => center + x).ToArray());
        // Gemma-like embedding scale: smaller embeddings so √dim brings them to the same range
        w.AddTensor(N.TokenEmbedding, [dim, vocab], Random(dim * vocab, s++, std * MathF.Sqrt(3f) / k.EmbeddingScale));
        for (int l = 0; l < layers; l++)
        {
            if (!k.NoPreNorms) Vec(N.Block(l, AttnNorm), dim, 1f, 0.2f);
            if (k.Fused) Mat(N.Block(l, AttnQkv), dim, (heads + 2 * kvHeads) * hd);
            else { Mat(N.Block(l, AttnQ), dim, heads * hd); Mat(N.Block(l, AttnK), dim, kvHeads * hd); Mat(N.Block(l, AttnV), dim, kvHeads * hd); }
            if (k.QkvBias) { Vec(N.Block(l, AttnQBias), heads * hd, 0, 0.2f); Vec(N.Block(l, AttnKBias), kvHeads * hd, 0, 0.2f); Vec(N.Block(l, AttnVBias), kvHeads * hd, 0, 0.2f); }
            if (k.QkNorm == 1) { Vec(N.Block(l, AttnQNorm), hd, 1f, 0.3f); Vec(N.Block(l, AttnKNorm), hd, 1f, 0.3f); }
            if (k.QkNorm == 2) { Vec(N.Block(l, AttnQNorm), heads * hd, 1f, 0.3f); Vec(N.Block(l, AttnKNorm), kvHeads * hd, 1f, 0.3f); }
            Mat(N.Block(l, AttnOut), heads * hd, dim);
            if (k.PostNorms) Vec(N.Block(l, Architectures.Names.AttnPostNorm), dim, 1f, 0.3f);
            if (!k.NoPreNorms) Vec(N.Block(l, FfnNorm), dim, 1f, 0.2f);
            if (k.Fused) Mat(N.Block(l, FfnUp), dim, 2 * ffn);
            else { Mat(N.Block(l, FfnGate), dim, ffn); Mat(N.Block(l, FfnUp), dim, ffn); }
            Mat(N.Block(l, FfnDown), ffn, dim);
            if (k.PostNorms) Vec(N.Block(l, Architectures.Names.FfnPostNorm), dim, 1f, 0.3f);
        }
        Vec(N.OutputNorm, dim, 1f, 0.2f);
        Mat(N.Output, dim, vocab);
        w.Write(path);
    }

    public override IReadOnlyList<Rope> Ropes(int context) => ropes;

    public override LayerAttention AttentionOf(int layer)
    {
        bool local = layer % 2 == 0;
        int rope = k.NoPeLastLayer && layer == Config.Layers - 1 ? -1 : k.LocalRope && local ? 1 : 0;
        float scale = k.QueryScale > 0 ? k.QueryScale : 1f / MathF.Sqrt(Config.HeadDim);
        return new LayerAttention(rope, new AttentionParams(scale, local ? k.Window : 0, k.AttnSoftcap));
    }

    public override Activation FeedForwardActivation => k.GeGlu ? Activation.GeluTanh : Activation.SiLU;
    public override float EmbeddingScale => k.EmbeddingScale;
    public override float FinalLogitSoftcap => k.FinalSoftcap;

    /// <summary>
    /// GeGLU with GELU by its tanh formula (<see cref="Ops.GeluTanh"/>), not the F16 table of Blocks.FeedForward: a gate
    /// input that differs by float rounding between two GEMM kernels may cross an F16 rounding boundary of the table (a
    /// 2^-11 step), which would hide the 1e-6 agreement these tests check; LoraModel runs with GeluFormula here.
    /// </summary>
    private static void GeGluByFormula(DecoderLayer L, RunState s, ModelConfig c, int n, int threads)
    {
        L.WGate!.Forward(s.Xb, s.Hb, n, threads);
        L.WUp!.Forward(s.Xb, s.Hb2, n, threads);
        for (int i = 0; i < n * c.FfnDim; i++) s.Hb[i] = Ops.GeluTanh(s.Hb[i]) * s.Hb2[i];
        L.WDown!.Forward(s.Hb, s.Xb, n, threads);
    }

    protected override void Block(int l, RunState s, int n, int threads)
    {
        var c = Config; var L = Layers[l]; var a = AttentionOf(l); int nd = n * c.Dim;
        if (L.AttnNorm is { } an) Blocks.RmsNorm(s.X, an, s.Xb, n, c.RmsEps); else s.X.AsSpan(0, nd).CopyTo(s.Xb);
        Blocks.SelfAttention(L, l, s, c, n, threads, a, RopeOf(a, s.Context));
        if (L.AttnPostNorm is { } pa) Blocks.RmsNorm(s.Xb, pa, s.Xb, n, c.RmsEps);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
        if (L.FfnNorm is { } fn) Blocks.RmsNorm(s.X, fn, s.Xb, n, c.RmsEps); else s.X.AsSpan(0, nd).CopyTo(s.Xb);
        if (k.GeGlu) GeGluByFormula(L, s, c, n, threads);
        else Blocks.FeedForward(L, s, c, n, threads, FeedForwardActivation);
        if (L.FfnPostNorm is { } pf) Blocks.RmsNorm(s.Xb, pf, s.Xb, n, c.RmsEps);
        Blocks.AddResidual(s.X, s.Xb, n, c.Dim);
    }
}
