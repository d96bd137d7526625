using System.Runtime.Intrinsics;
using System.Runtime.InteropServices;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tensors.Tests.Kernels;

/// <summary>
/// The attention kernels' portable 128-bit path (ARM64's SIMD attention), run here on x64 through
/// <see cref="QuantDot.ForceVector128"/>: the same checks as <see cref="AttentionKernelsTests"/> (scalar references, in place =
/// decoded, several rows = one row, bit for bit where the AVX2 path is) plus head sizes that are a multiple of 4 but not 8,
/// and every f16 bit pattern decoded. The forced switch is process-wide, so these tests run in the serial collection and
/// put it back.
/// </summary>
[Collection(nameof(SerialAllocationTests))]
public unsafe class AttentionKernelsVector128Tests
{
    /// <summary>Runs <paramref name="check"/> with the 128-bit kernels forced, then restores the switch.</summary>
    private static void Forced(Action check)
    {
        if (!Vector128.IsHardwareAccelerated) Assert.Skip("128-bit SIMD is not accelerated on this machine");
        bool old = QuantDot.ForceVector128;
        QuantDot.ForceVector128 = true;
        try { check(); }
        finally { QuantDot.ForceVector128 = old; }
    }

    [Fact]
    public void The_128_bit_path_takes_head_sizes_that_are_a_multiple_of_4() => Forced(() =>
    {
        Assert.True(QuantDot.KernelPath is "vector128" or "neon", QuantDot.KernelPath);
        foreach (int d in new[] { 4, 12, 20, 64, 72, 128 }) Assert.True(AttentionKernels.Supported(d), $"d={d}");
        foreach (int d in new[] { 0, 2, 6, 66 }) Assert.False(AttentionKernels.Supported(d), $"d={d}");
    });

    [Fact]
    public void Scores_and_weighted_sum_match_scalar_references() =>
        Forced(() => AttentionKernelsTests.ScoresAndWeightedSumsMatchScalarReferences([4, 8, 12, 16, 20, 36, 64, 72, 128, 136]));

    /// <summary>
    /// On the 128-bit path a key's score is one expression of that key and the query (the 4-key sums and the single-key sums
    /// add the same pairs), so it does not depend on where the key falls in the pass: scoring from the 1st, 2nd or 3rd key
    /// on gives every key the same bits, for F32, F16 and Q8_0 keys.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    public void A_keys_score_does_not_depend_on_its_place_in_the_pass(GgmlType type) => Forced(() =>
    {
        var rng = new Random(17);
        int d = 64, len = 23;
        long rowBytes = type switch { GgmlType.F16 => 2L * d, GgmlType.Q8_0 => d / 32 * 34, _ => 4L * d };
        var raw = new byte[len * rowBytes];
        var x = new float[d];
        var q = new float[d];
        for (int i = 0; i < d; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
        fixed (byte* pr = raw)
        {
            for (int j = 0; j < len; j++)
            {
                for (int i = 0; i < d; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
                AttentionKernelsTests.Store(type, x, pr + j * rowBytes);
            }
            var all = new float[len];
            AttentionKernels.Scores(type, q, pr, rowBytes, len, 0.125f, all);
            for (int first = 1; first < 4; first++)
            {
                var part = new float[len - first];
                AttentionKernels.Scores(type, q, pr + first * rowBytes, rowBytes, len - first, 0.125f, part);
                Assert.True(all.AsSpan(first).SequenceEqual(part), $"{type}: scores from key {first} on differ");
            }
        }
    });

    [Theory]
    [InlineData(GgmlType.F16, 64)]
    [InlineData(GgmlType.F16, 36)] // 8 halves at a time, then 4 one by one
    [InlineData(GgmlType.Q8_0, 64)]
    [InlineData(GgmlType.Q8_0, 96)]
    public void Decoded_cache_rows_match_the_scalar_reference(GgmlType type, int d) =>
        Forced(() => AttentionKernelsTests.DecodedRowsMatchTheScalarReference(type, d));

    /// <summary>All 65,536 f16 bit patterns (±0, subnormals, normals, ±inf, signalling and quiet NaNs with their payloads)
    /// decode to the scalar reference's bits, both by <see cref="AttentionKernels.DecodeRows"/> and read in place by the
    /// weighted sum (one key, weight 1, onto -0: fma(v, 1, -0) = v for every v, NaNs included).</summary>
    [Fact]
    public void Every_f16_bit_pattern_decodes_to_the_scalar_bits() => Forced(() =>
    {
        const int d = 256, rows = 65536 / d;
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var a = new float[65536]; var b = new float[65536];
        fixed (ushort* ph = halves) fixed (float* pa = a, pb = b)
        {
            AttentionKernels.DecodeRows(GgmlType.F16, (byte*)ph, 2 * d, rows, d, pa);
            AttentionKernels.DecodeRowsScalar(GgmlType.F16, (byte*)ph, 2 * d, rows, d, pb);
        }
        Assert.True(MemoryMarshal.Cast<float, int>(b).SequenceEqual(MemoryMarshal.Cast<float, int>(a)), "DecodeRows differs from the scalar reference");
        var o = new float[d];
        fixed (ushort* ph = halves)
            for (int r = 0; r < rows; r++)
            {
                Array.Fill(o, -0f);
                AttentionKernels.WeightedSumAccumulate(GgmlType.F16, [1f], (byte*)(ph + r * d), 2 * d, o);
                Assert.True(MemoryMarshal.Cast<float, int>(b.AsSpan(r * d, d)).SequenceEqual(MemoryMarshal.Cast<float, int>(o.AsSpan())), $"row {r} read in place");
            }
    });

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.F32)]
    public void Scores_and_weighted_sums_over_cache_rows_in_place_match_decoded_rows(GgmlType type) =>
        Forced(() => AttentionKernelsTests.InPlaceRowsMatchDecodedRows(type, type == GgmlType.Q8_0 ? [32, 64, 96, 128, 256] : [4, 12, 32, 36, 64, 96, 128, 256]));

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.F32)]
    public void Several_rows_per_pass_give_each_row_the_one_row_bits(GgmlType type) =>
        Forced(() => AttentionKernelsTests.SeveralRowsGiveEachRowTheOneRowBits(type, type == GgmlType.Q8_0 ? [32, 64, 96, 128] : [4, 8, 12, 20, 24, 40, 64, 96, 128]));
}
