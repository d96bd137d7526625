using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using OpenWeights.Models.Common;

namespace OpenWeights.Inference;

/// <summary>
/// A prompt cache shared by every sequence of one model: keys and values of whole blocks of <see cref="BlockTokens"/>
/// prompt tokens, found again by the tokens that lead up to them (a system prompt, documents, the earlier turns of a
/// conversation), so a request whose prompt starts like an earlier one computes only the rest.
/// <para>A block is named by a chain of SHA-256 digests: the first block's name digests the cache's identity, the
/// request's space (its adapter: keys computed under one adapter never serve another) and its tokens; every next
/// block's name digests its parent's name and its own tokens. A block also keeps its tokens and its parent's name and
/// both are compared on every lookup, so a prefix is served only for exactly the tokens it was computed from. Restored
/// rows are the bytes the engine wrote, and the engine computes a position the same whatever else is in the batch, so a
/// reply is bit-identical with and without the cache.</para>
/// <para>Blocks are held in memory up to <see cref="CapacityBytes"/>, least recently used evicted first (a chain is
/// touched from its last block back to its first, so the shared start of many prompts goes last). With a directory,
/// every block is also written there (one file per block, written whole under a temporary name and then renamed, its
/// payload's SHA-256 checked when read), so a restarted server finds its prefixes again; the directory is kept under
/// <see cref="DiskCapacityBytes"/>, oldest files deleted first.</para>
/// </summary>
public sealed class PrefixCache
{
    private sealed class Block(UInt128 key, UInt128 parent, int[] tokens, byte[] rows)
    {
        public readonly UInt128 Key = key, Parent = parent;
        public readonly int[] Tokens = tokens;
        public readonly byte[] Rows = rows; // per layer: BlockTokens K rows, then BlockTokens V rows (the cache's own bytes)
        public LinkedListNode<Block>? Node;
    }

    private readonly Dictionary<UInt128, Block> blocks = [];
    private readonly LinkedList<Block> lru = new(); // first: most recently used
    private readonly object gate = new();
    private readonly byte[] identity;
    private readonly string? directory;
    private long diskBytes;
    private (int Layers, int KvDim, KvCacheTypes Types, bool Values)? shape;

    /// <param name="capacityBytes">memory the blocks may take together (0: nothing is kept)</param>
    /// <param name="identity">what the keys were computed by (the model file's digest, its adapters, the cache types):
    /// blocks on disk are found again only under the same identity</param>
    /// <param name="directory">a folder to keep blocks in across restarts (null: memory only)</param>
    /// <param name="diskCapacityBytes">what the folder may hold (default: four times <paramref name="capacityBytes"/>)</param>
    public PrefixCache(long capacityBytes, string identity, int blockTokens = 16, string? directory = null, long? diskCapacityBytes = null)
    {
        if (capacityBytes < 0) throw new ArgumentOutOfRangeException(nameof(capacityBytes));
        if (blockTokens < 1) throw new ArgumentOutOfRangeException(nameof(blockTokens));
        CapacityBytes = capacityBytes;
        BlockTokens = blockTokens;
        this.identity = SHA256.HashData(Encoding.UTF8.GetBytes($"openweights prefix cache v1\n{identity}\n{blockTokens}"));
        DiskCapacityBytes = diskCapacityBytes ?? 4 * capacityBytes;
        if (directory is not null)
        {
            // one folder per identity: blocks of another model (or adapter set, or cache type) are never even looked at
            this.directory = Path.Combine(directory, Convert.ToHexStringLower(this.identity.AsSpan(0, 8)));
            try { Directory.CreateDirectory(this.directory); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new OpenWeightsException($"--cache-dir {directory}: {e.Message}");
            }
            foreach (var f in new DirectoryInfo(this.directory).EnumerateFiles())
            {
                if (f.Name.EndsWith(".tmp", StringComparison.Ordinal)) { TryDelete(f.FullName); continue; } // a write cut short
                if (f.Name.EndsWith(Extension, StringComparison.Ordinal)) diskBytes += f.Length;
            }
            PruneDisk();
        }
    }

