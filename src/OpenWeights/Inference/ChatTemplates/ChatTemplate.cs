namespace OpenWeights.Inference.ChatTemplates;

/// <summary>
/// A model's chat template, rendered like Hugging Face's <c>apply_chat_template</c>: the template sees
/// <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>, <c>tools</c> and <c>documents</c>
/// (None when not given, exactly as transformers passes them) and any extra variables (e.g. <c>enable_thinking</c>).
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The parsed template.</summary>
    public JinjaTemplate Template { get; }
    /// <summary>The template source.</summary>
    public string Source { get; }

    public ChatTemplate(string source, JinjaTemplateOptions? options = null)
    {
        Source = source;
        Template = JinjaTemplate.Parse(source, options);
    }

    /// <summary>
    /// Renders a conversation. Each message is a plain dictionary exactly as HF passes it: <c>role</c>,
    /// <c>content</c> (string, or a list of parts), optionally <c>tool_calls</c> (list of
    /// <c>{type, function: {name, arguments}}</c>), <c>tool_call_id</c>, <c>name</c>, <c>reasoning_content</c>.
    /// The render is bounded by the options' <see cref="JinjaTemplateOptions.Limits"/> and stops (throwing
    /// <see cref="OperationCanceledException"/>) when <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public string Render(
        IReadOnlyList<IReadOnlyDictionary<string, object?>> messages,
        bool addGenerationPrompt = true,
        string? bosToken = null,
        string? eosToken = null,
        IReadOnlyList<object?>? tools = null,
        IReadOnlyDictionary<string, object?>? extra = null,
        CancellationToken cancellationToken = default)
    {
        var ctx = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (extra is not null) foreach (var (k, v) in extra) ctx[k] = v;
        ctx["messages"] = messages;
        ctx["add_generation_prompt"] = addGenerationPrompt;
        ctx["bos_token"] = bosToken ?? "";
        ctx["eos_token"] = eosToken ?? "";
        // transformers passes tools=None and documents=None when absent, so templates see them as defined-but-none
        ctx["tools"] = tools;
        if (!ctx.ContainsKey("documents")) ctx["documents"] = null;
        return Template.Render(ctx, cancellationToken);
    }

    /// <summary>Convenience: parse and render in one call.</summary>
    public static string Render(
        string source,
        IReadOnlyList<IReadOnlyDictionary<string, object?>> messages,
        bool addGenerationPrompt = true,
        string? bosToken = null,
        string? eosToken = null,
        IReadOnlyList<object?>? tools = null,
        IReadOnlyDictionary<string, object?>? extra = null,
        JinjaTemplateOptions? options = null,
        CancellationToken cancellationToken = default) =>
        new ChatTemplate(source, options).Render(messages, addGenerationPrompt, bosToken, eosToken, tools, extra, cancellationToken);

    /// <summary>A message dictionary with a role and text content.</summary>
    public static Dictionary<string, object?> Message(string role, string content) => new() { ["role"] = role, ["content"] = content };
}
