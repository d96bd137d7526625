using System.Diagnostics;
using System.Text;
using Microsoft.AspNetCore.Http;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>
/// One reply generated for the Anthropic and Ollama APIs through the same path as OpenAI chat completions: the
/// scheduler (<see cref="OpenAiEndpoints.Start"/>: request log, metrics, cancellation when the client goes), and the
/// template's reply parser. Read it once with <see cref="ReadAsync"/>: the reply comes as <see cref="ReplyDelta"/>s
/// (reasoning, content, tool calls); afterwards <see cref="Finish"/>, <see cref="Result"/> and the counts are set.
/// </summary>
internal sealed class ChatRun
{
    private readonly JobOutput output;
    private readonly IReplyParser? parser;
    private readonly StringBuilder text = new();

    /// <summary>Tokens of the prompt.</summary>
    public int PromptTokens { get; }
    /// <summary>When the request arrived (Stopwatch ticks).</summary>
    public long StartTicks { get; }
    public FinishReason Finish { get; private set; }
    /// <summary>The stop string that ended the reply (a template's end marker or one the request gave); null otherwise.</summary>
    public string? StopString { get; private set; }
    public int Generated { get; private set; }
    /// <summary>Prompt tokens taken from a cache instead of computed (<see cref="JobOutput.CachedTokens"/>).</summary>
    public int CachedTokens => output.CachedTokens();
    public GenerationStats? Stats { get; private set; }
    /// <summary>The whole reply, split (raw text as content when it was not parsed).</summary>
    public ParsedReply Result => parser?.Result ?? new ParsedReply(text.ToString(), []);
    public bool HasToolCalls => parser?.HasToolCalls == true;

    private ChatRun(JobOutput output, IReplyParser? parser, int promptTokens, long start)
    {
        this.output = output; this.parser = parser; PromptTokens = promptTokens; StartTicks = start;
    }

    /// <summary>
    /// Renders and encodes a conversation with the model's template; a template failure becomes a 400 naming
    /// <paramref name="param"/>; a prompt that fills the context is a 400 too.
    /// </summary>
    public static int[] Encode(HttpContext ctx, ModelHost h, IReadOnlyList<ChatTurn> turns, IReadOnlyList<ChatTool>? tools,
        IReadOnlyDictionary<string, object?>? variables, string param, out string rendered)
    {
        try { rendered = h.Formatter.Render(turns, tools, extra: variables, cancellationToken: ctx.RequestAborted); }
        catch (OpenWeights.Inference.ChatTemplates.TemplateException e) { throw new ApiException(400, $"the chat template failed: {e.Message}", param, "template_error"); }
        int[] prompt = h.Formatter.Encode(rendered);
        CheckContext(h, prompt.Length, h.Scheduler.ContextSize);
        return prompt;
    }

    /// <summary>A prompt must leave room for one generated token in <paramref name="context"/> tokens.</summary>
    public static void CheckContext(ModelHost h, int promptTokens, int context)
    {
        if (promptTokens >= context)
            throw new ApiException(400, $"the prompt has {promptTokens} tokens but the context holds {context}; shorten the conversation", code: "context_length_exceeded");
    }

    /// <summary>
    /// Starts generating. The reply goes through the template's reply parser when <see cref="Parses"/> says so (reasoning
    /// apart from the answer for gpt-oss's harmony and &lt;think&gt; templates, whether the prompt
    /// <paramref name="rendered"/> already opened the thinking; tool calls when <paramref name="toolCalls"/>, streamed as they come, typed by <paramref name="tools"/> where the format needs it); otherwise its
    /// text streams as content. <paramref name="rendered"/>: null for a raw prompt (never parsed).
    /// </summary>
    public static ChatRun Start(HttpContext ctx, ModelHost h, int[] prompt, GenerationOptions options, string? rendered, bool toolCalls, bool forcedToolCall = false,
        IReadOnlyList<ChatTool>? tools = null)
    {
        long start = ctx.Features.Get<RequestRecord>()?.StartTicks ?? Stopwatch.GetTimestamp();
        var output = OpenAiEndpoints.Start(ctx, h, prompt, _ => options, 1);
        var parser = rendered is not null && Parses(h, toolCalls) ? h.Formatter.CreateReplyParser(rendered, toolCalls, forcedToolCall, tools) : null;
        return new ChatRun(output, parser, prompt.Length, start);
    }

    /// <summary>Whether a chat reply is parsed (see <see cref="Start"/>).</summary>
    public static bool Parses(ModelHost h, bool toolCalls) => toolCalls || h.Formatter.SeparatesReasoning;

    /// <summary>The reply's pieces as they are decided; ends after the last one.</summary>
    public async IAsyncEnumerable<ReplyDelta> ReadAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await foreach (var ev in output.ReadAllAsync(ct))
        {
            if (ev.Error is { } err) throw new ApiException(500, $"generation failed: {OpenAiRequest.Printable(err.Message, 300)}", code: "generation_failed");
            var c = ev.Chunk!;
            if (parser is not null)
            {
                foreach (var d in parser.Push(c.Text)) yield return d;
                if (c.Finish is not null) foreach (var d in parser.Complete()) yield return d;
            }
            else if (c.Text.Length > 0)
            {
                text.Append(c.Text);
                yield return new ReplyDelta(ReplyDeltaKind.Content, c.Text);
            }
            if (c.Finish is { } f)
            {
                Finish = f; StopString = c.StopString; Stats = c.Stats; Generated = c.Stats?.GeneratedTokens ?? 0;
                yield break;
            }
        }
        ct.ThrowIfCancellationRequested();
    }

    /// <summary>Reads the whole reply.</summary>
    public async Task<ParsedReply> CollectAsync(CancellationToken ct)
    {
        await foreach (var _ in ReadAsync(ct)) { }
        return Result;
    }
}
