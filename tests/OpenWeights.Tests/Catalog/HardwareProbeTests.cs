using OpenWeights.Hardware;

namespace OpenWeights.Tests.Catalog;

public class HardwareProbeTests
{
    [Fact]
    public void Parses_meminfo()
    {
        const string text = "MemTotal:       16318412 kB\nMemFree:         1234567 kB\nMemAvailable:    9876543 kB\nBuffers:          100 kB\n";
        var r = OpenWeights.Tensors.Memory.SystemMemory.ParseMemInfo(text);
        Assert.Equal((16318412L * 1024, 9876543L * 1024), r);
    }

    [Fact]
    public void Meminfo_without_MemAvailable_falls_back_to_free_plus_cache()
    {
        var r = OpenWeights.Tensors.Memory.SystemMemory.ParseMemInfo("MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 200 kB\nBuffers: 50 kB\n");
        Assert.Equal((1000L * 1024, 350L * 1024), r);
        Assert.Null(OpenWeights.Tensors.Memory.SystemMemory.ParseMemInfo("garbage"));
    }

    [Fact]
    public void Parses_cgroup_memory_max()
    {
        Assert.Null(OpenWeights.Tensors.Memory.SystemMemory.ParseCgroupValue("max\n"));
        Assert.Equal(1073741824L, OpenWeights.Tensors.Memory.SystemMemory.ParseCgroupValue("1073741824\n"));
    }

    [Fact]
    public void Parses_nvidia_smi_csv()
    {
        const string output = "NVIDIA H100 80GB HBM3, 81559, 81001\nNVIDIA GeForce RTX 4090, 24564, 23000\n\n";
        var gpus = HardwareProbe.ParseNvidiaSmi(output);
        Assert.Equal(2, gpus.Count);
        Assert.Equal(new GpuInfo("NVIDIA H100 80GB HBM3", 81559L << 20, 81001L << 20), gpus[0]);
        Assert.Equal("NVIDIA GeForce RTX 4090", gpus[1].Name);
        Assert.Equal(24564L * 1024 * 1024, gpus[1].TotalBytes);
    }

    [Fact]
    public void Nvidia_smi_names_with_commas_and_bad_lines()
    {
        var gpus = HardwareProbe.ParseNvidiaSmi("Odd, Name GPU, 1024, 512\nNVIDIA-SMI has failed because it couldn't communicate\nX, [N/A], [N/A]\n");
        Assert.Single(gpus);
        Assert.Equal(new GpuInfo("Odd, Name GPU", 1024L << 20, 512L << 20), gpus[0]);
        Assert.Empty(HardwareProbe.ParseNvidiaSmi(""));
    }

    [Fact]
    public void Missing_nvidia_smi_means_no_gpus_not_an_error()
    {
        var gpus = HardwareProbe.QueryNvidiaGpus(TimeSpan.FromSeconds(10));
        Assert.NotNull(gpus);
        Assert.All(gpus, g => Assert.True(g.TotalBytes >= g.FreeBytes));
    }

    [Fact]
    public void Probe_reports_this_machine()
    {
        using var dir = new TempDir();
        var hw = HardwareProbe.Probe(new HardwareProbeOptions { DiskPath = Path.Combine(dir.Path, "not", "yet", "created") });
        Assert.True(hw.TotalRamBytes > 0);
        Assert.InRange(hw.AvailableRamBytes, 0, hw.TotalRamBytes);
        Assert.Equal(Environment.ProcessorCount, hw.LogicalCores);
        Assert.Equal("assumed", hw.BandwidthSource);
        Assert.Equal(HardwareProbe.DefaultBandwidthGBps, hw.MemoryBandwidthGBps);
        Assert.NotNull(hw.DiskFreeBytes);
        Assert.Equal(dir.Path, hw.DiskPath); // walked up to the existing folder
        Assert.Equal(HardwareProbe.DetectSimd(), hw.Simd);
    }

    [Fact]
    public void Simd_level_agrees_with_IsSupported()
    {
        var s = HardwareProbe.DetectSimd();
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) Assert.True(s is SimdLevel.Avx2 or SimdLevel.Avx512);
        if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) Assert.Equal(SimdLevel.Neon, s);
    }

    /// <summary>"kernels" names what runs, not what the CPU has: AVX-512 kernels where AVX2, FMA and AVX-512 F/BW/VL are,
    /// AVX2 kernels where only AVX2 and FMA are, the portable 128-bit kernels on ARM64 ("neon"), the scalar references
    /// otherwise (an x64 CPU without AVX2, or AVX2 switched off).</summary>
    [Fact]
    public void Kernels_name_the_path_inference_takes()
    {
        var hw = HardwareProbe.Probe(new HardwareProbeOptions());
        bool avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        bool avx512 = avx2 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported
            && System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported;
        Assert.Equal(System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported ? "neon" : avx512 ? "avx512" : avx2 ? "avx2" : "scalar", hw.Kernels);
        var json = System.Text.Json.JsonSerializer.Serialize(hw, OpenWeights.Cli.CliJson.Options);
        Assert.Contains($"\"kernels\": \"{hw.Kernels}\"", json);
    }

    [Fact]
    public void Measured_bandwidth_is_positive()
    {
        double gbps = HardwareProbe.MeasureReadBandwidthGBps(16L << 20, repeats: 2, threads: 2);
        Assert.InRange(gbps, 0.1, 10_000);
    }
}
