using OpenWeights.Inference;
using OpenWeights.Models.Common;

namespace OpenWeights.Tests.Inference;

/// <summary>The prompt cache on its own: blocks found again by exactly the tokens (and space) that led to them, the bytes
/// written back unchanged, the least recently used evicted first, and the disk copy surviving a restart but never served
/// when damaged or made by another model.</summary>
public class PrefixCacheTests : IDisposable
{
    private const int Block = 16, Layers = 3, KvDim = 64;
    private readonly string dir = Path.Combine(Path.GetTempPath(), "ow-prefix-" + Guid.NewGuid().ToString("N"));

    public void Dispose() { try { Directory.Delete(dir, recursive: true); } catch (DirectoryNotFoundException) { } }

    private static KvCache NewCache(int capacity = 256) => new(Layers, capacity, KvDim, KvCacheTypes.F16);

    // a cache holding `tokens`, each position's rows a function of the token and everything before it (like real keys)
    private static KvCache Computed(int[] tokens)
    {
        var c = NewCache();
        var row = new float[KvDim];
        long h = 17;
        for (int p = 0; p < tokens.Length; p++)
        {
            h = h * 31 + tokens[p];
            for (int l = 0; l < Layers; l++)
            {
                for (int i = 0; i < KvDim; i++) row[i] = (float)Math.Sin(h % 1000 + l * 7 + i);
                c.StoreK(l, p, row);
                for (int i = 0; i < KvDim; i++) row[i] = -row[i];
                c.StoreV(l, p, row);
            }
        }
        c.Length = tokens.Length;
        return c;
    }

    private static void AssertSameRows(KvCache a, KvCache b, int count)
    {
        var x = new byte[count * a.KRowBytes]; var y = new byte[count * a.KRowBytes];
        var xv = new byte[count * a.VRowBytes]; var yv = new byte[count * a.VRowBytes];
        for (int l = 0; l < Layers; l++)
        {
            a.ReadRows(l, 0, count, x, xv); b.ReadRows(l, 0, count, y, yv);
            Assert.Equal(x, y); Assert.Equal(xv, yv);
        }
    }

    private static int[] Tokens(int n, int seed) { var r = new Random(seed); return Enumerable.Range(0, n).Select(_ => r.Next(1000)).ToArray(); }

    [Fact]
    public void Whole_blocks_of_a_shared_prefix_come_back_byte_for_byte()
    {
        var pc = new PrefixCache(1 << 24, "model", Block);
        var first = Tokens(70, 1); // four whole blocks and 6 tokens
        using var src = Computed(first);
        pc.Store("", first, src);
        Assert.Equal(4, pc.Count);

        var second = first.Take(50).Concat(Tokens(30, 2)).ToArray(); // shares 50 tokens: three whole blocks
        using var dst = NewCache();
        int got = pc.Restore("", second, 0, dst);
        Assert.Equal(48, got);
        Assert.Equal(48, dst.Length);
        AssertSameRows(src, dst, 48);
        Assert.Equal(48, pc.TokensReused);
        Assert.Equal(1, pc.Hits);
    }

    [Fact]
    public void Another_space_or_another_token_finds_nothing_beyond_it()
    {
        var pc = new PrefixCache(1 << 24, "model", Block);
        var t = Tokens(64, 3);
        using var src = Computed(t);
        pc.Store("", t, src);
        using var dst = NewCache();
        Assert.Equal(0, pc.Restore("adapter-a", t, 0, dst)); // keys computed without the adapter never serve it
        var changed = (int[])t.Clone(); changed[20]++; // second block differs
        Assert.Equal(16, pc.Restore("", changed, 0, dst));
        changed[0]++;
        using var dst2 = NewCache();
        Assert.Equal(0, pc.Restore("", changed, 0, dst2));
        Assert.Equal(2, pc.Misses);
    }

    [Fact]
    public void Restore_continues_what_the_cache_already_holds()
    {
        var pc = new PrefixCache(1 << 24, "model", Block);
        var t = Tokens(64, 4);
        using var src = Computed(t);
        pc.Store("", t, src);
        using var dst = Computed(t[..20]); // the slot already holds 20 of them
        Assert.Equal(64, pc.Restore("", t, 20, dst));
        AssertSameRows(src, dst, 64);
        using var longer = Computed(t);
        Assert.Equal(64, pc.Restore("", t, 64, longer)); // nothing to add
    }

