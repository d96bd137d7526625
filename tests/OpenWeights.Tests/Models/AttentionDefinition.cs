using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>
/// The attention's definition in double precision, the yardstick of the attention tests: one (token, head) row's
/// probabilities over its keys lo .. len-1 (soft-capped scaled scores, the sink's logit in the max and the denominator).
/// </summary>
internal static class AttentionDefinition
{
    /// <summary>
    /// Row (t, h)'s probabilities p[j - lo], normalized, for keys lo .. pos[t]: q: (n, heads·d), keys kf: (positions, kvHeads·d),
    /// the row's KV head h / (heads / kvHeads).
    /// </summary>
    public static (double[] P, int Lo) Row(ReadOnlySpan<float> q, ReadOnlySpan<float> kf, int[] pos, int t, int h, int heads, int kvHeads, int d,
        AttentionParams p, float softcap, float[]? sinkLogits)
    {
        int qDim = heads * d, kvDim = kvHeads * d, kvh = h / (heads / kvHeads), len = pos[t] + 1, lo = p.FirstKey(pos[t]);
        var s = new double[len - lo];
        for (int j = lo; j < len; j++)
        {
            double dot = 0;
            for (int c = 0; c < d; c++) dot += (double)q[t * qDim + h * d + c] * kf[j * kvDim + kvh * d + c];
            dot *= p.Scale;
            s[j - lo] = softcap > 0 ? softcap * Math.Tanh(dot / softcap) : dot;
        }
        double sink = sinkLogits?[h] ?? double.NegativeInfinity, max = Math.Max(s.Max(), sink), sum = Math.Exp(sink - max);
        for (int j = 0; j < s.Length; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
        for (int j = 0; j < s.Length; j++) s[j] /= sum;
        return (s, lo);
    }
}
