using OpenWeights.Inference.Constraints;

namespace OpenWeights.Inference.Chat;

/// <summary>
/// Forces a reply to be one tool call in the chat template's own format (OpenAI's <c>tool_choice: "required"</c> or a
/// named function): the format's opening, a JSON call whose name is one of the tools (or the named one) and whose
/// arguments follow that tool's parameter schema, the format's closing; then the constraint is complete and generation
/// stops. The reply parses with <see cref="ChatFormatter.ParseReply"/>.
/// </summary>
/// <remarks>
/// Formats: Hermes/Qwen <c>&lt;tool_call&gt;\n{"name": .., "arguments": ..}\n&lt;/tool_call&gt;</c>; Llama 3.x
/// <c>{"name": .., "parameters": ..}</c>; Mistral <c>[TOOL_CALLS][{"name": .., "arguments": ..}]</c>, or
/// <c>[TOOL_CALLS]name[ARGS]{..}</c> when the template writes <c>[ARGS]</c>; gpt-oss harmony
/// <c>&lt;|channel|&gt;commentary to=functions.NAME &lt;|constrain|&gt;json&lt;|message|&gt;{..}</c> (no analysis first); other templates a bare
/// <c>{"name": .., "arguments": ..}</c>. Parameter schemas are enforced within the JSON-schema subset of
/// <see cref="JsonConstraint"/>; other validation keywords are not enforced (see <see cref="ConstraintPart.ToolArguments"/>).
/// </remarks>
public static class ToolCallConstraint
{
    /// <summary>A constraint for one generation.</summary>
    /// <param name="formatter">the chat formatter (tokenizer and tool-call format)</param>
    /// <param name="tools">the tools offered</param>
    /// <param name="name">the function that must be called; null: any of <paramref name="tools"/></param>
    /// <exception cref="OpenWeightsException">no tools, or <paramref name="name"/> is not one of them.</exception>
    public static ITokenConstraint Create(ChatFormatter formatter, IReadOnlyList<ChatTool> tools, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        if (tools.Count == 0) throw new OpenWeightsException("a tool call is required but no tools were given");
        var chosen = name is null ? tools.ToList() : tools.Where(t => t.Name == name).ToList();
        if (chosen.Count == 0)
            throw new OpenWeightsException($"the required function '{name}' is not among the tools ({string.Join(", ", tools.Select(t => t.Name))})");
        var trie = TokenTrie.For(formatter.Tokenizer);
        return SequenceConstraint.Create(trie, Parts(formatter, chosen));
    }

    /// <summary>The sequence(s) a forced call follows in the formatter's format (one alternative, or one per tool).</summary>
    internal static IReadOnlyList<IReadOnlyList<ConstraintPart>> Parts(ChatFormatter formatter, IReadOnlyList<ChatTool> tools)
    {
        int[] Enc(string s) => formatter.Tokenizer.Encode(s, addSpecial: false, parseSpecial: true);
        var specs = tools.Select(t => (t.Name, t.ParametersJson)).ToList();
        return formatter.ToolFormat switch
        {
            ToolCallFormat.Hermes => [[ConstraintPart.Exact(Enc("<tool_call>\n")), ConstraintPart.ToolCall(specs), ConstraintPart.Exact(Enc("\n</tool_call>"))]],
            ToolCallFormat.Llama3 => [[ConstraintPart.ToolCall(specs, "parameters")]],
            ToolCallFormat.Mistral when formatter.Template.Source.Contains("[ARGS]", StringComparison.Ordinal) =>
                tools.Select(t => (IReadOnlyList<ConstraintPart>)[ConstraintPart.Exact(Enc("[TOOL_CALLS]" + t.Name + "[ARGS]")), ConstraintPart.ToolArguments(t.ParametersJson)]).ToList(),
            ToolCallFormat.Mistral => [[ConstraintPart.Exact(Enc("[TOOL_CALLS]")), ConstraintPart.ToolCall(specs, inArray: true)]],
            // DeepSeek V3 / R1 (a fenced JSON block after the name) or V3.1 / V3.2 (the arguments right after the separator)
            ToolCallFormat.DeepSeek when formatter.Template.Source.Contains("```json", StringComparison.Ordinal) => tools.Select(t => (IReadOnlyList<ConstraintPart>)[
                ConstraintPart.Exact(Enc(ToolCallParser.DeepSeekCallsBegin + ToolCallParser.DeepSeekCallBegin + "function" + ToolCallParser.DeepSeekSep + t.Name + "\n```json\n")),
                ConstraintPart.ToolArguments(t.ParametersJson), ConstraintPart.Exact(Enc("\n```" + ToolCallParser.DeepSeekCallEnd + ToolCallParser.DeepSeekCallsEnd))]).ToList(),
            ToolCallFormat.DeepSeek => tools.Select(t => (IReadOnlyList<ConstraintPart>)[
                ConstraintPart.Exact(Enc(ToolCallParser.DeepSeekCallsBegin + ToolCallParser.DeepSeekCallBegin + t.Name + ToolCallParser.DeepSeekSep)),
                ConstraintPart.ToolArguments(t.ParametersJson), ConstraintPart.Exact(Enc(ToolCallParser.DeepSeekCallEnd + ToolCallParser.DeepSeekCallsEnd))]).ToList(),
            ToolCallFormat.Harmony => tools.Select(t => (IReadOnlyList<ConstraintPart>)[
                ConstraintPart.Exact(Enc("<|channel|>commentary to=functions." + t.Name + " <|constrain|>json<|message|>")), ConstraintPart.ToolArguments(t.ParametersJson)]).ToList(),
            _ => [[ConstraintPart.ToolCall(specs)]],
        };
    }
}