    public int BlockTokens { get; }
    public long CapacityBytes { get; }
    public long DiskCapacityBytes { get; }
    /// <summary>Bytes of blocks held in memory.</summary>
    public long Bytes { get { lock (gate) return heldBytes; } }
    private long heldBytes;
    /// <summary>Blocks held in memory.</summary>
    public int Count { get { lock (gate) return blocks.Count; } }
    /// <summary>Prompt tokens served from the cache, and lookups that found at least one block / none.</summary>
    public long TokensReused => Interlocked.Read(ref tokensReused);
    public long Hits => Interlocked.Read(ref hits);
    public long Misses => Interlocked.Read(ref misses);
    /// <summary>Blocks read back from the directory.</summary>
    public long DiskReads => Interlocked.Read(ref diskReads);
    private long tokensReused, hits, misses, diskReads;

    /// <summary>
    /// Writes into <paramref name="cache"/> the cached blocks that continue its first <paramref name="from"/> positions
    /// (which already hold <paramref name="tokens"/>[..from]) along <paramref name="tokens"/>, and returns how many
    /// positions the cache then holds (Length): <paramref name="from"/> when the cache knows no longer prefix.
    /// </summary>
    /// <param name="space">who computed the keys: an adapter's identity ("" for the model alone)</param>
    public int Restore(string space, ReadOnlySpan<int> tokens, int from, KvCache cache)
    {
        if (from < 0 || from > tokens.Length || from > cache.Length) throw new ArgumentOutOfRangeException(nameof(from));
        if (CapacityBytes == 0 && directory is null) return from;
        CheckShape(cache);
        var found = new List<Block>();
        UInt128 key = Root(space);
        int n = tokens.Length / BlockTokens;
        for (int b = 0; b < n; b++)
        {
            var part = tokens.Slice(b * BlockTokens, BlockTokens);
            var next = Next(key, part);
            var block = Find(next, key, part);
            if (block is null) break;
            found.Add(block);
            key = next;
        }
        int matched = found.Count * BlockTokens;
        if (matched <= from)
        {
            Interlocked.Increment(ref misses);
            return from;
        }
        for (int b = from / BlockTokens; b < found.Count; b++) Write(found[b], b * BlockTokens, cache);
        cache.Length = matched;
        lock (gate)
            for (int b = found.Count - 1; b >= 0; b--) Touch(found[b]); // the first block ends most recently used: evicted last
        Interlocked.Increment(ref hits);
        Interlocked.Add(ref tokensReused, matched - from);
        return matched;
    }

    /// <summary>Keeps the whole blocks of <paramref name="tokens"/> (what <paramref name="cache"/>'s first positions hold)
    /// that are not kept yet.</summary>
    public void Store(string space, ReadOnlySpan<int> tokens, KvCache cache)
    {
        if (CapacityBytes == 0) return;
        int n = Math.Min(tokens.Length, cache.Length) / BlockTokens;
        if (n == 0) return;
        CheckShape(cache);
        long blockBytes = (long)BlockTokens * cache.BytesPerPosition;
        if (blockBytes > CapacityBytes) return;
        UInt128 key = Root(space);
        var chain = new List<Block>();
        var inChain = new HashSet<UInt128>();
        for (int b = 0; b < n; b++)
        {
            var part = tokens.Slice(b * BlockTokens, BlockTokens);
            var next = Next(key, part);
            Block? have;
            lock (gate) blocks.TryGetValue(next, out have);
            if (have is null || have.Parent != key || !part.SequenceEqual(have.Tokens))
            {
                if (have is not null) break; // a name taken by other tokens (never expected of SHA-256): keep what is there
                var block = new Block(next, key, part.ToArray(), Read(cache, b * BlockTokens));
                bool added = false;
                lock (gate)
                {
                    if (!blocks.TryGetValue(next, out have))
                    {
                        // evict the least recently used, but never this chain's own blocks: a chain that does not fit
                        // keeps its start (what later prompts share), not its end
                        while (heldBytes + block.Rows.Length > CapacityBytes && lru.Last is { } old && !inChain.Contains(old.Value.Key)) Evict(old.Value);
                        if (heldBytes + block.Rows.Length > CapacityBytes) break;
                        Add(have = block);
                        added = true;
                    }
                }
                if (added && directory is not null) WriteFile(block);
            }
            chain.Add(have!);
            inChain.Add(next);
            lock (gate) Touch(have!);
            key = next;
        }
        lock (gate)
            for (int b = chain.Count - 1; b >= 0; b--) Touch(chain[b]); // the chain's start ends most recently used
    }