    [Fact]
    public void The_least_recently_used_chain_goes_first_and_a_chain_loses_its_end_before_its_start()
    {
        using var probe = NewCache();
        long blockBytes = Block * probe.BytesPerPosition;
        var pc = new PrefixCache(4 * blockBytes, "model", Block); // room for four blocks
        var a = Tokens(48, 5); var b = Tokens(32, 6);
        using var ca = Computed(a); using var cb = Computed(b);
        pc.Store("", a, ca); // a: 3 blocks
        pc.Store("", b, cb); // b: 2 blocks -> a's last block (least recently used) is evicted
        Assert.Equal(4, pc.Count);
        Assert.True(pc.Bytes <= 4 * blockBytes);
        using var d1 = NewCache();
        Assert.Equal(32, pc.Restore("", a, 0, d1)); // a's first two blocks are still there
        using var d2 = NewCache();
        Assert.Equal(32, pc.Restore("", b, 0, d2));
    }

    [Fact]
    public void A_zero_budget_keeps_nothing()
    {
        var pc = new PrefixCache(0, "model", Block);
        var t = Tokens(64, 7);
        using var src = Computed(t);
        pc.Store("", t, src);
        Assert.Equal(0, pc.Count);
        using var dst = NewCache();
        Assert.Equal(0, pc.Restore("", t, 0, dst));
    }

    [Fact]
    public void A_restarted_cache_finds_its_blocks_on_disk()
    {
        var t = Tokens(64, 8);
        using var src = Computed(t);
        new PrefixCache(1 << 24, "model sha X", Block, dir).Store("", t, src);

        var again = new PrefixCache(1 << 24, "model sha X", Block, dir); // a new process, say
        using var dst = NewCache();
        Assert.Equal(64, again.Restore("", t, 0, dst));
        Assert.Equal(4, again.DiskReads);
        AssertSameRows(src, dst, 64);

        var other = new PrefixCache(1 << 24, "model sha Y", Block, dir); // another model never sees them
        using var dst2 = NewCache();
        Assert.Equal(0, other.Restore("", t, 0, dst2));
    }

    [Fact]
    public void A_damaged_block_file_is_never_served_and_is_removed()
    {
        var t = Tokens(32, 9);
        using var src = Computed(t);
        new PrefixCache(1 << 24, "m", Block, dir).Store("", t, src);
        var files = Directory.GetFiles(dir, "*.kvb", SearchOption.AllDirectories);
        Assert.Equal(2, files.Length);
        foreach (var f in files) // one bit flipped in the middle of each block's rows
        {
            var bytes = File.ReadAllBytes(f);
            bytes[bytes.Length / 2] ^= 0x40;
            File.WriteAllBytes(f, bytes);
        }
        var again = new PrefixCache(1 << 24, "m", Block, dir);
        using var dst = NewCache();
        Assert.Equal(0, again.Restore("", t, 0, dst));
        Assert.Equal(0, again.DiskReads);
        Assert.Single(Directory.GetFiles(dir, "*.kvb", SearchOption.AllDirectories)); // the first block's file is gone; the second was never reached
    }

    [Fact]
    public void A_write_cut_short_leaves_no_block_behind()
    {
        var t = Tokens(16, 10);
        using var src = Computed(t);
        new PrefixCache(1 << 24, "m", Block, dir).Store("", t, src);
        var sub = Directory.GetDirectories(dir).Single();
        File.WriteAllText(Path.Combine(sub, "0123.kvb.99.1.tmp"), "half a block");
        var again = new PrefixCache(1 << 24, "m", Block, dir);
        Assert.Empty(Directory.GetFiles(sub, "*.tmp"));
        using var dst = NewCache();
        Assert.Equal(16, again.Restore("", t, 0, dst));
    }

    [Fact]
    public void The_folder_stays_within_its_budget()
    {
        using var probe = NewCache();
        long fileBytes = Block * probe.BytesPerPosition + 200;
        var pc = new PrefixCache(1 << 24, "m", Block, dir, diskCapacityBytes: 3 * fileBytes);
        var t = Tokens(160, 11); // ten blocks
        using var src = Computed(t);
        pc.Store("", t, src);
        long total = Directory.GetFiles(dir, "*.kvb", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.InRange(total, 1, 3 * fileBytes);
    }

    [Fact]
    public void Caches_of_another_shape_are_refused()
    {
        var pc = new PrefixCache(1 << 24, "m", Block);
        var t = Tokens(16, 12);
        using var src = Computed(t);
        pc.Store("", t, src);
        using var q8 = new KvCache(Layers, 64, KvDim, KvCacheTypes.Q8_0);
        Assert.Throws<ArgumentException>(() => pc.Restore("", t, 0, q8));
    }
}
