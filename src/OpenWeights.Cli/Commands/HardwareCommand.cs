using System.CommandLine;
using OpenWeights.Hardware;
using F = OpenWeights.Cli.Commands.CatalogFormat;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights hardware`: RAM, cores, SIMD, disk, GPUs and memory bandwidth of this machine.</summary>
public static class HardwareCommand
{
    /// <summary>Tests set this (it flows with the async context) instead of mutating the process environment.</summary>
    internal static readonly AsyncLocal<string?> BandwidthFileOverride = new();

    /// <summary>Where a measured bandwidth is remembered: <see cref="BandwidthMemory.DefaultPath"/> unless a test overrides it.</summary>
    internal static string BandwidthFile() => BandwidthFileOverride.Value ?? BandwidthMemory.DefaultPath();

    public static Command Create()
    {
        var disk = new Option<string?>("--disk") { Description = "Folder whose free space to report (default: current directory)" };
        var measure = new Option<bool>("--measure-bandwidth") { Description = "Measure memory read bandwidth (about a second, 256 MB) and remember it for `fit`" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("hardware", "Show what this machine offers for running models") { disk, measure, json };
        cmd.SetAction(pr =>
        {
            string file = BandwidthFile();
            var hw = HardwareProbe.Probe(new HardwareProbeOptions { DiskPath = pr.GetValue(disk), MeasureBandwidth = pr.GetValue(measure), BandwidthFile = file });
            var w = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json)) { CliJson.Write(w, hw); return 0; }
            w.WriteLine($"os           {hw.Os} ({hw.Architecture})");
            if (hw.CpuModel is not null) w.WriteLine($"cpu          {hw.CpuModel}");
            w.WriteLine($"cores        {hw.LogicalCores} logical");
            w.WriteLine($"simd         {hw.Simd switch { SimdLevel.Avx512 => "AVX-512", SimdLevel.Avx2 => "AVX2", SimdLevel.Neon => "NEON", SimdLevel.Sse => "SSE (128-bit)", _ => "scalar" }}");
            w.WriteLine($"kernels      {hw.Kernels switch { "avx512" => "AVX-512 (AVX2 where a type has no AVX-512 kernel)", "avx2" => "AVX2", _ => "scalar references" }} (what inference runs here)");
            w.WriteLine($"ram          {F.Bytes(hw.AvailableRamBytes)} available of {F.Bytes(hw.TotalRamBytes)} ({hw.RamSource})");
            string bwNote = hw.BandwidthSource == "assumed" ? "assumed; measure with --measure-bandwidth"
                : pr.GetValue(measure) ? $"measured now; remembered in {file} for fit"
                : $"measured on {hw.BandwidthMeasuredAt?.UtcDateTime:yyyy-MM-dd}, remembered in {file}";
            w.WriteLine($"bandwidth    {F.Number(hw.MemoryBandwidthGBps)} GB/s ({bwNote})");
            w.WriteLine($"disk         {(hw.DiskFreeBytes is { } d ? F.Bytes(d) + " free" : "unknown")} at {hw.DiskPath}");
            if (hw.Gpus.Count == 0) w.WriteLine("gpus         none (no NVIDIA GPU found via nvidia-smi)");
            foreach (var g in hw.Gpus) w.WriteLine($"gpu          {g.Name}: {F.Bytes(g.FreeBytes)} free of {F.Bytes(g.TotalBytes)}");
            return 0;
        });
        return cmd;
    }
}
