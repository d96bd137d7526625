using System.Text;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Parses gpt-oss's "harmony" replies as they are generated. A reply is a run of messages, each a header and a body:
/// <c>[&lt;|start|&gt;assistant]&lt;|channel|&gt;analysis&lt;|message|&gt;…&lt;|end|&gt;</c> is reasoning,
/// <c>&lt;|channel|&gt;final&lt;|message|&gt;…</c> is the answer, and a header naming a recipient,
/// <c>&lt;|channel|&gt;commentary to=functions.NAME &lt;|constrain|&gt;json&lt;|message|&gt;{…}</c> (or
/// <c>to=functions.NAME&lt;|channel|&gt;commentary json</c>), is a tool call whose body is the JSON arguments. A body
/// ends at &lt;|end|&gt;, &lt;|call|&gt;, &lt;|return|&gt; or the end of the reply (generation stops at &lt;|return|&gt; and
/// &lt;|call|&gt;, so these two rarely reach the text). The first header follows the prompt's <c>&lt;|start|&gt;assistant</c>.
/// </summary>
/// <remarks>
/// Commentary without a recipient (a preamble for the user) and channels we do not know are content. Text that is not
/// harmony (no header where one belongs) is content from there on; an unterminated header at the end of the reply is
/// dropped when it began with a harmony marker and is content otherwise. Nothing here throws on model output.
/// </remarks>
public sealed class HarmonyReplyParser : StreamingReplyParser
{
    private const string Start = "<|start|>", Channel = "<|channel|>", Message = "<|message|>", Constrain = "<|constrain|>";
    private const string End = "<|end|>", Call = "<|call|>", Return = "<|return|>";
    /// <summary>A header longer than this (or holding a newline) is not one: the text is content.</summary>
    private const int MaxHeader = 512;
    private static readonly string[] BodyEnds = [End, Call, Return, Start, Channel];
    private static readonly string[] HeaderStarts = [Channel, Constrain, Start, " to=", "to=", "assistant"];

    private enum Mode { Header, Body, Between, Raw }

    private readonly StringBuilder content = new(), reasoning = new();
    private readonly List<(string Id, string Name, StringBuilder Args)> calls = [];
    private Mode mode = Mode.Header;
    private ReplyDeltaKind body;          // what the current body is: Content, Reasoning or ToolCallArguments

    /// <summary>Parses a whole reply.</summary>
    public static ParsedReply Parse(string text)
    {
        var p = new HarmonyReplyParser();
        p.Push(text);
        p.Complete();
        return p.Result;
    }

    public override bool HasToolCalls => calls.Count > 0;

    public override ParsedReply Result => new(content.ToString(),
        calls.Select(c => new ChatToolCall(c.Id, c.Name, c.Args.ToString().Trim() is { Length: > 0 } a ? a : "{}")).ToList(),
        reasoning.Length > 0 ? reasoning.ToString() : null);

    protected override void Run(bool final)
    {
        while (pending.Length > 0)
        {
            bool progressed = mode switch
            {
                Mode.Header => StepHeader(final),
                Mode.Body => StepBody(final),
                Mode.Between => StepBetween(final),
                _ => Emit(ReplyDeltaKind.Content, TakePending(pending.Length)),
            };
            if (!progressed) break;
        }
    }

    // ---- header: up to <|message|> ----

    private bool StepHeader(bool final)
    {
        string s = pending.ToString();
        int m = s.IndexOf(Message, StringComparison.Ordinal);
        string head = m >= 0 ? s[..m] : s;
        if (!PlausibleHeader(head, complete: m >= 0 || final))
        {
            mode = Mode.Raw; // not harmony: the rest is content
            return true;
        }
        if (m < 0)
        {
            if (!final) return false; // wait for <|message|>
            pending.Clear();          // an unterminated header carries no text for anyone
            return false;
        }
        pending.Remove(0, m + Message.Length);
        OpenBody(head);
        return true;
    }

    /// <summary>Whether <paramref name="head"/> can be (the beginning of) a harmony header.</summary>
    private static bool PlausibleHeader(string head, bool complete)
    {
        if (head.Length > MaxHeader || head.Contains('\n')) return false;
        string h = head.TrimStart(' ');
        if (h.Length == 0) return !complete || head.Length == 0;
        if (!complete && head.Length == h.Length && Message.StartsWith(h, StringComparison.Ordinal)) return true; // an empty header, still arriving
        foreach (var start in HeaderStarts)
        {
            string st = start.TrimStart(' ');
            if (h.StartsWith(st, StringComparison.Ordinal)) return true;
            if (!complete && st.StartsWith(h, StringComparison.Ordinal)) return true; // undecided yet
        }
        return false;
    }

