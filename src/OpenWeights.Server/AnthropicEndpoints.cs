using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>
/// The Anthropic Messages API over the same model host as the OpenAI API: POST /v1/messages (streamed as Anthropic's
/// server-sent events) and POST /v1/messages/count_tokens. Auth, limits, metrics and the request log are the server's;
/// the chat template, scheduler and reply parsing are those of OpenAI chat completions (<see cref="ChatRun"/>).
/// The model's reasoning (gpt-oss's analysis channel, a &lt;think&gt; template's thinking) comes back as <c>thinking</c> blocks.
/// </summary>
public static class AnthropicEndpoints
{
    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Whether a path belongs to this API.</summary>
    public static bool Owns(string path) => path == "/v1/messages" || path.StartsWith("/v1/messages/", StringComparison.Ordinal);

    public static IEndpointRouteBuilder MapAnthropic(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/messages", Messages);
        app.MapPost("/v1/messages/count_tokens", CountTokens);
        return app;
    }

    // ---- errors: {"type":"error","error":{"type":...,"message":...}} ----

    internal static readonly IErrorDialect Errors = new AnthropicErrors();

    private sealed class AnthropicErrors : IErrorDialect
    {
        public Task WriteError(HttpContext ctx, ApiException e)
        {
            ctx.Response.StatusCode = e.Status;
            ctx.Response.ContentType = "application/json";
            return ctx.Response.WriteAsync(ErrorJson(e).ToJsonString(Compact));
        }

        public Task WriteInStream(HttpContext ctx, ApiException e) =>
            ctx.Response.ContentType == "text/event-stream" ? ApiDialects.WriteLast(ctx, Event(ErrorJson(e))) : Abort(ctx);

        private static Task Abort(HttpContext ctx) { ctx.Abort(); return Task.CompletedTask; }
    }

    /// <summary>Anthropic's error type for an HTTP status.</summary>
    internal static string ErrorType(int status) => status switch
    {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 or 529 => "overloaded_error",
        >= 500 => "api_error",
        _ => "invalid_request_error",
    };

    private static JsonObject ErrorJson(ApiException e) => new()
    {
        ["type"] = "error",
        ["error"] = new JsonObject { ["type"] = ErrorType(e.Status), ["message"] = e.Message },
    };

    // ---- requests ----

    private static async Task<AnthropicRequest> Read(HttpContext ctx, ModelHost h)
    {
        var body = await OpenAiRequest.ReadAsync(new HttpRequestLike(ctx.Request.Body), h.Options.MaxRequestBodyBytes, ctx.RequestAborted);
        if (string.IsNullOrEmpty(body.String("model"))) throw OpenAiRequest.Bad("model", "is required"); // any name: the one loaded model answers, replies name it
        return new AnthropicRequest(body);
    }

    private static async Task CountTokens(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        var turns = req.Turns();
        var tools = req.Tools().Tools;
        req.Ignored();
        int[] prompt;
        try { prompt = h.Formatter.EncodeConversation(turns, tools, req.ThinkingVariables(h.Formatter), ctx.RequestAborted); }
        catch (OpenWeights.Inference.ChatTemplates.TemplateException e) { throw new ApiException(400, $"the chat template failed: {e.Message}", "messages", "template_error"); }
        RequestLog.InputTokens(ctx, prompt.Length);
        await WriteJson(ctx, new JsonObject { ["input_tokens"] = prompt.Length });
    }

    private static async Task Messages(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        var f = h.Formatter;
        var turns = req.Turns();
        var choice = req.Tools();
        req.Ignored();
        bool forceTool = choice.Required && h.Options.ToolCallConstraintFactory is not null;
        if (choice.Required && !forceTool && choice.Name is { } only) // not enforced: narrow the list
            choice = choice with { Tools = choice.Tools!.Where(t => t.Name == only).ToList() };
        var tools = choice.Tools;
        var prompt = ChatRun.Encode(ctx, h, turns, tools, req.ThinkingVariables(f), "messages", out var rendered);
        var options = req.GenerationOptions(h, prompt.Length);
        var userStops = options.StopStrings;
        bool stream = req.Body.Bool("stream");
        if (forceTool)
        {
            try { options = options with { Constraint = h.Options.ToolCallConstraintFactory!(f, choice.Tools!, choice.Name) }; }
            catch (OpenWeightsException e) { throw OpenAiRequest.Bad("tool_choice", e.Message); }
        }
        var run = ChatRun.Start(ctx, h, prompt, f.ForReply(options), rendered, toolCalls: tools is not null, forcedToolCall: forceTool, tools: tools);
        string id = "msg_" + Guid.NewGuid().ToString("N")[..24];

        string StopReason() =>
            run.HasToolCalls ? "tool_use"
            : run.Finish == FinishReason.Length ? "max_tokens"
            : run.StopString is { } s && userStops.Contains(s) ? "stop_sequence"
            : "end_turn";
        JsonNode? StopSequence() => StopReason() == "stop_sequence" ? run.StopString : null;

        if (!stream)
        {
            var reply = await run.CollectAsync(ctx.RequestAborted);
            var content = new JsonArray();
            if (reply.Reasoning is { Length: > 0 } thought) content.Add(new JsonObject { ["type"] = "thinking", ["thinking"] = thought, ["signature"] = "" });
            if (reply.Content.Length > 0 || reply.ToolCalls.Count == 0) content.Add(new JsonObject { ["type"] = "text", ["text"] = reply.Content });
            foreach (var call in reply.ToolCalls)
                content.Add(new JsonObject { ["type"] = "tool_use", ["id"] = call.Id, ["name"] = call.Name, ["input"] = Input(call.Arguments) });
            await WriteJson(ctx, new JsonObject
            {
                ["id"] = id, ["type"] = "message", ["role"] = "assistant", ["model"] = h.ModelId, ["content"] = content,
                ["stop_reason"] = StopReason(), ["stop_sequence"] = StopSequence(),
                ["usage"] = new JsonObject { ["input_tokens"] = run.PromptTokens, ["output_tokens"] = run.Generated },
            });
            return;
        }

        await ApiDialects.BeginStream(ctx, "text/event-stream");
        var ct = ctx.RequestAborted;
        await Send(ctx, new JsonObject
        {
            ["type"] = "message_start",
            ["message"] = new JsonObject
            {
                ["id"] = id, ["type"] = "message", ["role"] = "assistant", ["model"] = h.ModelId, ["content"] = new JsonArray(),
                ["stop_reason"] = null, ["stop_sequence"] = null,
                ["usage"] = new JsonObject { ["input_tokens"] = run.PromptTokens, ["output_tokens"] = 0 },
            },
        }, ct);
        await Send(ctx, new JsonObject { ["type"] = "ping" }, ct);
        var blocks = new BlockWriter(ctx);
        await foreach (var d in run.ReadAsync(ct))
            await blocks.Write(d, ct);
        await blocks.Close(ct);
        if (blocks.Count == 0) // an empty reply is still one (empty) text block, as in the whole message
        {
            await blocks.Write(new ReplyDelta(ReplyDeltaKind.Content, ""), ct, force: true);
            await blocks.Close(ct);
        }
        await Send(ctx, new JsonObject
        {
            ["type"] = "message_delta",
            ["delta"] = new JsonObject { ["stop_reason"] = StopReason(), ["stop_sequence"] = StopSequence() },
            ["usage"] = new JsonObject { ["output_tokens"] = run.Generated },
        }, ct);
        await Send(ctx, new JsonObject { ["type"] = "message_stop" }, ct);
    }

