using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenWeights.Inference;

namespace OpenWeights.Audit;

/// <summary>
/// One generation as an audit line: where it came from (run, chat, serve + endpoint and request id), the model
/// (<see cref="AuditModel"/>), every option that decides the tokens (sampling with the seed actually used, token limit,
/// stop strings and tokens), the token counts, SHA-256 of the prompt text and of the output text, and with
/// <c>--audit-content</c> the texts and token ids themselves (what <c>openweights replay</c> needs).
/// The prompt text is the prompt's tokens decoded with special tokens shown (the rendered template, as the model saw it);
/// the output text is the reply as the generator streamed it (stop strings excluded, before an API splits out reasoning
/// or tool calls).
/// </summary>
public sealed record AuditEntry
{
    public required string Source { get; init; }
    public string? Endpoint { get; init; }
    public string? RequestId { get; init; }
    public required GenerationOptions Options { get; init; }
    /// <summary>The seed the sampler drew with (the request's, or the one drawn for it).</summary>
    public required ulong Seed { get; init; }
    public required IReadOnlyList<int> PromptIds { get; init; }
    public required string PromptText { get; init; }
    /// <summary>The generated token ids when the caller has them (the server does; `run` and `chat` log the count only).</summary>
    public IReadOnlyList<int>? OutputIds { get; init; }
    public int? OutputTokens { get; init; }
    public required string OutputText { get; init; }
    public required FinishReason Finish { get; init; }
    /// <summary>The model this generation ran on, where one log serves several (a server with several models); null: the log's.</summary>
    public AuditModel? Model { get; init; }
    /// <summary>The adapter the request selected (served per request, applied after the model's own adapters); null: none.</summary>
    public AuditAdapter? RequestAdapter { get; init; }

    internal static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The line's JSON object without "prev" and "hash" (members in a fixed order).</summary>
    public JsonObject ToJson(AuditModel model, DateTimeOffset time, bool content)
    {
        var o = Options; var s = o.Sampling;
        var json = new JsonObject
        {
            ["v"] = 1,
            ["time"] = time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture),
            ["source"] = Source,
            ["endpoint"] = Endpoint,
            ["request_id"] = RequestId,
            ["model"] = new JsonObject { ["path"] = model.Path, ["sha256"] = model.Sha256 },
            ["adapters"] = new JsonArray([.. model.Adapters.Concat(RequestAdapter is null ? [] : [RequestAdapter]).Select(a => (JsonNode)new JsonObject { ["path"] = a.Path, ["scale"] = a.Scale, ["sha256"] = a.Sha256 })]),
            ["template_sha256"] = model.TemplateSha256,
            ["kv_cache"] = model.KvCache,
            ["ctx"] = model.Context,
            ["generation"] = new JsonObject
            {
                ["max_tokens"] = o.MaxTokens,
                ["stop"] = new JsonArray([.. o.StopStrings.Select(x => (JsonNode?)x)]),
                ["stop_tokens"] = Ids(o.StopTokens),
                ["keep_special_tokens"] = Ids(o.KeepSpecialTokens),
                ["ignore_eos"] = o.IgnoreEos,
                ["constrained"] = o.Constraint is not null,
            },
            ["sampling"] = new JsonObject
            {
                ["temperature"] = s.Temperature, ["top_k"] = s.TopK, ["top_p"] = s.TopP, ["min_p"] = s.MinP,
                ["repeat_penalty"] = s.RepeatPenalty, ["presence_penalty"] = s.PresencePenalty, ["frequency_penalty"] = s.FrequencyPenalty,
                ["penalty_last_n"] = s.PenaltyLastN, ["seed"] = Seed,
                ["logit_bias"] = s.LogitBias is null ? null : new JsonObject(s.LogitBias.OrderBy(kv => kv.Key)
                    .Select(kv => KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)JsonValue.Create(kv.Value)))),
            },
            ["prompt_tokens"] = PromptIds.Count,
            ["output_tokens"] = OutputTokens ?? OutputIds?.Count ?? 0,
            ["finish"] = Finish.ToString().ToLowerInvariant(),
            ["prompt_sha256"] = FileDigest.Sha256Text(PromptText),
            ["output_sha256"] = FileDigest.Sha256Text(OutputText),
        };
        if (content)
        {
            json["prompt"] = PromptText;
            json["prompt_ids"] = new JsonArray([.. PromptIds.Select(i => (JsonNode)i)]);
            json["output"] = OutputText;
            if (OutputIds is not null) json["output_ids"] = new JsonArray([.. OutputIds.Select(i => (JsonNode)i)]);
        }
        return json;
    }

    private static JsonArray? Ids(IReadOnlySet<int>? ids) => ids is null ? null : new JsonArray([.. ids.Order().Select(i => (JsonNode)i)]);

    /// <summary>What a replay needs from a logged line: the generation options (sampling with the logged seed) and the prompt ids; the line must carry content and no constraint.</summary>
    public static (GenerationOptions Options, int[] Prompt) ReplayInputs(JsonObject line)
    {
        if (line["prompt_ids"] is not JsonArray ids || line["output"] is null)
            throw new OpenWeightsException("this line has no content (the log was written without --audit-content): nothing to replay");
        var g = line["generation"]!.AsObject();
        if (g["constrained"]!.GetValue<bool>())
            throw new OpenWeightsException("this line's generation was constrained (response_format or a forced tool call): the constraint is not logged, so it cannot be replayed");
        var s = line["sampling"]!.AsObject();
        var sampling = new SamplingOptions
        {
            Temperature = s["temperature"]!.GetValue<float>(), TopK = s["top_k"]!.GetValue<int>(), TopP = s["top_p"]!.GetValue<float>(),
            MinP = s["min_p"]!.GetValue<float>(), RepeatPenalty = s["repeat_penalty"]!.GetValue<float>(),
            PresencePenalty = s["presence_penalty"]!.GetValue<float>(), FrequencyPenalty = s["frequency_penalty"]!.GetValue<float>(),
            PenaltyLastN = s["penalty_last_n"]!.GetValue<int>(), Seed = s["seed"]!.GetValue<ulong>(),
            LogitBias = s["logit_bias"] is JsonObject bias
                ? bias.ToDictionary(kv => int.Parse(kv.Key, CultureInfo.InvariantCulture), kv => kv.Value!.GetValue<float>()) : null,
        };
        static HashSet<int>? Set(JsonNode? n) => n is JsonArray a ? [.. a.Select(x => x!.GetValue<int>())] : null;
        var options = new GenerationOptions
        {
            MaxTokens = g["max_tokens"]!.GetValue<int>(),
            StopStrings = [.. g["stop"]!.AsArray().Select(x => x!.GetValue<string>())],
            StopTokens = Set(g["stop_tokens"]),
            KeepSpecialTokens = Set(g["keep_special_tokens"]),
            IgnoreEos = g["ignore_eos"]!.GetValue<bool>(),
            Sampling = sampling,
        };
        return (options, [.. ids.Select(x => x!.GetValue<int>())]);
    }
}
