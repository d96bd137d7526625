using System.Text.RegularExpressions;
using OpenWeights.Lora;

namespace OpenWeights.Training;

/// <summary>
/// The files a LoRA run keeps in its output folder: whether a folder already holds a run, clearing one, and removing the
/// temporary files an interrupted atomic write (temp file + rename, killed before the rename) leaves behind.
/// </summary>
public static partial class RunFolder
{
    /// <summary>Everything a run writes into its folder.</summary>
    public static readonly IReadOnlyList<string> RunFiles =
        [LoraTrainer.CheckpointFile, LoraTrainer.MetricsFile, LoraTrainer.GgufAdapterFile, PeftAdapter.ConfigFile, PeftAdapter.WeightsFile];

    /// <summary>The files that hold trained weights: a folder with one of them holds a run worth keeping.</summary>
    public static readonly IReadOnlyList<string> WeightFiles = [LoraTrainer.CheckpointFile, LoraTrainer.GgufAdapterFile, PeftAdapter.WeightsFile];

    /// <summary>The first weight file found in <paramref name="dir"/>, or null when it holds no run.</summary>
    public static string? ExistingRun(string dir) =>
        Directory.Exists(dir) ? WeightFiles.FirstOrDefault(f => File.Exists(Path.Combine(dir, f))) : null;

    /// <summary>Deletes the run files (only those) from <paramref name="dir"/>, so a fresh run starts clean.</summary>
    public static void Clear(string dir)
    {
        foreach (var f in RunFiles) File.Delete(Path.Combine(dir, f));
    }

    /// <summary>
    /// Our writers' temporary names: a run file + ".tmp-" + hex digits (SafetensorsWriter), a process id (PEFT config,
    /// metrics) or both joined by '-' (GgufWriter). Nothing else matches, so no file of the user's is touched.
    /// </summary>
    [GeneratedRegex(@"^(?:checkpoint\.safetensors|metrics\.jsonl|adapter\.gguf|adapter_config\.json|adapter_model\.safetensors)\.tmp-[0-9a-f]+(?:-[0-9a-f]+)?$")]
    private static partial Regex TemporaryName();

    public static bool IsTemporary(string fileName) => TemporaryName().IsMatch(fileName);

    /// <summary>
    /// Removes the temporaries an interrupted write left in <paramref name="dir"/> (not its subfolders); returns their
    /// names. Call it when a run starts or resumes there: one run per folder, so no write of ours is in flight.
    /// </summary>
    public static List<string> RemoveStaleTemporaries(string dir)
    {
        var removed = new List<string>();
        if (!Directory.Exists(dir)) return removed;
        foreach (var path in Directory.EnumerateFiles(dir))
        {
            string name = Path.GetFileName(path);
            if (!IsTemporary(name)) continue;
            try { File.Delete(path); removed.Add(name); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return removed;
    }
}