    /// <summary>
    /// Turns reply pieces into content blocks: a block opens (content_block_start) when the kind of piece changes
    /// (thinking, text, a new tool call), takes its deltas (thinking_delta, text_delta, input_json_delta) and closes
    /// (content_block_stop) before the next one opens.
    /// </summary>
    private sealed class BlockWriter(HttpContext ctx)
    {
        private int open = -1;               // index of the open block; -1: none
        private ReplyDeltaKind kind;
        private int toolIndex = -1;
        public int Count { get; private set; } // blocks opened so far

        public async Task Write(ReplyDelta d, CancellationToken ct, bool force = false)
        {
            if (d.Kind is ReplyDeltaKind.Content or ReplyDeltaKind.Reasoning && d.Text.Length == 0 && !force) return;
            bool continues = open >= 0 && (d.Kind == ReplyDeltaKind.ToolCallArguments
                ? kind == ReplyDeltaKind.ToolCallArguments && d.ToolIndex == toolIndex
                : d.Kind != ReplyDeltaKind.ToolCallStart && d.Kind == kind);
            if (!continues)
            {
                await Close(ct);
                open = Count++;
                JsonObject block = d.Kind switch
                {
                    ReplyDeltaKind.Reasoning => new JsonObject { ["type"] = "thinking", ["thinking"] = "", ["signature"] = "" },
                    ReplyDeltaKind.Content => new JsonObject { ["type"] = "text", ["text"] = "" },
                    ReplyDeltaKind.ToolCallStart => new JsonObject { ["type"] = "tool_use", ["id"] = d.ToolCallId, ["name"] = d.Text, ["input"] = new JsonObject() },
                    _ => new JsonObject { ["type"] = "tool_use", ["id"] = $"toolu_{d.ToolIndex}", ["name"] = "", ["input"] = new JsonObject() }, // arguments with no start: never from the parsers
                };
                await Send(ctx, new JsonObject { ["type"] = "content_block_start", ["index"] = open, ["content_block"] = block }, ct);
                kind = d.Kind == ReplyDeltaKind.ToolCallStart ? ReplyDeltaKind.ToolCallArguments : d.Kind;
                toolIndex = d.ToolIndex;
                if (d.Kind == ReplyDeltaKind.ToolCallStart) return;
            }
            JsonObject delta = d.Kind switch
            {
                ReplyDeltaKind.Reasoning => new JsonObject { ["type"] = "thinking_delta", ["thinking"] = d.Text },
                ReplyDeltaKind.Content => new JsonObject { ["type"] = "text_delta", ["text"] = d.Text },
                _ => new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = d.Text },
            };
            if (d.Text.Length == 0) return;
            await Send(ctx, new JsonObject { ["type"] = "content_block_delta", ["index"] = open, ["delta"] = delta }, ct);
        }

        public async Task Close(CancellationToken ct)
        {
            if (open < 0) return;
            await Send(ctx, new JsonObject { ["type"] = "content_block_stop", ["index"] = open }, ct);
            open = -1;
        }
    }

    /// <summary>A tool call's arguments as the object Anthropic's tool_use.input is (text that is no JSON object is kept under "arguments").</summary>
    private static JsonObject Input(string arguments)
    {
        try { if (JsonNode.Parse(arguments) is JsonObject o) return o; }
        catch (JsonException) { }
        return new JsonObject { ["arguments"] = arguments };
    }

    // an event names its type twice, as Anthropic's do: "event: TYPE" and the data's "type"
    private static string Event(JsonObject data) => $"event: {data["type"]!.GetValue<string>()}\ndata: {data.ToJsonString(Compact)}\n\n";

    private static Task Send(HttpContext ctx, JsonObject data, CancellationToken ct) => ApiDialects.WriteFlushed(ctx, Event(data), ct);

    private static Task WriteJson(HttpContext ctx, JsonNode node)
    {
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(node.ToJsonString(Compact), ctx.RequestAborted);
    }
}
