using System.Text.Json.Nodes;
using OpenWeights.Inference.ChatTemplates;
using OpenWeights.Tokenizers;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Turns a conversation into prompt tokens through the model's chat template (or a supplied one), and knows
/// how the template ends a turn (stop tokens and strings, so they never leak) and writes tool calls.
/// </summary>
public sealed class ChatFormatter
{
    // End-of-turn markers used by common templates. Those the template writes (or the EOS token) stop generation.
    private static readonly string[] KnownEndMarkers =
    [
        "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "</s>", "<|END_OF_TURN_TOKEN|>", "<｜end▁of▁sentence｜>", "<|return|>", "<|im_end|>\n", "[/INST]", "<|user|>",
    ];

    public Tokenizer Tokenizer { get; }
    public ChatTemplate Template { get; }
    public ToolCallFormat ToolFormat { get; }
    /// <summary>Strings that end the assistant's turn (never part of a reply).</summary>
    public IReadOnlyList<string> StopStrings { get; }
    /// <summary>Token ids that end the assistant's turn, besides the tokenizer's end-of-generation set.</summary>
    public IReadOnlySet<int> StopTokens { get; }
    /// <summary>Control tokens that mark tool calls in this template (e.g. Mistral's [TOOL_CALLS], [ARGS]): kept in the reply text so it parses.</summary>
    public IReadOnlySet<int> ToolMarkerTokens { get; }
    private readonly string? bos, eos;
    private readonly Lazy<bool> opensThinkingByDefault;

    /// <param name="templateSource">a Jinja chat template; null uses the model's <c>tokenizer.chat_template</c></param>
    /// <param name="limits">the render's step, output and list budgets (the template is untrusted code); null: <see cref="TemplateLimits.Default"/></param>
    public ChatFormatter(Tokenizer tokenizer, string? templateSource = null, TemplateLimits? limits = null)
    {
        Tokenizer = tokenizer;
        string source = (templateSource is null ? null : ChatTemplateSource.Check(templateSource)) ?? tokenizer.ChatTemplate
            ?? throw new OpenWeightsException("the model has no chat template (tokenizer.chat_template); supply a template");
        Template = new ChatTemplate(source, limits is null ? null : new JinjaTemplateOptions { Limits = limits });
        bos = tokenizer.Bos >= 0 ? tokenizer.TokenPiece(tokenizer.Bos) : null;
        eos = tokenizer.Eos >= 0 ? tokenizer.TokenPiece(tokenizer.Eos) : null;
        ToolFormat = IsHarmonySource(source) ? ToolCallFormat.Harmony
            : source.Contains("<tool_call>", StringComparison.Ordinal) ? ToolCallFormat.Hermes
            : source.Contains("[TOOL_CALLS]", StringComparison.Ordinal) ? ToolCallFormat.Mistral
            : source.Contains(ToolCallParser.DeepSeekCallsBegin, StringComparison.Ordinal) ? ToolCallFormat.DeepSeek
            : source.Contains("<|python_tag|>", StringComparison.Ordinal) || source.Contains("ipython", StringComparison.Ordinal) ? ToolCallFormat.Llama3
            : ToolCallFormat.Generic;

        var strings = new List<string>();
        var ids = new HashSet<int>();
        foreach (var m in KnownEndMarkers.Append(eos).OfType<string>().Distinct())
        {
            if (m.Trim().Length == 0 || !(source.Contains(m, StringComparison.Ordinal) || m == eos)) continue;
            if (m is "[/INST]" or "<|user|>" || m.EndsWith('\n')) continue; // markers of other roles, not the end of a reply
            if (m == "<|end|>" && ToolFormat == ToolCallFormat.Harmony) continue; // harmony: ends a message (the analysis), not the reply
            strings.Add(m);
            int id = tokenizer.TokenToId(m);
            if (id >= 0) ids.Add(id);
        }
        if (ToolFormat == ToolCallFormat.Harmony && tokenizer.TokenToId("<|call|>") is >= 0 and var call)
        {
            strings.Add("<|call|>"); // harmony: a tool call ends the reply; the caller answers with the tool's result
            ids.Add(call);
        }
        StopStrings = strings;
        StopTokens = ids;
        var markers = new HashSet<int>();
        foreach (var m in ToolMarkers)
            if (source.Contains(m, StringComparison.Ordinal) && tokenizer.TokenToId(m) is >= 0 and var mid && tokenizer.IsControl(mid) && !ids.Contains(mid))
                markers.Add(mid);
        ToolMarkerTokens = markers;
        IsThinking = !IsHarmony && IsThinkingSource(source);
        var keep = new HashSet<int>(markers);
        if (IsThinking) // <think> and </think> are text to the reply parser, even where a vocabulary makes them control tokens
            foreach (var tag in new[] { ThinkReplyParser.Open, ThinkReplyParser.Close })
                if (tokenizer.TokenToId(tag) is >= 0 and var tid && tokenizer.IsControl(tid) && !ids.Contains(tid)) keep.Add(tid);
        KeepTokens = keep;
        opensThinkingByDefault = new(() => IsThinking && OpensThinking([ChatTurn.User("Hi")]));
    }

