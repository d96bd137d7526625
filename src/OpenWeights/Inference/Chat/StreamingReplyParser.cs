using System.Text;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// What every streaming reply parser shares: generated text is appended to <see cref="pending"/>, the parser decides what
/// it can (<see cref="Run"/>, with <c>final</c> once the reply is over) and writes its decisions to <see cref="output"/>;
/// each <see cref="Push"/> and <see cref="Complete"/> hands over what was decided since the last one.
/// </summary>
public abstract class StreamingReplyParser : IReplyParser
{
    /// <summary>Text not yet decided.</summary>
    protected readonly StringBuilder pending = new();
    /// <summary>Pieces decided since the last <see cref="Push"/> / <see cref="Complete"/>.</summary>
    protected List<ReplyDelta> output = [];
    private bool completed;

    public abstract bool HasToolCalls { get; }
    public abstract ParsedReply Result { get; }

    /// <summary>Decides what it can of <see cref="pending"/>; with <paramref name="final"/> the reply is over: everything.</summary>
    protected abstract void Run(bool final);

    /// <summary>After the final <see cref="Run"/>: anything more to hand over (an inner parser's last pieces).</summary>
    protected virtual void Completed() { }

    public IReadOnlyList<ReplyDelta> Push(string text)
    {
        if (completed) throw new InvalidOperationException("the reply is complete");
        pending.Append(text);
        Run(final: false);
        return Take();
    }

    public IReadOnlyList<ReplyDelta> Complete()
    {
        if (completed) return [];
        Run(final: true);
        completed = true;
        Completed();
        return Take();
    }

    private List<ReplyDelta> Take()
    {
        var o = output;
        output = [];
        return o;
    }
}
