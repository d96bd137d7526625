using OpenWeights.Catalog;
using OpenWeights.Formats.Gguf;
using OpenWeights.Hardware;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Models;

/// <summary>
/// Larger than RAM (issue 13): a mixture of experts whose repacked copies do not fit the memory budget repacks its dense
/// part and leaves the routed experts in the file map; the logits stay those of the all-repacked model. And `fit` on such
/// a file sees its experts.
/// </summary>
public class MoeRepackTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [5, 300, 301, 17, 900, 44, 45, 46, 260];

    private static void SkipUnlessRepacking()
    {
        if (!OpenWeights.Tensors.Kernels.WeightMatrix.RepackEnabled) Assert.Skip("OPENWEIGHTS_NO_REPACK=1 is set");
        if (!(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported))
            Assert.Skip("no AVX2/FMA: weights are not repacked on this CPU");
    }

    private static float[] Logits(DecoderModel m)
    {
        var all = new float[Prompt.Length * m.Config.VocabSize];
        m.Forward(Prompt, m.CreateCache(32), m.CreateState(Prompt.Length, 32), 2, all);
        return all;
    }

    private static double MaxRelDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = a.Max(Math.Abs), diff = 0;
        for (int i = 0; i < a.Length; i++) diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
        return diff / max;
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("pure-q4_0")]
    public void Over_budget_the_dense_part_is_repacked_and_the_experts_stay_in_the_file_map(string type)
    {
        SkipUnlessRepacking();
        using var dir = new TempDir();
        var path = dir.File($"moe-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen3moe"), SynthType.Parse(type), path, threads: 2);

        using var plain = DecoderModel.Load(path, repack: false);
        using var all = DecoderModel.Load(path, repack: false);
        using var part = DecoderModel.Load(path, repack: false);
        var (dense, routed) = part.RepackableMatrices();
        long needDense = dense.Sum(p => p.Weight.RepackBytes), needRouted = routed.Sum(p => p.Weight.RepackBytes);
        int denseRepackable = dense.Count(p => p.Weight.RepackBytes > 0), routedRepackable = routed.Count(p => p.Weight.RepackBytes > 0);
        output.WriteLine($"{type}: dense {denseRepackable} matrices {needDense} B, routed {routedRepackable} matrices {needRouted} B");
        // tiny-qwen3moe: 2 layers × 16 experts × gate/up/down; attention, routers and output are the dense part
        Assert.Equal(2 * 16 * 3, routed.Length);
        Assert.True(needDense > 0 && needRouted > needDense, "the experts are most of the copies");

        const long Margin = 256L << 20;
        Assert.Equal(denseRepackable + routedRepackable, all.RepackWeights(availableBytes: Margin + needDense + needRouted));
        // room for the dense copies and half the experts': the experts stay in the file map
        Assert.Equal(denseRepackable, part.RepackWeights(availableBytes: Margin + needDense + needRouted / 2));
        Assert.Equal(denseRepackable, dense.Count(p => p.Weight.IsRepacked));
        Assert.DoesNotContain(routed, p => p.Weight.IsRepacked);
        Assert.Equal(denseRepackable + routedRepackable, all.Layers.SelectMany(l => l.Matrices).Append(all.Output).DistinctBy(p => p.Weight).Count(p => p.Weight.IsRepacked));

        // the experts' bytes through the map are still the file's (nothing was released from them)
        var bytes = File.ReadAllBytes(path);
        var g = (GgufFile)part.Source;
        foreach (var t in g.Tensors.Where(t => t.Dimensions.Length == 3))
            Assert.True(g.TensorData(t).SequenceEqual(bytes.AsSpan((int)(g.DataOffset + t.Offset), (int)t.ByteSize)), t.Name);

        // logits: the interleaved kernels may add in another order than the row kernels; 8-bit activations absorb it
        // (RepackTests: 1e-4 of the largest logit). Measured (AVX2 + VNNI machine): dense-only vs all repacked 0 (the
        // experts' few-row products give the same bits either way), vs none 1.5e-7 (q8_0) / 1.0e-7 (pure-q4_0).
        var a = Logits(all); var p2 = Logits(part); var n = Logits(plain);
        double partVsAll = MaxRelDiff(a, p2), partVsPlain = MaxRelDiff(n, p2);
        output.WriteLine($"{type}: max |diff| / max |logit|: dense-only vs all repacked {partVsAll:E2}, vs none {partVsPlain:E2}");
        Assert.True(partVsAll <= 1e-5, $"dense-only vs all repacked: {partVsAll:E2}");
        Assert.True(partVsPlain <= 1e-4, $"dense-only vs none repacked: {partVsPlain:E2}");
        Assert.Equal(Argmax(a), Argmax(p2));
    }

    private static int[] Argmax(float[] logits)
    {
        int vocab = logits.Length / Prompt.Length;
        return Enumerable.Range(0, Prompt.Length).Select(t =>
        {
            var row = logits.AsSpan(t * vocab, vocab);
            int best = 0;
            for (int i = 1; i < vocab; i++) if (row[i] > row[best]) best = i;
            return best;
        }).ToArray();
    }

    [Fact]
    public void Without_room_for_the_dense_part_nothing_is_repacked()
    {
        SkipUnlessRepacking();
        using var dir = new TempDir();
        var path = dir.File("moe-small.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen3moe"), SynthType.Parse("q8_0"), path, threads: 2);
        using var m = DecoderModel.Load(path, repack: false);
        var (dense, _) = m.RepackableMatrices();
        long needDense = dense.Sum(p => p.Weight.RepackBytes);
        Assert.Equal(0, m.RepackWeights(availableBytes: (256L << 20) + needDense - 1));
        Assert.DoesNotContain(m.Layers.SelectMany(l => l.Matrices).Append(m.Output), p => p.Weight.IsRepacked);
        // a dense model has no such middle ground: over budget, nothing (RepackTests.Without_room_for_the_copies_nothing_is_repacked)
    }

    [Fact]
    public void Fit_on_a_MoE_file_sees_its_experts_and_runs_it_from_the_file_map_when_RAM_is_short()
    {
        using var dir = new TempDir();
        var path = dir.File("moe-fit.gguf");
        var preset = SynthPreset.Get("tiny-qwen3moe");
        SyntheticModel.Write(preset, SynthType.Parse("q8_0"), path, threads: 2);
        using var g = GgufFile.Open(path);
        var shape = ModelShape.FromSource(g);
        Assert.Equal((16, 4), (shape.Moe!.Experts, shape.Moe.ExpertsPerToken));
        var expertTensors = g.Tensors.Where(t => t.Dimensions.Length == 3).ToList();
        Assert.Equal(3 * preset.Layers, expertTensors.Count);
        Assert.Equal(expertTensors.Sum(t => t.ByteSize), shape.RoutedExpertBytes);
        long routed = expertTensors.Sum(t => t.ElementCount);
        Assert.Equal(routed, shape.RoutedExpertParams);
        Assert.Equal(shape.TotalParams - routed + routed * 4 / 16, shape.ActiveParams);
        Assert.Equal("Q8_0", shape.WeightsQuant);

        // plenty of RAM: fits; a budget under the weights but over the dense part: the file map, with the file's bytes
        var fits = FitEstimator.Estimate(shape, HardwareInfo.Synthetic(64L << 30));
        Assert.Equal(FitVerdict.Fits, fits.Verdict);
        long fixedBytes = shape.WeightBytes!.Value - shape.RoutedExpertBytes!.Value + fits.Memory.KvCacheBytes + fits.Memory.OverheadBytes;
        var mapped = FitEstimator.Estimate(shape, HardwareInfo.Synthetic(fixedBytes + shape.RoutedExpertBytes.Value / 4));
        Assert.Equal(FitVerdict.FromFileMap, mapped.Verdict);
        Assert.Equal(shape.RoutedExpertBytes, mapped.FileMap!.ExpertBytes);
        Assert.Equal(shape.RoutedExpertBytes.Value / 4, mapped.FileMap.ResidentExpertBytes);
        Assert.True(mapped.DecodeTokensPerSecond < fits.DecodeTokensPerSecond);
        Assert.Contains(mapped.Assumptions, a => a.Contains("routed experts counted from the file's expert tensors"));
    }
}
