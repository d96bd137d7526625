using System.Text;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Parses the replies of models that think in <c>&lt;think&gt;…&lt;/think&gt;</c> before they answer (DeepSeek-R1 and its
/// Llama/Qwen distills, Qwen3, QwQ, DeepSeek-V3.1/V3.2 in thinking mode, Kimi K2 Thinking) as they are generated: the
/// text inside the tags is reasoning, the text after <c>&lt;/think&gt;</c> the answer. Two ways a reply starts:
/// <list type="bullet">
/// <item>the template opened the thinking in the generation prompt (R1's <c>&lt;｜Assistant｜&gt;&lt;think&gt;\n</c>,
/// V3.1's <c>&lt;think&gt;</c> with <c>thinking</c> on): the reply begins inside the thinking, with no opening tag
/// (<see cref="OpensThinking"/> tells from the rendered prompt);</item>
/// <item>otherwise the model may open it itself: a <c>&lt;think&gt;</c> at the very start of the reply (after
/// whitespace) opens the thinking; any other start means there is none and the whole reply is the answer.</item>
/// </list>
/// </summary>
/// <remarks>
/// The reasoning is trimmed of the whitespace around it, and the whitespace between <c>&lt;/think&gt;</c> and the answer is
/// dropped (templates strip both when they render the turn again); an opening tag the model writes although the prompt
/// opened the thinking already is dropped too. A thinking that is never closed (the reply ran out of
/// tokens, or was stopped) is reasoning to the end: it never leaks into the answer. Text that may be the beginning of a
/// tag, and whitespace that may end the reasoning, is held back until it is decided. The answer goes through
/// <paramref name="contentParser"/> when one is given (a tool-call parser in the template's format), else it streams as
/// content. Nothing here throws on model output.
/// </remarks>
/// <param name="startsInThinking">the generation prompt ends inside an open &lt;think&gt;</param>
/// <param name="contentParser">parses the answer after the thinking (tool calls); null: the answer is plain content</param>
public sealed class ThinkReplyParser(bool startsInThinking = false, IReplyParser? contentParser = null) : StreamingReplyParser
{
    public const string Open = "<think>", Close = "</think>";

    private enum Mode { Start, Thinking, AfterThinking, Content }

    private readonly StringBuilder reasoning = new(), content = new();
    private Mode mode = startsInThinking ? Mode.Thinking : Mode.Start;
    private bool reasoningBegun;   // the whitespace before the reasoning's first character has been dropped

    /// <summary>Parses a whole reply (no tool calls).</summary>
    public static ParsedReply Parse(string text, bool startsInThinking = false)
    {
        var p = new ThinkReplyParser(startsInThinking);
        p.Push(text);
        p.Complete();
        return p.Result;
    }

    /// <summary>
    /// Whether a reply to <paramref name="renderedPrompt"/> begins inside the model's thinking: the prompt ends (but for
    /// whitespace) with an opening <c>&lt;think&gt;</c>, as R1's templates always and DeepSeek-V3.1/V3.2's in thinking
    /// mode write it. Qwen3 with <c>enable_thinking</c> false ends with a closed, empty <c>&lt;think&gt;\n\n&lt;/think&gt;</c>: not open.
    /// </summary>
    public static bool OpensThinking(string renderedPrompt) =>
        renderedPrompt.AsSpan().TrimEnd().EndsWith(Open, StringComparison.Ordinal);

    public override bool HasToolCalls => contentParser?.HasToolCalls ?? false;

    public override ParsedReply Result
    {
        get
        {
            string? r = reasoning.Length > 0 ? reasoning.ToString() : null;
            return contentParser is null ? new ParsedReply(content.ToString(), [], r) : contentParser.Result with { Reasoning = r };
        }
    }

    protected override void Completed()
    {
        if (contentParser is not null) output.AddRange(contentParser.Complete());
    }

    protected override void Run(bool final)
    {
        while (pending.Length > 0)
        {
            bool progressed = mode switch
            {
                Mode.Start => StepStart(final),
                Mode.Thinking => StepThinking(final),
                Mode.AfterThinking => StepAfterThinking(),
                _ => StepContent(),
            };
            if (!progressed) break;
        }
    }

    // ---- the start: an opening <think> (after whitespace), or the answer ----

    private bool StepStart(bool final)
    {
        string s = pending.ToString();
        string t = s.TrimStart();
        if (t.StartsWith(Open, StringComparison.Ordinal))
        {
            pending.Remove(0, s.Length - t.Length + Open.Length);
            mode = Mode.Thinking;
            return true;
        }
        if (!final && Open.StartsWith(t, StringComparison.Ordinal)) return false; // whitespace, or the tag still arriving
        mode = Mode.Content; // no thinking: everything is the answer, whitespace included
        return true;
    }

    // ---- inside the thinking: up to </think> ----

    private bool StepThinking(bool final)
    {
        while (!reasoningBegun)
        {
            pending.Remove(0, LeadingWhitespace(pending)); // the whitespace before the reasoning is not reasoning
            if (pending.Length == 0) return false;
            string head = pending.ToString(0, Math.Min(pending.Length, Open.Length));
            if (head == Open) { pending.Remove(0, Open.Length); continue; } // the prompt opened the thinking and the model did too
            if (!final && head.Length < Open.Length && Open.StartsWith(head, StringComparison.Ordinal)) return false; // may be that tag
            reasoningBegun = true;
        }
        string s = pending.ToString();
        int close = s.IndexOf(Close, StringComparison.Ordinal);
        if (close >= 0)
        {
            Emit(ReplyDeltaKind.Reasoning, s[..close].TrimEnd()); // the whitespace before </think> is not reasoning
            pending.Remove(0, close + Close.Length);
            mode = Mode.AfterThinking;
            return true;
        }
        // hold back what may be the beginning of </think>, and the whitespace before it (it may end the reasoning)
        int end = final ? s.Length : s.Length - PartialTag(s, Close);
        while (end > 0 && char.IsWhiteSpace(s[end - 1])) end--;
        if (end > 0) Emit(ReplyDeltaKind.Reasoning, TakePending(end));
        if (final) pending.Clear(); // an unclosed thinking ends with the reply; its trailing whitespace goes
        return false;
    }

    /// <summary>How many characters at the end of <paramref name="s"/> are a proper beginning of <paramref name="tag"/>.</summary>
    private static int PartialTag(string s, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, s.Length); n > 0; n--)
            if (s.AsSpan(s.Length - n).SequenceEqual(tag.AsSpan(0, n))) return n;
        return 0;
    }

    // ---- between </think> and the answer: whitespace, dropped ----

    private bool StepAfterThinking()
    {
        int ws = LeadingWhitespace(pending);
        pending.Remove(0, ws);
        if (pending.Length == 0) return false;
        mode = Mode.Content;
        return true;
    }

    // ---- the answer ----

    private bool StepContent()
    {
        string s = TakePending(pending.Length);
        if (contentParser is null) Emit(ReplyDeltaKind.Content, s);
        else output.AddRange(contentParser.Push(s));
        return false;
    }

    private static int LeadingWhitespace(StringBuilder sb)
    {
        int i = 0;
        while (i < sb.Length && char.IsWhiteSpace(sb[i])) i++;
        return i;
    }

    private string TakePending(int n)
    {
        string s = pending.ToString(0, n);
        pending.Remove(0, n);
        return s;
    }

    private void Emit(ReplyDeltaKind kind, string text)
    {
        if (text.Length == 0) return;
        (kind == ReplyDeltaKind.Reasoning ? reasoning : content).Append(text);
        output.Add(new ReplyDelta(kind, text));
    }
}
