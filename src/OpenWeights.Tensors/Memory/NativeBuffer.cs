using System.Runtime.InteropServices;

namespace OpenWeights.Tensors.Memory;

/// <summary>
/// A 64-byte aligned block of native memory (repacked weights), freed on Dispose or, failing that, by the finalizer.
/// </summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    public byte* Pointer { get; private set; }
    public long Length { get; }

    public NativeBuffer(long length)
    {
        if (length <= 0) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 64);
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() => Free();

    private void Free()
    {
        if (Pointer == null) return;
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}

/// <summary>Page-level hints to the OS about memory-mapped file data.</summary>
public static unsafe partial class MappedPages
{
    private const int MADV_DONTNEED = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint addr, nuint length, int advice);

    /// <summary>
    /// Tells the OS this process no longer needs the whole pages inside [p, p + length) of a read-only file mapping, so
    /// they leave its resident set (a later read faults them in again from the file). Only for read-only file
    /// mappings: on anonymous memory this would discard data. Linux only; elsewhere (or on failure) a no-op.
    /// </summary>
    public static void Release(byte* p, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = ((long)p + page - 1) / page * page, end = ((long)p + length) / page * page;
        if (end <= start) return;
        try { madvise((nint)start, (nuint)(end - start), MADV_DONTNEED); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }
}
