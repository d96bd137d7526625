using System.Numerics.Tensors;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using static OpenWeights.Models.Architectures.Names;
using OpenWeights.Tensors.Kernels;

namespace OpenWeights.Training;

/// <summary>LoRA hyper-parameters (PEFT's LoraConfig).</summary>
public sealed record LoraOptions
{
    public int Rank { get; init; } = 8;
    public float Alpha { get; init; } = 16;
    public float Dropout { get; init; }
    public bool UseRsLora { get; init; }
    public IReadOnlyList<string> Targets { get; init; } = LoraTargets.Default;
    public float Scale => UseRsLora ? Alpha / MathF.Sqrt(Rank) : Alpha / Rank;
}

/// <summary>A seeded, serialisable random stream (SplitMix64): its whole state is one ulong.</summary>
public sealed class TrainRng(ulong state)
{
    public ulong State { get; set; } = state;
    public ulong NextU64() { State += 0x9E3779B97F4A7C15UL; return TrainableLoraLinear.SplitMix(State - 0x9E3779B97F4A7C15UL); }
    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));
    public int NextInt(int n) => (int)(NextDouble() * n);
}

/// <summary>
/// The decoder of a loaded <see cref="DecoderModel"/> of any dense family, with LoRA on chosen projections, run forward
/// and backward for training. The block is the one every family is, read from the model's knobs (FAMILY.md):
///   xa = attn_norm(x) (when the family has one) -> q, k, v = Wq·xa, Wk·xa, Wv·xa (+ biases) -> QK-norm (per head or the
///   whole projection) -> rotary by the layer's table (none: NoPE) -> attention (scale, sliding window, soft-cap) -> Wo
///   -> post-attention norm (Gemma, OLMo 2) -> h = x + ...; xf = ffn_norm(h) -> act(Wgate·xf)·(Wup·xf) (SiLU or tanh-GELU)
///   -> Wdown -> post-ffn norm -> x_out = h + ...;
/// embeddings × EmbeddingScale, final logits soft-capped. The base weights are the model's own (memory-mapped, stored
/// type, frozen); only LoRA A and B are trained. Activation checkpointing: the forward keeps each layer's input residual
/// (layers+1, n, dim) and the backward recomputes one layer at a time, so memory is O(layers·n·dim + one layer's activations).
/// </summary>
public sealed class LoraModel
{
    public DecoderModel Model { get; }
    public ModelConfig Config => Model.Config;
    public LoraOptions Options { get; }
    public LoraAdapter Adapter { get; }
    /// <summary>(layers, 7): q, k, v, o, gate, up, down (indexed by Proj); gate, up and down are null in a mixture-of-experts
    /// layer (its experts and router stay frozen: <see cref="ExpertFeedForward"/>).</summary>
    public TrainableLoraLinear?[][] Projections { get; }

    /// <summary>The slot of each projection in a layer's row of <see cref="Projections"/>.</summary>
    public static class Proj
    {
        public const int Q = 0, K = 1, V = 2, O = 3, Gate = 4, Up = 5, Down = 6;
    }
    /// <summary>Per layer, the fused projections adapted as one (Phi-3's qkv_proj and gate_up_proj, as PEFT and llama.cpp
    /// adapt them): they replace slots q, k, v (gate, up) in the forward; null where not targeted.</summary>
    public TrainableLoraLinear?[] FusedQkv { get; }
    public TrainableLoraLinear?[] FusedGateUp { get; }
    /// <summary>Trainable modules in a fixed order (layer, then q..down): the parameter order of the optimiser.</summary>
    public IReadOnlyList<TrainableLoraLinear> Trainable { get; }
    public bool Checkpointing { get; set; } = true;
    public int Threads { get; set; } = Environment.ProcessorCount;
    /// <summary>The context the rotary tables are chosen for (<see cref="DecoderModel.Ropes"/>; a family with
    /// context-dependent rotary scaling, Phi-3's LongRoPE, picks its factors by it). 0 (default): each sequence's own
    /// length, as Hugging Face picks LongRoPE's factors per forward; set it to the context the adapter will run at.</summary>
    public int Context { get; set; }
    /// <summary>GeGLU families: evaluate GELU by its tanh formula instead of the inference kernel's F16 table (the backward
    /// is the formula's derivative either way; the table keeps the logits equal to inference and llama.cpp, within F16
    /// rounding of the formula). Finite-difference checks set it.</summary>
    public bool GeluFormula { get; set; }

    /// <summary>A hash of every MoE layer's choice of experts in the forward passes since <see cref="Step"/> or
    /// <see cref="LastLogits"/> began (tests: a finite-difference step that changes the routing is not a derivative).</summary>
    internal ulong RoutingSignature { get; private set; }

    /// <summary>The GGUF part of each of the 7 projection slots, in slot order.</summary>
    private static readonly string[] Slots = [AttnQ, AttnK, AttnV, AttnOut, FfnGate, FfnUp, FfnDown];