    /// <summary>Drops every block held in memory (files on disk stay).</summary>
    public void Clear()
    {
        lock (gate) { blocks.Clear(); lru.Clear(); heldBytes = 0; }
    }

    // ---- keys ----

    private UInt128 Root(string space)
    {
        Span<byte> d = stackalloc byte[32];
        var s = Encoding.UTF8.GetBytes(space);
        var buf = new byte[identity.Length + s.Length];
        identity.CopyTo(buf, 0); s.CopyTo(buf, identity.Length);
        SHA256.HashData(buf, d);
        return BinaryPrimitives.ReadUInt128LittleEndian(d);
    }

    private static UInt128 Next(UInt128 parent, ReadOnlySpan<int> tokens)
    {
        var buf = new byte[16 + 4 * tokens.Length];
        BinaryPrimitives.WriteUInt128LittleEndian(buf, parent);
        for (int i = 0; i < tokens.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(16 + 4 * i), tokens[i]);
        Span<byte> d = stackalloc byte[32];
        SHA256.HashData(buf, d);
        return BinaryPrimitives.ReadUInt128LittleEndian(d);
    }

    private Block? Find(UInt128 key, UInt128 parent, ReadOnlySpan<int> tokens)
    {
        Block? b;
        lock (gate) blocks.TryGetValue(key, out b);
        if (b is null && directory is not null && shape is not null && ReadFile(key) is { } loaded)
        {
            lock (gate)
            {
                if (!blocks.TryGetValue(key, out b) && (long)loaded.Rows.Length <= CapacityBytes)
                {
                    while (heldBytes + loaded.Rows.Length > CapacityBytes && lru.Last is { } old) Evict(old.Value);
                    Add(b = loaded);
                }
                b ??= loaded;
            }
            Interlocked.Increment(ref diskReads);
        }
        if (b is null || b.Parent != parent || !tokens.SequenceEqual(b.Tokens)) return null;
        return b;
    }

    private void Add(Block b)
    {
        blocks[b.Key] = b;
        b.Node = lru.AddFirst(b);
        heldBytes += b.Rows.Length;
    }

    private void Evict(Block b)
    {
        blocks.Remove(b.Key);
        if (b.Node is { } node) lru.Remove(node);
        b.Node = null;
        heldBytes -= b.Rows.Length;
    }

    private void Touch(Block b)
    {
        if (b.Node is not { } node || node.List is null) return;
        lru.Remove(node);
        lru.AddFirst(node);
    }

    // ---- rows ----

    private void CheckShape(KvCache cache)
    {
        var s = (cache.Layers, cache.KvDim, cache.Types, cache.HasValues);
        lock (gate)
        {
            shape ??= s;
            if (shape != s) throw new ArgumentException($"the prompt cache holds caches of {shape}, not {s}");
        }
    }

    private byte[] Read(KvCache cache, int start)
    {
        int kb = BlockTokens * cache.KRowBytes, vb = BlockTokens * cache.VRowBytes;
        var rows = new byte[(long)cache.Layers * (kb + vb)];
        for (int l = 0; l < cache.Layers; l++)
        {
            var at = rows.AsSpan(l * (kb + vb), kb + vb);
            cache.ReadRows(l, start, BlockTokens, at[..kb], at[kb..]);
        }
        return rows;
    }

    private void Write(Block b, int start, KvCache cache)
    {
        int kb = BlockTokens * cache.KRowBytes, vb = BlockTokens * cache.VRowBytes;
        for (int l = 0; l < cache.Layers; l++)
        {
            var at = b.Rows.AsSpan(l * (kb + vb), kb + vb);
            cache.WriteRows(l, start, BlockTokens, at[..kb], at[kb..]);
        }
    }

