using OpenWeights.Lora;

namespace OpenWeights.Audit;

/// <summary>An adapter as logged: its path, scale and SHA-256 (of the file, or of a PEFT folder's manifest).</summary>
public sealed record AuditAdapter(string Path, float Scale, string Sha256);

/// <summary>
/// What stays the same for every generation of one loaded model, hashed once at load: the weights (file, or a checkpoint
/// folder's manifest, <see cref="FileDigest"/>), each adapter, the chat template's source (null: no template, plain text
/// continued), the KV cache types (they change the numbers, so a replay must use the same) and the context size.
/// </summary>
public sealed record AuditModel(string Path, string Sha256, IReadOnlyList<AuditAdapter> Adapters, string? TemplateSha256, string KvCache, int Context)
{
    /// <param name="loras">the FILE[:SCALE] specs as given</param>
    /// <param name="templateSource">the template the prompts are rendered with; null when none is (raw text)</param>
    /// <param name="kvCache">the cache types by name, "k/v" (e.g. "f16/f16")</param>
    /// <param name="context">the context (tokens) of a session or server slot: a reply that fills it stops there</param>
    public static AuditModel Describe(string modelPath, IEnumerable<string>? loras, string? templateSource, string kvCache, int context)
    {
        var adapters = (loras ?? []).Select(LoraSpec.Parse)
            .Select(s => new AuditAdapter(System.IO.Path.GetFullPath(s.Path), s.Scale, FileDigest.Sha256(s.Path))).ToList();
        return new AuditModel(System.IO.Path.GetFullPath(modelPath), FileDigest.Sha256(modelPath), adapters,
            templateSource is null ? null : FileDigest.Sha256Text(templateSource), kvCache, context);
    }

    /// <summary>"k/v" names of a KV cache's types, as logged and as `--cache-type-k/-v` take them.</summary>
    public static string CacheName(OpenWeights.Models.Common.KvCacheTypes t) =>
        $"{OpenWeights.Models.Common.KvCacheTypes.Name(t.K)}/{OpenWeights.Models.Common.KvCacheTypes.Name(t.V)}";
}
