using System.Text.Json.Serialization;

namespace OpenWeights.Hardware;

/// <summary>Widest SIMD instruction set the runtime can use (System.Runtime.Intrinsics IsSupported).</summary>
public enum SimdLevel { Scalar, Sse, Neon, Avx2, Avx512 }

/// <summary>One NVIDIA GPU as reported by nvidia-smi.</summary>
public sealed record GpuInfo(string Name, long TotalBytes, long FreeBytes);

/// <summary>What this machine offers for running a model.</summary>
public sealed record HardwareInfo
{
    public long TotalRamBytes { get; init; }
    /// <summary>Memory a new process can use without swapping (MemAvailable, capped by a cgroup limit).</summary>
    public long AvailableRamBytes { get; init; }
    /// <summary>Where the RAM figures came from: "/proc/meminfo", "cgroup", "gc".</summary>
    public string RamSource { get; init; } = "gc";
    public int LogicalCores { get; init; }
    [JsonConverter(typeof(SnakeCaseEnumConverter<SimdLevel>))]
    public SimdLevel Simd { get; init; }
    /// <summary>The inference kernels in use here (<see cref="OpenWeights.Tensors.Kernels.QuantDot.KernelPath"/>): "avx512",
    /// "avx2", "neon" (ARM64's 128-bit kernels), "vector128" (those forced on x64, a test mode) or "scalar"; may be narrower
    /// than <see cref="Simd"/>.</summary>
    public string Kernels { get; init; } = "";
    public string Os { get; init; } = "";
    public string Architecture { get; init; } = "";
    public IReadOnlyList<GpuInfo> Gpus { get; init; } = [];
    public string? DiskPath { get; init; }
    public long? DiskFreeBytes { get; init; }
    /// <summary>Memory read bandwidth in GB/s (10^9 bytes/s).</summary>
    [JsonPropertyName("memory_bandwidth_gbps")]
    public double MemoryBandwidthGBps { get; init; }
    /// <summary>"measured" (now, or remembered from an earlier `hardware --measure-bandwidth`) or "assumed".</summary>
    public string BandwidthSource { get; init; } = "assumed";
    /// <summary>When the bandwidth was measured; null when assumed.</summary>
    public DateTimeOffset? BandwidthMeasuredAt { get; init; }
    /// <summary>Read rate of the disk the model files live on, in GB/s, for models that run from the file map (weights larger
    /// than RAM: the part that is not resident is read from disk while generating). <see cref="HardwareProbe.DefaultDiskReadGBps"/>
    /// unless measured (<see cref="DiskReadSource"/>).</summary>
    [JsonPropertyName("disk_read_gbps")]
    public double DiskReadGBps { get; init; } = HardwareProbe.DefaultDiskReadGBps;
    /// <summary>"measured" or "assumed".</summary>
    public string DiskReadSource { get; init; } = "assumed";
    /// <summary>The CPU's model name (/proc/cpuinfo "model name"), or null when the OS does not say.</summary>
    public string? CpuModel { get; init; }

    /// <summary>A fixed machine description for tests and what-if estimates.</summary>
    public static HardwareInfo Synthetic(long ramBytes, double bandwidthGBps = HardwareProbe.DefaultBandwidthGBps, int cores = 8, IReadOnlyList<GpuInfo>? gpus = null) => new()
    {
        TotalRamBytes = ramBytes, AvailableRamBytes = ramBytes, RamSource = "synthetic", LogicalCores = cores,
        Simd = SimdLevel.Avx2, MemoryBandwidthGBps = bandwidthGBps, BandwidthSource = "assumed", Gpus = gpus ?? [],
    };
}
