using System.Diagnostics;
using OpenWeights.Formats;
using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Catalog;

/// <summary>Speed and memory measured on this machine with our engine.</summary>
public sealed record FitMeasurement
{
    public required string Model { get; init; }
    /// <summary>"synthetic" (random weights of the exact shape, deleted afterwards) or "file".</summary>
    public required string Source { get; init; }
    public required string Type { get; init; }
    public long FileBytes { get; init; }
    public int Threads { get; init; }
    public int PromptTokens { get; init; }
    public double PrefillTokensPerSecond { get; init; }
    public int DecodeTokens { get; init; }
    public double DecodeTokensPerSecond { get; init; }
    /// <summary>Peak resident memory of this process (weights pages touched, KV cache, scratch).</summary>
    public long PeakRssBytes { get; init; }
    public IReadOnlyList<string> Assumptions { get; init; } = [];
}

/// <summary>
/// `fit --measure`: writes a random-weight GGUF of a model's exact shape to a temporary folder (nothing is
/// downloaded), runs a prompt and a few decode steps with <see cref="InferenceSession"/>, and deletes the file.
/// </summary>
public static class FitMeasure
{
    /// <summary>Quantization names (F16, Q4_K_M, ...) the synthetic writer can produce; null: Q4_K_M.</summary>
    public static string SynthTypeFor(string? quant) => quant?.ToUpperInvariant() switch
    {
        null or "" => "q4_k_m",
        "F16" => "f16",
        "BF16" => "bf16",
        "Q8_0" => "q8_0",
        "Q4_0" => "q4_0",
        "Q4_K_M" => "q4_k_m",
        "F32" => "f32",
        var q => throw new OpenWeightsException($"measuring on random weights can build F16, BF16, Q8_0, Q4_0 or Q4_K_M models, not {q}"),
    };

    public static FitMeasurement MeasureSynthetic(ModelShape shape, string synthType, int promptTokens = 128, int decodeTokens = 32, int threads = 0, string? tempRoot = null)
    {
        var assumptions = new List<string>();
        var preset = ShapePreset.For(shape, assumptions);
        var type = SynthType.Parse(synthType);
        string root = tempRoot ?? Path.GetTempPath();
        // an exact-shape file of a very large model (DeepSeek-V3: hundreds of GB) must not fill the disk half-way
        long planned = SyntheticModel.Plan(preset, type).Sum(t => t.Bytes);
        long free = new DriveInfo(Path.GetFullPath(root)).AvailableFreeSpace;
        if (planned > free - (1L << 30))
            throw new OpenWeightsException($"{shape.Name}: a random-weight {type} file of its exact shape takes {planned / 1e9:F1} GB and {root} has {free / 1e9:F1} GB free, so it cannot be measured here (measure a reduced configuration's file instead)");
        string dir = Path.Combine(root, "openweights-measure-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "model.gguf");
            SyntheticModel.Write(preset, type, path, threads: threads);
            long bytes = new FileInfo(path).Length;
            var m = Measure(OpenWeights.Formats.Gguf.GgufFile.Open(path), shape.Name, "synthetic", type.ToString(), bytes, promptTokens, decodeTokens, threads);
            return m with { Assumptions = [.. assumptions, "random weights of the exact shape: speed does not depend on the values"] };
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Measures a model source (owned: disposed here).</summary>
    public static FitMeasurement Measure(ITensorSource source, string name, string sourceKind, string type, long fileBytes, int promptTokens = 128, int decodeTokens = 32, int threads = 0)
    {
        if (promptTokens < 1 || decodeTokens < 1) throw new OpenWeightsException($"measuring needs at least one prompt token and one decode token (promptTokens {promptTokens}, decodeTokens {decodeTokens})");
        if (threads <= 0) threads = Environment.ProcessorCount;
        using var model = DecoderModel.LoadOwned(source);
        int vocab = model.Config.VocabSize;
        var session = new InferenceSession(model, promptTokens + decodeTokens + 8, threads);
        var rng = new Random(1234);
        var prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(0, Math.Min(vocab, 256 + 26 * 27))).ToArray();
        var sw = Stopwatch.StartNew();
        session.EvaluatePrompt(prompt);
        double prefill = promptTokens / sw.Elapsed.TotalSeconds;
        sw.Restart();
        int next = prompt[^1];
        for (int i = 0; i < decodeTokens; i++)
        {
            var logits = session.Evaluate([next]);
            next = (int)((uint)(i * 7919 + 17) % (uint)Math.Min(vocab, 256 + 26 * 27)); // fixed, cheap choice: the speed does not depend on it
            _ = logits.Length;
        }
        double decode = decodeTokens / sw.Elapsed.TotalSeconds;
        using var proc = Process.GetCurrentProcess();
        proc.Refresh();
        return new FitMeasurement
        {
            Model = name, Source = sourceKind, Type = type, FileBytes = fileBytes, Threads = threads,
            PromptTokens = promptTokens, PrefillTokensPerSecond = prefill, DecodeTokens = decodeTokens, DecodeTokensPerSecond = decode,
            PeakRssBytes = proc.PeakWorkingSet64,
        };
    }
}
