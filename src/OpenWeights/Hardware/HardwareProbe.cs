using OpenWeights.Tensors.Memory;
using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Hardware;

public sealed record HardwareProbeOptions
{
    /// <summary>Folder whose free disk space is reported (the model store); null = current directory.</summary>
    public string? DiskPath { get; init; }
    /// <summary>Measure memory read bandwidth (takes about a second, allocates <see cref="BandwidthBytes"/>).</summary>
    public bool MeasureBandwidth { get; init; }
    public long BandwidthBytes { get; init; } = 256L << 20;
    /// <summary>Ask nvidia-smi for GPUs (when the tool is on PATH).</summary>
    public bool QueryGpus { get; init; } = true;
    /// <summary>
    /// Where a measured bandwidth is remembered (<see cref="BandwidthMemory"/>): a measurement is saved there, and without
    /// one a remembered measurement of this machine is used. Null: nothing is read or written (the library default; the
    /// CLI passes <see cref="BandwidthMemory.DefaultPath"/>).
    /// </summary>
    public string? BandwidthFile { get; init; }
}

/// <summary>
/// Probes RAM, cores, SIMD level, free disk, NVIDIA GPUs and (optionally) memory bandwidth. Never fails
/// because a source is missing: each falls back (GC memory info, no GPUs, assumed bandwidth).
/// </summary>
public static class HardwareProbe
{
    /// <summary>
    /// Bandwidth assumed when not measured: 25 GB/s, a conservative effective read rate for a dual-channel
    /// DDR4/DDR5 desktop or laptop (theoretical peaks are 40-90 GB/s; a few threads reach roughly half to
    /// two thirds of peak). Measure with --measure-bandwidth for a real figure.
    /// </summary>
    public const double DefaultBandwidthGBps = 25.0;

    /// <summary>
    /// Disk read rate assumed for weights read through the file map when not measured: 1 GB/s. Conservative for an NVMe
    /// SSD (2-7 GB/s sequential) reading megabyte-sized expert slices through page faults, which come in readahead-sized
    /// pieces rather than one long sequential stream; a SATA SSD reads about 0.5 GB/s and a hard disk about 0.15 GB/s, so
    /// on those the estimate is too high.
    /// </summary>
    public const double DefaultDiskReadGBps = 1.0;

    public static HardwareInfo Probe(HardwareProbeOptions? options = null)
    {
        options ??= new HardwareProbeOptions();
        var (total, avail, source) = ProbeRam();
        var (diskPath, diskFree) = ProbeDisk(options.DiskPath ?? Directory.GetCurrentDirectory());
        double bw = DefaultBandwidthGBps;
        string bwSource = "assumed";
        DateTimeOffset? measuredAt = null;
        string? cpu = CpuModel();
        int cores = Environment.ProcessorCount;
        if (options.MeasureBandwidth)
        {
            bw = MeasureReadBandwidthGBps(options.BandwidthBytes);
            bwSource = "measured";
            measuredAt = DateTimeOffset.UtcNow;
            if (options.BandwidthFile is { } file)
                BandwidthMemory.Save(file, new RememberedBandwidth { GBps = Math.Round(bw, 2), MeasuredAt = measuredAt.Value, CpuModel = cpu, LogicalCores = cores });
        }
        else if (options.BandwidthFile is { } file && BandwidthMemory.LoadFor(file, cpu, cores) is { } remembered)
        {
            bw = remembered.GBps;
            bwSource = "measured";
            measuredAt = remembered.MeasuredAt;
        }
        return new HardwareInfo
        {
            TotalRamBytes = total,
            AvailableRamBytes = avail,
            RamSource = source,
            LogicalCores = cores,
            CpuModel = cpu,
            Simd = DetectSimd(),
            Kernels = OpenWeights.Tensors.Kernels.QuantDot.KernelPath,
            Os = RuntimeInformation.OSDescription,
            Architecture = RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant(),
            Gpus = options.QueryGpus ? QueryNvidiaGpus() : [],
            DiskPath = diskPath,
            DiskFreeBytes = diskFree,
            MemoryBandwidthGBps = bw,
            BandwidthSource = bwSource,
            BandwidthMeasuredAt = measuredAt,
        };
    }