    /// <summary>Whether a chat template is one of a model that thinks in &lt;think&gt;…&lt;/think&gt; before answering (it writes or strips the tags).</summary>
    public static bool IsThinkingSource(string templateSource) =>
        templateSource.Contains(ThinkReplyParser.Open, StringComparison.Ordinal) && !IsHarmonySource(templateSource);

    /// <summary>
    /// Whether replies may begin with reasoning in &lt;think&gt;…&lt;/think&gt; (DeepSeek-R1 and its distills, Qwen3, QwQ,
    /// DeepSeek-V3.1/V3.2, Kimi K2 Thinking): decided from the template, which writes or strips the tags, not from the model's name.
    /// </summary>
    public bool IsThinking { get; }

    /// <summary>Whether every reply carries reasoning to keep apart from the answer (harmony channels or &lt;think&gt; tags), so every reply goes through <see cref="CreateReplyParser"/>.</summary>
    public bool SeparatesReasoning => IsHarmony || IsThinking;

    /// <summary>Whether a reply to the conversation begins inside an open &lt;think&gt; that the template wrote (rendered with <paramref name="extra"/>).</summary>
    public bool OpensThinking(IReadOnlyList<ChatTurn> messages, IReadOnlyDictionary<string, object?>? extra = null)
    {
        try { return IsThinking && ThinkReplyParser.OpensThinking(Render(messages, extra: extra)); }
        catch (OpenWeights.Inference.ChatTemplates.TemplateException) { return false; }
    }

    /// <summary>
    /// Template variables that turn a model's thinking on or off where its template has the switch: <c>enable_thinking</c>
    /// (Qwen3, SmolLM3; DeepSeek-V3.1/V3.2 read it when <c>thinking</c> is not set). Templates without a switch ignore it.
    /// </summary>
    public static Dictionary<string, object?> ThinkingVariables(bool enabled) => new() { ["enable_thinking"] = enabled };

    /// <summary>Whether a chat template writes gpt-oss's harmony format (channels and messages).</summary>
    public static bool IsHarmonySource(string templateSource) =>
        templateSource.Contains("<|channel|>", StringComparison.Ordinal) && templateSource.Contains("<|message|>", StringComparison.Ordinal);

    /// <summary>Whether replies come in gpt-oss's harmony format (reasoning, answer and tool calls on channels).</summary>
    public bool IsHarmony => ToolFormat == ToolCallFormat.Harmony;

