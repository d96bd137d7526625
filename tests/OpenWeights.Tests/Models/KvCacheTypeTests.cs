using OpenWeights.Models.Common;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Models;

/// <summary>
/// KV caches in F16 and Q8_0: what a store writes (ggml's conversions), what the bytes add up to, and attention reading
/// them: bit for bit the attention of an F32 cache holding the decoded values (the tile is decoded, then the F32 kernels
/// run), and within 1e-5 of the double-precision definition on those values, with windows, chunks, sinks and soft-capping.
/// </summary>
public class KvCacheTypeTests
{
    private static KvCacheTypes Types(string k, string v) => new(KvCacheTypes.Parse(k), KvCacheTypes.Parse(v));

    [Fact]
    public unsafe void Stores_round_f16_to_nearest_even_and_quantize_q8_0_as_ggml()
    {
        int kvDim = 64;
        var cache = new KvCache(2, 3, kvDim, Types("f16", "q8_0"));
        var rng = new Random(5);
        var x = Enumerable.Range(0, kvDim).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        x[3] = 1f + 1f / 2048; // exactly between two f16 values: ties to even (1.0)
        cache.StoreK(1, 2, x); cache.StoreV(1, 2, x);
        var k = new float[kvDim]; var v = new float[kvDim];
        cache.ReadK(1, 2, k); cache.ReadV(1, 2, v);
        for (int i = 0; i < kvDim; i++) Assert.Equal(HalfConvert.Fp16ToFp32(HalfConvert.Fp32ToFp16(x[i])), k[i]);
        Assert.Equal(1f, k[3]);
        var q = new byte[kvDim / 32 * 34];
        fixed (float* px = x) fixed (byte* pq = q) QuantDot.QuantizeQ8_0Scalar(px, pq, kvDim);
        var expect = new float[kvDim];
        BlockQ8_0.DequantizeScalar(q, expect);
        Assert.Equal(expect, v);
        Assert.NotEqual(x, v); // 8 bits do lose something: the comparison above could fail
    }

    [Theory]
    [InlineData("f32", "f32", 2 * 4 * 64)]
    [InlineData("f16", "f16", 2 * 2 * 64)]
    [InlineData("q8_0", "q8_0", 2 * 34 * 2)]
    [InlineData("q8_0", "f16", 34 * 2 + 2 * 64)]
    public void Bytes_follow_the_types(string k, string v, int perPositionAndLayer)
    {
        var cache = new KvCache(3, 10, 64, Types(k, v));
        Assert.Equal(3L * 10 * perPositionAndLayer, cache.Bytes);
    }

    [Fact]
    public void Unknown_types_and_misaligned_q8_0_heads_are_refused_with_one_line()
    {
        var e = Assert.Throws<OpenWeightsException>(() => KvCacheTypes.Parse("q4_0"));
        Assert.Contains("f32, f16 or q8_0", e.Message);
        Assert.Throws<OpenWeightsException>(() => KvCacheTypes.Q8_0.Validate(48));
        KvCacheTypes.Q8_0.Validate(64);
        KvCacheTypes.F16.Validate(12);
    }

    [Theory]
    [InlineData("f16", "f16", 9, 4, 2, 64, 2, 0, 0, 0f, false)]    // decode-like split
    [InlineData("f16", "f16", 70, 9, 3, 64, 2, 0, 0, 0f, false)]   // several key tiles, blocks of 4 tokens
    [InlineData("q8_0", "q8_0", 70, 8, 2, 64, 2, 0, 0, 0f, false)]
    [InlineData("q8_0", "f16", 70, 14, 2, 32, 1, 0, 0, 0f, false)]
    [InlineData("f16", "q8_0", 1, 8, 2, 64, 2, 0, 0, 0f, false)]   // one decode token
    [InlineData("f32", "q8_0", 30, 4, 2, 64, 2, 0, 0, 0f, false)]
    [InlineData("f16", "f16", 150, 4, 2, 40, 2, 16, 0, 0f, false)] // sliding window, d a multiple of 8 but not 32
    [InlineData("q8_0", "q8_0", 150, 9, 3, 64, 2, 0, 100, 0f, false)] // chunks longer than a tile
    [InlineData("q8_0", "f16", 70, 8, 2, 64, 2, 16, 0, 0f, true)]  // sinks with a window
    [InlineData("f16", "q8_0", 70, 8, 4, 64, 2, 0, 0, 5f, false)]  // soft-cap
    [InlineData("f16", "f16", 13, 4, 4, 12, 2, 5, 0, 0f, true)]    // head dimension without the SIMD kernels
    public void Attention_reads_the_decoded_values(string kt, string vt, int n, int heads, int kvHeads, int d, int threads,
        int window, int chunk, float softcap, bool sinks)
    {
        var rng = new Random(n * 31 + heads + d + window + chunk);
        int kvDim = kvHeads * d, qDim = heads * d, prior = 5, cap = prior + n + 3;
        var typed = new KvCache(1, cap, kvDim, Types(kt, vt));
        var exact = new KvCache(1, cap, kvDim); // F32, holding what typed decodes to
        var row = new float[kvDim];
        for (int j = 0; j < cap; j++)
        {
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            typed.StoreK(0, j, row); typed.ReadK(0, j, exact.K(0, j));
            for (int i = 0; i < kvDim; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            typed.StoreV(0, j, row); typed.ReadV(0, j, exact.V(0, j));
        }
        var q = new float[n * qDim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 4 - 2);
        var sinkLogits = sinks ? Enumerable.Range(0, heads).Select(h => -2f + 4f * h / Math.Max(1, heads - 1)).ToArray() : null;
        var p = new AttentionParams(1f / MathF.Sqrt(d), window, softcap, chunk, sinkLogits);
        var caches = Enumerable.Repeat<KvCache?>(typed, n).ToArray();
        var pos = Enumerable.Range(prior, n).ToArray();
        var att = new float[n * qDim]; var attExact = new float[n * qDim];
        Attention.Causal(q, caches, pos, 0, att, n, heads, kvHeads, d, threads, p);
        Attention.Causal(q, Enumerable.Repeat<KvCache?>(exact, n).ToArray(), pos, 0, attExact, n, heads, kvHeads, d, threads, p);
        Assert.Equal(attExact, att); // bit for bit: the decoded tile goes through the same F32 kernels
        int g = heads / kvHeads;
        var kf = exact.KLayer(0); var vf = exact.VLayer(0);
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
            {
                int len = pos[t] + 1, kvh = h / g;
                var (s, lo) = AttentionDefinition.Row(q, kf, pos, t, h, heads, kvHeads, d, p, softcap, sinkLogits);
                for (int c = 0; c < d; c++)
                {
                    double o = 0;
                    for (int j = lo; j < len; j++) o += s[j - lo] * vf[j * kvDim + kvh * d + c];
                    float got = att[t * qDim + h * d + c];
                    Assert.True(Math.Abs(got - o) <= 1e-5, $"t={t} h={h} c={c}: {got} vs {o}");
                }
            }
        GC.KeepAlive(exact); // kf, vf point into its native memory
    }
}