    // ---- disk ----
    // file: "OWKV" | version u32 | identity (32) | key (16) | parent (16) | tokens n u32 | rows bytes u64 |
    //       tokens (n x i32) | rows | SHA-256 of everything before it (32)

    private const string Extension = ".kvb";
    private static readonly byte[] Magic = "OWKV"u8.ToArray();
    private const int Version = 1;

    private string FileOf(UInt128 key) => Path.Combine(directory!, key.ToString("X32") + Extension);

    private void WriteFile(Block b)
    {
        var path = FileOf(b.Key);
        if (File.Exists(path)) return;
        var tmp = path + "." + Environment.ProcessId + "." + Environment.CurrentManagedThreadId + ".tmp";
        try
        {
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                var head = new byte[4 + 4 + 32 + 16 + 16 + 4 + 8];
                Magic.CopyTo(head, 0);
                BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(4), Version);
                identity.CopyTo(head, 8);
                BinaryPrimitives.WriteUInt128LittleEndian(head.AsSpan(40), b.Key);
                BinaryPrimitives.WriteUInt128LittleEndian(head.AsSpan(56), b.Parent);
                BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(72), b.Tokens.Length);
                BinaryPrimitives.WriteInt64LittleEndian(head.AsSpan(76), b.Rows.Length);
                var toks = new byte[4 * b.Tokens.Length];
                for (int i = 0; i < b.Tokens.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(toks.AsSpan(4 * i), b.Tokens[i]);
                foreach (var part in new[] { head, toks, b.Rows }) { f.Write(part); hash.AppendData(part); }
                f.Write(hash.GetHashAndReset());
            }
            File.Move(tmp, path, overwrite: true);
            lock (gate) diskBytes += new FileInfo(path).Length;
            PruneDisk();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp); // a full disk or a read-only folder costs the disk copy, never the request
        }
    }

    private Block? ReadFile(UInt128 key)
    {
        var path = FileOf(key);
        byte[] data;
        try
        {
            if (!File.Exists(path)) return null;
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        const int head = 84;
        if (data.Length < head + 32 || !data.AsSpan(0, 4).SequenceEqual(Magic) || BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(4)) != Version
            || !data.AsSpan(8, 32).SequenceEqual(identity) || BinaryPrimitives.ReadUInt128LittleEndian(data.AsSpan(40)) != key) return Corrupt(path);
        int n = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(72));
        long rows = BinaryPrimitives.ReadInt64LittleEndian(data.AsSpan(76));
        var s = shape!.Value;
        long expectRows = (long)BlockTokens * s.Layers * (KvCacheTypes.Bytes(s.Types.K, s.KvDim) + (s.Values ? KvCacheTypes.Bytes(s.Types.V, s.KvDim) : 0));
        if (n != BlockTokens || rows != expectRows || data.Length != head + 4L * n + rows + 32) return Corrupt(path);
        var body = data.AsSpan(0, data.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(data.AsSpan(data.Length - 32))) return Corrupt(path);
        var tokens = new int[n];
        for (int i = 0; i < n; i++) tokens[i] = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(head + 4 * i));
        var parent = BinaryPrimitives.ReadUInt128LittleEndian(data.AsSpan(56));
        try { File.SetLastWriteTimeUtc(path, DateTime.UtcNow); } catch (IOException) { } // recently used: pruned last
        return new Block(key, parent, tokens, data.AsSpan(head + 4 * n, (int)rows).ToArray());
    }

    private Block? Corrupt(string path)
    {
        TryDelete(path); // a damaged or foreign file is never served; it is computed again and rewritten
        return null;
    }

    private void PruneDisk()
    {
        if (directory is null) return;
        lock (gate) if (diskBytes <= DiskCapacityBytes) return;
        var files = new DirectoryInfo(directory).EnumerateFiles("*" + Extension).OrderBy(f => f.LastWriteTimeUtc).ToList();
        long total = files.Sum(f => f.Length);
        foreach (var f in files)
        {
            if (total <= DiskCapacityBytes) break;
            total -= f.Length;
            TryDelete(f.FullName);
        }
        lock (gate) diskBytes = total;
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
