namespace OpenWeights.Training;

/// <summary>What is wrong with one line (1-based) of a training-data file.</summary>
public sealed record DataProblem(int Line, string Message)
{
    public override string ToString() => $"line {Line}: {Message}";
}

/// <summary>
/// A training-data file with malformed lines, refused as a whole. <see cref="Problems"/> holds every one; the message
/// lists the first <see cref="Listed"/> and counts the rest.
/// </summary>
public sealed class TrainingDataException(string file, IReadOnlyList<DataProblem> problems) : OpenWeightsException(Format(file, problems))
{
    /// <summary>How many problems a message lists before it only counts the rest.</summary>
    public const int Listed = 20;

    public string DataFile { get; } = file;
    public IReadOnlyList<DataProblem> Problems { get; } = problems;

    /// <summary>"data.jsonl: 3 malformed lines, refusing to train".</summary>
    public string Summary => Summarize(DataFile, Problems.Count);

    /// <summary>The listed problems, then "... and N more" when there are more than <see cref="Listed"/>.</summary>
    public IEnumerable<string> ListedProblems()
    {
        foreach (var p in Problems.Take(Listed)) yield return p.ToString();
        if (Problems.Count > Listed) yield return $"... and {Problems.Count - Listed} more";
    }

    private static string Summarize(string file, int n) => $"{Path.GetFileName(file)}: {n} malformed line{(n == 1 ? "" : "s")}, refusing to train";

    private static string Format(string file, IReadOnlyList<DataProblem> problems) =>
        $"{Summarize(file, problems.Count)}: {string.Join("; ", problems.Take(Listed))}{(problems.Count > Listed ? $"; ... and {problems.Count - Listed} more" : "")}";
}


/// <summary>
/// Chat records and neither the model nor the caller has a chat template. The message names no CLI flag; a command
/// that has one (tune's --chat-template) adds it.
/// </summary>
public sealed class NoChatTemplateException() : OpenWeightsOptionException(
    "chat \"messages\" need a chat template and the model has none", TrainingData.ChatTemplateOption,
    "supply one (the chatTemplate argument), or use prompt/completion or instruction/output records");
