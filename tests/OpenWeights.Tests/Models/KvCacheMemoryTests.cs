using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Models;

/// <summary>
/// A KV cache costs the positions it holds, not its capacity: its block is reserved for the whole context but the system
/// backs a page only once a position in it is written, and <see cref="KvCache.Release"/> gives pages back. The pages are
/// counted with mincore (the system's own answer), so other tests running meanwhile do not blur the figures.
/// </summary>
public class KvCacheMemoryTests
{
    // SmolLM2-135M's cache shape: 30 layers, 3 KV heads of 64; F16 keys and values: 23,040 bytes a position
    private const int Layers = 30, KvDim = 192, Context = 32768;

    private static void Fill(KvCache c, int from, int to, int seed)
    {
        var row = new float[c.KvDim];
        var rng = new Random(seed);
        for (int l = 0; l < c.Layers; l++)
            for (int p = from; p < to; p++)
            {
                for (int i = 0; i < row.Length; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
                c.StoreK(l, p, row);
                if (c.HasValues) c.StoreV(l, p, row);
            }
        c.Length = to;
    }

    [Fact]
    public void A_long_context_cache_costs_only_the_positions_written()
    {
        if (!OperatingSystem.IsLinux()) { Assert.Equal(-1, new KvCache(1, 1, 32).MeasuredResidentBytes()); return; } // mincore: Linux only
        using var c = new KvCache(Layers, Context, KvDim, KvCacheTypes.F16);
        Assert.Equal(Context * 23_040L, c.Bytes); // 755 MB of address space
        Assert.True(c.MeasuredResidentBytes() < 1 << 20, $"a new cache already holds {c.MeasuredResidentBytes()} bytes");

        Fill(c, 0, 100, 1);
        long measured = c.MeasuredResidentBytes();
        Assert.Equal(c.ResidentBytes, measured); // what it claims is what the system backs: per plane, whole pages of the rows written
        Assert.InRange(measured, 100 * 23_040L, 100 * 23_040L + 2L * Layers * 4096);
        Assert.True(measured < c.Bytes / 300);
    }

    [Fact]
    public void Release_gives_pages_back_and_keeps_the_prefix()
    {
        using var c = new KvCache(Layers, 4096, KvDim, KvCacheTypes.F16);
        Fill(c, 0, 1000, 2);
        var before = new float[KvDim];
        c.ReadK(7, 99, before);
        c.Release(100);
        Assert.Equal(100, c.Length);
        Assert.Equal(100, c.HighWater);
        var after = new float[KvDim];
        c.ReadK(7, 99, after);
        Assert.Equal(before, after); // the kept positions are untouched
        if (OperatingSystem.IsLinux())
        {
            Assert.Equal(c.ResidentBytes, c.MeasuredResidentBytes());
            Assert.InRange(c.MeasuredResidentBytes(), 100 * 23_040L, 100 * 23_040L + 2L * Layers * 4096);
        }
        c.Release(0);
        Assert.Equal(0, c.Length);
        Assert.Equal(0, c.ResidentBytes);
        if (OperatingSystem.IsLinux()) Assert.Equal(0, c.MeasuredResidentBytes());
        Fill(c, 0, 10, 3); // usable again
        Assert.Equal(10, c.Length);
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("f16")]
    [InlineData("q8_0")]
    public void Rows_read_and_written_back_are_the_same_bytes(string type)
    {
        var t = KvCacheTypes.Parse(type);
        using var a = new KvCache(3, 300, 64, new KvCacheTypes(t, t));
        using var b = new KvCache(3, 300, 64, new KvCacheTypes(t, t));
        Fill(a, 0, 200, 4);
        var k = new byte[50 * a.KRowBytes]; var v = new byte[50 * a.VRowBytes];
        for (int l = 0; l < 3; l++)
        {
            a.ReadRows(l, 100, 50, k, v);
            b.WriteRows(l, 100, 50, k, v);
        }
        b.CopyPrefixFrom(a, 100);
        Assert.Equal(100, b.Length);
        var x = new float[64]; var y = new float[64];
        for (int l = 0; l < 3; l++)
            for (int p = 0; p < 150; p++)
            {
                a.ReadK(l, p, x); b.ReadK(l, p, y); Assert.Equal(x, y);
                a.ReadV(l, p, x); b.ReadV(l, p, y); Assert.Equal(x, y);
            }
    }

    [Fact]
    public void A_latent_cache_holds_keys_only()
    {
        using var c = new KvCache(2, 64, 96, KvCacheTypes.F16, values: false);
        Assert.Equal(0, c.VRowBytes);
        Assert.Throws<InvalidOperationException>(() => c.VLayer(0));
        Fill(c, 0, 10, 5);
        Assert.Equal(2L * 10 * 96 * 2, 10 * c.BytesPerPosition);
    }

    [Fact]
    public void A_disposed_cache_says_so()
    {
        var c = new KvCache(1, 8, 32);
        c.Dispose();
        Assert.Throws<ObjectDisposedException>(() => c.StoreK(0, 0, new float[32]));
        c.Dispose(); // twice is fine
    }

    [Fact]
    public void Positions_outside_the_cache_are_refused()
    {
        using var c = new KvCache(1, 8, 32);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Length = 9);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.ReadRows(0, 4, 5, new byte[5 * 128], new byte[5 * 128]));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Release(9));
    }
}
