using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>
/// The OpenAI Responses API over the same model host as chat completions: POST /v1/responses (whole, or streamed as the
/// Responses API's typed server-sent events), GET and DELETE /v1/responses/{id}. The conversation goes through the chat
/// template, scheduler and reply parser as chat completions' does (<see cref="ChatRun"/>); the reply comes back as output
/// items: <c>reasoning</c> (the model's thinking), <c>message</c> (its answer) and <c>function_call</c>s. Responses are kept in
/// memory (<see cref="ResponseStore"/>) so that <c>previous_response_id</c> continues one within the server's lifetime.
/// Errors are OpenAI's {"error": {...}}; an error in a stream under way is an <c>error</c> event.
/// </summary>
public static class ResponsesEndpoints
{
    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Whether a path belongs to this API.</summary>
    public static bool Owns(string path) => path == "/v1/responses" || path.StartsWith("/v1/responses/", StringComparison.Ordinal);

    public static IEndpointRouteBuilder MapResponses(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/responses", Create);
        app.MapGet("/v1/responses/{id}", (string id, ModelHost h) => Results.Text(Stored(h, id).ResponseJson, "application/json"));
        app.MapDelete("/v1/responses/{id}", (string id, ModelHost h) => h.Responses.Remove(id)
            ? Results.Text(new JsonObject { ["id"] = id, ["object"] = "response.deleted", ["deleted"] = true }.ToJsonString(Compact), "application/json")
            : throw NotFound(id));
        app.MapGet("/v1/responses/{id}/input_items", InputItems);
        return app;
    }

    /// <summary>GET /v1/responses/{id}/input_items: the response's input items, a page at a time (limit 1..100, default 20; order desc by default; after/before an item id).</summary>
    private static Task InputItems(HttpContext ctx, string id, ModelHost h)
    {
        var items = JsonNode.Parse(Stored(h, id).InputItemsJson)!.AsArray().Select(i => i!).ToList();
        var q = ctx.Request.Query;
        int limit = 20;
        if (q["limit"] is { Count: > 0 } l && (!int.TryParse(l[0], out limit) || limit is < 1 or > 100))
            throw OpenAiRequest.Bad("limit", "must be an integer between 1 and 100");
        string order = q["order"] is { Count: > 0 } o ? o[0]! : "desc";
        if (order is not ("asc" or "desc")) throw OpenAiRequest.Bad("order", "must be asc or desc");
        if (order == "desc") items.Reverse();
        int start = 0, end = items.Count;
        if (q["after"] is { Count: > 0 } after)
            start = items.FindIndex(i => i["id"]?.GetValue<string>() == after[0]) is >= 0 and var k ? k + 1 : throw OpenAiRequest.Bad("after", "is not an item of this response");
        if (q["before"] is { Count: > 0 } before)
            end = items.FindIndex(i => i["id"]?.GetValue<string>() == before[0]) is >= 0 and var k ? k : throw OpenAiRequest.Bad("before", "is not an item of this response");
        var page = items.Skip(start).Take(Math.Max(0, Math.Min(limit, end - start))).ToList();
        var data = new JsonArray(page.Select(i => i.DeepClone()).ToArray());
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(new JsonObject
        {
            ["object"] = "list", ["data"] = data,
            ["first_id"] = page.Count > 0 ? page[0]["id"]!.DeepClone() : null,
            ["last_id"] = page.Count > 0 ? page[^1]["id"]!.DeepClone() : null,
            ["has_more"] = start + page.Count < end,
        }.ToJsonString(Compact), ctx.RequestAborted);
    }

    private static ResponseStore.Entry Stored(ModelHost h, string id) => h.Responses.Get(id) ?? throw NotFound(id);

    private static ApiException NotFound(string id) =>
        new(404, $"Response with id '{OpenAiRequest.Printable(id)}' not found.", type: "invalid_request_error", code: "response_not_found");

    // ---- errors: OpenAI's shape; in a stream, an "error" event ----

    internal static readonly IErrorDialect Errors = new ResponsesErrors();

    private sealed class ResponsesErrors : IErrorDialect
    {
        public Task WriteError(HttpContext ctx, ApiException e)
        {
            ctx.Response.StatusCode = e.Status;
            ctx.Response.ContentType = "application/json";
            return ctx.Response.WriteAsync(new JsonObject
            {
                ["error"] = new JsonObject { ["message"] = e.Message, ["type"] = e.Type, ["param"] = e.Param, ["code"] = e.Code },
            }.ToJsonString(Compact));
        }

