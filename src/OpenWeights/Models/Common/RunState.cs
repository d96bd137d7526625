namespace OpenWeights.Models.Common;

/// <summary>Scratch for one forward pass of up to <see cref="MaxBatch"/> tokens, allocated once.</summary>
public sealed class RunState
{
    public int MaxBatch { get; }
    public readonly float[] X;       // (batch, dim) residual stream
    public readonly float[] Xb;      // (batch, dim) normed input / projection output
    public readonly float[] Q;       // (batch, heads*head_dim)
    public readonly float[] K;       // (batch, kv_heads*head_dim)
    public readonly float[] V;       // (batch, kv_heads*head_dim)
    public readonly float[] Att;     // (batch, heads*head_dim) attention output
    public readonly float[] Hb;      // (batch, ffn) gate
    public readonly float[] Hb2;     // (batch, ffn) up
    public readonly float[][] Cos, Sin;// (ropes) x (batch, rope_dims/2): one table per rotary embedding of the model
    public readonly float[] Logits;  // (vocab) logits of the last token
    public readonly KvCache?[] TokenCache; // (batch) the cache each token belongs to
    public readonly int[] TokenPos;  // (batch) each token's position in its sequence
    public readonly int[] TokenIds;  // (batch) the tokens of a single-sequence Forward
    public readonly MoeScratch? Moe; // the mixture-of-experts feed-forward's scratch; null for a dense model

    /// <summary>The context the state was made for (the model may pick its rotary scaling by it: Phi-3's LongRoPE).</summary>
    public int Context { get; }

    public RunState(ModelConfig c, int maxBatch, int context, int ropes = 1)
    {
        Context = context;
        MaxBatch = maxBatch;
        X = new float[maxBatch * c.Dim]; Xb = new float[maxBatch * c.Dim];
        Q = new float[maxBatch * c.QDim]; K = new float[maxBatch * c.KvDim]; V = new float[maxBatch * c.KvDim];
        Att = new float[maxBatch * c.QDim];
        Hb = new float[maxBatch * c.FfnDim]; Hb2 = new float[maxBatch * c.FfnDim];
        Cos = new float[ropes][]; Sin = new float[ropes][];
        for (int r = 0; r < ropes; r++) { Cos[r] = new float[maxBatch * c.RopeDims / 2]; Sin[r] = new float[maxBatch * c.RopeDims / 2]; }
        Logits = new float[c.VocabSize];
        TokenCache = new KvCache?[maxBatch]; TokenPos = new int[maxBatch]; TokenIds = new int[maxBatch];
        if (c.ExpertCount > 0) Moe = new MoeScratch(c, maxBatch);
    }
}
