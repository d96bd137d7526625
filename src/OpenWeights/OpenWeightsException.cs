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

/// <summary>
/// A user error that one option of the API resolves. The message is <see cref="Problem"/> and advice that names the option
/// in the library's terms (<see cref="Option"/>, e.g. <c>TrainOptions.Seed</c>), never a command-line flag; a front end
/// with its own names for options (the CLI's flags) catches it and rephrases the advice from <see cref="Problem"/>.
/// </summary>
public class OpenWeightsOptionException : OpenWeightsException
{
    public OpenWeightsOptionException(string problem, string option, string advice) : base($"{problem}; {advice}")
    {
        Problem = problem;
        Option = option;
    }

    /// <summary>What is wrong, without the advice.</summary>
    public string Problem { get; }

    /// <summary>The option that resolves it, as <c>Type.Member</c> (or <c>Method(parameter)</c>).</summary>
    public string Option { get; }
}
