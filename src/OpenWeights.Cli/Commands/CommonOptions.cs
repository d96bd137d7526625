using OpenWeights.Models;
using System.CommandLine;
using OpenWeights.Catalog;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Hub;

namespace OpenWeights.Cli.Commands;

/// <summary>Options shared by several commands, so they read the same everywhere.</summary>
public static class CommonOptions
{
    public static Option<bool> Json() => new("--json") { Description = "Machine-readable JSON output" };

    /// <summary>`-t, --threads`: help shows "[default: all cores]" once (not this machine's count).</summary>
    public static Option<int> Threads() => new Option<int>("--threads", "-t")
    {
        Description = "Worker threads",
        DefaultValueFactory = _ => Environment.ProcessorCount,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--threads must be at least 1"); } },
    }.DefaultLabel("all cores");

    /// <summary>The context `run`, `chat` and `serve` allocate unless `--ctx` says otherwise (capped at the model's trained context).</summary>
    public const int DefaultContext = 4096;

    /// <summary>`-c, --ctx` (hidden old spelling `--context`): context size in tokens.</summary>
    public static Option<int> Context() => new Option<int>("--ctx", "-c")
    {
        Description = "Context size in tokens",
        DefaultValueFactory = _ => DefaultContext,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--ctx must be at least 1"); } },
    }.HiddenAlias("--context");

    /// <summary>`--cache-type-k` / `--cache-type-v` (run, chat, serve, bench): the KV cache's key or value type, f32, f16 or
    /// q8_0 (default f16, as llama.cpp's; null default: unset unless given, for bench's `--cache-type`).</summary>
    public static Option<string> CacheType(string name, string what, string? defaultValue = "f16")
    {
        var o = new Option<string>(name)
        {
            Description = $"KV cache {what} type: {OpenWeights.Models.Common.KvCacheTypes.Names}",
            Validators = { r => { if (r.GetValueOrDefault<string>() is { } v && !IsCacheType(v)) r.AddError($"{name}: unknown KV cache type '{v}' (expected {OpenWeights.Models.Common.KvCacheTypes.Names})"); } },
        };
        if (defaultValue is not null) o.DefaultValueFactory = _ => defaultValue;
        return o;
    }

    private static bool IsCacheType(string v)
    {
        try { OpenWeights.Models.Common.KvCacheTypes.Parse(v); return true; }
        catch (OpenWeightsException) { return false; }
    }

    /// <summary>The key and value types of `--cache-type-k` / `--cache-type-v`.</summary>
    public static OpenWeights.Models.Common.KvCacheTypes CacheTypes(System.CommandLine.ParseResult pr, Option<string> k, Option<string> v) =>
        new(OpenWeights.Models.Common.KvCacheTypes.Parse(pr.GetValue(k)!), OpenWeights.Models.Common.KvCacheTypes.Parse(pr.GetValue(v)!));

    /// <summary>`-o, --output FILE` (hidden old spelling `--out`), required.</summary>
    public static Option<string> Output(string description) => new Option<string>("--output", "-o") { Description = description, Required = true }.HiddenAlias("--out");

    /// <summary>`-q, --quant TYPE` (hidden old spelling `--type`): the weights type a command writes.</summary>
    public static Option<string> Quant(string description, string defaultValue) =>
        new Option<string>("--quant", "-q") { Description = description, DefaultValueFactory = _ => defaultValue }.HiddenAlias("--type");

    /// <summary>`--quiet`: no progress lines on stderr (long writes report progress there; stdout stays the result).</summary>
    public static Option<bool> Quiet() => new("--quiet") { Description = "No progress output on stderr" };

    /// <summary>`--lora FILE[:SCALE]`, repeatable: GGUF LoRA files or PEFT adapter folders (run, chat, serve).</summary>
    public static Option<string[]> Lora() => new("--lora")
    {
        Description = "LoRA adapter to apply, FILE[:SCALE] (GGUF LoRA file or PEFT folder; repeatable)",
        AllowMultipleArgumentsPerToken = false,
    };

    /// <summary>Attaches the `--lora` adapters to a loaded model (no-op when none was given).</summary>
    public static void AttachLoras(OpenWeights.Models.DecoderModel model, string[]? specs)
    {
        if (specs is null or { Length: 0 }) return;
        if (specs.Any(string.IsNullOrWhiteSpace)) throw new OpenWeightsException("--lora needs a file: FILE[:SCALE]");
        OpenWeights.Lora.LoraLoader.Attach(model, specs);
    }

    public static Argument<string> Model() => new("model")
    {
        Description = "A GGUF file, a Hugging Face checkpoint folder (config.json + safetensors), or a catalog id / org/name[:QUANT] in the local store",
    };

    /// <summary>What the user typed -> a local path (file, checkpoint folder, catalog id, org/name[:QUANT] in the store): <see cref="ModelLocator"/>.</summary>
    public static string ResolveModel(string spec) => ModelLocator.Resolve(spec, HubCli.Settings());

    /// <summary>Opens a resolved model path: a GGUF file, or a Hugging Face checkpoint folder.</summary>
    public static ITensorSource OpenSource(string path) => ModelSources.Open(path);
}