    /// <summary>The CPU model name from /proc/cpuinfo ("model name", x86; "Model" or "Hardware" on some ARM boards), else null.</summary>
    public static string? CpuModel()
    {
        try
        {
            return File.Exists("/proc/cpuinfo") ? ParseCpuModel(File.ReadAllText("/proc/cpuinfo")) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The first "model name" (else "Model", else "Hardware") value of /proc/cpuinfo text.</summary>
    public static string? ParseCpuModel(string cpuinfo)
    {
        string? Field(string key) => cpuinfo.Split('\n')
            .Select(l => l.Split(':', 2))
            .Where(p => p.Length == 2 && p[0].Trim().Equals(key, StringComparison.OrdinalIgnoreCase) && p[1].Trim().Length > 0)
            .Select(p => p[1].Trim()).FirstOrDefault();
        return Field("model name") ?? Field("Model") ?? Field("Hardware");
    }

    public static SimdLevel DetectSimd()
    {
        if (Avx512F.IsSupported) return SimdLevel.Avx512;
        if (Avx2.IsSupported) return SimdLevel.Avx2;
        if (AdvSimd.IsSupported) return SimdLevel.Neon;
        if (Sse41.IsSupported || (Vector128.IsHardwareAccelerated && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86))
            return SimdLevel.Sse;
        return SimdLevel.Scalar;
    }

    // ---- RAM ---------------------------------------------------------------------------------

    /// <summary>Memory a new allocation can take without swapping (<see cref="SystemMemory.AvailableBytes"/>).</summary>
    public static long AvailableMemoryBytes() => SystemMemory.AvailableBytes();

    private static (long total, long available, string source) ProbeRam() => SystemMemory.Probe();

    // ---- disk --------------------------------------------------------------------------------

    private static (string? path, long? free) ProbeDisk(string path)
    {
        try
        {
            var dir = new DirectoryInfo(Path.GetFullPath(path));
            while (dir is not null && !dir.Exists) dir = dir.Parent; // the store may not exist yet
            if (dir is null) return (path, null);
            return (dir.FullName, new DriveInfo(dir.FullName).AvailableFreeSpace);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return (path, null);
        }
    }

    // ---- GPUs --------------------------------------------------------------------------------

    /// <summary>GPUs from nvidia-smi; no tool, a failing tool or a timeout means none (never an error).</summary>
    public static IReadOnlyList<GpuInfo> QueryNvidiaGpus(TimeSpan? timeout = null)
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, CreateNoWindow = true,
            };
            using var p = Process.Start(psi);
            if (p is null) return [];
            var outTask = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(5)))
            {
                try { p.Kill(); } catch (InvalidOperationException) { }
                return [];
            }
            return p.ExitCode == 0 ? ParseNvidiaSmi(outTask.Result) : [];
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or InvalidOperationException or PlatformNotSupportedException)
        {
            return [];
        }
    }

    /// <summary>
    /// Parses `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits`:
    /// one line per GPU, "name, totalMiB, freeMiB". Lines that do not parse are skipped.
    /// </summary>
    public static IReadOnlyList<GpuInfo> ParseNvidiaSmi(string output)
    {
        var gpus = new List<GpuInfo>();
        foreach (var raw in output.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0) continue;
            // The name may itself contain commas: the last two fields are the numbers.
            int last = line.LastIndexOf(',');
            if (last <= 0) continue;
            int mid = line.LastIndexOf(',', last - 1);
            if (mid <= 0) continue;
            var name = line[..mid].Trim();
            if (!long.TryParse(line[(mid + 1)..last].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var totalMiB)) continue;
            if (!long.TryParse(line[(last + 1)..].Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var freeMiB)) continue;
            gpus.Add(new GpuInfo(name, totalMiB << 20, freeMiB << 20));
        }
        return gpus;
    }

    // ---- bandwidth ---------------------------------------------------------------------------

    private static long sink;

    /// <summary>
    /// Measured read bandwidth: every thread sums its slice of a <paramref name="bytes"/>-byte array with
    /// SIMD adds; best of <paramref name="repeats"/> passes (the machines are shared and noisy).
    /// </summary>
    public static double MeasureReadBandwidthGBps(long bytes = 256L << 20, int repeats = 5, int? threads = null)
    {
        int n = (int)Math.Max(Vector<long>.Count * 64, bytes / sizeof(long));
        var data = new long[n];
        for (int i = 0; i < n; i++) data[i] = i; // touch every page before timing
        int t = Math.Max(1, threads ?? Environment.ProcessorCount);
        int chunk = (n / t) / Vector<long>.Count * Vector<long>.Count;
        double best = double.MaxValue;
        var partial = new long[t];
        for (int r = 0; r < repeats; r++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, t, new ParallelOptions { MaxDegreeOfParallelism = t }, k =>
            {
                int start = k * chunk, end = k == t - 1 ? n : start + chunk;
                partial[k] = SumSlice(data.AsSpan(start, end - start));
            });
            sw.Stop();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        sink += partial.Sum();
        return (double)n * sizeof(long) / best / 1e9;
    }

    // ---- disk read rate ------------------------------------------------------------------------

    /// <summary>Above this a "disk" read came from memory (tmpfs, or pages the kernel kept): not a disk rate.</summary>
    public const double DiskFromMemoryGBps = 30;

    /// <summary>
    /// Sequential read rate of the disk that holds <paramref name="folder"/>, in GB/s: writes a temporary file of
    /// <paramref name="bytes"/> there, flushes it to the disk, has the kernel drop it from the page cache
    /// (<see cref="FilePages.DropFromCache"/>), reads it back in 4 MiB reads and deletes it. Null when the page cache cannot
    /// be bypassed (not Linux, the hint refused) or the read was served from memory (above <see cref="DiskFromMemoryGBps"/>:
    /// a tmpfs folder, or the kernel kept the pages). Sequential reads are the best case: a model read through the file map
    /// faults its experts in readahead-sized pieces, so the rate while generating is usually lower.
    /// </summary>
    public static double? MeasureDiskReadGBps(string folder, long bytes = 256L << 20)
    {
        const int Block = 4 << 20;
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, $".openweights-disk-probe-{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
        try
        {
            var buffer = new byte[Block];
            new Random(1).NextBytes(buffer); // incompressible, in case the file system compresses
            long blocks = Math.Max(1, bytes / Block);
            using (var w = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0))
            {
                for (long i = 0; i < blocks; i++) w.Write(buffer);
                w.Flush(flushToDisk: true);
                if (!FilePages.DropFromCache(w.SafeFileHandle)) return null;
            }
            using var r = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 0, FileOptions.SequentialScan);
            if (!FilePages.DropFromCache(r.SafeFileHandle)) return null;
            var sw = Stopwatch.StartNew();
            long read = 0;
            int n;
            while ((n = r.Read(buffer, 0, Block)) > 0) read += n;
            sw.Stop();
            double gbps = read / sw.Elapsed.TotalSeconds / 1e9;
            return gbps > DiskFromMemoryGBps ? null : gbps;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        finally
        {
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // full JIT from the first call: tier-0 code would measure the JIT, not memory
    private static long SumSlice(ReadOnlySpan<long> s)
    {
        var acc0 = Vector<long>.Zero;
        var acc1 = Vector<long>.Zero;
        var vs = MemoryMarshal.Cast<long, Vector<long>>(s);
        int i = 0;
        for (; i + 1 < vs.Length; i += 2) { acc0 += vs[i]; acc1 += vs[i + 1]; }
        for (; i < vs.Length; i++) acc0 += vs[i];
        long sum = Vector.Sum(acc0 + acc1);
        for (int j = vs.Length * Vector<long>.Count; j < s.Length; j++) sum += s[j];
        return sum;
    }
}
