namespace OpenWeights.Inference.Chat;

/// <summary>
/// One tool call as far as a region of model text shows it: the function's name once it is whole, the arguments (JSON
/// text) so far, and whether they are complete. A scan of a longer text extends <see cref="Arguments"/>, never changes
/// what it held (the streamed fragments are its growth).
/// </summary>
public readonly record struct CallSnapshot(string Name, string Arguments, string? Id = null);

/// <summary>
/// A scan of one tool-call region (the text from the marker that opened it): the calls seen so far and where the region
/// ends. <see cref="End"/>: the index in the region just after its last character, -1 while it is still open.
/// <see cref="NotACall"/>: the region is no tool call after all (its text is content), decided before any call showed.
/// </summary>
public readonly record struct RegionScan(IReadOnlyList<CallSnapshot> Calls, int End, bool NotACall = false)
{
    public static RegionScan Open(IReadOnlyList<CallSnapshot> calls) => new(calls, -1);
    public static readonly RegionScan Rejected = new([], -1, true);
}

/// <summary>
/// How one template family writes tool calls into a reply: where a call region begins (its markers) and how a region is
/// read. <see cref="StreamingToolCallParser"/> drives it; a family only answers questions about a piece of text.
/// </summary>
public abstract class ToolCallSyntax
{
    /// <summary>The markers that open a call region.</summary>
    protected abstract IReadOnlyList<string> Openers { get; }

    /// <summary>Where the first call region in <paramref name="text"/> begins (-1: none). <paramref name="atStart"/>: nothing but whitespace came before <paramref name="text"/> in the reply.</summary>
    public virtual int FindRegion(string text, bool atStart)
    {
        int at = -1;
        foreach (var o in Openers)
        {
            int i = text.IndexOf(o, StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        return at;
    }

    /// <summary>How many characters at the end of <paramref name="text"/> may be the beginning of an opener (held back until decided).</summary>
    public virtual int PartialOpener(string text, bool atStart)
    {
        int best = 0;
        foreach (var o in Openers)
            for (int n = Math.Min(o.Length - 1, text.Length); n > best; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(o.AsSpan(0, n))) { best = n; break; }
        return best;
    }

    /// <summary>
    /// Reads the region <paramref name="region"/> (beginning with its opener). <paramref name="final"/>: the reply has
    /// ended, so whatever is unfinished ends here.
    /// </summary>
    public abstract RegionScan Scan(string region, bool final);

    /// <summary>The syntax of a template family; <paramref name="tools"/> give argument types where a format writes arguments untyped (Qwen3-Coder's XML).</summary>
    public static ToolCallSyntax For(ToolCallFormat format, IReadOnlyList<ChatTool>? tools = null) => format switch
    {
        ToolCallFormat.Hermes => new HermesToolCalls(tools),
        ToolCallFormat.Llama3 => new Llama3ToolCalls(),
        ToolCallFormat.Mistral => new MistralToolCalls(),
        ToolCallFormat.DeepSeek => new DeepSeekToolCalls(),
        _ => new GenericToolCalls(tools),
    };

    /// <summary>Whether <paramref name="s"/> at <paramref name="i"/> begins with <paramref name="marker"/>; Partial: the text ends inside it.</summary>
    protected static Match At(string s, int i, string marker)
    {
        int n = Math.Min(marker.Length, s.Length - i);
        if (!s.AsSpan(i, n).SequenceEqual(marker.AsSpan(0, n))) return Match.No;
        return n == marker.Length ? Match.Yes : Match.Partial;
    }

    protected enum Match { No, Partial, Yes }

    protected static int SkipWhitespace(string s, int i)
    {
        while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
        return i;
    }
}

/// <summary>Any known format (templates whose format is not recognised): each family's markers, the first that shows wins.</summary>
internal sealed class GenericToolCalls(IReadOnlyList<ChatTool>? tools) : ToolCallSyntax
{
    private readonly ToolCallSyntax[] families = [new HermesToolCalls(tools), new MistralToolCalls(), new DeepSeekToolCalls(), new Llama3ToolCalls()];
    private ToolCallSyntax? chosen;

    protected override IReadOnlyList<string> Openers => [];

    public override int FindRegion(string text, bool atStart)
    {
        int at = -1;
        foreach (var f in families)
        {
            int i = f.FindRegion(text, atStart);
            if (i >= 0 && (at < 0 || i < at)) { at = i; chosen = f; }
        }
        return at;
    }

    public override int PartialOpener(string text, bool atStart) => families.Max(f => f.PartialOpener(text, atStart));

    public override RegionScan Scan(string region, bool final) => chosen!.Scan(region, final);
}
