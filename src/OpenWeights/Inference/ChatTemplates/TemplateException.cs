namespace OpenWeights.Inference.ChatTemplates;

/// <summary>
/// A chat template that cannot be parsed or fails while rendering (including <c>raise_exception(msg)</c>).
/// <see cref="Exception.Message"/> is one line naming the template line and column; <see cref="Reason"/>
/// holds the bare reason (for <c>raise_exception</c>, exactly the template's message). A render that goes past its
/// <see cref="TemplateLimits"/> throws the subclass <see cref="TemplateLimitException"/>.
/// </summary>
public class TemplateException : OpenWeightsException
{
    /// <summary>The reason without the location.</summary>
    public string Reason { get; }
    /// <summary>1-based template line, or 0 when unknown.</summary>
    public int Line { get; }
    /// <summary>1-based column, or 0 when unknown.</summary>
    public int Column { get; }
    /// <summary>True when the template itself raised the error via <c>raise_exception</c>.</summary>
    public bool RaisedByTemplate { get; }

    public TemplateException(string reason, int line, int column, bool raisedByTemplate = false, Exception? inner = null)
        : base(Format(reason, line, column), inner ?? new InvalidOperationException(reason))
    {
        Reason = reason;
        Line = line;
        Column = column;
        RaisedByTemplate = raisedByTemplate;
    }

    private static string Format(string reason, int line, int column)
    {
        var oneLine = reason.Replace("\r\n", " ").Replace('\n', ' ').Replace('\r', ' ');
        if (line <= 0) return $"chat template: {oneLine}";
        return column > 0
            ? $"chat template line {line}, column {column}: {oneLine}"
            : $"chat template line {line}: {oneLine}";
    }
}

/// <summary>An error raised while evaluating, before the location is known; converted to <see cref="TemplateException"/>.</summary>
internal class JinjaError : Exception
{
    public bool RaisedByTemplate { get; }
    public JinjaError(string message, bool raisedByTemplate = false) : base(message) { RaisedByTemplate = raisedByTemplate; }
}
