using System.CommandLine;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights synth --preset P -q T -o FILE`: a random-weight GGUF of a real model's exact shape.</summary>
public static class SynthCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "Shape: " + string.Join(", ", SynthPreset.All.Select(p => p.Name)), Required = true };
        var type = CommonOptions.Quant("Weights type: f32, f16, bf16, q8_0, q4_0, q4_k_m, iq4_nl, iq4_xs, mxfp4_moe or pure-<type>", "q8_0");
        var output = CommonOptions.Output("Output GGUF file");
        var seed = new Option<ulong>("--seed") { Description = "Weights seed", DefaultValueFactory = _ => 42 };
        var threads = CommonOptions.Threads();
        var quiet = CommonOptions.Quiet();
        var layers = new Option<int?>("--layers") { Description = "Keep only the first N layers (a reduced model with the real layer shapes: quick to write, for profiling and tests)" };
        var context = new Option<int?>("--context") { Description = "Trained context length written to the file (default: the model's; larger for long-context benchmarks)" };
        var cmd = new Command("synth", "Write a random-weight GGUF with the exact shape of a known model (for benchmarks and tests)") { preset, type, output, seed, layers, context, threads, quiet };
        cmd.SetAction(pr =>
        {
            var p = SynthPreset.Get(pr.GetValue(preset)!);
            if (pr.GetValue(layers) is int n)
            {
                if (n < 1 || n > p.Layers) throw new OpenWeightsException($"--layers {n}: {p.Name} has {p.Layers} layers; give 1 to {p.Layers}");
                p = p with { Layers = n };
            }
            if (pr.GetValue(context) is int ctx)
            {
                if (ctx < 1 || ctx > 1 << 24) throw new OpenWeightsException($"--context {ctx}: give 1 to {1 << 24}");
                p = p with { ContextLength = ctx };
            }
            var t = SynthType.Parse(pr.GetValue(type)!);
            var path = pr.GetValue(output)!;
            if (Directory.Exists(path)) throw new OpenWeightsException($"{path} is a directory");
            var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            if (!Directory.Exists(dir)) throw new OpenWeightsException($"directory not found: {dir}");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            SyntheticModel.Write(p, t, path, pr.GetValue(seed), pr.GetValue(threads),
                ProgressLine.For(pr.InvocationConfiguration.Error, $"writing {Path.GetFileName(path)}", pr.GetValue(quiet)));
            pr.InvocationConfiguration.Output.WriteLine($"wrote {path} ({p.Name}, {t}, {new FileInfo(path).Length / 1e6:F1} MB) in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }
}
