using System.CommandLine;
using OpenWeights.Audit;
using OpenWeights.Inference;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>`--audit FILE` and `--audit-content` of run, chat and serve (<see cref="AuditLog"/>), and the line `run`/`chat` append per reply.</summary>
public sealed class CliAudit
{
    public Option<string?> File { get; } = new("--audit") { Description = "Append one hash-chained JSON line per generation to FILE (model and adapter SHA-256, settings, seed, prompt/output hashes; `openweights audit verify FILE` checks it)" };
    public Option<bool> Content { get; } = new("--audit-content") { Description = "With --audit: log the prompt and output texts and token ids too (needed by `openweights replay`)" };

    public void AddTo(Command cmd) { cmd.Options.Add(File); cmd.Options.Add(Content); }

    /// <summary>The log to write (null without --audit); hashes the model and adapters (once per process per file).</summary>
    public AuditLog? Open(ParseResult pr, string modelPath, string[]? loras, string? templateSource, OpenWeights.Models.Common.KvCacheTypes cache, int context)
    {
        if (pr.GetValue(File) is not { } path)
        {
            if (pr.GetValue(Content)) throw new OpenWeightsException("--audit-content needs --audit FILE");
            return null;
        }
        return new AuditLog(path, AuditModel.Describe(modelPath, loras, templateSource, AuditModel.CacheName(cache), context), pr.GetValue(Content));
    }

    /// <summary>The options with a seed fixed (drawn now when none was given), so the line can name the seed the sampler used.</summary>
    public static GenerationOptions WithSeed(GenerationOptions o) =>
        o.Sampling.Seed is null ? o with { Sampling = o.Sampling with { Seed = (ulong)Random.Shared.NextInt64() } } : o;

    /// <summary>Appends one reply of `run` or `chat` (options with the seed fixed by <see cref="WithSeed"/>).</summary>
    public static void Record(AuditLog log, string source, Tokenizer tok, GenerationOptions options, int[] prompt, string output, int generated, FinishReason finish) =>
        log.Append(new AuditEntry
        {
            Source = source, Options = options, Seed = options.Sampling.Seed!.Value,
            PromptIds = prompt, PromptText = tok.Decode(prompt), OutputIds = null, OutputTokens = generated, OutputText = output, Finish = finish,
        });
}
