using OpenWeights.Audit;
using OpenWeights.Inference;
using OpenWeights.Tokenizers;

namespace OpenWeights.Server;

/// <summary>
/// `serve --audit`: the scheduler's <see cref="Scheduler.Completed"/> hook, one audit line per finished generation (every
/// API and choice alike: the jobs all pass through the scheduler). A line that cannot be written is reported on stderr
/// and the server goes on.
/// </summary>
internal static class ServerAudit
{
    /// <param name="model">the model the jobs run on (one log may serve several models)</param>
    /// <param name="adapters">the adapters requests select: a job's is logged after the model's own</param>
    public static Action<GenerationJob, FinishReason> Hook(AuditLog log, AuditModel model, AdapterRegistry adapters, Tokenizer tokenizer) => (job, finish) =>
    {
        try
        {
            var stream = job.Stream!;
            log.Append(new AuditEntry
            {
                Source = "serve", Endpoint = job.Endpoint, RequestId = job.RequestId is { } id ? $"{id}#{job.Index}" : null,
                Options = job.Options, Seed = stream.Seed,
                PromptIds = job.Prompt, PromptText = tokenizer.Decode(job.Prompt),
                OutputIds = stream.Tokens, OutputText = stream.Text, Finish = finish,
                Model = model, RequestAdapter = adapters.AuditOf(job.AdapterId),
            });
        }
        catch (Exception e) { Console.Error.WriteLine($"openweights: error: the audit log {log.Path} could not be written: {e.Message}"); }
    };
}
