using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using static OpenWeights.Models.Architectures.Names;

namespace OpenWeights.Formats.HuggingFace;

/// <summary>
/// Hugging Face checkpoint -> standard llama.cpp GGUF, tensor by tensor (never the whole model in memory):
/// Q/K rows permuted as convert_hf_to_gguf.py permutes them where the architecture's GGUF rotary pairing is NORM (llama,
/// mistral, smollm3; <c>openweights.rope.style</c> is then dropped), 2-D weights stored per llama.cpp's quantization recipe,
/// norms F32 (Gemma's with their +1), generated tensors (rope factors) F32, tokenizer and chat template carried.
/// Written atomically.
/// </summary>
public static class HfConverter
{
    public static readonly IReadOnlyList<string> TypeNames = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"];

    /// <summary>null preset = everything F32.</summary>
    public static QuantPreset? ParseType(string s) => s.Trim().ToLowerInvariant() switch
    {
        "f32" => null,
        "f16" => QuantPreset.F16,
        "bf16" => QuantPreset.BF16,
        "q8_0" => QuantPreset.Q8_0,
        "q4_0" => QuantPreset.Q4_0,
        "q4_k_m" => QuantPreset.Q4_K_M,
        _ => throw new OpenWeightsException($"unknown type '{s}' (choose {string.Join(", ", TypeNames)})"),
    };

    private static uint FileType(QuantPreset? p) => p switch
    {
        null => 0, QuantPreset.F16 => 1, QuantPreset.Q4_0 => 2, QuantPreset.Q8_0 => 7, QuantPreset.Q4_K_M => 15, QuantPreset.BF16 => 32,
        _ => 1024,
    };

    /// <summary>Where tensor row r of the GGUF comes from in the HF tensor: w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).</summary>
    public static long PermutedSourceRow(long r, int headDim)
    {
        long h = r / headDim, rem = r % headDim;
        long j = rem / 2, i = rem % 2;
        return h * headDim + i * (headDim / 2) + j;
    }

    /// <summary>
    /// Writes the GGUF. The checkpoint was checked against its config.json when it was opened; the file is written to a
    /// temporary name beside <paramref name="outPath"/> and renamed when complete, so a failure or cancellation leaves no
    /// file (and an existing one untouched). <paramref name="written"/> hears the bytes written, tensor by tensor.
    /// </summary>
    public static void Convert(HfCheckpoint src, string outPath, string type = "f16", int threads = 0, Action<string>? progress = null,
        IProgress<GgufWriteProgress>? written = null, CancellationToken ct = default)
    {
        var preset = ParseType(type);
        if (threads <= 0) threads = Environment.ProcessorCount;
        var c = ModelConfig.FromGguf(src);
        var w = new GgufWriter { Progress = written };
        foreach (var k in src.MetadataKeys)
            if (!k.StartsWith("openweights.", StringComparison.Ordinal)) w.Set(k, src.Metadata[k]);
        w.Set("general.file_type", FileType(preset));
        if (preset is QuantPreset.Q8_0 or QuantPreset.Q4_0 or QuantPreset.Q4_K_M) w.Set("general.quantization_version", 2u);

        bool tied = !src.TryGetTensor(Output, out _);
        foreach (var t in src.Tensors)
        {
            int layer = LayerOf(t.Name);
            GgmlType target;
            try
            {
                target = t.Dimensions.Length == 1 ? GgmlType.F32
                    : preset is { } p ? QuantRecipe.TypeFor(p, t.Name, Math.Max(0, layer), c.Layers, t.Dimensions[0], t.Dimensions.Length, tiedEmbeddings: tied)
                    : GgmlType.F32;
            }
            catch (ArgumentException e) { throw new OpenWeightsException($"cannot convert to {type.Trim().ToLowerInvariant()}: {e.Message}"); } // a row too short for the type's blocks
            int permuteHeadDim = 0;
            if (src.QkNeedsPermute && (t.Name.EndsWith("." + AttnQ, StringComparison.Ordinal) || t.Name.EndsWith("." + AttnK, StringComparison.Ordinal)
                || t.Name.EndsWith("." + AttnQBias, StringComparison.Ordinal) || t.Name.EndsWith("." + AttnKBias, StringComparison.Ordinal)))
                permuteHeadDim = c.HeadDim;
            long bytes = GgufWriter.ExpectedBytes(target, t.Dimensions);
            var info = t;
            w.AddTensor(t.Name, target, t.Dimensions, bytes, s =>
            {
                progress?.Invoke($"{info.Name} {info.ShapeText} {info.Type} -> {target}");
                WriteTensor(src, info, target, permuteHeadDim, s, threads, ct);
            });
        }
        w.Write(outPath, ct);
    }

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int dot = name.IndexOf('.', 4);
        return int.Parse(name.AsSpan(4, dot - 4), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static unsafe void WriteTensor(HfCheckpoint src, GgufTensorInfo t, GgmlType target, int permuteHeadDim, Stream s, int threads, CancellationToken ct)
    {
        int cols = (int)t.Dimensions[0];
        long rows = t.Dimensions.Length == 1 ? 1 : t.RowCount;
        byte* basePtr = src.TensorPointer(t);
        long srcRowBytes = GgmlTypes.RowBytes(t.Type, cols);
        if (t.Dimensions.Length == 1 && permuteHeadDim > 0)
        {
            // a 1-D bias: its elements are the rows
            var v = new float[cols];
            RowDecoder.Decode(t.Type, new ReadOnlySpan<byte>(basePtr, (int)srcRowBytes), v);
            var o = new float[cols];
            for (int r = 0; r < cols; r++) o[r] = v[PermutedSourceRow(r, permuteHeadDim)];
            s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(o.AsSpan()));
            return;
        }
        int dstRowBytes = (int)GgmlTypes.RowBytes(target, cols);
        if (target == t.Type && permuteHeadDim == 0)
        {
            // same type, same order: the bytes as they are
            for (long off = 0, total = rows * srcRowBytes; off < total; off += 1 << 24)
            {
                ct.ThrowIfCancellationRequested();
                s.Write(new ReadOnlySpan<byte>(basePtr + off, (int)Math.Min(1 << 24, total - off)));
            }
            return;
        }
        int chunkRows = (int)Math.Max(1, Math.Min(rows, (8 << 20) / Math.Max(1, dstRowBytes)));
        var buf = new byte[(long)chunkRows * dstRowBytes];
        for (long r0 = 0; r0 < rows; r0 += chunkRows)
        {
            ct.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunkRows, rows - r0);
            long first = r0;
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, () => new float[cols], (i, _, row) =>
            {
                long r = first + i;
                long sr = permuteHeadDim > 0 ? PermutedSourceRow(r, permuteHeadDim) : r;
                RowDecoder.Decode(t.Type, new ReadOnlySpan<byte>(basePtr + sr * srcRowBytes, (int)srcRowBytes), row);
                Quantize.Row(target, row, buf.AsSpan(i * dstRowBytes, dstRowBytes));
                return row;
            }, _ => { });
            s.Write(buf, 0, n * dstRowBytes);
        }
    }
}
