using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>
/// The decode kernel of the absorbed latent attention (LatentDecode: each cached [c, kpe] row read once for all heads, keys
/// split in chunks with an online softmax) against the per-(token, head) two-pass path and the scalar reference, on random
/// caches of DeepSeek-V2-Lite's shape (16 heads, r = 512, rope = 64): equal up to float rounding, and bit for bit equal to
/// itself at any thread count and whatever other tokens share the step.
/// </summary>
public class LatentDecodeTests
{
    private const int Heads = 16, R = 512, Rope = 64, Kvw = R + Rope;
    private static readonly float Scale = 1f / MathF.Sqrt(128 + 64); // DeepSeek-V2's 1/sqrt(nope + rope)

    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (var type in new[] { "f32", "f16", "q8_0" })
            foreach (int len in new[] { 1, 63, 64, 65, 1000, 5000 })
                d.Add(type, len);
        return d;
    }

    /// <summary>A one-layer latent cache of <paramref name="len"/> random rows in <paramref name="type"/>.</summary>
    private static KvCache RandomCache(string type, int len, Random rng)
    {
        var t = KvCacheTypes.Parse(type);
        var cache = new KvCache(1, len, Kvw, new KvCacheTypes(t, t), values: false);
        var row = new float[Kvw];
        for (int j = 0; j < len; j++)
        {
            for (int i = 0; i < Kvw; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            cache.StoreK(0, j, row);
        }
        return cache;
    }

    /// <summary>Absorbed queries (n, heads, r + rope): sharp enough that the softmax does not flatten to a mean.</summary>
    private static float[] RandomQueries(int n, Random rng)
    {
        var q = new float[n * Heads * Kvw];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 8 - 4);
        return q;
    }

    private static float MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (x, y) => MathF.Abs(x - y)).Max();

    [Theory]
    [MemberData(nameof(Cases))]
    public void OneReadForAllHeadsAgreesWithThePerHeadPathAndIsBitIdenticalAtAnyThreadCount(string type, int len)
    {
        var rng = new Random(len * 3 + type.Length);
        using var cache = RandomCache(type, len, rng);
        KvCache?[] caches = [cache];
        int[] pos = [len - 1];
        var q = RandomQueries(1, rng);
        var perHead = new float[Heads * R];
        var reference = new float[Heads * R];
        var one = new float[Heads * R];
        LatentAttention.AttendPerHead(q, perHead, caches, pos, 0, 1, Heads, R, Kvw, Scale, 1);
        LatentDecode.Reference(q, reference, caches, pos, 0, 1, Heads, R, Kvw, Scale);
        LatentDecode.Run(q, one, caches, pos, 0, 1, Heads, R, Kvw, Scale, 1);
        // outputs are convex mixes of latents in [-1, 1]: absolute differences are relative to 1
        Assert.True(MaxAbsDiff(one, perHead) < 2e-6, $"vs per-head path: {MaxAbsDiff(one, perHead):E2}");
        Assert.True(MaxAbsDiff(one, reference) < 2e-6, $"vs scalar reference: {MaxAbsDiff(one, reference):E2}");
        Assert.True(MaxAbsDiff(perHead, reference) < 2e-6, $"per-head path vs scalar reference: {MaxAbsDiff(perHead, reference):E2}");
        foreach (int threads in new[] { 2, 3, 8 })
        {
            var lat = new float[Heads * R];
            Array.Fill(lat, float.NaN); // every output is written
            LatentDecode.Run(q, lat, caches, pos, 0, 1, Heads, R, Kvw, Scale, threads);
            Assert.Equal(one, lat);
        }
    }

    [Fact]
    public void AStepOfSeveralSequencesGivesEachTokenItsResultAlone()
    {
        // three sequences (two tokens of the first, at consecutive positions) in one step: every token's latents are bit for
        // bit those of that token decoded alone, at 1 and 2 threads
        var rng = new Random(7);
        using var a = RandomCache("f16", 2100, rng);
        using var b = RandomCache("q8_0", 300, rng);
        using var c = RandomCache("f32", 70, rng);
        KvCache?[] caches = [a, a, b, c];
        int[] pos = [2098, 2099, 299, 69];
        int n = caches.Length;
        var q = RandomQueries(n, rng);
        foreach (int threads in new[] { 1, 2 })
        {
            var lat = new float[n * Heads * R];
            LatentDecode.Run(q, lat, caches, pos, 0, n, Heads, R, Kvw, Scale, threads);
            for (int t = 0; t < n; t++)
            {
                var alone = new float[Heads * R];
                LatentDecode.Run(q[(t * Heads * Kvw)..((t + 1) * Heads * Kvw)], alone, [caches[t]], [pos[t]], 0, 1, Heads, R, Kvw, Scale, 1);
                Assert.Equal(alone, lat[(t * Heads * R)..((t + 1) * Heads * R)]);
            }
            var perHead = new float[n * Heads * R];
            LatentAttention.AttendPerHead(q, perHead, caches, pos, 0, n, Heads, R, Kvw, Scale, threads);
            Assert.True(MaxAbsDiff(lat, perHead) < 2e-6, $"vs per-head path: {MaxAbsDiff(lat, perHead):E2}");
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(64, 1)]
    [InlineData(65, 2)]
    [InlineData(2048, 32)]
    [InlineData(2049, 17)]   // 128 keys per chunk
    [InlineData(100_000, 32)]
    public void ChunksDependOnTheKeyCountAlone(int len, int chunks)
    {
        Assert.Equal(chunks, LatentDecode.Chunks(len));
        Assert.Equal(0, LatentDecode.ChunkKeys(len) % LatentDecode.MinChunkKeys);
    }
}
