using System.Globalization;

namespace OpenWeights.Tensors.Memory;

/// <summary>
/// The machine's memory as a new allocation sees it: /proc/meminfo's MemTotal and MemAvailable (the GC's figures where
/// that file is missing), both capped by a cgroup v2 limit. The model loader asks it before copying weights into
/// ordinary memory; the hardware probe reports it.
/// </summary>
public static class SystemMemory
{
    /// <summary>Memory a new allocation can take without swapping (MemAvailable, capped by a cgroup limit).</summary>
    public static long AvailableBytes() => Probe().Available;

    public static (long Total, long Available, string Source) Probe()
    {
        long total = 0, avail = 0;
        string source = "gc";
        try
        {
            if (File.Exists("/proc/meminfo") && ParseMemInfo(File.ReadAllText("/proc/meminfo")) is { } mi)
            {
                (total, avail) = mi;
                source = "/proc/meminfo";
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        if (total == 0)
        {
            var gc = GC.GetGCMemoryInfo();
            total = gc.TotalAvailableMemoryBytes;
            avail = Math.Max(0, gc.TotalAvailableMemoryBytes - gc.MemoryLoadBytes);
        }
        // A container's cgroup v2 limit caps both figures.
        try
        {
            if (File.Exists("/sys/fs/cgroup/memory.max"))
            {
                var max = ParseCgroupValue(File.ReadAllText("/sys/fs/cgroup/memory.max"));
                long? current = File.Exists("/sys/fs/cgroup/memory.current") ? ParseCgroupValue(File.ReadAllText("/sys/fs/cgroup/memory.current")) : null;
                if (max is { } limit && limit < total)
                {
                    total = limit;
                    avail = Math.Min(avail, Math.Max(0, limit - (current ?? 0)));
                    source = "cgroup";
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return (total, avail, source);
    }

    /// <summary>Total and available bytes from /proc/meminfo text (MemTotal, MemAvailable; MemFree+Cached on old kernels).</summary>
    public static (long Total, long Available)? ParseMemInfo(string text)
    {
        var kv = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            int colon = line.IndexOf(':');
            if (colon <= 0) continue;
            var parts = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0 || !long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)) continue;
            long mult = parts.Length > 1 && parts[1].Equals("kB", StringComparison.OrdinalIgnoreCase) ? 1024 : 1;
            kv[line[..colon]] = v * mult;
        }
        if (!kv.TryGetValue("MemTotal", out var total)) return null;
        long avail = kv.TryGetValue("MemAvailable", out var a) ? a
            : kv.GetValueOrDefault("MemFree") + kv.GetValueOrDefault("Cached") + kv.GetValueOrDefault("Buffers");
        return (total, avail);
    }

    /// <summary>A cgroup v2 memory file: a byte count, or "max" (no limit) → null.</summary>
    public static long? ParseCgroupValue(string text)
    {
        var t = text.Trim();
        return long.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;
    }
}
