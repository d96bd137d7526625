namespace OpenWeights.Tokenizers;

/// <summary>
/// Binary min-heap of candidate merges keyed by a 64-bit priority whose low 32 bits are the left symbol index,
/// so equal ranks/scores pop left-most first (the tie rule of llama.cpp's comparators).
/// </summary>
internal struct MergeQueue
{
    public struct Item
    {
        public ulong Key;    // (priority << 32) | left
        public int Right;
        public int Size;     // combined length of the two symbols when queued (staleness check)
        public int Merged;   // id of the merged symbol (BPE) or token (SPM)
        public readonly int Left => (int)(uint)Key;
    }

    private Item[] items;
    private int count;

    public MergeQueue(int capacity) { items = new Item[Math.Max(4, capacity)]; count = 0; }

    public readonly int Count => count;

    public void Clear() => count = 0;

    public void Push(in Item it)
    {
        if (count == items.Length) Array.Resize(ref items, items.Length * 2);
        int i = count++;
        while (i > 0)
        {
            int p = (i - 1) >> 1;
            if (items[p].Key <= it.Key) break;
            items[i] = items[p];
            i = p;
        }
        items[i] = it;
    }

    public Item Pop()
    {
        var top = items[0];
        var last = items[--count];
        int i = 0;
        while (true)
        {
            int l = 2 * i + 1;
            if (l >= count) break;
            int r = l + 1;
            int m = r < count && items[r].Key < items[l].Key ? r : l;
            if (items[m].Key >= last.Key) break;
            items[i] = items[m];
            i = m;
        }
        if (count > 0) items[i] = last;
        return top;
    }

    /// <summary>Maps a float score to a uint whose order is the reverse of the float order (higher score pops first).</summary>
    public static uint DescendingScoreKey(float score)
    {
        uint bits = BitConverter.SingleToUInt32Bits(score);
        uint asc = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
        return ~asc;
    }
}
