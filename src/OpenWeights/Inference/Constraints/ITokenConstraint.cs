namespace OpenWeights.Inference.Constraints;

/// <summary>
/// Restricts which tokens a generation may choose. One instance per generation; not thread-safe.
/// Call <see cref="MaskLogits"/> before sampling, then <see cref="Accept"/> with the chosen token.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logits of disallowed tokens to -inf. End-of-generation tokens are allowed only when <see cref="IsComplete"/>.</summary>
    void MaskLogits(Span<float> logits);

    /// <summary>Advances the state with the chosen token. Throws <see cref="OpenWeightsException"/> when the token was not allowed.</summary>
    void Accept(int tokenId);

    /// <summary>A full valid value has been produced: generation may stop (an end-of-generation token is allowed).</summary>
    bool IsComplete { get; }
}

/// <summary>Shared by the constraints: applies an allowed-token set to the logits.</summary>
internal static class TokenMask
{
    /// <summary>logits[i] = -inf where !allowed[i], and for every id beyond the allowed set (tokens the trie does not know).</summary>
    public static void Apply(bool[] allowed, Span<float> logits)
    {
        int v = Math.Min(logits.Length, allowed.Length);
        for (int i = 0; i < v; i++) if (!allowed[i]) logits[i] = float.NegativeInfinity;
        for (int i = v; i < logits.Length; i++) logits[i] = float.NegativeInfinity;
    }
}
