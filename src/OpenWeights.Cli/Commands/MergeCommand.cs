using System.CommandLine;
using OpenWeights.Lora;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights merge MODEL ADAPTER [ADAPTER...] -o OUT.gguf [-q same|f16|q8_0|q4_0|q4_k_m]`: bake LoRA adapters into the weights.</summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var adapters = new Argument<string[]>("adapter") { Description = "LoRA adapters, FILE[:SCALE] (GGUF LoRA file or PEFT folder)", Arity = ArgumentArity.OneOrMore };
        var output = CommonOptions.Output("Merged GGUF file to write");
        var type = CommonOptions.Quant("Type of the merged tensors: same, f32, f16, bf16, q8_0, q4_0, q4_k_m; other tensors are copied as they are", "same");
        var json = CommonOptions.Json();
        var quiet = CommonOptions.Quiet();
        var cmd = new Command("merge", "Bake LoRA adapters into a GGUF model: W' = W + scale·B·A") { model, adapters, output, type, json, quiet };
        cmd.SetAction(pr =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            var specs = pr.GetValue(adapters)!.Select(LoraSpec.Parse).ToList();
            var mt = ParseType(pr.GetValue(type)!);
            string outPath = pr.GetValue(output)!;
            var r = LoraMerge.Merge(path, specs, outPath, mt, progress: ProgressLine.For(pr.InvocationConfiguration.Error, $"writing {Path.GetFileName(outPath)}", pr.GetValue(quiet)));
            var o = pr.InvocationConfiguration.Output;
            if (pr.GetValue(json))
                CliJson.Write(o, new { Output = outPath, Adapters = specs.Select(s => s.ToString()).ToArray(), Type = pr.GetValue(type), r.MergedTensors, r.CopiedTensors, r.Bytes });
            else
                o.WriteLine($"wrote {outPath}: {r.MergedTensors} tensors merged, {r.CopiedTensors} copied, {r.Bytes / 1048576.0:F1} MiB");
            return 0;
        });
        return cmd;
    }

    /// <summary>The merge type, named by its flag when unknown.</summary>
    internal static MergeType ParseType(string s)
    {
        try { return MergeType.Parse(s); }
        catch (OpenWeightsException e) { throw new OpenWeightsException($"-q/--quant: {e.Message}", e); }
    }
}
