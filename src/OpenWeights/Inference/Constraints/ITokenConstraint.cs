using OpenWeights.Tokenizers;

namespace OpenWeights.Inference.Constraints;

/// <summary>Restricts which tokens may come next (constrained decoding). One instance per generation.</summary>
public interface ITokenConstraint
{
    /// <summary>Sets disallowed tokens to -inf.</summary>
    void MaskLogits(Span<float> logits);
    /// <summary>Advances the state with the chosen token.</summary>
    void Accept(int tokenId);
    /// <summary>A full valid value has been produced (generation may stop).</summary>
    bool IsComplete { get; }
}
