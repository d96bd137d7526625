using System.Text;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Splits a reply into content and tool calls as it is generated, in one template family's format
/// (<see cref="ToolCallSyntax"/>): text streams as content until a call marker; a call's start (id and name) goes out as
/// soon as the name is whole, its arguments as fragments as they arrive, and text after the call is content again.
/// Held back: only the end of the text that may still be the beginning of a marker, and whitespace that may turn out
/// to stand just before a call (dropped there, as the whole-reply parse drops it).
/// </summary>
/// <remarks>
/// Each push re-reads the open call region from its marker (regions are short); what a scan shows beyond what was
/// sent goes out. A region that turns out to be no call (e.g. a reply starting with '{' that is not a call object) is
/// content from its first character on, and the text after that character is searched again. Nothing here throws on
/// model output. Whole replies are parsed by pushing them in one piece (<see cref="Parse"/>), so a whole parse and a
/// streamed one agree by construction.
/// </remarks>
public sealed class StreamingToolCallParser(ToolCallSyntax syntax) : StreamingReplyParser
{
    private readonly StringBuilder content = new();
    private readonly List<(string Id, string Name, StringBuilder Args)> calls = [];
    private bool inRegion;
    private int regionFirstCall;                      // index in `calls` of the open region's first call
    private bool atStart = true;                      // nothing but whitespace has gone out as content

    public StreamingToolCallParser(ToolCallFormat format, IReadOnlyList<ChatTool>? tools = null) : this(ToolCallSyntax.For(format, tools)) { }

    /// <summary>Parses a whole reply.</summary>
    public static ParsedReply Parse(string text, ToolCallFormat format, IReadOnlyList<ChatTool>? tools = null)
    {
        var p = new StreamingToolCallParser(format, tools);
        p.Push(text);
        p.Complete();
        return p.Result;
    }

    public override bool HasToolCalls => calls.Count > 0;

    public override ParsedReply Result => new(content.ToString(), calls.Select(c => new ChatToolCall(c.Id, c.Name, Finished(c.Args.ToString()))).ToList());

    // arguments cut off (the reply ran out of tokens) stay as they came; none at all are an empty object
    private static string Finished(string args) => args.Trim().Length == 0 ? "{}" : args;

    protected override void Run(bool final)
    {
        while (pending.Length > 0 && (inRegion ? StepRegion(final) : StepContent(final))) { }
    }

    // ---- outside a call: content up to the next marker ----

    private bool StepContent(bool final)
    {
        string s = pending.ToString();
        int at = syntax.FindRegion(s, atStart);
        if (at >= 0)
        {
            EmitContent(s[..at].TrimEnd()); // the whitespace just before a call is not content
            pending.Remove(0, at);
            inRegion = true;
            regionFirstCall = calls.Count;
            return true;
        }
        if (final)
        {
            EmitContent(calls.Count > 0 ? s.TrimEnd() : s);
            pending.Clear();
            return false;
        }
        int keep = syntax.PartialOpener(s, atStart);
        int end = s.Length - keep;
        while (end > 0 && char.IsWhiteSpace(s[end - 1])) end--; // may stand before a call
        if (atStart && end == 0) return false;
        EmitContent(s[..end]);
        pending.Remove(0, end);
        return false;
    }

    // ---- inside a call region ----

    private bool StepRegion(bool final)
    {
        string s = pending.ToString();
        var scan = syntax.Scan(s, final);
        if (scan.NotACall && calls.Count == regionFirstCall)
        {
            // not a call after all: its first character is content, the rest is searched again
            EmitContent(s[..1]);
            pending.Remove(0, 1);
            inRegion = false;
            return true;
        }
        for (int k = 0; k < scan.Calls.Count; k++)
        {
            var c = scan.Calls[k];
            int index = regionFirstCall + k;
            if (index == calls.Count)
            {
                string id = string.IsNullOrEmpty(c.Id) ? NewId() : c.Id;
                calls.Add((id, c.Name, new StringBuilder()));
                output.Add(new ReplyDelta(ReplyDeltaKind.ToolCallStart, c.Name, index, id));
            }
            var sent = calls[index].Args;
            if (c.Arguments.Length > sent.Length && c.Arguments.StartsWith(sent.ToString(), StringComparison.Ordinal))
            {
                string more = c.Arguments[sent.Length..];
                sent.Append(more);
                output.Add(new ReplyDelta(ReplyDeltaKind.ToolCallArguments, more, index));
            }
        }
        int end = scan.End >= 0 ? scan.End : final ? s.Length : -1;
        if (end < 0) return false;
        pending.Remove(0, Math.Min(end, pending.Length));
        inRegion = false;
        atStart = false;
        // text after the calls: its leading whitespace is not content either
        int ws = 0;
        while (ws < pending.Length && char.IsWhiteSpace(pending[ws])) ws++;
        if (ws == pending.Length && !final) return false;
        pending.Remove(0, ws);
        return pending.Length > 0;
    }

    private void EmitContent(string text)
    {
        if (text.Length == 0) return;
        if (atStart && content.Length == 0 && string.IsNullOrWhiteSpace(text)) return; // held until something follows
        atStart = false;
        content.Append(text);
        output.Add(new ReplyDelta(ReplyDeltaKind.Content, text));
    }

    // 9 alphanumerics: the shortest id every template accepts (Mistral's insist on exactly 9)
    private static string NewId() => Guid.NewGuid().ToString("N")[..9];
}
