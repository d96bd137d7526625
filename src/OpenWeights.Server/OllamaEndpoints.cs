using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Server;

/// <summary>
/// The Ollama API over the same model host as the OpenAI API: /api/chat and /api/generate (newline-delimited JSON
/// streamed unless "stream": false), /api/embed (and the older /api/embeddings), /api/tags, /api/show, /api/ps,
/// /api/version, and GET / ("Ollama is running", what clients probe; a browser gets the <see cref="ChatPage"/>). Auth, limits, metrics and the request log are the
/// server's; the chat template, scheduler, reply parsing and constrained decoding (format) are those of the OpenAI
/// endpoints. Errors are Ollama's {"error": "..."}; durations are in nanoseconds, as Ollama reports them.
/// </summary>
public static class OllamaEndpoints
{
    /// <summary>
    /// The Ollama version this server answers /api/version with: the level of the Ollama API it speaks (clients gate
    /// features such as tools and thinking on it), not a version of OpenWeights.
    /// </summary>
    public const string ApiVersion = "0.12.0";

    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Whether a path belongs to this API.</summary>
    public static bool Owns(string path) => path == "/" || path.StartsWith("/api/", StringComparison.Ordinal);

    public static IEndpointRouteBuilder MapOllama(this IEndpointRouteBuilder app)
    {
        // a browser gets the chat page; Ollama's clients their probe's answer
        app.MapGet("/", (HttpContext ctx) => ChatPage.WantsPage(ctx.Request) ? ChatPage.Page(ctx) : Results.Text("Ollama is running"));
        app.MapGet("/api/version", () => Results.Text(new JsonObject { ["version"] = ApiVersion }.ToJsonString(), "application/json"));
        app.MapGet("/api/tags", (ModelHost h) => Results.Text(new JsonObject { ["models"] = new JsonArray(ModelEntry(h)) }.ToJsonString(Compact), "application/json"));
        app.MapGet("/api/ps", (ModelHost h) =>
        {
            var m = ModelEntry(h);
            m.Remove("modified_at");
            m["expires_at"] = "0001-01-01T00:00:00Z"; // loaded for the server's lifetime
            m["size_vram"] = 0;
            m["context_length"] = h.Scheduler.ContextSize;
            return Results.Text(new JsonObject { ["models"] = new JsonArray(m) }.ToJsonString(Compact), "application/json");
        });
        app.MapPost("/api/show", Show);
        app.MapPost("/api/chat", Chat);
        app.MapPost("/api/generate", Generate);
        app.MapPost("/api/embed", Embed);
        app.MapPost("/api/embeddings", EmbeddingsLegacy);
        return app;
    }

    // ---- errors: {"error":"..."} ----

    internal static readonly IErrorDialect Errors = new OllamaErrors();

    private sealed class OllamaErrors : IErrorDialect
    {
        public Task WriteError(HttpContext ctx, ApiException e)
        {
            ctx.Response.StatusCode = e.Status;
            ctx.Response.ContentType = "application/json";
            return ctx.Response.WriteAsync(new JsonObject { ["error"] = e.Message }.ToJsonString(Compact));
        }

        // in a stream, Ollama's last line is the error object
        public Task WriteInStream(HttpContext ctx, ApiException e) => ApiDialects.WriteLast(ctx, new JsonObject { ["error"] = e.Message }.ToJsonString(Compact) + "\n");
    }

    // ---- models ----

    private static JsonObject Details(ModelHost h) => new()
    {
        ["parent_model"] = "", ["format"] = "gguf",
        ["family"] = h.Model.Config.Architecture.Name, ["families"] = new JsonArray(h.Model.Config.Architecture.Name),
        ["parameter_size"] = "", ["quantization_level"] = "",
    };

