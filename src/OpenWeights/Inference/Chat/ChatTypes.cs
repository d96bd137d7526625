namespace OpenWeights.Inference.Chat;

/// <summary>A tool call the assistant made. Arguments: a JSON text (an object for well-formed calls).</summary>
public sealed record ChatToolCall(string Id, string Name, string Arguments);

/// <summary>One message of a conversation: role system, user, assistant or tool.</summary>
public sealed record ChatTurn(string Role, string? Content, IReadOnlyList<ChatToolCall>? ToolCalls = null, string? ToolCallId = null, string? Name = null)
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
}

/// <summary>A reply split into text and tool calls.</summary>
public sealed record ParsedReply(string Content, IReadOnlyList<ChatToolCall> ToolCalls);
