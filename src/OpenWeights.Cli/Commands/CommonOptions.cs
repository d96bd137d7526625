using System.CommandLine;

namespace OpenWeights.Cli.Commands;

/// <summary>Options shared by several commands, so they read the same everywhere.</summary>
public static class CommonOptions
{
    public static Option<bool> Json() => new("--json") { Description = "Machine-readable JSON output" };

    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "Worker threads (default: all cores)",
        DefaultValueFactory = _ => Environment.ProcessorCount,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--threads must be at least 1"); } },
    };

    public static Option<int> Context() => new("--ctx", "-c")
    {
        Description = "Context size in tokens",
        DefaultValueFactory = _ => 4096,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--ctx must be at least 1"); } },
    };

    /// <summary>`--lora FILE[:SCALE]`, repeatable: GGUF LoRA files or PEFT adapter folders (run, chat, serve).</summary>
    public static Option<string[]> Lora() => new("--lora")
    {
        Description = "LoRA adapter to apply, FILE[:SCALE] (GGUF LoRA file or PEFT folder; repeatable)",
        AllowMultipleArgumentsPerToken = false,
    };

    /// <summary>Attaches the `--lora` adapters to a loaded model (no-op when none was given).</summary>
    public static void AttachLoras(OpenWeights.Models.Llama.LlamaModel model, string[]? specs)
    {
        if (specs is { Length: > 0 }) OpenWeights.Lora.LoraLoader.Attach(model, specs);
    }

    public static Argument<string> Model() => new("model") { Description = "Path of a GGUF model file" };

    /// <summary>Checks a model path before anything heavier happens.</summary>
    public static string ResolveModel(string spec)
    {
        if (Directory.Exists(spec)) throw new OpenWeightsException($"{spec} is a directory, not a model file");
        if (File.Exists(spec)) return spec;
        throw new OpenWeightsException($"model file not found: {spec}");
    }
}
