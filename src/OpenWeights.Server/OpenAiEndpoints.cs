using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Inference.Constraints;

namespace OpenWeights.Server;

/// <summary>The OpenAI-compatible HTTP API over a <see cref="ModelHost"/>.</summary>
public static class OpenAiEndpoints
{
    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>API key check and error shaping for every request.</summary>
    public static IApplicationBuilder UseOpenAiErrors(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        var options = ctx.RequestServices.GetRequiredService<ServerOptions>();
        string endpoint = ctx.Request.Path.Value ?? "";
        try
        {
            if (options.ApiKey is { Length: > 0 } key && !ModelLoad.IsProbe(endpoint) && !ChatPage.IsPublic(ctx.Request))
            {
                string? auth = ctx.Request.Headers.Authorization;
                if (auth is null || !auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
                    throw new ApiException(401, "missing API key: send 'Authorization: Bearer KEY'", code: "invalid_api_key", type: "invalid_request_error");
                if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(auth[7..].Trim()), Encoding.UTF8.GetBytes(key)))
                    throw new ApiException(401, "incorrect API key", code: "invalid_api_key", type: "invalid_request_error");
            }
            await next(ctx);
            if (ctx.Response.StatusCode >= 400 && !ctx.Response.HasStarted) // answered by routing (405) with no body
                throw new ApiException(ctx.Response.StatusCode, ctx.Response.StatusCode == 405
                    ? $"{OpenAiRequest.Printable(ctx.Request.Method)} is not allowed on {OpenAiRequest.Printable(endpoint, 200)}" : $"the request failed with HTTP {ctx.Response.StatusCode}",
                    code: ctx.Response.StatusCode == 405 ? "method_not_allowed" : null);
        }
        catch (ApiException e) when (!ctx.Response.HasStarted) { await WriteError(ctx, e); }
        catch (QueueFullException e) when (!ctx.Response.HasStarted) { await WriteError(ctx, new ApiException(429, e.Message, code: "queue_full")); }
        catch (OpenWeightsException e) when (!ctx.Response.HasStarted) { await WriteError(ctx, new ApiException(400, e.Message)); }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted) { await WriteError(ctx, new ApiException(e.StatusCode, e.Message, code: e.StatusCode == 413 ? "request_too_large" : "bad_request")); }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { /* client gone */ }
        catch (Exception e) { await LastResort(ctx, e); }
    });

    private static Task WriteError(HttpContext ctx, ApiException e)
    {
        if (ctx.Features.Get<IErrorDialect>() is { } dialect) return dialect.WriteError(ctx, e); // the Anthropic and Ollama APIs
        ctx.Response.StatusCode = e.Status;
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(ErrorJson(e).ToJsonString(Compact));
    }

    private static JsonObject ErrorJson(ApiException e) => new()
    {
        ["error"] = new JsonObject { ["message"] = e.Message, ["type"] = e.Type, ["param"] = e.Param, ["code"] = e.Code },
    };

    /// <summary>
    /// Any other failure: before the response has started, a 500 with an OpenAI-shaped body (server_error); in an event
    /// stream, an error event and then [DONE], so the client sees why the stream ended; otherwise the connection is aborted.
    /// </summary>
    private static async Task LastResort(HttpContext ctx, Exception e)
    {
        var api = e as ApiException ?? new ApiException(500, $"internal error: {OpenAiRequest.Printable(e.Message, 300)}", code: "internal_error");
        ctx.RequestServices.GetService<Microsoft.Extensions.Logging.ILoggerFactory>()?.CreateLogger("OpenWeights.Server")
            .LogError(e, "{Method} {Path} failed", ctx.Request.Method, ctx.Request.Path.Value);
        if (!ctx.Response.HasStarted) { await WriteError(ctx, api); return; }
        if (ctx.Features.Get<IErrorDialect>() is { } dialect) { await dialect.WriteInStream(ctx, api); return; }
        if (ctx.Response.ContentType != "text/event-stream") { ctx.Abort(); return; }
        try
        {
            await ctx.Response.WriteAsync("data: " + ErrorJson(api).ToJsonString(Compact) + "\n\ndata: [DONE]\n\n");
            await ctx.Response.Body.FlushAsync();
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { /* client gone meanwhile */ }
    }

    public static IEndpointRouteBuilder MapOpenAi(this IEndpointRouteBuilder app)
    {
        ModelLoad.MapProbes(app); // /health (readiness) and /livez (liveness)
        app.MapGet("/metrics", (ModelHost h) => Results.Text(h.Metrics.Render(h.Scheduler.QueueDepth, h.Scheduler.ActiveSlots, h.Scheduler.Parallel) + h.Scheduler.RenderMemoryMetrics(), "text/plain; version=0.0.4"));
        app.MapGet("/v1/models", (ModelHost h) => Results.Text(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray([ModelObject(h), .. h.Adapters.Names.Select(a => (JsonNode)AdapterObject(h, a))]),
        }.ToJsonString(), "application/json"));
        app.MapGet("/v1/models/{id}", (string id, ModelHost h) => h.IsModel(id)
            ? Results.Text(ModelObject(h).ToJsonString(), "application/json")
            : throw new ApiException(404, $"the model '{OpenAiRequest.Printable(id)}' does not exist; this server serves '{h.ModelId}'", "model", "model_not_found"));
        app.MapPost("/v1/chat/completions", ChatCompletions);
        app.MapPost("/v1/completions", Completions);
        app.MapPost("/v1/embeddings", Embeddings);
        app.MapFallback("{*path}", (HttpContext ctx) => throw new ApiException(404, $"no route {OpenAiRequest.Printable(ctx.Request.Method)} {OpenAiRequest.Printable(ctx.Request.Path.Value ?? "", 200)}", code: "unknown_url"));
        return app;
    }

    // a per-request adapter as a model id: "MODEL:ADAPTER"
    private static JsonObject AdapterObject(ModelHost h, string adapter) => new()
    {
        ["id"] = $"{h.ModelId}:{adapter}", ["object"] = "model", ["created"] = h.Created, ["owned_by"] = "openweights",
        ["parent"] = h.ModelId, ["root"] = h.ModelId, ["meta"] = new JsonObject { ["adapter"] = adapter },
    };

    private static JsonObject ModelObject(ModelHost h) => new()
    {
        ["id"] = h.ModelId, ["object"] = "model", ["created"] = h.Created, ["owned_by"] = "openweights",
        // llama.cpp's meta, and what the chat page shows: the file's own name and licence (general.*), null where it does not say
        ["meta"] = new JsonObject
        {
            ["context_length"] = h.Scheduler.ContextSize, ["vocab_size"] = h.Tokenizer.VocabSize, ["parallel"] = h.Scheduler.Parallel,
            ["name"] = h.MetadataText("general.name"), ["license"] = h.MetadataText("general.license"),
        },
    };

    private static async Task<OpenAiRequest> Read(HttpContext ctx, ModelHost h)
    {
        var req = await OpenAiRequest.ReadAsync(new HttpRequestLike(ctx.Request.Body), h.Options.MaxRequestBodyBytes, ctx.RequestAborted);
        req.String("model"); // any name is served by the one loaded model (clients hard-code gpt-4o); replies name the real one
        return req;
    }

    private static int Choices(OpenAiRequest req) => (int)(req.Integer("n", 1, 16) ?? 1);

    private static void CheckContext(ModelHost h, int promptTokens, string param)
    {
        if (promptTokens >= h.Scheduler.ContextSize)
            throw new ApiException(400, $"the prompt has {promptTokens} tokens but the context holds {h.Scheduler.ContextSize}; shorten the {(param == "prompt" ? "prompt" : "messages")}",
                param, "context_length_exceeded");
    }

    // the jobs end when the client goes, and when the response is over (an error in one choice ends the others)
    internal static JobOutput Start(HttpContext ctx, ModelHost h, int[] prompt, Func<int, GenerationOptions> options, int n) =>
        Start(ctx, h, [prompt], options, n);

    // several prompts, n choices each: choice k continues prompts[k / n], as OpenAI numbers them
    internal static JobOutput Start(HttpContext ctx, ModelHost h, IReadOnlyList<int[]> prompts, Func<int, GenerationOptions> options, int n)
    {
        int total = prompts.Count * n;
        var output = new JobOutput(total, h.Options.StreamBufferEvents);
        RequestLog.Track(ctx, output);
        var over = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        ctx.Response.OnCompleted(() => { over.Cancel(); return Task.CompletedTask; });
        var ct = over.Token;
        var jobs = Enumerable.Range(0, total).Select(k => new GenerationJob(prompts[k / n], options(k), k, output, ct)
            { AdapterId = AdapterLease.IdOf(ctx), Endpoint = ctx.Request.Path.Value, RequestId = ctx.TraceIdentifier }).ToList();
        h.Scheduler.Submit(jobs);
        return output;
    }

    // tool_choice "required" / a named function: the reply is forced to be a call in the template's format
    private static ITokenConstraint ToolCall(ModelHost h, ChatFormatter f, ToolChoice choice)
    {
        try { return h.Options.ToolCallConstraintFactory!(f, choice.Tools!, choice.Name); }
        catch (OpenWeightsException e) { throw OpenAiRequest.Bad("tool_choice", e.Message); }
    }

    private static GenerationOptions ResponseFormat(ModelHost h, OpenAiRequest req, GenerationOptions o)
    {
        var (type, schema) = req.ResponseFormat();
        if (type == "text") return o;
        if (h.Options.JsonConstraintFactory is not { } factory)
            throw new ApiException(400, $"response_format '{type}' is not supported yet by this server (constrained decoding is not available)", "response_format", "unsupported_response_format");
        try { return o with { Constraint = factory(h.Tokenizer, schema) }; }
        catch (OpenWeightsException e) { throw OpenAiRequest.Bad(schema is null ? "response_format" : "response_format.json_schema.schema", e.Message); }
    }

    // ---- chat ----

    private static async Task ChatCompletions(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        var f = h.Formatter;
        var messages = req.Messages();
        var toolChoice = req.Tools();
        bool forceTool = toolChoice.Required && h.Options.ToolCallConstraintFactory is not null;
        if (toolChoice.Required && !forceTool && toolChoice.Name is { } only) // not enforced: narrow the list
            toolChoice = toolChoice with { Tools = toolChoice.Tools!.Where(t => t.Name == only).ToList() };
        var tools = toolChoice.Tools;
        var variables = req.TemplateVariables();
        string rendered;
        try { rendered = f.Render(messages, tools, extra: variables, cancellationToken: ctx.RequestAborted); }
        catch (OpenWeights.Inference.ChatTemplates.TemplateException e) { throw new ApiException(400, $"the chat template failed: {e.Message}", "messages", "template_error"); }
        int[] prompt = f.Encode(rendered);
        CheckContext(h, prompt.Length, "messages");
        int n = Choices(req);
        bool stream = req.Bool("stream");
        bool usageInStream = req.IncludeUsage();
        var (logprobs, top) = req.Logprobs(chat: true);
        req.String("user");
        // each choice gets its own options (seed + index) and its own constraint instance; a forced tool call wins over response_format
        GenerationOptions Options(int i)
        {
            var o = req.GenerationOptions(h, prompt.Length, i);
            o = forceTool ? o with { Constraint = ToolCall(h, f, toolChoice) } : ResponseFormat(h, req, o);
            return f.ForReply(o with { Logprobs = logprobs, TopLogprobs = top });
        }
        // gpt-oss (harmony) and <think> models: every reply is parsed (reasoning apart from content), streamed as it is decided
        bool reasons = f.SeparatesReasoning;
        bool parseTools = tools is not null || f.IsHarmony;
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var events = Start(ctx, h, prompt, Options, n);

        if (!stream)
        {
            var results = await Collect(events, n, ctx.RequestAborted);
            var choices = new JsonArray();
            int completion = 0;
            for (int i = 0; i < n; i++)
            {
                var r = results[i];
                completion += r.Generated;
                var msg = new JsonObject { ["role"] = "assistant" };
                string finish = Finish(r.Finish);
                var parsed = parseTools || reasons ? f.ParseReply(r.Text.ToString(), rendered, toolCalls: tools is not null, forcedToolCall: forceTool, tools: tools) : null;
                if (parsed is { ToolCalls.Count: > 0 })
                {
                    msg["content"] = parsed.Content.Length > 0 ? parsed.Content : null;
                    if (parsed.Reasoning is { } thought) msg["reasoning_content"] = thought;
                    msg["tool_calls"] = ToolCallsJson(parsed.ToolCalls, withIndex: false);
                    finish = "tool_calls";
                }
                else if (parsed is not null)
                {
                    msg["content"] = parsed.Content;
                    if (parsed.Reasoning is { } thought) msg["reasoning_content"] = thought;
                }
                else msg["content"] = r.Text.ToString();
                choices.Add(new JsonObject
                {
                    ["index"] = i, ["message"] = msg,
                    ["logprobs"] = logprobs ? new JsonObject { ["content"] = ChatLogprobs(r.Logprobs) } : null,
                    ["finish_reason"] = finish,
                });
            }
            var resp = new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion", ["created"] = created, ["model"] = h.ModelId,
                ["system_fingerprint"] = "openweights", ["choices"] = choices, ["usage"] = Usage(prompt.Length, completion, events.CachedTokens(n)),
            };
            await WriteJson(ctx, resp);
            return;
        }

        await BeginSse(ctx);
        JsonObject Chunk(JsonArray choices) => new()
        {
            ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = h.ModelId,
            ["system_fingerprint"] = "openweights", ["choices"] = choices,
        };
        for (int i = 0; i < n; i++)
            await Sse(ctx, Chunk([new JsonObject { ["index"] = i, ["delta"] = new JsonObject { ["role"] = "assistant", ["content"] = "" }, ["logprobs"] = null, ["finish_reason"] = null }]));
        var parsers = new IReplyParser?[n];
        int done = 0, generated = 0;
        await foreach (var ev in events.ReadAllAsync(ctx.RequestAborted))
        {
            if (ev.Error is { } err) throw new ApiException(500, $"generation failed: {OpenAiRequest.Printable(err.Message, 300)}", code: "generation_failed");
            var c = ev.Chunk!;
            var choice = new JsonObject { ["index"] = ev.Index };
            if (reasons || parseTools)
            {
                // reasoning, content and tool calls go out as soon as they are decided (tool-call arguments as fragments)
                var parser = parsers[ev.Index] ??= f.CreateReplyParser(rendered, toolCalls: tools is not null, forcedToolCall: forceTool, tools: tools);
                var deltas = new List<ReplyDelta>(parser.Push(c.Text));
                if (c.Finish is not null) deltas.AddRange(parser.Complete());
                bool withLogprobs = logprobs && c.Logprobs is { Count: > 0 };
                if (deltas.Count == 0 && c.Finish is null && !withLogprobs) continue; // nothing decided yet (a header, or a marker's beginning)
                choice["delta"] = DeltaJson(deltas);
                choice["logprobs"] = withLogprobs ? new JsonObject { ["content"] = ChatLogprobs(c.Logprobs) } : null;
                choice["finish_reason"] = c.Finish is { } hf ? (parser.HasToolCalls ? "tool_calls" : Finish(hf)) : null;
            }
            else
            {
                choice["delta"] = c.Text.Length > 0 ? new JsonObject { ["content"] = c.Text } : new JsonObject();
                choice["logprobs"] = logprobs && c.Logprobs is { Count: > 0 } ? new JsonObject { ["content"] = ChatLogprobs(c.Logprobs) } : null;
                choice["finish_reason"] = c.Finish is { } fr ? Finish(fr) : null;
            }
            await Sse(ctx, Chunk([choice]));
            if (c.Finish is not null)
            {
                generated += c.Stats?.GeneratedTokens ?? 0;
                if (++done == n) break;
            }
        }
        if (usageInStream)
        {
            var last = Chunk([]);
            last["usage"] = Usage(prompt.Length, generated, events.CachedTokens(n));
            await Sse(ctx, last);
        }
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
    }

    /// <summary>
    /// One streamed delta from parsed pieces: <c>reasoning_content</c> (llama.cpp's field), <c>content</c>, and
    /// <c>tool_calls</c> entries as OpenAI streams them (the first with index, id, type, name and arguments "", then
    /// index and argument fragments).
    /// </summary>
    private static JsonObject DeltaJson(IReadOnlyList<ReplyDelta> deltas)
    {
        StringBuilder? reasoning = null, content = null;
        JsonArray? calls = null;
        var byIndex = new Dictionary<int, JsonObject>();
        foreach (var d in deltas)
        {
            switch (d.Kind)
            {
                case ReplyDeltaKind.Reasoning: (reasoning ??= new()).Append(d.Text); break;
                case ReplyDeltaKind.Content: (content ??= new()).Append(d.Text); break;
                case ReplyDeltaKind.ToolCallStart:
                    var call = new JsonObject
                    {
                        ["index"] = d.ToolIndex, ["id"] = d.ToolCallId, ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = d.Text, ["arguments"] = "" },
                    };
                    (calls ??= []).Add(call);
                    byIndex[d.ToolIndex] = call;
                    break;
                case ReplyDeltaKind.ToolCallArguments:
                    if (!byIndex.TryGetValue(d.ToolIndex, out var part))
                    {
                        part = new JsonObject { ["index"] = d.ToolIndex, ["function"] = new JsonObject { ["arguments"] = "" } };
                        (calls ??= []).Add(part);
                        byIndex[d.ToolIndex] = part;
                    }
                    var fn = part["function"]!.AsObject();
                    fn["arguments"] = fn["arguments"]!.GetValue<string>() + d.Text;
                    break;
            }
        }
        var o = new JsonObject();
        if (reasoning is not null) o["reasoning_content"] = reasoning.ToString();
        if (content is not null) o["content"] = content.ToString();
        if (calls is not null) o["tool_calls"] = calls;
        return o;
    }

    private static JsonArray ToolCallsJson(IReadOnlyList<ChatToolCall> calls, bool withIndex)
    {
        var a = new JsonArray();
        for (int k = 0; k < calls.Count; k++)
        {
            var o = new JsonObject();
            if (withIndex) o["index"] = k;
            o["id"] = calls[k].Id; o["type"] = "function";
            o["function"] = new JsonObject { ["name"] = calls[k].Name, ["arguments"] = calls[k].Arguments };
            a.Add(o);
        }
        return a;
    }

    private static JsonArray ChatLogprobs(IEnumerable<TokenLogprob>? lps)
    {
        var a = new JsonArray();
        if (lps is null) return a;
        foreach (var t in lps)
        {
            var top = new JsonArray();
            foreach (var alt in t.Top) top.Add(new JsonObject { ["token"] = alt.Token, ["logprob"] = alt.Logprob, ["bytes"] = Bytes(alt.Bytes) });
            a.Add(new JsonObject { ["token"] = t.Token, ["logprob"] = t.Logprob, ["bytes"] = Bytes(t.Bytes), ["top_logprobs"] = top });
        }
        return a;
    }

    private static JsonArray Bytes(byte[] b) { var a = new JsonArray(); foreach (var x in b) a.Add((int)x); return a; }

    private static string Finish(FinishReason f) => f == FinishReason.Length ? "length" : "stop";

    private static JsonObject Usage(int prompt, int completion, int cached) => new()
    {
        ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cached }, // prompt tokens taken from a cache, not computed
    };

    private sealed class Result
    {
        public readonly StringBuilder Text = new();
        public readonly List<TokenLogprob> Logprobs = [];
        public FinishReason Finish;
        public int Generated;
    }

    private static async Task<Result[]> Collect(JobOutput events, int n, CancellationToken ct)
    {
        var results = Enumerable.Range(0, n).Select(_ => new Result()).ToArray();
        int done = 0;
        await foreach (var ev in events.ReadAllAsync(ct))
        {
            if (ev.Error is { } err) throw new ApiException(500, $"generation failed: {OpenAiRequest.Printable(err.Message, 300)}", code: "generation_failed");
            var r = results[ev.Index]; var c = ev.Chunk!;
            r.Text.Append(c.Text);
            if (c.Logprobs is { } lp) r.Logprobs.AddRange(lp);
            if (c.Finish is { } f)
            {
                r.Finish = f; r.Generated = c.Stats?.GeneratedTokens ?? 0;
                if (++done == n) break;
            }
        }
        ct.ThrowIfCancellationRequested();
        return results;
    }

    private static Task WriteJson(HttpContext ctx, JsonNode node)
    {
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(node.ToJsonString(Compact), ctx.RequestAborted);
    }

    private static async Task BeginSse(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await ctx.Response.StartAsync(ctx.RequestAborted);
    }

    private static async Task Sse(HttpContext ctx, JsonNode node)
    {
        await ctx.Response.WriteAsync("data: " + node.ToJsonString(Compact) + "\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    // ---- text completions ----

    /// <summary>The most choices one text completion request may ask for (prompts times n).</summary>
    private const int MaxCompletionChoices = 64;

    private static async Task Completions(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        var items = req.Prompts();
        bool echo = req.Bool("echo");
        int n = Choices(req);
        if (items.Count * n > MaxCompletionChoices)
            throw OpenAiRequest.Bad("n", $"asks for {items.Count * n} choices ({items.Count} prompts x {n}); at most {MaxCompletionChoices}");
        var prompts = new int[items.Count][];
        var echoed = new string[items.Count]; // each prompt's text, for echo
        for (int p = 0; p < items.Count; p++)
        {
            string param = items.Count == 1 ? "prompt" : $"prompt[{p}]";
            var ids = prompts[p] = items[p].Ids ?? h.Tokenizer.Encode(items[p].Text!, addSpecial: true, parseSpecial: false);
            if (ids.Length == 0) throw OpenAiRequest.Bad(param, "encodes to no tokens");
            if (items[p].Ids is not null && ids.Any(t => t >= h.Tokenizer.VocabSize || t >= h.Model.Config.VocabSize))
                throw OpenAiRequest.Bad(param, $"holds a token id outside the vocabulary (0..{Math.Min(h.Tokenizer.VocabSize, h.Model.Config.VocabSize) - 1})");
            CheckContext(h, ids.Length, "prompt");
            echoed[p] = !echo ? "" : items[p].Text ?? h.Tokenizer.Decode(ids);
        }
        int total = prompts.Length * n;
        bool stream = req.Bool("stream");
        bool usageInStream = req.IncludeUsage();
        var (logprobs, top) = req.Logprobs(chat: false);
        // echo with logprobs: the prompt's own tokens and logprobs come first (the first token's logprob is null)
        var promptLogprobs = new TokenLogprob[prompts.Length][];
        if (echo && logprobs)
            for (int p = 0; p < prompts.Length; p++) promptLogprobs[p] = await PromptScorer.ScoreAsync(h, prompts[p], top, ctx.RequestAborted);
        var events = Start(ctx, h, prompts, k => req.GenerationOptions(h, prompts[k / n].Length, k) with { Logprobs = logprobs, TopLogprobs = top }, n);
        int promptTokens = prompts.Sum(p => p.Length); // each prompt once, however many choices continue it
        string id = "cmpl-" + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        JsonObject Wrap(JsonArray choices) => new()
        {
            ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = h.ModelId, ["system_fingerprint"] = "openweights", ["choices"] = choices,
        };
        if (!stream)
        {
            var results = await Collect(events, total, ctx.RequestAborted);
            var choices = new JsonArray();
            for (int k = 0; k < total; k++)
                choices.Add(new JsonObject
                {
                    ["text"] = echoed[k / n] + results[k].Text.ToString(), ["index"] = k,
                    ["logprobs"] = logprobs ? TextLogprobs([.. promptLogprobs[k / n] ?? [], .. results[k].Logprobs]) : null, ["finish_reason"] = Finish(results[k].Finish),
                });
            var resp = Wrap(choices);
            resp["usage"] = Usage(promptTokens, results.Sum(r => r.Generated), events.CachedTokens(n));
            await WriteJson(ctx, resp);
            return;
        }
        await BeginSse(ctx);
        if (echo) // the prompt first, as each choice's first text
            for (int k = 0; k < total; k++)
                await Sse(ctx, Wrap([new JsonObject
                {
                    ["text"] = echoed[k / n], ["index"] = k, ["logprobs"] = logprobs ? TextLogprobs(promptLogprobs[k / n]) : null, ["finish_reason"] = null,
                }]));
        int done = 0, generated = 0;
        await foreach (var ev in events.ReadAllAsync(ctx.RequestAborted))
        {
            if (ev.Error is { } err) throw new ApiException(500, $"generation failed: {OpenAiRequest.Printable(err.Message, 300)}", code: "generation_failed");
            var c = ev.Chunk!;
            await Sse(ctx, Wrap([new JsonObject
            {
                ["text"] = c.Text, ["index"] = ev.Index,
                ["logprobs"] = logprobs && c.Logprobs is { Count: > 0 } ? TextLogprobs(c.Logprobs) : null,
                ["finish_reason"] = c.Finish is { } fr ? Finish(fr) : null,
            }]));
            if (c.Finish is not null) { generated += c.Stats?.GeneratedTokens ?? 0; if (++done == total) break; }
        }
        if (usageInStream) { var last = Wrap([]); last["usage"] = Usage(promptTokens, generated, events.CachedTokens(n)); await Sse(ctx, last); }
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
    }

    private static JsonObject TextLogprobs(IReadOnlyList<TokenLogprob> lps)
    {
        var tokens = new JsonArray(); var lp = new JsonArray(); var top = new JsonArray(); var offsets = new JsonArray();
        int off = 0;
        foreach (var t in lps)
        {
            tokens.Add(t.Token); offsets.Add(off); off += t.Token.Length;
            if (float.IsNaN(t.Logprob)) { lp.Add(null); top.Add(null); continue; } // an echoed prompt's first token: nothing before it
            lp.Add(t.Logprob);
            var d = new JsonObject();
            foreach (var a in t.Top) d[a.Token] = a.Logprob;
            top.Add(d);
        }
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = lp, ["top_logprobs"] = top, ["text_offset"] = offsets };
    }

    // ---- embeddings ----

    private static async Task Embeddings(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        var items = req.EmbeddingInput();
        string format = req.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw OpenAiRequest.Bad("encoding_format", "must be float or base64");
        long? dims = req.Integer("dimensions", 1, h.Model.Config.Dim);
        if (dims is not null && dims != h.Model.Config.Dim) throw OpenAiRequest.Bad("dimensions", $"must be {h.Model.Config.Dim} for this model");
        var inputs = new int[items.Count][];
        int tokens = 0;
        for (int i = 0; i < items.Count; i++)
        {
            var ids = inputs[i] = items[i].Ids ?? h.Tokenizer.Encode(items[i].Text!, addSpecial: true);
            string p = items.Count == 1 ? "input" : $"input[{i}]";
            if (ids.Length == 0) throw OpenAiRequest.Bad(p, "encodes to no tokens");
            if (ids.Any(t => t >= h.Tokenizer.VocabSize || t >= h.Model.Config.VocabSize)) throw OpenAiRequest.Bad(p, "holds a token id outside the vocabulary");
            if (ids.Length > h.Scheduler.ContextSize) throw new ApiException(400, $"{p} has {ids.Length} tokens but the context holds {h.Scheduler.ContextSize}", "input", "context_length_exceeded");
            tokens += ids.Length;
        }
        var vectors = await h.EmbedAsync(inputs, ctx.RequestAborted);
        var data = new JsonArray();
        for (int i = 0; i < vectors.Length; i++)
        {
            var e = vectors[i];
            JsonNode vec;
            if (format == "base64")
            {
                var bytes = new byte[e.Length * 4];
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(e.AsSpan()).CopyTo(bytes);
                vec = Convert.ToBase64String(bytes);
            }
            else { var arr = new JsonArray(); foreach (var x in e) arr.Add(x); vec = arr; }
            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = vec });
        }
        RequestLog.InputTokens(ctx, tokens);
        await WriteJson(ctx, new JsonObject
        {
            ["object"] = "list", ["data"] = data, ["model"] = h.ModelId,
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens },
        });
    }
}
