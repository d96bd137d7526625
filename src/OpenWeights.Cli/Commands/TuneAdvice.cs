using System.Globalization;
using System.Text.RegularExpressions;

namespace OpenWeights.Cli.Commands;

/// <summary>What `tune` tells a user around a run: whether it is long enough to matter, and how to use the result.</summary>
public static partial class TuneAdvice
{
    /// <summary>Fewer optimiser steps than this are too few at any learning rate (Adam's moment estimates are still settling).</summary>
    public const int MinSteps = 20;

    /// <summary>
    /// Below this peak learning rate × steps the adapter barely moves: B starts at zero and Adam moves each weight by
    /// about the learning rate per step, so lr·steps bounds how far it can get. Measured (docs/FINE-TUNING.md): teaching
    /// stories260K a new name changed its greedy output from lr·steps ≈ 0.014 on, not at 0.011 or below; 2e-4 × 75 = 0.015.
    /// </summary>
    public const double MinLrSteps = 0.015;

    /// <summary>The higher learning rate suggested besides more steps.</summary>
    public const float SuggestedLr = 1e-3f;

    /// <summary>Steps needed at learning rate <paramref name="lr"/> to pass both thresholds.</summary>
    public static int StepsNeeded(float lr) => Math.Max(MinSteps, (int)Math.Ceiling(MinLrSteps / lr * (1 - 1e-6)));  // 1e-6: 2e-4f is not 2e-4 exactly

    /// <summary>
    /// A one-line warning when the run is too short to change the model, with the flags that fix it (more epochs, or a
    /// higher learning rate with fewer); null when it is long enough. <paramref name="maxStepsLimits"/>: --max-steps,
    /// not the epochs, ends the run.
    /// </summary>
    public static string? ShortRun(int totalSteps, int stepsPerEpoch, float lr, bool maxStepsLimits)
    {
        if (totalSteps >= MinSteps && (double)lr * totalSteps >= MinLrSteps * (1 - 1e-6)) return null;
        string Fix(float atLr)
        {
            int need = StepsNeeded(atLr);
            if (maxStepsLimits) return $"--max-steps {need}";
            int epochs = (need + stepsPerEpoch - 1) / Math.Max(1, stepsPerEpoch);
            return $"--epochs {epochs} ({epochs * stepsPerEpoch} steps)";
        }
        string fix = "try " + Fix(lr);
        if (lr < SuggestedLr) fix += $", or --lr {Num(SuggestedLr)} {Fix(SuggestedLr)}";
        return $"warning: {totalSteps} optimizer step{(totalSteps == 1 ? "" : "s")} at --lr {Num(lr)} is usually too few to change the model; {fix}; more examples help most (docs/FINE-TUNING.md)";
    }

    private static string Num(float v) => v.ToString("0.#####E0", CultureInfo.InvariantCulture).Replace("E-", "e-").Replace("E0", "").Replace("E", "e");

    /// <summary>The lines printed after a run: where the adapter is and the commands that use it, with the real paths.</summary>
    public static IEnumerable<string> UsageLines(string model, string dir)
    {
        string gguf = Path.Combine(dir, OpenWeights.Training.LoraTrainer.GgufAdapterFile);
        yield return $"adapter: {gguf} (llama.cpp GGUF LoRA); PEFT folder {dir} ({OpenWeights.Lora.PeftAdapter.ConfigFile}, {OpenWeights.Lora.PeftAdapter.WeightsFile})";
        yield return "use it:";
        yield return $"  openweights run {Sh(model)} --lora {Sh(gguf)} \"...\"";
        yield return $"  openweights serve {Sh(model)} --lora {Sh(gguf)}";
        yield return $"  openweights merge {Sh(model)} {Sh(gguf)} -o merged.gguf";
        yield return $"  (--lora {Sh(dir)} loads the PEFT folder; Hugging Face PEFT reads it as it is)";
    }

    [GeneratedRegex(@"^[A-Za-z0-9_./:@%+=,-]+$")]
    private static partial Regex ShellSafe();

    /// <summary>A word as a POSIX shell reads it back: as is when safe, else single-quoted.</summary>
    public static string Sh(string s) => s.Length > 0 && ShellSafe().IsMatch(s) ? s : "'" + s.Replace("'", "'\\''") + "'";
}
