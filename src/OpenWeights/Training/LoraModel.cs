using System.Numerics.Tensors;
using OpenWeights.Lora;
using OpenWeights.Models;
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
/// The llama / qwen2 decoder of a loaded <see cref="DecoderModel"/> with LoRA on chosen projections, run forward and
/// backward for training. The base weights are the model's own (memory-mapped, stored type, frozen); only LoRA A and B
/// are trained. Activation checkpointing: the forward keeps each layer's input residual (layers+1, n, dim) and the
/// backward recomputes one layer at a time, so memory is O(layers·n·dim + one layer's activations).
/// </summary>
public sealed class LoraModel
{
    public DecoderModel Model { get; }
    public ModelConfig Config => Model.Config;
    public LoraOptions Options { get; }
    public LoraAdapter Adapter { get; }
    public TrainableLoraLinear[][] Projections { get; }   // (layers, 7): q, k, v, o, gate, up, down
    /// <summary>Trainable modules in a fixed order (layer, then q..down): the parameter order of the optimiser.</summary>
    public IReadOnlyList<TrainableLoraLinear> Trainable { get; }
    public bool Checkpointing { get; set; } = true;
    public int Threads { get; set; } = Environment.ProcessorCount;

    public LoraModel(DecoderModel model, LoraOptions options, ulong seed, LoraAdapter? existing = null)
    {
        Model = model; Options = options;
        var c = model.Config;
        if (model is not Models.Llama.LlamaModel)
            throw new OpenWeightsException($"fine-tuning {c.Architecture.Name} models is not supported yet (tune runs llama and qwen2 models)");
        foreach (var t in options.Targets) _ = LoraTargets.GgufWeight(t, 0); // validates the name
        if (options.Rank <= 0) throw new OpenWeightsException($"LoRA rank must be positive (got {options.Rank})");
        if (options.Dropout is < 0 or >= 1) throw new OpenWeightsException($"LoRA dropout must be in [0, 1) (got {options.Dropout})");
        Adapter = existing ?? new LoraAdapter { Alpha = options.Alpha, Rank = options.Rank, UseRsLora = options.UseRsLora, TargetModules = [.. options.Targets] };
        var rng = new TrainRng(seed);
        var trainable = new List<TrainableLoraLinear>();
        Projections = new TrainableLoraLinear[c.Layers][];
        for (int l = 0; l < c.Layers; l++)
        {
            var L = model.Layers[l];
            var bases = new[] { L.Wq, L.Wk, L.Wv, L.Wo, L.WGate, L.WUp, L.WDown };
            Projections[l] = new TrainableLoraLinear[7];
            for (int p = 0; p < 7; p++)
            {
                string peft = LoraTargets.All[p].Peft;
                LoraWeights? w = null;
                if (options.Targets.Contains(peft))
                {
                    string name = LoraTargets.GgufWeight(peft, l);
                    if (!Adapter.Weights.TryGetValue(name, out w))
                    {
                        w = new LoraWeights { Target = name, Rank = options.Rank, In = bases[p].In, Out = bases[p].Out, A = new float[options.Rank * bases[p].In], B = new float[bases[p].Out * options.Rank] };
                        // PEFT: kaiming_uniform_(A, a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)); B = 0.
                        float bound = 1f / MathF.Sqrt(w.In);
                        for (int i = 0; i < w.A.Length; i++) w.A[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
                        Adapter.Weights[name] = w;
                    }
                    w.Validate();
                }
                Projections[l][p] = new TrainableLoraLinear(bases[p], w, options.Scale, options.Dropout, (ulong)(l * 7 + p + 1));
                if (w is not null) trainable.Add(Projections[l][p]);
            }
        }
        Trainable = trainable;
    }

    public long ParameterCount => Trainable.Sum(m => (long)m.Lora!.A.Length + m.Lora.B.Length);

    public void ZeroGrad()
    {
        foreach (var m in Trainable) { Array.Clear(m.GradA!); Array.Clear(m.GradB!); }
    }

    /// <summary>Activations of one layer, recomputed in backward under checkpointing.</summary>
    private sealed class LayerActs
    {
        public float[] Xn1 = [], Rstd1 = [], Q = [], K = [], V = [], Att = [], Lse = [], H = [], Xn2 = [], Rstd2 = [], G = [], U = [], Hh = [];
        public void Ensure(ModelConfig c, int n)
        {
            if (Rstd1.Length >= n) return;
            Xn1 = new float[n * c.Dim]; Rstd1 = new float[n]; Q = new float[n * c.QDim]; K = new float[n * c.KvDim]; V = new float[n * c.KvDim];
            Att = new float[n * c.QDim]; Lse = new float[n * c.Heads]; H = new float[n * c.Dim]; Xn2 = new float[n * c.Dim]; Rstd2 = new float[n];
            G = new float[n * c.FfnDim]; U = new float[n * c.FfnDim]; Hh = new float[n * c.FfnDim];
        }
    }

    /// <summary>Gradient scratch of one layer's backward, sized for the longest sequence seen (rows beyond n are ignored).</summary>
    private sealed class LayerGrads(ModelConfig c, int n)
    {
        public readonly int N = n;
        public readonly float[] Dh = new float[n * c.Dim], Dhh = new float[n * c.FfnDim], Dg = new float[n * c.FfnDim], Du = new float[n * c.FfnDim],
            Dxn = new float[n * c.Dim], Datt = new float[n * c.QDim], Dq = new float[n * c.QDim], Dk = new float[n * c.KvDim], Dv = new float[n * c.KvDim];
    }

    private LayerGrads grads = null!;
    private float[] headDx = [], headXn = [], headRstd = [], headLogits = [], headDxn = [];
    private static float[] Reuse(ref float[] b, int n, bool clear = false)
    {
        if (b.Length < n) b = new float[n];
        else if (clear) Array.Clear(b, 0, n);
        return b;
    }
    private LayerActs[] acts = [];
    private float[][] resid = [];         // (layers+1) x (n, dim): input of each layer, then the final hidden state
    private float[] cos = [], sin = [];   // (n, rope_dims/2)

    private static ulong LayerSeed(ulong seed, int l) => seed == 0 ? 0 : TrainableLoraLinear.SplitMix(seed + (ulong)l) | 1;

    private void Prepare(int n, ReadOnlySpan<int> start)
    {
        var c = Config;
        int half = c.RopeDims / 2;
        if (resid.Length != c.Layers + 1 || resid[0].Length < n * c.Dim) resid = Enumerable.Range(0, c.Layers + 1).Select(_ => new float[n * c.Dim]).ToArray();
        int nActs = Checkpointing ? 1 : c.Layers;
        if (acts.Length != nActs) acts = Enumerable.Range(0, nActs).Select(_ => new LayerActs()).ToArray();
        foreach (var a in acts) a.Ensure(c, n);
        if (cos.Length < n * half) { cos = new float[n * half]; sin = new float[n * half]; }
        for (int t = 0; t < n; t++) Model.Rope.Angles(t - start[t], cos.AsSpan(t * half, half), sin.AsSpan(t * half, half));
    }

    /// <summary>One transformer block forward: x_out = h + ffn(rmsnorm(h)), h = x_in + attn(rmsnorm(x_in)).</summary>
    private void LayerForward(int l, float[] xin, float[] xout, LayerActs a, int n, ReadOnlySpan<int> start, ulong seed)
    {
        var c = Config; var L = Model.Layers[l]; var P = Projections[l]; int th = Threads, dim = c.Dim;
        ulong s = LayerSeed(seed, l);
        TrainOps.RmsNormForward(xin, L.AttnNorm, a.Xn1, a.Rstd1, n, dim, c.RmsEps);         // xn1 = rmsnorm(x_in)
        P[0].Forward(a.Xn1, a.Q, n, th, s);                                                   // q = Wq·xn1
        P[1].Forward(a.Xn1, a.K, n, th, s);                                                   // k = Wk·xn1
        P[2].Forward(a.Xn1, a.V, n, th, s);                                                   // v = Wv·xn1
        TrainOps.RopeForward(Model.Rope, a.Q, n, c.Heads, c.HeadDim, cos, sin);               // q = rope(q)
        TrainOps.RopeForward(Model.Rope, a.K, n, c.KvHeads, c.HeadDim, cos, sin);             // k = rope(k)
        TrainOps.AttentionForward(a.Q, a.K, a.V, a.Att, a.Lse, start, n, c.Heads, c.KvHeads, c.HeadDim, th); // att = softmax(qkᵀ/√d)v
        P[3].Forward(a.Att, a.H, n, th, s);                                                   // h = Wo·att
        TensorPrimitives.Add(a.H.AsSpan(0, n * dim), xin.AsSpan(0, n * dim), a.H.AsSpan(0, n * dim)); // h += x_in
        TrainOps.RmsNormForward(a.H, L.FfnNorm, a.Xn2, a.Rstd2, n, dim, c.RmsEps);           // xn2 = rmsnorm(h)
        P[4].Forward(a.Xn2, a.G, n, th, s);                                                   // g = Wgate·xn2
        P[5].Forward(a.Xn2, a.U, n, th, s);                                                   // u = Wup·xn2
        TrainOps.SwiGluForward(a.G.AsSpan(0, n * c.FfnDim), a.U.AsSpan(0, n * c.FfnDim), a.Hh); // hh = silu(g)·u
        P[6].Forward(a.Hh, xout, n, th, s);                                                   // x_out = Wdown·hh
        TensorPrimitives.Add(xout.AsSpan(0, n * dim), a.H.AsSpan(0, n * dim), xout.AsSpan(0, n * dim)); // x_out += h
    }

    /// <summary>Backward of <see cref="LayerForward"/>: dx holds dx_out on entry and dx_in on return.</summary>
    private void LayerBackward(int l, float[] xin, float[] dx, LayerActs a, int n, ReadOnlySpan<int> start, ulong seed)
    {
        var c = Config; var L = Model.Layers[l]; var P = Projections[l]; int th = Threads, dim = c.Dim, ffn = c.FfnDim;
        ulong s = LayerSeed(seed, l);
        // x_out = h + Wdown·hh: dh = dx_out, dhh = dx_out·Wdown
        var g = grads;
        var dh = g.Dh; dx.AsSpan(0, n * dim).CopyTo(dh);
        var dhh = g.Dhh; Array.Clear(dhh);
        P[6].Backward(dx, a.Hh, dhh, n, th, s);
        // hh = silu(g)·u
        var dg = g.Dg; var du = g.Du;
        TrainOps.SwiGluBackward(dhh, a.G.AsSpan(0, n * ffn), a.U.AsSpan(0, n * ffn), dg, du);
        // g = Wgate·xn2, u = Wup·xn2
        var dxn = g.Dxn; Array.Clear(dxn);
        P[4].Backward(dg, a.Xn2, dxn, n, th, s);
        P[5].Backward(du, a.Xn2, dxn, n, th, s);
        // xn2 = rmsnorm(h)
        TrainOps.RmsNormBackward(dxn, a.H, L.FfnNorm, a.Rstd2, dh, default, n, dim);
        // h = x_in + Wo·att
        var datt = g.Datt; Array.Clear(datt);
        P[3].Backward(dh, a.Att, datt, n, th, s);
        // att = attention(q, k, v)
        var dq = g.Dq; var dk = g.Dk; var dv = g.Dv;
        TrainOps.AttentionBackward(datt, a.Q, a.K, a.V, a.Lse, start, dq, dk, dv, n, c.Heads, c.KvHeads, c.HeadDim, th);
        // q = rope(q), k = rope(k)
        TrainOps.RopeBackward(Model.Rope, dq, n, c.Heads, c.HeadDim, cos, sin);
        TrainOps.RopeBackward(Model.Rope, dk, n, c.KvHeads, c.HeadDim, cos, sin);
        // q, k, v = W·xn1
        Array.Clear(dxn);
        P[0].Backward(dq, a.Xn1, dxn, n, th, s);
        P[1].Backward(dk, a.Xn1, dxn, n, th, s);
        P[2].Backward(dv, a.Xn1, dxn, n, th, s);
        // xn1 = rmsnorm(x_in); dx_in = dh + rmsnorm'(dxn1)
        dh.AsSpan(0, n * dim).CopyTo(dx);
        TrainOps.RmsNormBackward(dxn, xin, L.AttnNorm, a.Rstd1, dx, default, n, dim);
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
        if (backward && (grads is null || grads.N < n)) grads = new LayerGrads(c, n);
        TrainOps.EmbeddingForward(Model.TokenEmbedding, tokens, resid[0]);                      // x = E[tokens]
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
        double loss = 0;
        for (int t0 = 0; t0 < n; t0 += HeadChunk)
        {
            int m = Math.Min(HeadChunk, n - t0);
            bool any = false; for (int t = t0; t < t0 + m; t++) any |= mask[t];
            if (!any) continue;
            var xs = xL.AsSpan(t0 * dim, m * dim);
            TrainOps.RmsNormForward(xs, Model.OutputNorm, xn, rstd, m, dim, c.RmsEps);       // xn = rmsnorm(x)
            TrainOps.LinearForward(Model.Output.Weight, Model.Output.Bias, xn, logits, m, Threads); // logits = Wout·xn
            loss += TrainOps.CrossEntropyForwardBackward(logits, targets.Slice(t0, m), mask.Slice(t0, m), m, vocab, norm);
            if (!backward) continue;
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
        TrainOps.EmbeddingForward(Model.TokenEmbedding, tokens, resid[0]);
        for (int l = 0; l < c.Layers; l++) LayerForward(l, resid[l], resid[l + 1], acts[Checkpointing ? 0 : l], n, start, 0);
        var xn = new float[dim]; var rstd = new float[1]; var logits = new float[c.VocabSize];
        TrainOps.RmsNormForward(resid[c.Layers].AsSpan((n - 1) * dim, dim), Model.OutputNorm, xn, rstd, 1, dim, c.RmsEps);
        TrainOps.LinearForward(Model.Output.Weight, Model.Output.Bias, xn, logits, 1, Threads);
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
