using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Threading;

namespace OpenWeights.Models.Common;

/// <summary>Causal grouped-query attention over the KV cache.</summary>
public static class Attention
{
    /// <summary>
    /// att[t, h] = softmax(q[t,h]·K[0..pos[t], h/g] / sqrt(d)) · V[0..pos[t], h/g], with g = heads/kvHeads and
    /// K, V the layer's cache of token t's own sequence. q, att: (n, heads*d); caches: (capacity, kvHeads*d).
    /// One pool item per (token, head); scores use a per-thread scratch row, allocated once per thread.
    /// </summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads)
    {
        var job = new Job
        {
            Q = q, Caches = caches, Pos = pos, Layer = layer, Att = att, Heads = heads, Group = heads / kvHeads,
            KvDim = kvHeads * d, QDim = heads * d, D = d, Scale = 1.0f / MathF.Sqrt(d),
        };
        WorkerPool.For(threads, n * heads, ref job);
    }

    private struct Job : IPoolJob
    {
        public float[] Q, Att;
        public KvCache?[] Caches;
        public int[] Pos;
        public int Layer, Heads, Group, KvDim, QDim, D;
        public float Scale;

        public readonly void Execute(int index)
        {
            int t = index / Heads, h = index % Heads, kvh = h / Group, d = D, kvDim = KvDim;
            var cache = Caches[t]!;
            float[] kCache = cache.KLayer(Layer), vCache = cache.VLayer(Layer);
            int len = Pos[t] + 1;
            var qv = Q.AsSpan(t * QDim + h * d, d);
            var sc = Scratch(cache.Capacity).AsSpan(0, len);
            var o = Att.AsSpan(t * QDim + h * d, d);
            if (AttentionKernels.Supported(d))
            {
                AttentionKernels.Scores(qv, kCache.AsSpan(kvh * d), kvDim, len, Scale, sc);
                Tensors.Kernels.Ops.Softmax(sc);
                AttentionKernels.WeightedSum(sc, vCache.AsSpan(kvh * d), kvDim, o);
                return;
            }
            for (int j = 0; j < len; j++) sc[j] = TensorPrimitives.Dot(qv, kCache.AsSpan(j * kvDim + kvh * d, d)) * Scale;
            Tensors.Kernels.Ops.Softmax(sc);
            o.Clear();
            for (int j = 0; j < len; j++) TensorPrimitives.MultiplyAdd(vCache.AsSpan(j * kvDim + kvh * d, d), sc[j], o, o);
        }
    }

    [ThreadStatic] private static float[]? scratch;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] Scratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 1024)];
}