        public Task WriteInStream(HttpContext ctx, ApiException e)
        {
            if (ctx.Response.ContentType != "text/event-stream") { ctx.Abort(); return Task.CompletedTask; }
            var ev = new JsonObject { ["type"] = "error", ["code"] = e.Code, ["message"] = e.Message, ["param"] = e.Param };
            return ApiDialects.WriteLast(ctx, Sequence.Of(ctx).Event(ev));
        }
    }

    /// <summary>The sequence numbers of one stream's events (kept on the request, so that an error event continues them).</summary>
    private sealed class Sequence
    {
        private int next;
        public static Sequence Of(HttpContext ctx) => ctx.Items[typeof(Sequence)] as Sequence ?? (Sequence)(ctx.Items[typeof(Sequence)] = new Sequence());

        // an event names its type twice, as OpenAI's do: "event: TYPE" and the data's "type"; then its sequence_number
        public string Event(JsonObject data)
        {
            data["sequence_number"] = next++;
            return $"event: {data["type"]!.GetValue<string>()}\ndata: {data.ToJsonString(Compact)}\n\n";
        }
    }

    // ---- POST /v1/responses ----

    private static async Task Create(HttpContext ctx, ModelHost h)
    {
        var body = await OpenAiRequest.ReadAsync(new HttpRequestLike(ctx.Request.Body), h.Options.MaxRequestBodyBytes, ctx.RequestAborted);
        if (string.IsNullOrEmpty(body.String("model"))) throw OpenAiRequest.Bad("model", "is required"); // any name: the one loaded model answers, replies name it
        var req = new ResponsesRequest(body);
        req.Ignored();
        var f = h.Formatter;
        string? previousId = req.PreviousResponseId();
        IReadOnlyList<ChatTurn> history = previousId is null ? []
            : h.Responses.Get(previousId)?.Conversation
              ?? throw new ApiException(400, $"Previous response with id '{OpenAiRequest.Printable(previousId)}' not found.", "previous_response_id", "previous_response_not_found");
        var input = req.Input(history);
        string? instructions = req.Instructions();
        var turns = new List<ChatTurn>();
        if (instructions is not null) turns.Add(ChatTurn.System(instructions));
        turns.AddRange(history);
        turns.AddRange(input);

        var choice = req.Tools();
        bool forceTool = choice.Required && h.Options.ToolCallConstraintFactory is not null;
        if (choice.Required && !forceTool && choice.Name is { } only) // not enforced: narrow the list
            choice = choice with { Tools = choice.Tools!.Where(t => t.Name == only).ToList() };
        var tools = choice.Tools;
        var (format, schema) = req.TextFormat();
        bool stream = body.Bool("stream");
        bool store = req.Store();
        var prompt = ChatRun.Encode(ctx, h, turns, tools, req.TemplateVariables(), "input", out var rendered);
        var options = req.GenerationOptions(h, prompt.Length);
        if (forceTool)
        {
            try { options = options with { Constraint = h.Options.ToolCallConstraintFactory!(f, choice.Tools!, choice.Name) }; }
            catch (OpenWeightsException e) { throw OpenAiRequest.Bad("tool_choice", e.Message); }
        }
        else if (format != "text")
        {
            if (h.Options.JsonConstraintFactory is not { } factory)
                throw new ApiException(400, $"text.format '{format}' is not supported by this server (constrained decoding is not available)", "text.format", "unsupported_response_format");
            try { options = options with { Constraint = factory(h.Tokenizer, schema) }; }
            catch (OpenWeightsException e) { throw OpenAiRequest.Bad(schema is null ? "text.format" : "text.format.schema", e.Message); }
        }

        var response = new ResponseShape(body, h, "resp_" + Guid.NewGuid().ToString("N"), DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            instructions, previousId, store, options);
        var run = ChatRun.Start(ctx, h, prompt, f.ForReply(options), rendered, toolCalls: tools is not null, forcedToolCall: forceTool, tools: tools);

        Sequence? events = null;
        if (stream)
        {
            await ApiDialects.BeginStream(ctx, "text/event-stream");
            events = Sequence.Of(ctx);
            var started = response.Json("in_progress", [], null);
            await Send(ctx, events, new JsonObject { ["type"] = "response.created", ["response"] = started }, ctx.RequestAborted);
            await Send(ctx, events, new JsonObject { ["type"] = "response.in_progress", ["response"] = started.DeepClone() }, ctx.RequestAborted);
        }
        var output = new OutputWriter(ctx, events);
        await foreach (var d in run.ReadAsync(ctx.RequestAborted))
            await output.Write(d, ctx.RequestAborted);
        bool incomplete = run.Finish == FinishReason.Length;
        await output.Close(incomplete, ctx.RequestAborted);
        if (output.Items.Count == 0) // an empty reply is still one (empty) message, as OpenAI's are
        {
            await output.Write(new ReplyDelta(ReplyDeltaKind.Content, ""), ctx.RequestAborted, force: true);
            await output.Close(incomplete, ctx.RequestAborted);
        }

        var usage = new JsonObject
        {
            ["input_tokens"] = run.PromptTokens, ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = run.CachedTokens },
            ["output_tokens"] = run.Generated, ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
            ["total_tokens"] = run.PromptTokens + run.Generated,
        };
        var final = response.Json(incomplete ? "incomplete" : "completed", output.Items, usage);
        if (store)
        {
            var reply = run.Result;
            var conversation = new List<ChatTurn>(history.Count + input.Count + 1);
            conversation.AddRange(history);
            conversation.AddRange(input);
            conversation.Add(new ChatTurn("assistant", reply.ToolCalls.Count > 0 && reply.Content.Length == 0 ? null : reply.Content,
                reply.ToolCalls.Count > 0 ? reply.ToolCalls : null, Reasoning: reply.Reasoning));
            h.Responses.Add(new ResponseStore.Entry(response.Id, final.ToJsonString(Compact), req.InputItems().ToJsonString(Compact), conversation));
        }
        if (events is null)
        {
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(final.ToJsonString(Compact), ctx.RequestAborted);
            return;
        }
        await Send(ctx, events, new JsonObject { ["type"] = incomplete ? "response.incomplete" : "response.completed", ["response"] = final }, ctx.RequestAborted);
    }

    private static Task Send(HttpContext ctx, Sequence events, JsonObject data, CancellationToken ct) => ApiDialects.WriteFlushed(ctx, events.Event(data), ct);

    /// <summary>The response object but for its status, output and usage: what the request asked, echoed as OpenAI echoes it.</summary>
    private sealed class ResponseShape(OpenAiRequest body, ModelHost h, string id, long created, string? instructions, string? previousId, bool store, GenerationOptions options)
    {
        public string Id => id;

        public JsonObject Json(string status, JsonArray output, JsonObject? usage)
        {
            var b = body.Body;
            var reasoning = b["reasoning"] as JsonObject;
            return new JsonObject
            {
                ["id"] = id, ["object"] = "response", ["created_at"] = created, ["status"] = status, ["background"] = false,
                ["error"] = null,
                ["incomplete_details"] = status == "incomplete" ? new JsonObject { ["reason"] = "max_output_tokens" } : null,
                ["instructions"] = instructions,
                ["max_output_tokens"] = b["max_output_tokens"]?.DeepClone(),
                ["model"] = h.ModelId,
                ["output"] = output.DeepClone(),
                ["parallel_tool_calls"] = b["parallel_tool_calls"]?.DeepClone() ?? true,
                ["previous_response_id"] = previousId,
                ["reasoning"] = new JsonObject { ["effort"] = reasoning?["effort"]?.DeepClone(), ["summary"] = reasoning?["summary"]?.DeepClone() },
                ["store"] = store,
                ["temperature"] = options.Sampling.Temperature,
                ["text"] = new JsonObject { ["format"] = (b["text"] as JsonObject)?["format"]?.DeepClone() ?? new JsonObject { ["type"] = "text" } },
                ["tool_choice"] = b["tool_choice"]?.DeepClone() ?? "auto",
                ["tools"] = b["tools"]?.DeepClone() ?? new JsonArray(),
                ["top_p"] = options.Sampling.TopP,
                ["truncation"] = "disabled",
                ["usage"] = usage?.DeepClone(),
                ["user"] = b["user"]?.DeepClone(),
                ["metadata"] = b["metadata"]?.DeepClone() ?? new JsonObject(),
            };
        }
    }

    /// <summary>
    /// Turns reply pieces into output items: an item opens when the kind of piece changes (reasoning, the message's text, a
    /// new function call), takes its deltas and is done before the next one opens. With a stream it writes each step as the
    /// Responses API's events (output_item.added, content_part.added, output_text.delta ... output_item.done); either way it
    /// keeps the finished items for the response's output.
    /// </summary>
    private sealed class OutputWriter(HttpContext ctx, Sequence? events)
    {
        private JsonObject? item;              // the open item; null: none
        private ReplyDeltaKind kind;
        private int toolIndex = -1;
        private readonly System.Text.StringBuilder text = new();
        public JsonArray Items { get; } = [];

        private Task Emit(JsonObject data, CancellationToken ct) => events is null ? Task.CompletedTask : Send(ctx, events, data, ct);

        public async Task Write(ReplyDelta d, CancellationToken ct, bool force = false)
        {
            if (d.Kind is ReplyDeltaKind.Content or ReplyDeltaKind.Reasoning && d.Text.Length == 0 && !force) return;
            bool continues = item is not null && (d.Kind == ReplyDeltaKind.ToolCallArguments
                ? kind == ReplyDeltaKind.ToolCallArguments && d.ToolIndex == toolIndex
                : d.Kind != ReplyDeltaKind.ToolCallStart && d.Kind == kind);
            if (!continues)
            {
                await Close(false, ct);
                await Open(d, ct);
                if (d.Kind == ReplyDeltaKind.ToolCallStart) return;
            }
            if (d.Text.Length == 0) return;
            text.Append(d.Text);
            string itemId = item!["id"]!.GetValue<string>();
            int index = Items.Count;
            await Emit(kind switch
            {
                ReplyDeltaKind.Reasoning => new JsonObject
                {
                    ["type"] = "response.reasoning_text.delta", ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["delta"] = d.Text,
                },
                ReplyDeltaKind.Content => new JsonObject
                {
                    ["type"] = "response.output_text.delta", ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["delta"] = d.Text,
                    ["logprobs"] = new JsonArray(),
                },
                _ => new JsonObject { ["type"] = "response.function_call_arguments.delta", ["item_id"] = itemId, ["output_index"] = index, ["delta"] = d.Text },
            }, ct);
        }

        private async Task Open(ReplyDelta d, CancellationToken ct)
        {
            kind = d.Kind == ReplyDeltaKind.ToolCallStart ? ReplyDeltaKind.ToolCallArguments : d.Kind;
            toolIndex = d.ToolIndex;
            text.Clear();
            item = kind switch
            {
                ReplyDeltaKind.Reasoning => new JsonObject
                {
                    ["id"] = NewId("rs_"), ["type"] = "reasoning", ["summary"] = new JsonArray(), ["content"] = new JsonArray(), ["status"] = "in_progress",
                },
                ReplyDeltaKind.Content => new JsonObject
                {
                    ["id"] = NewId("msg_"), ["type"] = "message", ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray(),
                },
                _ => new JsonObject
                {
                    ["id"] = NewId("fc_"), ["type"] = "function_call", ["status"] = "in_progress", ["arguments"] = "",
                    ["call_id"] = d.ToolCallId ?? $"call_{d.ToolIndex}", ["name"] = d.Kind == ReplyDeltaKind.ToolCallStart ? d.Text : "",
                },
            };
            int index = Items.Count;
            await Emit(new JsonObject { ["type"] = "response.output_item.added", ["output_index"] = index, ["item"] = item.DeepClone() }, ct);
            if (Part("") is { } part)
                await Emit(new JsonObject
                {
                    ["type"] = "response.content_part.added", ["item_id"] = item["id"]!.GetValue<string>(), ["output_index"] = index, ["content_index"] = 0, ["part"] = part,
                }, ct);
        }

        // the content part of the open item holding `s` (null for a function call, which has none)
        private JsonObject? Part(string s) => kind switch
        {
            ReplyDeltaKind.Reasoning => new JsonObject { ["type"] = "reasoning_text", ["text"] = s },
            ReplyDeltaKind.Content => new JsonObject { ["type"] = "output_text", ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray(), ["text"] = s },
            _ => null,
        };

        /// <summary>Finishes the open item; <paramref name="incomplete"/>: the reply was cut at max_output_tokens.</summary>
        public async Task Close(bool incomplete, CancellationToken ct)
        {
            if (item is null) return;
            var it = item;
            item = null;
            string itemId = it["id"]!.GetValue<string>();
            int index = Items.Count;
            string whole = text.ToString();
            if (Part(whole) is { } part)
            {
                await Emit(kind == ReplyDeltaKind.Reasoning
                    ? new JsonObject { ["type"] = "response.reasoning_text.done", ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["text"] = whole }
                    : new JsonObject
                    {
                        ["type"] = "response.output_text.done", ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["text"] = whole,
                        ["logprobs"] = new JsonArray(),
                    }, ct);
                await Emit(new JsonObject
                {
                    ["type"] = "response.content_part.done", ["item_id"] = itemId, ["output_index"] = index, ["content_index"] = 0, ["part"] = part.DeepClone(),
                }, ct);
                it["content"] = new JsonArray(part);
            }
            else
            {
                it["arguments"] = whole;
                await Emit(new JsonObject
                {
                    ["type"] = "response.function_call_arguments.done", ["item_id"] = itemId, ["output_index"] = index, ["name"] = it["name"]!.GetValue<string>(),
                    ["arguments"] = whole,
                }, ct);
            }
            it["status"] = incomplete ? "incomplete" : "completed";
            await Emit(new JsonObject { ["type"] = "response.output_item.done", ["output_index"] = index, ["item"] = it.DeepClone() }, ct);
            Items.Add(it);
        }

        private static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N");
    }
}
