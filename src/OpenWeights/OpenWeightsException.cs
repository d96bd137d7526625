namespace OpenWeights;

/// <summary>
/// An error caused by the user's input (a file, a flag, a request) rather than by a bug.
/// The message is one line that names the problem; front ends print it without a stack trace.
/// </summary>
public class OpenWeightsException : Exception
{
    public OpenWeightsException(string message) : base(message) { }
    public OpenWeightsException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A model or weights file that is malformed, truncated or hostile.</summary>
public sealed class InvalidModelFileException : OpenWeightsException
{
    public InvalidModelFileException(string message) : base(message) { }
}
