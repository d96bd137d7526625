using System.Numerics.Tensors;

namespace OpenWeights.Models.Common;

/// <summary>Causal grouped-query attention over the KV cache.</summary>
public static class Attention
{
    /// <summary>
    /// att[t, h] = softmax(q[t,h]·K[0..pos[t], h/g] / sqrt(d)) · V[0..pos[t], h/g], with g = heads/kvHeads and
    /// K, V the layer's cache of token t's own sequence. q, att: (n, heads*d); caches: (capacity, kvHeads*d).
    /// Scores use a per-thread scratch row.
    /// </summary>
    public static void Causal(float[] q, KvCache?[] caches, int[] pos, int layer, float[] att,
        int n, int heads, int kvHeads, int d, int threads)
    {
        int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
        float scale = 1.0f / MathF.Sqrt(d);
        void Body(int job)
        {
            int t = job / heads, h = job % heads, kvh = h / group;
            var cache = caches[t]!;
            float[] kCache = cache.KLayer(layer), vCache = cache.VLayer(layer);
            int capacity = cache.Capacity;
            int len = pos[t] + 1;
            var qv = q.AsSpan(t * qDim + h * d, d);
            var sc = Scratch(capacity).AsSpan(0, len);
            for (int j = 0; j < len; j++) sc[j] = TensorPrimitives.Dot(qv, kCache.AsSpan(j * kvDim + kvh * d, d)) * scale;
            Tensors.Kernels.Ops.Softmax(sc);
            var o = att.AsSpan(t * qDim + h * d, d);
            o.Clear();
            for (int j = 0; j < len; j++) TensorPrimitives.MultiplyAdd(vCache.AsSpan(j * kvDim + kvh * d, d), sc[j], o, o);
        }
        int jobs = n * heads;
        if (threads <= 1 || jobs == 1) for (int i = 0; i < jobs; i++) Body(i);
        else Parallel.For(0, jobs, new ParallelOptions { MaxDegreeOfParallelism = threads }, Body);
    }

    [ThreadStatic] private static float[]? scratch;
    private static float[] Scratch(int n) => scratch is { } s && s.Length >= n ? s : scratch = new float[Math.Max(n, 1024)];
}
