using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OpenWeights.Tensors.Memory;

/// <summary>Page-cache hints for whole files (as <see cref="MappedPages"/> is for mappings).</summary>
public static partial class FilePages
{
    private const int POSIX_FADV_DONTNEED = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int posix_fadvise(int fd, long offset, long length, int advice);

    /// <summary>
    /// Asks the kernel to drop a file's clean pages from the page cache (posix_fadvise DONTNEED), so the next read comes
    /// from the disk. Flush the file to disk first: dirty pages stay. True when the kernel accepted the hint; false when
    /// not Linux or the call failed (then reads may still come from memory).
    /// </summary>
    public static bool DropFromCache(SafeFileHandle file)
    {
        if (!OperatingSystem.IsLinux() || file.IsInvalid) return false;
        try { return posix_fadvise((int)file.DangerousGetHandle(), 0, 0, POSIX_FADV_DONTNEED) == 0; }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }
}
