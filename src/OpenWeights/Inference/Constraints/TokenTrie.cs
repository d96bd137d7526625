using System.Runtime.CompilerServices;
using OpenWeights.Tokenizers;

namespace OpenWeights.Inference.Constraints;

/// <summary>
/// The byte strings of a vocabulary's ordinary tokens in a trie, so that a constraint checks shared prefixes once.
/// Control/unknown tokens and tokens with no bytes are left out; end-of-generation ids are kept aside.
/// Built once per tokenizer and cached; immutable and thread-safe.
/// </summary>
public sealed class TokenTrie
{
    private static readonly ConditionalWeakTable<Tokenizer, TokenTrie> cache = new();

    internal readonly int[] FirstChild, NextSibling, TokStart, TokCount;
    internal readonly byte[] Byte;
    internal readonly int[] SortedIds;   // token ids; a node's tokens are SortedIds[TokStart..TokStart+TokCount]
    internal readonly byte[][] Bytes;    // every token's bytes (empty for the ones left out)
    internal readonly bool[] InTrie;
    // "plain" tokens: complete UTF-8 text without '"', '\\' or control bytes; inside a string they only add code points
    internal readonly int[] PlainIds, PlainCodePoints;
    internal readonly bool[] HasNonPlainBelow; // per node: the node or a descendant ends a token that is not plain

    public int VocabSize { get; }
    public IReadOnlyList<int> EndOfGeneration { get; }
    public int NodeCount => Byte.Length;

    /// <summary>The trie of a tokenizer's vocabulary (built on first use, then cached for that instance).</summary>
    public static TokenTrie For(Tokenizer tok)
    {
        ArgumentNullException.ThrowIfNull(tok);
        return cache.GetValue(tok, t =>
        {
            int n = t.VocabSize;
            var bytes = new byte[n][];
            var special = new bool[n];
            for (int i = 0; i < n; i++) { bytes[i] = t.TokenBytes(i); special[i] = t.IsControl(i) || t.IsEndOfGeneration(i); }
            return new TokenTrie(bytes, special, t.EndOfGeneration.Order());
        });
    }

    /// <param name="tokenBytes">the bytes each token produces</param>
    /// <param name="special">tokens that never carry text (control); may be null</param>
    /// <param name="endOfGeneration">ids that end generation</param>
    public TokenTrie(byte[][] tokenBytes, bool[]? special, IEnumerable<int> endOfGeneration)
    {
        int n = tokenBytes.Length;
        VocabSize = n;
        EndOfGeneration = endOfGeneration.ToArray();
        InTrie = new bool[n];
        Bytes = new byte[n][];
        var ids = new List<int>(n);
        for (int i = 0; i < n; i++)
        {
            bool ok = tokenBytes[i].Length > 0 && (special is null || !special[i]);
            Bytes[i] = ok ? tokenBytes[i] : [];
            InTrie[i] = ok;
            if (ok) ids.Add(i);
        }
        foreach (var e in EndOfGeneration) if ((uint)e < (uint)n) { InTrie[e] = false; Bytes[e] = []; ids.Remove(e); }
        var sorted = ids.ToArray();
        Array.Sort(sorted, (a, b) => { int c = Bytes[a].AsSpan().SequenceCompareTo(Bytes[b]); return c != 0 ? c : a.CompareTo(b); });
        SortedIds = sorted;

        var first = new List<int> { -1 }; var next = new List<int> { -1 }; var last = new List<int> { -1 };
        var by = new List<byte> { 0 }; var ts = new List<int> { 0 }; var tc = new List<int> { 0 };
        var parent = new List<int> { -1 };
        var path = new List<int> { 0 };
        byte[] prev = [];
        for (int k = 0; k < sorted.Length; k++)
        {
            var b = Bytes[sorted[k]];
            int lcp = 0;
            while (lcp < b.Length && lcp < prev.Length && b[lcp] == prev[lcp]) lcp++;
            if (path.Count > lcp + 1) path.RemoveRange(lcp + 1, path.Count - lcp - 1);
            for (int d = lcp; d < b.Length; d++)
            {
                int par = path[d], node = by.Count;
                first.Add(-1); next.Add(-1); last.Add(-1); by.Add(b[d]); ts.Add(0); tc.Add(0); parent.Add(par);
                if (first[par] < 0) first[par] = node; else next[last[par]] = node;
                last[par] = node;
                path.Add(node);
            }
            int end = path[b.Length];
            if (tc[end] == 0) ts[end] = k;
            tc[end]++;
            prev = b;
        }
        FirstChild = [.. first]; NextSibling = [.. next]; Byte = [.. by]; TokStart = [.. ts]; TokCount = [.. tc];

        var plainIds = new List<int>(); var plainCps = new List<int>();
        var isPlain = new bool[n];
        foreach (var id in sorted)
        {
            var b = Bytes[id];
            if (!System.Text.Unicode.Utf8.IsValid(b) || b.AsSpan().IndexOfAnyInRange((byte)0, (byte)0x1F) >= 0 || b.AsSpan().IndexOfAny((byte)'"', (byte)'\\') >= 0) continue;
            int cps = 0;
            foreach (var x in b) if ((x & 0xC0) != 0x80) cps++;
            isPlain[id] = true; plainIds.Add(id); plainCps.Add(cps);
        }
        PlainIds = [.. plainIds]; PlainCodePoints = [.. plainCps];
        HasNonPlainBelow = new bool[Byte.Length];
        for (int node = Byte.Length - 1; node > 0; node--)
        {
            for (int k = TokStart[node]; k < TokStart[node] + TokCount[node] && !HasNonPlainBelow[node]; k++)
                if (!isPlain[SortedIds[k]]) HasNonPlainBelow[node] = true;
            if (HasNonPlainBelow[node]) HasNonPlainBelow[parent[node]] = true;
        }
    }
}
