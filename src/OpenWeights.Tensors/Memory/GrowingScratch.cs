namespace OpenWeights.Tensors.Memory;

/// <summary>
/// Per-thread scratch arrays that grow with the context (attention's score rows): grown by half again at least, so a prompt
/// evaluated in chunks of 512 positions up to 16,384 allocates a few arrays rather than one per chunk. (Each outgrown array
/// is garbage on the large-object heap until a full collection: growing by exactly what was needed left ~16× the final
/// size of it at 16k positions, 50 MB per thread in SmolLM2's 16-token blocks.)
/// </summary>
public static class GrowingScratch
{
    /// <summary><paramref name="a"/> when it holds <paramref name="n"/>, else a new array of max(n, min, 1.5 × its length).</summary>
    public static T[] Get<T>(ref T[]? a, int n, int min = 0)
    {
        if (a is { } s && s.Length >= n) return s;
        long grown = a is null ? 0 : a.Length + (long)a.Length / 2;
        return a = new T[(int)Math.Min(Array.MaxLength, Math.Max(Math.Max(n, min), grown))];
    }
}
