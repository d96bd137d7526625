namespace OpenWeights.Inference;

/// <summary>
/// How the next token is chosen. Temperature 0 means greedy. Filters run in llama.cpp's default order:
/// logit bias, penalties, top-k, top-p, min-p, temperature, then a seeded draw.
/// </summary>
public sealed record SamplingOptions
{
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep the k most likely tokens; 0 disables.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set whose probability reaches p; 1 disables.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>Drop tokens whose probability is below min_p × the best one's; 0 disables.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>Divides positive / multiplies negative logits of recently seen tokens; 1 disables.</summary>
    public float RepeatPenalty { get; init; } = 1.0f;
    /// <summary>Subtracted once from the logit of every token seen in the window (OpenAI presence_penalty).</summary>
    public float PresencePenalty { get; init; }
    /// <summary>Subtracted per occurrence in the window (OpenAI frequency_penalty).</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>How many recent tokens the penalties look at; -1 = the whole history.</summary>
    public int PenaltyLastN { get; init; } = 64;
    /// <summary>Same seed, same output. Null draws a random seed.</summary>
    public ulong? Seed { get; init; }
    /// <summary>Added to logits before anything else (OpenAI logit_bias); -inf bans a token.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>
    /// The defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, as llama.cpp): the CLI's flags and the server's
    /// request fields fall back to these, so `run`, `chat` and `serve` sample alike.
    /// </summary>
    public static SamplingOptions Default { get; } = new();

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    public void Validate()
    {
        if (float.IsNaN(Temperature) || Temperature < 0 || Temperature > 100) throw new OpenWeightsException($"temperature {Temperature} must be between 0 and 100");
        if (TopK < 0) throw new OpenWeightsException($"top-k {TopK} must be >= 0");
        if (!(TopP > 0 && TopP <= 1)) throw new OpenWeightsException($"top-p {TopP} must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw new OpenWeightsException($"min-p {MinP} must be in [0, 1]");
        if (!(RepeatPenalty > 0)) throw new OpenWeightsException($"repeat penalty {RepeatPenalty} must be > 0");
        if (float.IsNaN(PresencePenalty) || Math.Abs(PresencePenalty) > 2) throw new OpenWeightsException($"presence penalty {PresencePenalty} must be between -2 and 2");
        if (float.IsNaN(FrequencyPenalty) || Math.Abs(FrequencyPenalty) > 2) throw new OpenWeightsException($"frequency penalty {FrequencyPenalty} must be between -2 and 2");
    }
}