    private static JsonObject ModelEntry(ModelHost h)
    {
        var file = new FileInfo(h.Options.ModelPath);
        long size = file.Exists ? file.Length : 0;
        // an identity of the file (path, size, time), not a content hash: hashing a large model at every listing costs too much
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"{file.FullName}|{size}|{(file.Exists ? file.LastWriteTimeUtc.Ticks : 0)}")));
        return new JsonObject
        {
            ["name"] = h.ModelId, ["model"] = h.ModelId,
            ["modified_at"] = (file.Exists ? file.LastWriteTimeUtc : DateTime.UtcNow).ToString("o"),
            ["size"] = size, ["digest"] = digest, ["details"] = Details(h),
        };
    }

    private static async Task<OllamaRequest> Read(HttpContext ctx, ModelHost h) =>
        new(await OpenAiRequest.ReadAsync(new HttpRequestLike(ctx.Request.Body), h.Options.MaxRequestBodyBytes, ctx.RequestAborted));

    private static async Task Show(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        string model = req.Model();
        if (!h.IsModel(model)) throw new ApiException(404, $"model '{OpenAiRequest.Printable(model)}' not found; this server serves '{h.ModelId}'");
        string arch = h.Model.Config.Architecture.Name;
        var capabilities = new JsonArray("completion", "embedding");
        string template = "";
        try
        {
            var f = h.Formatter;
            template = f.Template.Source;
            if (template.Contains("tools", StringComparison.Ordinal)) capabilities.Add("tools");
            if (f.IsHarmony) capabilities.Add("thinking");
        }
        catch (ApiException) { /* no chat template: completion without chat */ }
        await WriteJson(ctx, new JsonObject
        {
            ["modelfile"] = "", ["parameters"] = "", ["template"] = template, ["details"] = Details(h), ["license"] = h.MetadataText("general.license") ?? "",
            ["model_info"] = new JsonObject
            {
                ["general.architecture"] = arch,
                [$"{arch}.context_length"] = h.Model.Config.ContextLength,
                [$"{arch}.embedding_length"] = h.Model.Config.Dim,
                [$"{arch}.block_count"] = h.Model.Config.Layers,
                ["general.vocab_size"] = h.Tokenizer.VocabSize,
            },
            ["capabilities"] = capabilities,
            ["modified_at"] = ModelEntry(h)["modified_at"]!.DeepClone(),
        });
    }

    // ---- chat and generate ----

    private static async Task Chat(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        req.Model(); // any name: the one loaded model answers, replies name it
        var turns = req.Messages();
        var tools = req.Tools();
        var (showThinking, effort) = req.Think();
        var prompt = ChatRun.Encode(ctx, h, turns, tools, ThinkVariables(h, req, effort), "messages", out var rendered);
        var (options, _) = req.Options(h, prompt.Length);
        options = h.Formatter.ForReply(Format(h, req, options));
        var run = ChatRun.Start(ctx, h, prompt, options, rendered, toolCalls: tools is not null, tools: tools);
        await Reply(ctx, h, req, run, showThinking, chat: true);
    }

    private static async Task Generate(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        req.Model();
        string prompt = req.Body.String("prompt") ?? "";
        if (req.Body.String("suffix") is { Length: > 0 }) throw OpenAiRequest.Bad("suffix", "is not supported (fill-in-the-middle)");
        if (req.Body.String("template") is { Length: > 0 }) throw OpenAiRequest.Bad("template", "is not supported: Ollama's Go templates are not Jinja; the model's chat template (or serve --chat-template) is used");
        if (req.Body.Body["context"] is not null) throw OpenAiRequest.Bad("context", "is not supported (it is deprecated in Ollama too): send the conversation to /api/chat");
        if (req.Body.Body["images"] is JsonArray { Count: > 0 }) throw new ApiException(400, "'images': this server's models read text only", "images", "unsupported_content");
        string? system = req.Body.String("system");
        bool raw = req.Body.Bool("raw");
        var (showThinking, effort) = req.Think();
        if (prompt.Length == 0) // Ollama loads the model and answers done: the model is loaded already
        {
            await WriteJson(ctx, new JsonObject { ["model"] = h.ModelId, ["created_at"] = Now(), ["response"] = "", ["done"] = true, ["done_reason"] = "load" });
            return;
        }
        int[] ids;
        string? rendered = null;
        if (raw)
        {
            if (system is not null) throw OpenAiRequest.Bad("system", "cannot go with raw (the prompt is sent as it is)");
            ids = h.Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: false);
            if (ids.Length == 0) throw OpenAiRequest.Bad("prompt", "encodes to no tokens");
        }
        else
        {
            var turns = new List<ChatTurn>();
            if (system is not null) turns.Add(ChatTurn.System(system));
            turns.Add(ChatTurn.User(prompt));
            var variables = ThinkVariables(h, req, effort);
            ids = ChatRun.Encode(ctx, h, turns, null, variables, "prompt", out var text);
            rendered = text;
        }
        var (options, _) = req.Options(h, ids.Length);
        options = Format(h, req, options);
        if (!raw) options = h.Formatter.ForReply(options);
        var run = ChatRun.Start(ctx, h, ids, options, rendered, toolCalls: false);
        await Reply(ctx, h, req, run, showThinking, chat: false);
    }

    /// <summary>
    /// Template variables of <c>think</c>: an effort level goes to gpt-oss's template as <c>reasoning_effort</c>; true or
    /// false turns a &lt;think&gt; template's switch on or off (<c>enable_thinking</c>: Qwen3, DeepSeek-V3.1), as Ollama
    /// does; absent, the template's default.
    /// </summary>
    private static Dictionary<string, object?>? ThinkVariables(ModelHost h, OllamaRequest req, string? effort)
    {
        if (effort is not null) return new() { ["reasoning_effort"] = effort };
        if (h.Formatter.IsThinking && req.Body.Body["think"] is JsonValue v && v.TryGetValue(out bool on)) return ChatFormatter.ThinkingVariables(on);
        return null;
    }

    // format: the JSON constraint the OpenAI endpoint uses for response_format
    private static GenerationOptions Format(ModelHost h, OllamaRequest req, GenerationOptions o)
    {
        if (req.Format() is not { } schema) return o;
        if (h.Options.JsonConstraintFactory is not { } factory) throw new ApiException(400, "'format' is not supported by this server (constrained decoding is not available)", "format");
        try { return o with { Constraint = factory(h.Tokenizer, schema.Length == 0 ? null : schema) }; }
        catch (OpenWeightsException e) { throw OpenAiRequest.Bad("format", e.Message); }
    }

    /// <summary>
    /// The reply: one JSON object (stream false) or NDJSON lines, each {model, created_at, message | response, done:
    /// false}, tool calls in a line of their own once complete, then the done line with done_reason and the counts.
    /// </summary>
    private static async Task Reply(HttpContext ctx, ModelHost h, OllamaRequest req, ChatRun run, bool showThinking, bool chat)
    {
        var ct = ctx.RequestAborted;
        JsonObject Line(string content, string? thinking, JsonArray? calls, bool done)
        {
            var o = new JsonObject { ["model"] = h.ModelId, ["created_at"] = Now() };
            if (chat)
            {
                var m = new JsonObject { ["role"] = "assistant", ["content"] = content };
                if (thinking is not null) m["thinking"] = thinking;
                if (calls is not null) m["tool_calls"] = calls;
                o["message"] = m;
            }
            else
            {
                o["response"] = content;
                if (thinking is not null) o["thinking"] = thinking;
            }
            o["done"] = done;
            return o;
        }
        void Finish(JsonObject o)
        {
            var s = run.Stats;
            o["done_reason"] = run.Finish == FinishReason.Length ? "length" : "stop";
            o["total_duration"] = Nanoseconds(Stopwatch.GetElapsedTime(run.StartTicks));
            o["load_duration"] = 0; // the model is loaded for the server's lifetime
            o["prompt_eval_count"] = run.PromptTokens;
            o["prompt_eval_duration"] = Nanoseconds(s?.PrefillTime ?? TimeSpan.Zero);
            o["eval_count"] = run.Generated;
            o["eval_duration"] = Nanoseconds(s?.DecodeTime ?? TimeSpan.Zero);
        }

        if (!req.Stream)
        {
            var reply = await run.CollectAsync(ct);
            var whole = Line(reply.Content, showThinking ? reply.Reasoning : null, Calls(reply.ToolCalls), done: true);
            Finish(whole);
            await WriteJson(ctx, whole);
            return;
        }

        await ApiDialects.BeginStream(ctx, "application/x-ndjson");
        var calls = new List<(string Id, string Name, StringBuilder Args)>();
        await foreach (var d in run.ReadAsync(ct))
        {
            switch (d.Kind)
            {
                case ReplyDeltaKind.Content when d.Text.Length > 0: await Send(ctx, Line(d.Text, null, null, false), ct); break;
                case ReplyDeltaKind.Reasoning when d.Text.Length > 0 && showThinking: await Send(ctx, Line("", d.Text, null, false), ct); break;
                case ReplyDeltaKind.ToolCallStart: calls.Add((d.ToolCallId ?? $"call_{d.ToolIndex}", d.Text, new StringBuilder())); break;
                case ReplyDeltaKind.ToolCallArguments when d.ToolIndex >= 0 && d.ToolIndex < calls.Count: calls[d.ToolIndex].Args.Append(d.Text); break;
            }
        }
        // Ollama sends the calls whole, in one chunk after the text (which has streamed already)
        if (calls.Count > 0) await Send(ctx, Line("", null, Calls(run.Result.ToolCalls), false), ct);
        var last = Line("", null, null, done: true);
        Finish(last);
        await Send(ctx, last, ct);
    }

    // Ollama's tool calls: {function: {index, name, arguments: object}}, with the call's id beside
    private static JsonArray? Calls(IReadOnlyList<ChatToolCall> calls)
    {
        if (calls.Count == 0) return null;
        var a = new JsonArray();
        for (int i = 0; i < calls.Count; i++)
        {
            JsonNode args;
            try { args = JsonNode.Parse(calls[i].Arguments) is JsonObject o ? o : new JsonObject { ["arguments"] = calls[i].Arguments }; }
            catch (JsonException) { args = new JsonObject { ["arguments"] = calls[i].Arguments }; }
            a.Add(new JsonObject { ["id"] = calls[i].Id, ["function"] = new JsonObject { ["index"] = i, ["name"] = calls[i].Name, ["arguments"] = args } });
        }
        return a;
    }

    // ---- embeddings ----

    private static async Task Embed(HttpContext ctx, ModelHost h)
    {
        long start = Stopwatch.GetTimestamp();
        var req = await Read(ctx, h);
        req.Model();
        var texts = req.Body.Body["input"] switch
        {
            JsonValue v when v.TryGetValue(out string? s) => [s],
            JsonArray a when a.Count > 0 => a.Select((x, i) => x is JsonValue xv && xv.TryGetValue(out string? xs) ? xs : throw OpenAiRequest.Bad($"input[{i}]", "must be a string")).ToList(),
            JsonArray => throw OpenAiRequest.Bad("input", "must not be empty"),
            null => throw OpenAiRequest.Bad("input", "is required"),
            _ => throw OpenAiRequest.Bad("input", "must be a string or a list of strings"),
        };
        if (texts.Count > OpenAiRequest.MaxEmbeddingInputs) throw OpenAiRequest.Bad("input", $"may hold at most {OpenAiRequest.MaxEmbeddingInputs} items");
        bool truncate = req.Body.Bool("truncate", fallback: true);
        long? dims = req.Body.Integer("dimensions", 1, h.Model.Config.Dim);
        if (dims is not null && dims != h.Model.Config.Dim) throw OpenAiRequest.Bad("dimensions", $"must be {h.Model.Config.Dim} for this model");
        var vectors = await EmbedTexts(ctx, h, texts, truncate, "input");
        int tokens = vectors.Tokens;
        var embeddings = new JsonArray();
        foreach (var e in vectors.Vectors) embeddings.Add(Vector(e));
        await WriteJson(ctx, new JsonObject
        {
            ["model"] = h.ModelId, ["embeddings"] = embeddings,
            ["total_duration"] = Nanoseconds(Stopwatch.GetElapsedTime(start)), ["load_duration"] = 0, ["prompt_eval_count"] = tokens,
        });
    }

    private static async Task EmbeddingsLegacy(HttpContext ctx, ModelHost h)
    {
        var req = await Read(ctx, h);
        req.Model();
        string prompt = req.Body.String("prompt") ?? throw OpenAiRequest.Bad("prompt", "is required");
        var vectors = await EmbedTexts(ctx, h, [prompt], truncate: true, "prompt");
        await WriteJson(ctx, new JsonObject { ["embedding"] = Vector(vectors.Vectors[0]) });
    }

    // the served model embeds, as for /v1/embeddings (mean-pooled, normalised final hidden states), through the scheduler
    private static async Task<(float[][] Vectors, int Tokens)> EmbedTexts(HttpContext ctx, ModelHost h, List<string> texts, bool truncate, string param)
    {
        var inputs = new int[texts.Count][];
        int tokens = 0, context = h.Scheduler.ContextSize;
        for (int i = 0; i < texts.Count; i++)
        {
            string p = texts.Count == 1 ? param : $"{param}[{i}]";
            var ids = h.Tokenizer.Encode(texts[i], addSpecial: true);
            if (ids.Length == 0) throw OpenAiRequest.Bad(p, "encodes to no tokens");
            if (ids.Length > context)
            {
                if (!truncate) throw new ApiException(400, $"'{p}' has {ids.Length} tokens but the context holds {context} (send \"truncate\": true to cut it)", p, "context_length_exceeded");
                ids = ids[..context];
            }
            inputs[i] = ids;
            tokens += ids.Length;
        }
        var vectors = await h.EmbedAsync(inputs, ctx.RequestAborted);
        RequestLog.InputTokens(ctx, tokens);
        return (vectors, tokens);
    }

    private static JsonArray Vector(float[] e) { var a = new JsonArray(); foreach (var x in e) a.Add(x); return a; }

    // ---- writing ----

    private static long Nanoseconds(TimeSpan t) => t.Ticks * 100;

    private static string Now() => DateTime.UtcNow.ToString("o");

    private static Task Send(HttpContext ctx, JsonObject line, CancellationToken ct) => ApiDialects.WriteFlushed(ctx, line.ToJsonString(Compact) + "\n", ct);

    private static Task WriteJson(HttpContext ctx, JsonNode node)
    {
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(node.ToJsonString(Compact), ctx.RequestAborted);
    }
}
