using System.Numerics.Tensors;

namespace OpenWeights.Models.Common;

/// <summary>Causal grouped-query attention over the KV cache.</summary>
public static class Attention
{
    /// <summary>
    /// att[t, h] = softmax(q[t,h]·K[0..start+t, h/g] / sqrt(d)) · V[0..start+t, h/g], with g = heads/kvHeads.
    /// q, att: (n, heads*d); kCache, vCache: (capacity, kvHeads*d); scores use a per-thread scratch row.
    /// </summary>
    public static void Causal(float[] q, float[] kCache, float[] vCache, float[] att,
        int n, int start, int heads, int kvHeads, int d, int threads)
    {
        int group = heads / kvHeads, kvDim = kvHeads * d, qDim = heads * d;
        int capacity = kCache.Length / kvDim;
        float scale = 1.0f / MathF.Sqrt(d);
        void Body(int job)
        {
            int t = job / heads, h = job % heads, kvh = h / group;
            int len = start + t + 1;
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