    private static readonly string[] ToolMarkers = ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>",
        ToolCallParser.DeepSeekCallsBegin, ToolCallParser.DeepSeekCallsEnd, ToolCallParser.DeepSeekCallBegin, ToolCallParser.DeepSeekCallEnd, ToolCallParser.DeepSeekSep];

    /// <summary>
    /// Renders the conversation as the template does, ending with the assistant's header when asked. The render is
    /// bounded (<see cref="TemplateLimits"/>) and stops with <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> is cancelled (the client has gone).
    /// </summary>
    public string Render(IReadOnlyList<ChatTurn> messages, IReadOnlyList<ChatTool>? tools = null, bool addGenerationPrompt = true,
        IReadOnlyDictionary<string, object?>? extra = null, CancellationToken cancellationToken = default)
    {
        var msgs = messages.Select(ToTemplate).ToList();
        List<object?>? toolList = tools is { Count: > 0 } ? tools.Select(ToTemplate).ToList() : null;
        return Template.Render(msgs, addGenerationPrompt, bos, eos, toolList, extra, cancellationToken);
    }

    /// <summary>Tokenizes a rendered prompt: special tokens are parsed; BOS is added only when the model wants it and the template did not write it.</summary>
    public int[] Encode(string rendered)
    {
        var ids = Tokenizer.Encode(rendered, addSpecial: false, parseSpecial: true);
        if (Tokenizer.AddBos && Tokenizer.Bos >= 0 && (ids.Length == 0 || ids[0] != Tokenizer.Bos))
            ids = [Tokenizer.Bos, .. ids];
        return ids;
    }

    /// <summary>Render and encode in one step.</summary>
    public int[] EncodeConversation(IReadOnlyList<ChatTurn> messages, IReadOnlyList<ChatTool>? tools = null, CancellationToken cancellationToken = default) =>
        Encode(Render(messages, tools, cancellationToken: cancellationToken));

    /// <summary>Render and encode in one step, with extra template variables (e.g. gpt-oss's <c>reasoning_effort</c>).</summary>
    public int[] EncodeConversation(IReadOnlyList<ChatTurn> messages, IReadOnlyList<ChatTool>? tools, IReadOnlyDictionary<string, object?>? extra, CancellationToken cancellationToken = default) =>
        Encode(Render(messages, tools, extra: extra, cancellationToken: cancellationToken));

    /// <summary>Generation options for a reply: the template's stop tokens and strings added to <paramref name="options"/>, and its tool-call marker tokens kept as text.</summary>
    public GenerationOptions ForReply(GenerationOptions options) => options with
    {
        StopStrings = [.. options.StopStrings, .. StopStrings],
        StopTokens = options.StopTokens is null ? StopTokens : new HashSet<int>([.. options.StopTokens, .. StopTokens]),
        KeepSpecialTokens = KeepTokens.Count == 0 ? options.KeepSpecialTokens
            : options.KeepSpecialTokens is null ? KeepTokens : new HashSet<int>([.. options.KeepSpecialTokens, .. KeepTokens]),
    };

    // control tokens kept as text in replies: the tool-call markers and (for thinking models) the think tags
    private IReadOnlySet<int> KeepTokens { get; }

    /// <summary>Splits a finished reply into text, tool calls and reasoning in this template's format.</summary>
    /// <param name="renderedPrompt">the prompt the reply follows (it tells whether the reply began inside an open &lt;think&gt;);
    /// null: as the template's usual generation prompt does</param>
    /// <param name="toolCalls">look for tool calls in the answer (false: the answer is text whatever it holds)</param>
    /// <param name="forcedToolCall">the reply was forced to be a tool call from its first token (<see cref="ToolCallConstraint"/>): no thinking, whatever the prompt opened</param>
    /// <param name="tools">the request's tools: they type the arguments of formats that write them untyped (Qwen3-Coder's XML)</param>
    public ParsedReply ParseReply(string text, string? renderedPrompt = null, bool toolCalls = true, bool forcedToolCall = false, IReadOnlyList<ChatTool>? tools = null)
    {
        if (!IsThinking && !toolCalls && !IsHarmony) return new ParsedReply(text, []);
        var p = CreateReplyParser(renderedPrompt, toolCalls, forcedToolCall, tools);
        p.Push(text);
        p.Complete();
        return p.Result;
    }

    /// <summary>
    /// A parser for one streamed reply, split as it comes: harmony replies (reasoning, content and tool-call arguments
    /// stream); &lt;think&gt; replies stream their reasoning and then their answer; tool calls in the template's format
    /// (<see cref="StreamingToolCallParser"/>) stream their name first and then their arguments, the text before them
    /// at once.
    /// </summary>
    /// <param name="renderedPrompt">the prompt the reply follows; null: as the template's usual generation prompt does</param>
    /// <param name="toolCalls">look for tool calls in the answer (false: a thinking model's answer streams as text)</param>
    /// <param name="forcedToolCall">the reply is forced to be a tool call from its first token (<see cref="ToolCallConstraint"/>): no thinking, whatever the prompt opened</param>
    /// <param name="tools">the request's tools: they type the arguments of formats that write them untyped (Qwen3-Coder's XML)</param>
    public IReplyParser CreateReplyParser(string? renderedPrompt = null, bool toolCalls = true, bool forcedToolCall = false, IReadOnlyList<ChatTool>? tools = null)
    {
        if (IsHarmony) return new HarmonyReplyParser();
        if (!IsThinking) return new StreamingToolCallParser(ToolFormat, tools);
        bool open = !forcedToolCall && (renderedPrompt is null ? opensThinkingByDefault.Value : ThinkReplyParser.OpensThinking(renderedPrompt));
        return new ThinkReplyParser(open, toolCalls ? new StreamingToolCallParser(ToolFormat, tools) : null);
    }

    private static Dictionary<string, object?> ToTemplate(ChatTurn m)
    {
        var d = new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content ?? "" }; // "" rather than None: templates test `'x' in content`
        if (m.ToolCalls is { Count: > 0 } calls)
            d["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
            {
                ["id"] = c.Id, ["type"] = "function",
                ["function"] = new Dictionary<string, object?> { ["name"] = c.Name, ["arguments"] = ParseJsonOrString(c.Arguments) },
            }).ToList();
        if (m.Reasoning is not null)
        {
            d["thinking"] = m.Reasoning;          // gpt-oss
            d["reasoning_content"] = m.Reasoning; // Qwen3, DeepSeek-R1 and others
        }
        if (m.ToolCallId is not null) d["tool_call_id"] = m.ToolCallId;
        if (m.Name is not null) d["name"] = m.Name;
        return d;
    }

    private static object? ToTemplate(ChatTool t)
    {
        var fn = new Dictionary<string, object?> { ["name"] = t.Name };
        if (t.Description is not null) fn["description"] = t.Description;
        fn["parameters"] = t.ParametersJson is null ? new Dictionary<string, object?> { ["type"] = "object", ["properties"] = new Dictionary<string, object?>() } : ParseJsonOrString(t.ParametersJson);
        return new Dictionary<string, object?> { ["type"] = "function", ["function"] = fn };
    }

    // templates index arguments as a mapping (as transformers does after json.loads); keep text that is not JSON as text
    private static object? ParseJsonOrString(string json)
    {
        try { return JsonNode.Parse(json) is JsonObject o ? o : json; }
        catch (System.Text.Json.JsonException) { return json; }
    }
}