    /// <summary>Reads a header (role, channel, recipient, content type) and starts the body it announces.</summary>
    private void OpenBody(string header)
    {
        string? channel = null, recipient = null;
        var words = header.Replace(Channel, " " + Channel + " ", StringComparison.Ordinal)
            .Replace(Constrain, " " + Constrain + " ", StringComparison.Ordinal)
            .Replace(Start, " ", StringComparison.Ordinal)
            .Split(' ', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < words.Length; i++)
        {
            if (words[i] == Channel && i + 1 < words.Length && words[i + 1] != Constrain) channel = words[++i];
            else if (words[i] == Constrain && i + 1 < words.Length) i++; // the content type (json): arguments are JSON either way
            else if (words[i].StartsWith("to=", StringComparison.Ordinal) && words[i].Length > 3) recipient = words[i][3..];
        }
        if (recipient is not null && recipient != "assistant" && recipient != "user")
        {
            string name = recipient.StartsWith("functions.", StringComparison.Ordinal) ? recipient["functions.".Length..] : recipient;
            string id = "call_" + Guid.NewGuid().ToString("N")[..24];
            calls.Add((id, name, new StringBuilder()));
            output.Add(new ReplyDelta(ReplyDeltaKind.ToolCallStart, name, calls.Count - 1, id));
            body = ReplyDeltaKind.ToolCallArguments;
        }
        else
        {
            body = channel == "analysis" ? ReplyDeltaKind.Reasoning : ReplyDeltaKind.Content;
            var sb = body == ReplyDeltaKind.Reasoning ? reasoning : content;
            if (sb.Length > 0 && sb[^1] != '\n') Emit(body, "\n"); // a second message of the same kind starts on a new line
        }
        mode = Mode.Body;
    }

    // ---- body: up to <|end|>, <|call|>, <|return|> (or a header the model began without ending the message) ----

    private bool StepBody(bool final)
    {
        string s = pending.ToString();
        int at = -1; string? marker = null;
        foreach (var e in BodyEnds)
        {
            int i = s.IndexOf(e, StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at)) { at = i; marker = e; }
        }
        if (marker is null)
        {
            int keep = final ? 0 : HeldBack(s);
            if (s.Length - keep == 0) return false;
            Emit(body, TakePending(s.Length - keep));
            return false;
        }
        if (at > 0) Emit(body, TakePending(at));
        switch (marker)
        {
            case Start: pending.Remove(0, Start.Length); mode = Mode.Header; break;
            case Channel: mode = Mode.Header; break; // the header begins at <|channel|>
            default: pending.Remove(0, marker.Length); mode = Mode.Between; break;
        }
        return true;
    }

    /// <summary>How many characters at the end of <paramref name="s"/> may be the beginning of a marker.</summary>
    private static int HeldBack(string s)
    {
        int from = s.LastIndexOf('<');
        if (from < 0 || s.Length - from >= 16) return 0;
        string tail = s[from..];
        foreach (var e in BodyEnds) if (e.StartsWith(tail, StringComparison.Ordinal)) return tail.Length;
        return 0;
    }

    // ---- between messages: <|start|> next ----

    private bool StepBetween(bool final)
    {
        string s = pending.ToString();
        string t = s.TrimStart();
        if (t.Length == 0) { if (final) pending.Clear(); return false; }
        if (t.StartsWith(Start, StringComparison.Ordinal)) { pending.Remove(0, s.Length - t.Length + Start.Length); mode = Mode.Header; return true; }
        if (t.StartsWith(Channel, StringComparison.Ordinal)) { pending.Remove(0, s.Length - t.Length); mode = Mode.Header; return true; }
        if (!final && (Start.StartsWith(t, StringComparison.Ordinal) || Channel.StartsWith(t, StringComparison.Ordinal))) return false;
        // stray text after a message: content, still parsed for later messages
        body = ReplyDeltaKind.Content;
        mode = Mode.Body;
        return true;
    }

    private string TakePending(int n)
    {
        string s = pending.ToString(0, n);
        pending.Remove(0, n);
        return s;
    }

    private bool Emit(ReplyDeltaKind kind, string text)
    {
        if (text.Length == 0) return true;
        switch (kind)
        {
            case ReplyDeltaKind.Reasoning: reasoning.Append(text); output.Add(new ReplyDelta(kind, text)); break;
            case ReplyDeltaKind.ToolCallArguments: calls[^1].Args.Append(text); output.Add(new ReplyDelta(kind, text, calls.Count - 1)); break;
            default: content.Append(text); output.Add(new ReplyDelta(ReplyDeltaKind.Content, text)); break;
        }
        return true;
    }
}

/// <summary>A reply in a format that is parsed whole (<see cref="ToolCallParser"/>): held back until it is complete.</summary>
public sealed class WholeReplyParser(ToolCallFormat format) : IReplyParser
{
    private readonly StringBuilder text = new();
    private ParsedReply? result;

    public IReadOnlyList<ReplyDelta> Push(string piece)
    {
        if (result is not null) throw new InvalidOperationException("the reply is complete");
        text.Append(piece);
        return [];
    }

    public IReadOnlyList<ReplyDelta> Complete()
    {
        if (result is not null) return [];
        result = ToolCallParser.Parse(text.ToString(), format);
        var o = new List<ReplyDelta>();
        if (result.Reasoning is { Length: > 0 } r) o.Add(new ReplyDelta(ReplyDeltaKind.Reasoning, r));
        if (result.Content.Length > 0) o.Add(new ReplyDelta(ReplyDeltaKind.Content, result.Content));
        for (int i = 0; i < result.ToolCalls.Count; i++)
        {
            o.Add(new ReplyDelta(ReplyDeltaKind.ToolCallStart, result.ToolCalls[i].Name, i, result.ToolCalls[i].Id));
            o.Add(new ReplyDelta(ReplyDeltaKind.ToolCallArguments, result.ToolCalls[i].Arguments, i));
        }
        return o;
    }

    public ParsedReply Result => result ?? new ParsedReply(text.ToString(), []);

    public bool HasToolCalls => result is { ToolCalls.Count: > 0 };
}
