using System.CommandLine;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights convert DIR -o FILE.gguf [-q TYPE]`: a Hugging Face checkpoint to a llama.cpp-compatible GGUF.</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "Hugging Face checkpoint folder (config.json + safetensors), or a repo id / catalog id in the local store" };
        var output = CommonOptions.Output("GGUF file to write");
        var type = CommonOptions.Quant($"Weights type: {string.Join(", ", HfConverter.TypeNames)}", "f16");
        var threads = CommonOptions.Threads();
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print each tensor as it is written" };
        var json = CommonOptions.Json();
        var quiet = CommonOptions.Quiet();
        var cmd = new Command("convert", "Convert a Hugging Face checkpoint (llama, mistral, qwen2; F32/F16/BF16 safetensors) to a GGUF file, optionally quantized")
        {
            model, output, type, threads, verbose, json, quiet,
        };
        cmd.SetAction(pr =>
        {
            var o = pr.InvocationConfiguration.Output;
            string path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            if (!Directory.Exists(path)) throw new OpenWeightsException($"{path} is not a Hugging Face checkpoint folder (convert reads config.json + safetensors)");
            string outPath = pr.GetValue(output)!;
            string t = pr.GetValue(type)!;
            HfConverter.ParseType(t); // fail before opening anything
            var sw = System.Diagnostics.Stopwatch.StartNew();
            // Ctrl-C / SIGTERM cancel the write, which deletes the temporary file (the checkpoint is validated before anything is written)
            using (var stop = new StopSignal(CancellationToken.None, pr.InvocationConfiguration.Error, "stopping: the partial output is removed"))
            using (var src = HfCheckpoint.Open(path))
                HfConverter.Convert(src, outPath, t, pr.GetValue(threads), pr.GetValue(verbose) ? msg => pr.InvocationConfiguration.Error.WriteLine(msg) : null,
                    pr.GetValue(verbose) ? null : ProgressLine.For(pr.InvocationConfiguration.Error, $"writing {Path.GetFileName(outPath)}", pr.GetValue(quiet)), stop.Token);
            long size = new FileInfo(outPath).Length;
            if (pr.GetValue(json)) CliJson.Write(o, new { source = path, output = Path.GetFullPath(outPath), type = t.ToLowerInvariant(), bytes = size, seconds = sw.Elapsed.TotalSeconds });
            else o.WriteLine($"wrote {outPath} ({InfoCommand.Size(size)}, {t.ToLowerInvariant()}) in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }
}