    public LoraModel(DecoderModel model, LoraOptions options, ulong seed, LoraAdapter? existing = null)
    {
        Model = model; Options = options;
        var c = model.Config;
        if (c.Mla is not null) throw new OpenWeightsException($"LoRA training of {c.Architecture.Name} models (multi-head latent attention) is not supported yet");
        var adapted = LoraTargets.Resolve(c.Architecture, options.Targets); // PEFT name -> GGUF part; refuses what training cannot adapt
        if (options.Rank <= 0) throw new OpenWeightsException($"LoRA rank must be positive (got {options.Rank})");
        if (options.Dropout is < 0 or >= 1) throw new OpenWeightsException($"LoRA dropout must be in [0, 1) (got {options.Dropout})");
        Adapter = existing ?? new LoraAdapter { Alpha = options.Alpha, Rank = options.Rank, UseRsLora = options.UseRsLora, TargetModules = [.. options.Targets] };
        var rng = new TrainRng(seed);
        var trainable = new List<TrainableLoraLinear>();
        Projections = new TrainableLoraLinear?[c.Layers][];
        RefuseExpertTargets(model, adapted);
        FusedQkv = new TrainableLoraLinear?[c.Layers]; FusedGateUp = new TrainableLoraLinear?[c.Layers];
        bool fusedQkv = adapted.Contains(AttnQkv), fusedGateUp = adapted.Contains(FfnUp) && LoraTargets.IsFused(c.Architecture, "gate_up_proj");
        if (fusedQkv && !model.Source.TryGetTensor(Block(0, AttnQkv), out _))
            throw new OpenWeightsException($"LoRA on qkv_proj needs the fused {Block(0, AttnQkv)}; this {c.Architecture.Name} file stores Q, K and V apart (target o_proj, gate_up_proj, down_proj)");
        LoraWeights Weights(string name, Linear b)
        {
            if (!Adapter.Weights.TryGetValue(name, out var w))
            {
                w = new LoraWeights { Target = name, Rank = options.Rank, In = b.In, Out = b.Out, A = new float[options.Rank * b.In], B = new float[b.Out * options.Rank] };
                // PEFT: kaiming_uniform_(A, a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)); B = 0.
                float bound = 1f / MathF.Sqrt(w.In);
                for (int i = 0; i < w.A.Length; i++) w.A[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
                Adapter.Weights[name] = w;
            }
            w.Validate();
            return w;
        }
        for (int l = 0; l < c.Layers; l++)
        {
            var L = model.Layers[l];
            var bases = new[] { L.Wq, L.Wk, L.Wv, L.Wo, L.WGate, L.WUp, L.WDown };
            Projections[l] = new TrainableLoraLinear?[7];
            for (int p = 0; p < 7; p++)
            {
                // a MoE layer has no dense feed-forward: its slots stay empty (llama4 adapts the dense layers' only)
                if (bases[p] is not { } baseLinear) continue;
                if (p == 0 && fusedQkv)
                {
                    // differs from Llama (Phi-3): one LoRA over the fused Q | K | V tensor
                    var qkv = Linear.Load(model.Source, Block(l, AttnQkv), c.Dim, c.QDim + 2 * c.KvDim);
                    trainable.Add(FusedQkv[l] = new TrainableLoraLinear(qkv, Weights(Block(l, AttnQkv), qkv), options.Scale, options.Dropout, (ulong)(l * 7 + 1)));
                }
                if (p == 4 && fusedGateUp)
                {
                    // differs from Llama (Phi-3): one LoRA over the fused gate | up tensor (ffn_up, (2*ffn, dim))
                    var gateUp = Linear.Load(model.Source, Block(l, FfnUp), c.Dim, 2 * c.FfnDim);
                    trainable.Add(FusedGateUp[l] = new TrainableLoraLinear(gateUp, Weights(Block(l, FfnUp), gateUp), options.Scale, options.Dropout, (ulong)(l * 7 + 5)));
                }
                bool fused = p < 3 && fusedQkv || p is 4 or 5 && fusedGateUp;
                var w = !fused && adapted.Contains(Slots[p]) ? Weights(Block(l, Slots[p]), baseLinear) : null;
                var module = new TrainableLoraLinear(baseLinear, w, options.Scale, options.Dropout, (ulong)(l * 7 + p + 1));
                Projections[l][p] = module;
                if (w is not null) trainable.Add(module);
            }
        }
        Trainable = trainable;
        bool unitQkNorm = Enumerable.Range(0, c.Layers).Any(l => model.AttentionOf(l).QkNormAfterRope);
        if (unitQkNorm && model.Layers.Any(L => L.QNorm is not null || L.KNorm is not null))
            throw new OpenWeightsException($"LoRA training on {c.Architecture.Name} models is not supported: a QK-norm both before and after the rotary embedding");
        parts = new Parts(unitQkNorm || model.Layers.Any(L => L.QNorm is not null || L.KNorm is not null), model.Layers.Any(L => L.AttnPostNorm is not null && !model.PostAttentionNormIsFfnNorm),
            model.Layers.Any(L => L.FfnPostNorm is not null), fusedQkv || fusedGateUp, model.Layers.Any(L => L.Experts is not null));
        if (parts.Moe && !ExpertFeedForward.Supports(model.FeedForwardActivation))
            throw new OpenWeightsException($"LoRA training on {c.Architecture.Name} models is not supported: their experts' {model.FeedForwardActivation} activation has no backward here");
    }

    /// <summary>
    /// Mixture-of-experts models: LoRA adapts the attention (and the dense feed-forward of the layers that have one, Llama 4's);
    /// the experts, router and shared expert stay frozen. A feed-forward target on a model whose every layer is a MoE layer
    /// would adapt nothing: it is refused naming the target.
    /// </summary>
    private static void RefuseExpertTargets(DecoderModel model, IReadOnlySet<string> adapted)
    {
        if (!model.Layers.Any(L => L.Experts is not null) || model.Layers.Any(L => L.WGate is not null)) return;
        string[] ffn = [FfnGate, FfnUp, FfnDown];
        var spec = model.Config.Architecture;
        foreach (var t in LoraTargets.Of(spec).Where(t => ffn.Contains(t.Gguf + ".weight") && adapted.Contains(t.Gguf + ".weight")))
            throw new OpenWeightsException($"LoRA target '{t.Peft}' is a dense feed-forward projection, and every layer of this {spec.Name} model is a mixture of experts: LoRA on experts is not supported (targets: {string.Join(", ", LoraTargets.DefaultFor(model.Config))})");
    }

    public long ParameterCount => Trainable.Sum(m => (long)m.Lora!.A.Length + m.Lora.B.Length);

    public void ZeroGrad()
    {
        foreach (var m in Trainable) { Array.Clear(m.GradA!); Array.Clear(m.GradB!); }
    }

    /// <summary>Activations of one layer, recomputed in backward under checkpointing.</summary>
    private sealed class LayerActs
    {
        public float[] Xn1 = [], Rstd1 = [], QPre = [], QRstd = [], KPre = [], KRstd = [], Q = [], K = [], V = [], Att = [], Lse = [],
            O = [], RstdO = [], H = [], Xn2 = [], Rstd2 = [], G = [], U = [], Hh = [], F = [], RstdF = [], Fused = [];
        /// <summary>The MoE feed-forward's activations (a MoE layer's router choice, expert activations).</summary>
        public readonly ExpertFeedForward Moe = new();
        /// <summary>Sizes the buffers for n tokens; those of parts the model lacks (QK-norm, post-norms, fused) stay empty.</summary>
        public void Ensure(ModelConfig c, int n, Parts p)
        {
            if (Rstd1.Length >= n) return;
            int qk = p.QkNorm ? n : 0, ao = p.AttnPostNorm ? n : 0, fo = p.FfnPostNorm ? n : 0, fu = p.Fused ? n : 0;
            Xn1 = new float[n * c.Dim]; Rstd1 = new float[n];                                   // (n, dim) attention input, (n)
            QPre = new float[qk * c.QDim]; QRstd = new float[qk * c.Heads];                     // q before QK-norm; rstd per head (or per row)
            KPre = new float[qk * c.KvDim]; KRstd = new float[qk * c.KvHeads];
            Q = new float[n * c.QDim]; K = new float[n * c.KvDim]; V = new float[n * c.KvDim];  // after norm and rotary
            Att = new float[n * c.QDim]; Lse = new float[n * c.Heads];
            O = new float[ao * c.Dim]; RstdO = new float[ao];                                   // Wo·att before the post-norm
            H = new float[n * c.Dim]; Xn2 = new float[n * c.Dim]; Rstd2 = new float[n];         // h = x + attention; ffn input
            G = new float[n * c.FfnDim]; U = new float[n * c.FfnDim]; Hh = new float[n * c.FfnDim];
            F = new float[fo * c.Dim]; RstdF = new float[fo];                                   // Wdown·hh before the post-norm
            Fused = new float[fu * Math.Max(c.QDim + 2 * c.KvDim, 2 * c.FfnDim)];               // fused qkv or gate|up output (Phi-3)
        }
    }

    /// <summary>Gradient scratch of one layer's backward, sized for the longest sequence seen (rows beyond n are ignored).</summary>
    private sealed class LayerGrads(ModelConfig c, int n, Parts p)
    {
        public readonly int N = n;
        public readonly float[] Dh = new float[n * c.Dim], Dhh = new float[n * c.FfnDim], Dg = new float[n * c.FfnDim], Du = new float[n * c.FfnDim],
            Dxn = new float[n * c.Dim], Datt = new float[n * c.QDim], Dq = new float[n * c.QDim], Dk = new float[n * c.KvDim], Dv = new float[n * c.KvDim],
            DqPre = new float[(p.QkNorm ? n : 0) * c.QDim], DkPre = new float[(p.QkNorm ? n : 0) * c.KvDim],
            Do = new float[(p.AttnPostNorm ? n : 0) * c.Dim], Df = new float[(p.FfnPostNorm ? n : 0) * c.Dim],
            DFused = new float[(p.Fused ? n : 0) * Math.Max(c.QDim + 2 * c.KvDim, 2 * c.FfnDim)];
    }

    /// <summary>Which optional parts some layer has: their activation and gradient buffers exist only then.</summary>
    private readonly record struct Parts(bool QkNorm, bool AttnPostNorm, bool FfnPostNorm, bool Fused, bool Moe);
    private readonly Parts parts;

    private LayerGrads grads = null!;
    private float[] headDx = [], headXn = [], headRstd = [], headLogits = [], headDxn = [], headCapped = [];
    private static float[] Reuse(ref float[] b, int n, bool clear = false)
    {
        if (b.Length < n) b = new float[n];
        else if (clear) Array.Clear(b, 0, n);
        return b;
    }
    private LayerActs[] acts = [];
    private float[][] resid = [];           // (layers+1) x (n, dim): input of each layer, then the final hidden state
    private IReadOnlyList<Rope> ropes = []; // the model's rotary tables (index = LayerAttention.Rope)
    private float[][] cos = [], sin = [];   // (ropes) x (n, rope.Dims/2)

    /// <summary>The weight of an unweighted QK-norm (Llama 4's L2 norm): head_dim ones.</summary>
    private float[] UnitNorm => unitNorm ??= Enumerable.Repeat(1f, Config.HeadDim).ToArray();
    private float[]? unitNorm;

    /// <summary>Multiplies each token's query row by the attention temperature of its document position (t − start[t]),
    /// as inference multiplies by that of its sequence position; the same factor scales the gradient in backward.</summary>
    private void ScaleByTemperature(float[] q, QueryTemperature temp, int n, ReadOnlySpan<int> start)
    {
        int w = Config.QDim;
        for (int t = 0; t < n; t++)
        {
            float f = temp.Factor(t - start[t]);
            if (f != 1f) TensorPrimitives.Multiply(q.AsSpan(t * w, w), f, q.AsSpan(t * w, w));
        }
    }

    private static ulong LayerSeed(ulong seed, int l) => seed == 0 ? 0 : TrainableLoraLinear.SplitMix(seed + (ulong)l) | 1;

    private void Prepare(int n, ReadOnlySpan<int> start)
    {
        var c = Config;
        if (resid.Length != c.Layers + 1 || resid[0].Length < n * c.Dim) resid = Enumerable.Range(0, c.Layers + 1).Select(_ => new float[n * c.Dim]).ToArray();
        int nActs = Checkpointing ? 1 : c.Layers;
        if (acts.Length != nActs) acts = Enumerable.Range(0, nActs).Select(_ => new LayerActs()).ToArray();
        foreach (var a in acts) a.Ensure(c, n, parts);
        ropes = Model.Ropes(Context > 0 ? Context : n);
        if (cos.Length != ropes.Count) { cos = new float[ropes.Count][]; sin = new float[ropes.Count][]; }
        for (int r = 0; r < ropes.Count; r++)
        {
            int half = ropes[r].Dims / 2;
            if (cos[r] is null || cos[r].Length < n * half) { cos[r] = new float[n * half]; sin[r] = new float[n * half]; }
            for (int t = 0; t < n; t++) ropes[r].Angles(t - start[t], cos[r].AsSpan(t * half, half), sin[r].AsSpan(t * half, half));
        }
    }

    /// <summary>x = E[tokens] · EmbeddingScale (Gemma: √dim), as the inference forward scales it.</summary>
    private void Embed(ReadOnlySpan<int> tokens, float[] x)
    {
        TrainOps.EmbeddingForward(Model.TokenEmbedding, tokens, x);
        float s = Model.EmbeddingScale;
        if (s != 1f) TensorPrimitives.Multiply(x.AsSpan(0, tokens.Length * Config.Dim), s, x.AsSpan(0, tokens.Length * Config.Dim));
    }

    /// <summary>
    /// One transformer block forward: h = x_in + post_attn_norm(Wo·attention(rope(qknorm(W{q,k,v}·attn_norm(x_in)))));
    /// x_out = h + post_ffn_norm(Wdown·(act(Wgate·ffn_norm(h)) ⊙ Wup·ffn_norm(h))). A norm the family lacks is the identity.
    /// </summary>
    private void LayerForward(int l, float[] xin, float[] xout, LayerActs a, int n, ReadOnlySpan<int> start, ulong seed)
    {
        var c = Config; var L = Model.Layers[l]; var P = Projections[l]; int th = Threads, dim = c.Dim, nd = n * dim;
        var at = Model.AttentionOf(l);
        ulong s = LayerSeed(seed, l);
        if (L.AttnNorm is { } an) TrainOps.RmsNormForward(xin, an, a.Xn1, a.Rstd1, n, dim, c.RmsEps); // xn1 = rmsnorm(x_in)
        else xin.AsSpan(0, nd).CopyTo(a.Xn1);                                                        // xn1 = x_in (OLMo 2)
        if (L.AttnNormBias is { } anb) Blocks.AddRows(a.Xn1, anb, n);                               // xn1 += b (Phi-3.5-MoE)
        var qOut = L.QNorm is null ? a.Q : a.QPre; var kOut = L.KNorm is null ? a.K : a.KPre;
        if (FusedQkv[l] is { } qkv)
        {
            qkv.Forward(a.Xn1, a.Fused, n, th, s);                                            // q|k|v = Wqkv·xn1 (Phi-3)
            Unfuse(a.Fused, n, qOut, c.QDim, kOut, c.KvDim, a.V, c.KvDim);
        }
        else
        {
            P[Proj.Q]!.Forward(a.Xn1, qOut, n, th, s);                                              // q = Wq·xn1
            P[Proj.K]!.Forward(a.Xn1, kOut, n, th, s);                                              // k = Wk·xn1
            P[Proj.V]!.Forward(a.Xn1, a.V, n, th, s);                                               // v = Wv·xn1
        }
        if (L.QNorm is { } qn) TrainOps.QkNormForward(a.QPre, qn, a.Q, a.QRstd, n, c.QDim, c.RmsEps);   // q = qknorm(q)
        if (L.KNorm is { } kn) TrainOps.QkNormForward(a.KPre, kn, a.K, a.KRstd, n, c.KvDim, c.RmsEps);  // k = knorm(k)
        if (at.Rope >= 0)
        {
            var rope = ropes[at.Rope];
            TrainOps.RopeForward(rope, a.Q, n, c.Heads, c.HeadDim, cos[at.Rope], sin[at.Rope]);      // q = rope(q)
            TrainOps.RopeForward(rope, a.K, n, c.KvHeads, c.HeadDim, cos[at.Rope], sin[at.Rope]);    // k = rope(k)
        }
        if (at.QkNormAfterRope)
        {
            // Llama 4: q = q / rms(q), k = k / rms(k) per head after the rotary embedding (no weight); pre-norm values kept
            a.Q.AsSpan(0, n * c.QDim).CopyTo(a.QPre); a.K.AsSpan(0, n * c.KvDim).CopyTo(a.KPre);
            TrainOps.QkNormForward(a.QPre, UnitNorm, a.Q, a.QRstd, n, c.QDim, c.RmsEps);
            TrainOps.QkNormForward(a.KPre, UnitNorm, a.K, a.KRstd, n, c.KvDim, c.RmsEps);
        }
        if (at.Temperature is { } temp) ScaleByTemperature(a.Q, temp, n, start);                      // q *= temperature(pos) (Llama 4)
        TrainOps.AttentionForward(a.Q, a.K, a.V, a.Att, a.Lse, start, n, c.Heads, c.KvHeads, c.HeadDim, th, at.Params); // att = softmax(cap(s·qkᵀ))v
        if (AttnPostNormOf(L) is { } apn)
        {
            P[Proj.O]!.Forward(a.Att, a.O, n, th, s);                                                           // o = Wo·att
            TrainOps.PostNormResidualForward(xin, a.O, apn, a.H, a.RstdO, n, dim, c.RmsEps);             // h = x_in + rmsnorm(o)
        }
        else
        {
            P[Proj.O]!.Forward(a.Att, a.H, n, th, s);                                                           // h = Wo·att
            TensorPrimitives.Add(a.H.AsSpan(0, nd), xin.AsSpan(0, nd), a.H.AsSpan(0, nd));                // h += x_in
        }
        if (FfnNormOf(L) is { } fn) TrainOps.RmsNormForward(a.H, fn, a.Xn2, a.Rstd2, n, dim, c.RmsEps);     // xn2 = rmsnorm(h)
        else a.H.AsSpan(0, nd).CopyTo(a.Xn2);                                                             // xn2 = h (OLMo 2)
        if (L.FfnNormBias is { } fnb) Blocks.AddRows(a.Xn2, fnb, n);                                     // xn2 += b (Phi-3.5-MoE)
        if (L.Experts is { } moe)
        {
            // differs from a dense layer: f = Σ_e w_e·expert_e(xn2), router and experts frozen (ExpertFeedForward)
            a.Moe.GeluFormula = GeluFormula;
            a.Moe.Forward(moe, a.Xn2, L.FfnPostNorm is null ? xout : a.F, n, Model.FeedForwardActivation, th);
            foreach (int id in a.Moe.Ids) RoutingSignature = (RoutingSignature ^ (ulong)(id + 1)) * 1099511628211UL;
            if (L.FfnPostNorm is { } mpn) TrainOps.PostNormResidualForward(a.H, a.F, mpn, xout, a.RstdF, n, dim, c.RmsEps); // x_out = h + rmsnorm(f)
            else TensorPrimitives.Add(xout.AsSpan(0, nd), a.H.AsSpan(0, nd), xout.AsSpan(0, nd));    // x_out = f + h
            return;
        }
        if (FusedGateUp[l] is { } gu)
        {
            gu.Forward(a.Xn2, a.Fused, n, th, s);                                             // g|u = Wgate_up·xn2 (Phi-3)
            Unfuse(a.Fused, n, a.G, c.FfnDim, a.U, c.FfnDim);
        }
        else
        {
            P[Proj.Gate]!.Forward(a.Xn2, a.G, n, th, s);                                               // g = Wgate·xn2
            P[Proj.Up]!.Forward(a.Xn2, a.U, n, th, s);                                               // u = Wup·xn2
        }
        var gs = a.G.AsSpan(0, n * c.FfnDim); var us = a.U.AsSpan(0, n * c.FfnDim);
        if (Model.FeedForwardActivation == Activation.SiLU) TrainOps.SwiGluForward(gs, us, a.Hh);        // hh = silu(g)·u
        else if (Model.FeedForwardActivation == Activation.GeluTanh) TrainOps.GeGluForward(gs, us, a.Hh, GeluFormula); // hh = gelu(g)·u (Gemma)
        else TrainOps.SwiGluOaiForward(gs, us, a.Hh);                                                     // gpt-oss's clamped SwiGLU
        if (L.FfnPostNorm is { } fpn)
        {
            P[Proj.Down]!.Forward(a.Hh, a.F, n, th, s);                                                            // f = Wdown·hh
            TrainOps.PostNormResidualForward(a.H, a.F, fpn, xout, a.RstdF, n, dim, c.RmsEps);            // x_out = h + rmsnorm(f)
        }
        else
        {
            P[Proj.Down]!.Forward(a.Hh, xout, n, th, s);                                                           // x_out = Wdown·hh
            TensorPrimitives.Add(xout.AsSpan(0, nd), a.H.AsSpan(0, nd), xout.AsSpan(0, nd));              // x_out += h
        }
    }

    /// <summary>Backward of <see cref="LayerForward"/>: dx holds dx_out on entry and dx_in on return.</summary>
    private void LayerBackward(int l, float[] xin, float[] dx, LayerActs a, int n, ReadOnlySpan<int> start, ulong seed)
    {
        var c = Config; var L = Model.Layers[l]; int th = Threads, dim = c.Dim, nd = n * dim;
        ulong s = LayerSeed(seed, l);
        var g = grads;
        // x_out = h + post(f): dh = dx_out; df = post'(dx_out) (dx_out itself without a post-norm)
        var dh = g.Dh; dx.AsSpan(0, nd).CopyTo(dh);
        var df = dx;
        if (L.FfnPostNorm is { } fpn) { TrainOps.PostNormResidualBackward(dx, a.F, fpn, a.RstdF, g.Df, n, dim); df = g.Df; }
        var dxn = g.Dxn; Array.Clear(dxn);
        if (L.Experts is { } moe)
        {
            // f = moe(xn2): dxn2 through the experts and the router (the choice of experts a constant)
            a.Moe.Backward(moe, df, a.Xn2, dxn, n, Model.FeedForwardActivation, th);
        }
        else FeedForwardBackward(l, a, df, dxn, n, s);
        // xn2 = ffn_norm(h): dh += norm'(dxn2) (dh += dxn2 without a norm)
        if (FfnNormOf(L) is { } fn) TrainOps.RmsNormBackward(dxn, a.H, fn, a.Rstd2, dh, default, n, dim);
        else TensorPrimitives.Add(dh.AsSpan(0, nd), dxn.AsSpan(0, nd), dh.AsSpan(0, nd));
        AttentionBackward(l, xin, dx, a, dh, n, start, s);
    }

    /// <summary>Backward of the dense feed-forward f = Wdown·(act(Wgate·xn2) ⊙ Wup·xn2): dxn accumulates dxn2.</summary>
    private void FeedForwardBackward(int l, LayerActs a, float[] df, float[] dxn, int n, ulong s)
    {
        var P = Projections[l]; int th = Threads, ffn = Config.FfnDim;
        var g = grads;
        // f = Wdown·hh
        var dhh = g.Dhh; Array.Clear(dhh);
        P[Proj.Down]!.Backward(df, a.Hh, dhh, n, th, s);
        // hh = act(g)·u
        var dg = g.Dg; var du = g.Du;
        ExpertFeedForward.ActivateBackward(Model.FeedForwardActivation, dhh.AsSpan(0, n * ffn), a.G.AsSpan(0, n * ffn), a.U.AsSpan(0, n * ffn), dg, du);
        // g = Wgate·xn2, u = Wup·xn2
        if (FusedGateUp[l] is { } gu)
        {
            Fuse(g.DFused, n, dg, ffn, du, ffn);                                              // d(g|u) = dg | du
            gu.Backward(g.DFused, a.Xn2, dxn, n, th, s);
        }
        else
        {
            P[Proj.Gate]!.Backward(dg, a.Xn2, dxn, n, th, s);
            P[Proj.Up]!.Backward(du, a.Xn2, dxn, n, th, s);
        }
    }

    /// <summary>Backward of the attention half, h = x_in + post(Wo·attention(W{q,k,v}·attn_norm(x_in))): dh (dh on entry) ->
    /// dx (dx_in on return).</summary>
    private void AttentionBackward(int l, float[] xin, float[] dx, LayerActs a, float[] dh, int n, ReadOnlySpan<int> start, ulong s)
    {
        var c = Config; var L = Model.Layers[l]; var P = Projections[l]; int th = Threads, dim = c.Dim, nd = n * dim;
        var at = Model.AttentionOf(l);
        var g = grads;
        var dxn = g.Dxn;
        // h = x_in + post(o): do = post'(dh) (dh itself without a post-norm)
        var dO = dh;
        if (AttnPostNormOf(L) is { } apn) { TrainOps.PostNormResidualBackward(dh, a.O, apn, a.RstdO, g.Do, n, dim); dO = g.Do; }
        // o = Wo·att
        var datt = g.Datt; Array.Clear(datt);
        P[Proj.O]!.Backward(dO, a.Att, datt, n, th, s);
        // att = attention(q, k, v) with the layer's scale, window and soft-cap
        var dq = g.Dq; var dk = g.Dk; var dv = g.Dv;
        TrainOps.AttentionBackward(datt, a.Q, a.K, a.V, a.Lse, start, dq, dk, dv, n, c.Heads, c.KvHeads, c.HeadDim, th, at.Params);
        // q *= temperature(pos): dq *= temperature(pos)
        if (at.Temperature is { } temp) ScaleByTemperature(dq, temp, n, start);
        // q = q_rot / rms(q_rot), k likewise (Llama 4)
        if (at.QkNormAfterRope)
        {
            Array.Clear(g.DqPre); TrainOps.QkNormBackward(dq, a.QPre, UnitNorm, a.QRstd, g.DqPre, n, c.QDim); g.DqPre.AsSpan(0, n * c.QDim).CopyTo(dq);
            Array.Clear(g.DkPre); TrainOps.QkNormBackward(dk, a.KPre, UnitNorm, a.KRstd, g.DkPre, n, c.KvDim); g.DkPre.AsSpan(0, n * c.KvDim).CopyTo(dk);
        }
        // q = rope(q), k = rope(k)
        if (at.Rope >= 0)
        {
            var rope = ropes[at.Rope];
            TrainOps.RopeBackward(rope, dq, n, c.Heads, c.HeadDim, cos[at.Rope], sin[at.Rope]);
            TrainOps.RopeBackward(rope, dk, n, c.KvHeads, c.HeadDim, cos[at.Rope], sin[at.Rope]);
        }
        // q = qknorm(q_pre), k = knorm(k_pre)
        if (L.QNorm is { } qn) { Array.Clear(g.DqPre); TrainOps.QkNormBackward(dq, a.QPre, qn, a.QRstd, g.DqPre, n, c.QDim); dq = g.DqPre; }
        if (L.KNorm is { } kn) { Array.Clear(g.DkPre); TrainOps.QkNormBackward(dk, a.KPre, kn, a.KRstd, g.DkPre, n, c.KvDim); dk = g.DkPre; }
        // q, k, v = W·xn1
        Array.Clear(dxn);
        if (FusedQkv[l] is { } qkv)
        {
            Fuse(g.DFused, n, dq, c.QDim, dk, c.KvDim, dv, c.KvDim);                          // d(q|k|v) = dq | dk | dv
            qkv.Backward(g.DFused, a.Xn1, dxn, n, th, s);
        }
        else
        {
            P[Proj.Q]!.Backward(dq, a.Xn1, dxn, n, th, s);
            P[Proj.K]!.Backward(dk, a.Xn1, dxn, n, th, s);
            P[Proj.V]!.Backward(dv, a.Xn1, dxn, n, th, s);
        }
        // xn1 = attn_norm(x_in); dx_in = dh + norm'(dxn1) (dh + dxn1 without a norm)
        dh.AsSpan(0, nd).CopyTo(dx);
        if (L.AttnNorm is { } an) TrainOps.RmsNormBackward(dxn, xin, an, a.Rstd1, dx, default, n, dim);
        else TensorPrimitives.Add(dx.AsSpan(0, nd), dxn.AsSpan(0, nd), dx.AsSpan(0, nd));
    }

    /// <summary>The norm on the attention output before the residual add (Gemma, OLMo 2); null when the family has none or
    /// its post_attention_norm is the feed-forward's pre-norm (gpt-oss).</summary>
    private float[]? AttnPostNormOf(DecoderLayer L) => Model.PostAttentionNormIsFfnNorm ? null : L.AttnPostNorm;

    /// <summary>The feed-forward's pre-norm: ffn_norm, or gpt-oss's post_attention_norm.</summary>
    private float[]? FfnNormOf(DecoderLayer L) => L.FfnNorm ?? (Model.PostAttentionNormIsFfnNorm ? L.AttnPostNorm : null);

    /// <summary>Splits each row of a fused output (n, w0 + w1 [+ w2]) into its parts: (n, w0), (n, w1) [, (n, w2)].</summary>
    private static void Unfuse(float[] fused, int n, float[] p0, int w0, float[] p1, int w1, float[]? p2 = null, int w2 = 0)
    {
        int w = w0 + w1 + w2;
        for (int t = 0; t < n; t++)
        {
            fused.AsSpan(t * w, w0).CopyTo(p0.AsSpan(t * w0, w0));
            fused.AsSpan(t * w + w0, w1).CopyTo(p1.AsSpan(t * w1, w1));
            if (p2 is not null) fused.AsSpan(t * w + w0 + w1, w2).CopyTo(p2.AsSpan(t * w2, w2));
        }
    }

    /// <summary>The inverse of <see cref="Unfuse"/>: rows of the parts side by side.</summary>
    private static void Fuse(float[] fused, int n, float[] p0, int w0, float[] p1, int w1, float[]? p2 = null, int w2 = 0)
    {
        int w = w0 + w1 + w2;
        for (int t = 0; t < n; t++)
        {
            p0.AsSpan(t * w0, w0).CopyTo(fused.AsSpan(t * w, w0));
            p1.AsSpan(t * w1, w1).CopyTo(fused.AsSpan(t * w + w0, w1));
            if (p2 is not null) p2.AsSpan(t * w2, w2).CopyTo(fused.AsSpan(t * w + w0 + w1, w2));
        }
    }

    private const int HeadChunk = 64;

    /// <summary>
    /// Forward and backward over one sequence: loss = Σ_t mask[t]·CE(logits[t], targets[t]) · norm; LoRA gradients are
    /// accumulated (call <see cref="ZeroGrad"/> between optimiser steps). tokens, targets, mask, start: (n); start[t] is the
    /// index of the first token of t's document (0 for an unpacked sequence). dropoutSeed 0 = no dropout.
    /// Returns the loss contribution. With backward = false only the loss is computed (validation).
    /// </summary>
    public double Step(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, ReadOnlySpan<bool> mask, ReadOnlySpan<int> start, float norm,
        ulong dropoutSeed, bool backward = true, CancellationToken ct = default)
    {
        var c = Config; int n = tokens.Length, dim = c.Dim, vocab = c.VocabSize;
        if (targets.Length != n || mask.Length != n || start.Length != n) throw new ArgumentException("tokens, targets, mask and start must have equal length");
        for (int t = 0; t < n; t++)
            if ((uint)tokens[t] >= (uint)vocab || (uint)targets[t] >= (uint)vocab || start[t] > t || start[t] < 0) throw new ArgumentException($"bad token, target or start at {t}");
        Prepare(n, start);
        RoutingSignature = 1469598103934665603UL;
        if (backward && (grads is null || grads.N < n)) grads = new LayerGrads(c, n, parts);
        Embed(tokens, resid[0]);                                                                  // x = E[tokens]·scale
        for (int l = 0; l < c.Layers; l++)
        {
            ct.ThrowIfCancellationRequested();
            LayerForward(l, resid[l], resid[l + 1], acts[Checkpointing ? 0 : l], n, start, dropoutSeed);
        }

        // logits = Wout·rmsnorm(x); loss = CE(logits) — in chunks of rows so (n, vocab) never exists at once.
        var xL = resid[c.Layers];
        // head scratch kept between steps (the logits chunk alone is HeadChunk·vocab floats: no large allocation per step)
        var dx = backward ? Reuse(ref headDx, n * dim, clear: true) : [];
        var xn = Reuse(ref headXn, HeadChunk * dim); var rstd = Reuse(ref headRstd, HeadChunk); var logits = Reuse(ref headLogits, HeadChunk * vocab);
        var dxn = Reuse(ref headDxn, HeadChunk * dim);
        float cap = Model.FinalLogitSoftcap;
        var capped = cap > 0 ? Reuse(ref headCapped, HeadChunk * vocab) : [];
        double loss = 0;
        for (int t0 = 0; t0 < n; t0 += HeadChunk)
        {
            int m = Math.Min(HeadChunk, n - t0);
            bool any = false; for (int t = t0; t < t0 + m; t++) any |= mask[t];
            if (!any) continue;
            var xs = xL.AsSpan(t0 * dim, m * dim);
            TrainOps.RmsNormForward(xs, Model.OutputNorm, xn, rstd, m, dim, c.RmsEps);       // xn = rmsnorm(x)
            if (Model.OutputNormBias is { } ob) Blocks.AddRows(xn, ob, m);                  // xn += b (Phi-3.5-MoE; no effect on dx)
            TrainOps.LinearForward(Model.Output.Weight, Model.Output.Bias, xn, logits, m, Threads); // logits = Wout·xn
            if (cap > 0)
            {
                TrainOps.SoftcapForward(logits.AsSpan(0, m * vocab), cap);                    // z = cap·tanh(logits/cap) (Gemma 2)
                logits.AsSpan(0, m * vocab).CopyTo(capped);
            }
            loss += TrainOps.CrossEntropyForwardBackward(logits, targets.Slice(t0, m), mask.Slice(t0, m), m, vocab, norm);
            if (!backward) continue;
            if (cap > 0) TrainOps.SoftcapBackward(logits.AsSpan(0, m * vocab), capped.AsSpan(0, m * vocab), cap, logits); // dlogits = dz·(1 − (z/cap)²)
            Array.Clear(dxn);
            TrainOps.LinearBackwardInput(Model.Output.Weight, logits, dxn, m, Threads);      // dxn = dlogits·Wout
            TrainOps.RmsNormBackward(dxn, xs, Model.OutputNorm, rstd, dx.AsSpan(t0 * dim, m * dim), default, m, dim);
        }
        if (!backward) return loss;

        for (int l = c.Layers - 1; l >= 0; l--)
        {
            ct.ThrowIfCancellationRequested();
            var a = acts[Checkpointing ? 0 : l];
            if (Checkpointing) LayerForward(l, resid[l], resid[l + 1], a, n, start, dropoutSeed);  // recompute this layer's activations
            LayerBackward(l, resid[l], dx, a, n, start, dropoutSeed);
        }
        // x = E[tokens]: the embedding is frozen; dx stops here.
        return loss;
    }

    /// <summary>Logits of the last token after a plain forward over tokens (no cache; for evaluation and tests). Returns (vocab).</summary>
    public float[] LastLogits(ReadOnlySpan<int> tokens)
    {
        var c = Config; int n = tokens.Length, dim = c.Dim;
        var start = new int[n];
        Prepare(n, start);
        RoutingSignature = 1469598103934665603UL;
        Embed(tokens, resid[0]);
        for (int l = 0; l < c.Layers; l++) LayerForward(l, resid[l], resid[l + 1], acts[Checkpointing ? 0 : l], n, start, 0);
        var xn = new float[dim]; var rstd = new float[1]; var logits = new float[c.VocabSize];
        TrainOps.RmsNormForward(resid[c.Layers].AsSpan((n - 1) * dim, dim), Model.OutputNorm, xn, rstd, 1, dim, c.RmsEps);
        if (Model.OutputNormBias is { } ob) Blocks.AddRows(xn, ob, 1);
        TrainOps.LinearForward(Model.Output.Weight, Model.Output.Bias, xn, logits, 1, Threads);
        if (Model.FinalLogitSoftcap > 0) TrainOps.SoftcapForward(logits, Model.FinalLogitSoftcap);
        return logits;
    }

    /// <summary>Greedy continuation (full recompute per token; short prompts in tests and samples).</summary>
    public List<int> Greedy(IEnumerable<int> prompt, int maxNew, int? stopToken = null)
    {
        var ids = prompt.ToList();
        for (int i = 0; i < maxNew; i++)
        {
            var lg = LastLogits(ids.ToArray());
            int best = TensorPrimitives.IndexOfMax(lg);
            ids.Add(best);
            if (best == stopToken) break;
        }
        return ids;
    }
}
