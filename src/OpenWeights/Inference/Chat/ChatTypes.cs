namespace OpenWeights.Inference.Chat;

/// <summary>A tool call the assistant made. Arguments: a JSON text (an object for well-formed calls).</summary>
public sealed record ChatToolCall(string Id, string Name, string Arguments);

/// <summary>
/// One message of a conversation: role system, user, assistant or tool. <paramref name="Reasoning"/>: an assistant
/// message's earlier thinking (gpt-oss's analysis channel, Qwen3's &lt;think&gt;), given to the template as <c>thinking</c>
/// and <c>reasoning_content</c>; the template decides whether it is shown again.
/// </summary>
public sealed record ChatTurn(string Role, string? Content, IReadOnlyList<ChatToolCall>? ToolCalls = null, string? ToolCallId = null, string? Name = null,
    string? Reasoning = null)
{
    public static ChatTurn System(string text) => new("system", text);
    public static ChatTurn User(string text) => new("user", text);
    public static ChatTurn Assistant(string text) => new("assistant", text);
    public static ChatTurn Tool(string callId, string result, string? name = null) => new("tool", result, ToolCallId: callId, Name: name);
}

/// <summary>A function the model may call. Parameters: a JSON schema text (null = no parameters).</summary>
public sealed record ChatTool(string Name, string? Description, string? ParametersJson);

/// <summary>How a model writes tool calls, detected from its chat template.</summary>
public enum ToolCallFormat
{
    /// <summary>Try every known format.</summary>
    Generic,
    /// <summary>Hermes, Qwen 2.5/3: &lt;tool_call&gt;{"name":..,"arguments":..}&lt;/tool_call&gt;</summary>
    Hermes,
    /// <summary>Llama 3.x: &lt;|python_tag|&gt; or a bare JSON {"name":..,"parameters":..}</summary>
    Llama3,
    /// <summary>Mistral: [TOOL_CALLS][{"name":..,"arguments":..}] or [TOOL_CALLS]name[ARGS]{..}</summary>
    Mistral,
    /// <summary>
    /// DeepSeek V3 / R1: &lt;｜tool▁calls▁begin｜&gt;&lt;｜tool▁call▁begin｜&gt;function&lt;｜tool▁sep｜&gt;NAME\n```json\n{..}\n```&lt;｜tool▁call▁end｜&gt;…
    /// &lt;｜tool▁calls▁end｜&gt;; V3.1 / V3.2: …&lt;｜tool▁call▁begin｜&gt;NAME&lt;｜tool▁sep｜&gt;{..}&lt;｜tool▁call▁end｜&gt;…
    /// </summary>
    DeepSeek,
    /// <summary>
    /// gpt-oss "harmony": channels &lt;|channel|&gt;analysis (reasoning), final (the answer) and
    /// commentary to=functions.NAME &lt;|constrain|&gt;json&lt;|message|&gt;{..} (a tool call); see <see cref="HarmonyReplyParser"/>.
    /// </summary>
    Harmony,
}

/// <summary>A reply split into text, tool calls and (for models that think in the open) the reasoning before them; Reasoning null: none.</summary>
public sealed record ParsedReply(string Content, IReadOnlyList<ChatToolCall> ToolCalls, string? Reasoning = null);

/// <summary>What a piece of a streamed reply is.</summary>
public enum ReplyDeltaKind
{
    /// <summary>Text of the answer.</summary>
    Content,
    /// <summary>Text of the model's thinking (never part of the answer).</summary>
    Reasoning,
    /// <summary>A tool call begins: <see cref="ReplyDelta.ToolIndex"/>, <see cref="ReplyDelta.ToolCallId"/>, the function's name in <see cref="ReplyDelta.Text"/>.</summary>
    ToolCallStart,
    /// <summary>A fragment of the JSON arguments of tool call <see cref="ReplyDelta.ToolIndex"/>.</summary>
    ToolCallArguments,
}

/// <summary>A piece of a reply as it is generated (see <see cref="IReplyParser"/>).</summary>
/// <param name="ToolIndex">tool calls: the call's position in the reply (0, 1, ...); -1 otherwise</param>
/// <param name="ToolCallId">with <see cref="ReplyDeltaKind.ToolCallStart"/>: the call's id</param>
public readonly record struct ReplyDelta(ReplyDeltaKind Kind, string Text, int ToolIndex = -1, string? ToolCallId = null);

/// <summary>
/// Splits a reply into reasoning, content and tool calls while it is generated: push the text as it comes, then
/// <see cref="Complete"/> once. Text that may still turn out to be a marker is held back until it is decided.
/// </summary>
public interface IReplyParser
{
    /// <summary>Takes the next piece of generated text; returns the pieces it decides.</summary>
    IReadOnlyList<ReplyDelta> Push(string text);
    /// <summary>The reply has ended: returns what was held back.</summary>
    IReadOnlyList<ReplyDelta> Complete();
    /// <summary>The reply so far (all of it after <see cref="Complete"/>).</summary>
    ParsedReply Result { get; }
    /// <summary>Whether a tool call has begun.</summary>
    bool HasToolCalls { get; }
}
