using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenWeights.Formats;
using OpenWeights.Hub;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Inference.Constraints;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Extensions.AI;

/// <summary>
/// Microsoft.Extensions.AI <see cref="IChatClient"/> over a local model, through the same chat core as the CLI and server
/// (template, end-of-turn stops, tool-call parsing). One conversation at a time; the KV cache prefix is reused across calls.
/// </summary>
public sealed class OpenWeightsChatClient : IChatClient
{
    private readonly DecoderModel model;
    private readonly bool ownsModel;
    private readonly InferenceSession session;
    private readonly SemaphoreSlim gate = new(1, 1);
    private readonly ChatClientMetadata metadata;

    public ChatFormatter Formatter { get; }
    public Tokenizer Tokenizer => Formatter.Tokenizer;
    /// <summary>Builds the constraint for a JSON response format (schema text or null); null: JSON response formats throw NotSupportedException.</summary>
    public Func<Tokenizer, string?, ITokenConstraint>? JsonConstraintFactory { get; init; } = JsonConstraint.Create;
    /// <summary>
    /// Builds the constraint that forces a tool call when <see cref="ChatOptions.ToolMode"/> is RequireAny or RequireSpecific;
    /// null: the tool mode is not enforced (RequireSpecific only narrows the tools shown to the model).
    /// </summary>
    public Func<ChatFormatter, IReadOnlyList<ChatTool>, string?, ITokenConstraint>? ToolCallConstraintFactory { get; init; } = ToolCallConstraint.Create;

    /// <param name="chatTemplate">a Jinja chat template source; null uses the model's own</param>
    public OpenWeightsChatClient(DecoderModel model, string? chatTemplate = null, int contextSize = 4096, int threads = 0, string? modelId = null, bool ownsModel = false)
    {
        this.model = model;
        this.ownsModel = ownsModel;
        Formatter = new ChatFormatter(Tokenizer.FromGguf(model.Source), chatTemplate);
        session = new InferenceSession(model, contextSize, threads);
        metadata = new ChatClientMetadata("openweights", null, modelId ?? model.Source.ToString());
    }

    /// <summary>
    /// Loads a model and owns it. <paramref name="model"/> is what the CLI accepts: a GGUF file, a Hugging Face checkpoint
    /// folder, a catalog id or org/name[:QUANT] in the local store (<see cref="ModelLocator"/>).
    /// </summary>
    /// <param name="chatTemplate">Jinja template text (not a path: use <paramref name="chatTemplateFile"/>); null uses the model's own</param>
    /// <param name="chatTemplateFile">a Jinja template file; null uses <paramref name="chatTemplate"/> or the model's own</param>
    public static OpenWeightsChatClient Load(string model, string? chatTemplate = null, int contextSize = 4096, int threads = 0, string? chatTemplateFile = null) =>
        Load(model, new OpenWeightsChatClientOptions { ChatTemplate = chatTemplate, ChatTemplateFile = chatTemplateFile, ContextSize = contextSize, Threads = threads });

    /// <summary>Loads a model (see <see cref="Load(string, string?, int, int, string?)"/>) with the given options, and owns it.</summary>
    public static OpenWeightsChatClient Load(string model, OpenWeightsChatClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var template = options.TemplateText();
        if (options.ContextSize < 1) throw new OpenWeightsException($"context size {options.ContextSize} must be at least 1");
        string path = ModelLocator.Resolve(model, options.Hub ?? HubSettings.FromEnvironment());
        var m = DecoderModel.LoadOwned(ModelSources.Open(path));
        try
        {
            if (options.Loras.Count > 0) LoraLoader.Attach(m, options.Loras);
            return new OpenWeightsChatClient(m, template, options.ContextSize, options.Threads, options.ModelId ?? ModelName(path), ownsModel: true);
        }
        catch { m.Dispose(); throw; }
    }

    private static string ModelName(string path) =>
        Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path)) is { Length: > 0 } n ? n : path;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var turns = ToTurns(messages);
        var tools = options?.ToolMode is NoneChatToolMode ? null : options?.Tools?.OfType<AIFunctionDeclaration>()
            .Select(t => new ChatTool(t.Name, t.Description, t.JsonSchema.ValueKind == JsonValueKind.Undefined ? null : t.JsonSchema.GetRawText())).ToList();
        if (tools is { Count: 0 }) tools = null;
        var required = options?.ToolMode as RequiredChatToolMode;
        if (required is not null && tools is null) throw new OpenWeightsException("ChatOptions.ToolMode requires a tool call but no tools were given");
        if (required?.RequiredFunctionName is { } only && ToolCallConstraintFactory is null) tools = tools!.Where(t => t.Name == only).ToList(); // not enforced: narrow the list
        string rendered = Formatter.Render(turns, tools, extra: TemplateVariables(options), cancellationToken: cancellationToken);
        var prompt = Formatter.Encode(rendered);
        if (prompt.Length >= session.ContextSize)
            throw new OpenWeightsException($"the conversation has {prompt.Length} tokens but the context holds {session.ContextSize}");
        var g = Options(options, prompt.Length);
        bool forced = required is not null && ToolCallConstraintFactory is not null;
        if (forced) g = g with { Constraint = ToolCallConstraintFactory!(Formatter, tools!, required!.RequiredFunctionName) }; // wins over ResponseFormat
        var gen = Formatter.ForReply(g);
        string responseId = Guid.NewGuid().ToString("N");
        string? modelId = options?.ModelId ?? metadata.DefaultModelId;

        await gate.WaitAsync(cancellationToken);
        try
        {
            if (Formatter.SeparatesReasoning || tools is not null) // reasoning apart, tool calls found as the reply streams
            {
                bool showReasoning = options?.Reasoning?.Output is not ReasoningOutput.None;
                var parser = Formatter.CreateReplyParser(rendered, toolCalls: tools is not null, forcedToolCall: forced, tools: tools);
                await foreach (var u in ParsedUpdates(prompt, gen, parser, responseId, modelId, showReasoning, cancellationToken)) yield return u;
                yield break;
            }
            await foreach (var c in Generator.GenerateAsync(session, Tokenizer, prompt, gen, cancellationToken))
            {
                if (c.Text.Length > 0) yield return new ChatResponseUpdate(ChatRole.Assistant, c.Text) { ResponseId = responseId, ModelId = modelId };
                if (c.Finish is not { } finish) continue;
                var last = new ChatResponseUpdate { Role = ChatRole.Assistant, ResponseId = responseId, ModelId = modelId };
                last.FinishReason = finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
                if (c.Stats is { } st)
                    last.Contents.Add(new UsageContent(new UsageDetails { InputTokenCount = st.PromptTokens, OutputTokenCount = st.GeneratedTokens, TotalTokenCount = st.PromptTokens + st.GeneratedTokens }));
                yield return last;
            }
        }
        finally { gate.Release(); }
    }

    /// <summary>
    /// Replies of models that think (gpt-oss's harmony, &lt;think&gt; models), parsed as they come: the reasoning (the
    /// analysis channel, the text in &lt;think&gt;…&lt;/think&gt;) as <see cref="TextReasoningContent"/> updates (left out
    /// when <paramref name="showReasoning"/> is false), the answer as text, tool calls as <see cref="FunctionCallContent"/>
    /// in the last update (Microsoft.Extensions.AI takes a call whole).
    /// </summary>
    private async IAsyncEnumerable<ChatResponseUpdate> ParsedUpdates(int[] prompt, GenerationOptions gen, IReplyParser parser, string responseId, string? modelId,
        bool showReasoning, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ChatResponseUpdate Update(IEnumerable<ReplyDelta> deltas)
        {
            var u = new ChatResponseUpdate { Role = ChatRole.Assistant, ResponseId = responseId, ModelId = modelId };
            foreach (var d in deltas)
            {
                if (d.Kind == ReplyDeltaKind.Content) u.Contents.Add(new TextContent(d.Text));
                else if (d.Kind == ReplyDeltaKind.Reasoning && showReasoning) u.Contents.Add(new TextReasoningContent(d.Text));
            }
            return u;
        }
        await foreach (var c in Generator.GenerateAsync(session, Tokenizer, prompt, gen, cancellationToken))
        {
            if (c.Finish is not { } finish)
            {
                var u = Update(parser.Push(c.Text));
                if (u.Contents.Count > 0) yield return u;
                continue;
            }
            var last = Update([.. parser.Push(c.Text), .. parser.Complete()]);
            last.FinishReason = finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
            foreach (var call in parser.Result.ToolCalls) last.Contents.Add(FunctionCall(call));
            if (parser.HasToolCalls) last.FinishReason = ChatFinishReason.ToolCalls;
            if (c.Stats is { } st)
                last.Contents.Add(new UsageContent(new UsageDetails { InputTokenCount = st.PromptTokens, OutputTokenCount = st.GeneratedTokens, TotalTokenCount = st.PromptTokens + st.GeneratedTokens }));
            yield return last;
        }
    }

    /// <summary>A parsed call as Microsoft.Extensions.AI's content; arguments that are not a JSON object leave Arguments null and say why in Exception.</summary>
    private static FunctionCallContent FunctionCall(ChatToolCall call)
    {
        try { return new FunctionCallContent(call.Id, call.Name, JsonSerializer.Deserialize<Dictionary<string, object?>>(call.Arguments)); }
        catch (JsonException e)
        {
            return new FunctionCallContent(call.Id, call.Name)
            {
                Exception = new OpenWeightsException($"the model's arguments for {call.Name} are not a JSON object: {e.Message}"),
            };
        }
    }

    /// <summary>
    /// Template variables from the options. <see cref="ChatOptions.Reasoning"/>'s effort: <c>reasoning_effort</c> for
    /// gpt-oss (low, medium, high; None gives low, gpt-oss cannot stop thinking), and the thinking switch of templates that
    /// have one (<see cref="ChatFormatter.ThinkingVariables"/>: None turns Qwen3's and DeepSeek-V3.1's thinking off, any
    /// other effort on). <see cref="ChatOptions.AdditionalProperties"/> <c>"chat_template_kwargs"</c> (a dictionary of
    /// names to values, as the server takes it) adds template variables of its own, and wins.
    /// </summary>
    private static Dictionary<string, object?>? TemplateVariables(ChatOptions? o)
    {
        Dictionary<string, object?>? vars = null;
        if (o?.Reasoning?.Effort is { } effort)
        {
            vars = ChatFormatter.ThinkingVariables(effort != ReasoningEffort.None);
            vars["reasoning_effort"] = effort switch
            {
                ReasoningEffort.None or ReasoningEffort.Low => "low",
                ReasoningEffort.Medium => "medium",
                _ => "high",
            };
        }
        if (o?.AdditionalProperties?.TryGetValue(ChatTemplateKwargs, out var kwargs) == true && kwargs is not null)
        {
            var pairs = kwargs switch
            {
                IEnumerable<KeyValuePair<string, object?>> d => d,
                JsonElement { ValueKind: JsonValueKind.Object } e => e.EnumerateObject().Select(p => new KeyValuePair<string, object?>(p.Name, p.Value)),
                _ => throw new OpenWeightsException($"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargs}\"] must be a dictionary of template variables (e.g. enable_thinking = false)"),
            };
            foreach (var (k, v) in pairs) (vars ??= new())[k] = v;
        }
        return vars;
    }

    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key whose dictionary holds extra chat-template variables (e.g. <c>enable_thinking</c>).</summary>
    public const string ChatTemplateKwargs = "chat_template_kwargs";

    private GenerationOptions Options(ChatOptions? o, int promptTokens)
    {
        var s = new SamplingOptions();
        if (o is not null)
        {
            s = s with
            {
                Temperature = o.Temperature ?? s.Temperature, TopP = o.TopP ?? s.TopP, TopK = o.TopK ?? s.TopK,
                PresencePenalty = o.PresencePenalty ?? 0, FrequencyPenalty = o.FrequencyPenalty ?? 0,
                Seed = o.Seed is { } seed ? unchecked((ulong)seed) : null,
            };
        }
        s.Validate();
        int room = session.ContextSize - promptTokens;
        var g = new GenerationOptions
        {
            MaxTokens = Math.Min(o?.MaxOutputTokens ?? room, room),
            Sampling = s,
            StopStrings = o?.StopSequences?.ToList() ?? [],
        };
        if (o?.ResponseFormat is ChatResponseFormatJson json)
        {
            var factory = JsonConstraintFactory ?? throw new NotSupportedException("JSON response format is not supported yet (constrained decoding is not available)");
            g = g with { Constraint = factory(Tokenizer, json.Schema is { } schema ? schema.GetRawText() : null) };
        }
        return g;
    }

    /// <summary>Microsoft.Extensions.AI messages as chat-template turns: text, function calls and function results.</summary>
    public static List<ChatTurn> ToTurns(IEnumerable<ChatMessage> messages)
    {
        var turns = new List<ChatTurn>();
        foreach (var m in messages)
        {
            string role = m.Role.Value;
            var results = m.Contents.OfType<FunctionResultContent>().ToList();
            if (results.Count > 0)
            {
                foreach (var r in results)
                    turns.Add(ChatTurn.Tool(r.CallId, r.Result switch { null => "", string s => s, JsonElement e => e.ToString(), var x => JsonSerializer.Serialize(x) }));
                continue;
            }
            var calls = m.Contents.OfType<FunctionCallContent>()
                .Select(c => new ChatToolCall(c.CallId, c.Name, JsonSerializer.Serialize(c.Arguments ?? new Dictionary<string, object?>()))).ToList();
            string text = string.Concat(m.Contents.OfType<TextContent>().Select(t => t.Text));
            string reasoning = string.Concat(m.Contents.OfType<TextReasoningContent>().Select(t => t.Text));
            turns.Add(new ChatTurn(role, calls.Count > 0 && text.Length == 0 ? null : text, calls.Count > 0 ? calls : null, Name: m.AuthorName,
                Reasoning: reasoning.Length > 0 ? reasoning : null));
        }
        return turns;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType == typeof(DecoderModel) ? model
        : null;

    public void Dispose()
    {
        if (ownsModel) model.Dispose();
        gate.Dispose();
    }
}

/// <summary>Microsoft.Extensions.AI embeddings: the model's mean-pooled, normalised final hidden state.</summary>
public sealed class OpenWeightsEmbeddingGenerator(DecoderModel model, int threads = 0, string? modelId = null) : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly Tokenizer tokenizer = Tokenizer.FromGguf(model.Source);
    private readonly EmbeddingGeneratorMetadata metadata = new("openweights", null, modelId, model.Config.Dim);

    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        int th = threads > 0 ? threads : Environment.ProcessorCount;
        return Task.Run(() =>
        {
            var list = new List<Embedding<float>>();
            long tokens = 0;
            foreach (var v in values)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var ids = tokenizer.Encode(v, addSpecial: true);
                if (ids.Length == 0) throw new OpenWeightsException("an input encodes to no tokens");
                tokens += ids.Length;
                list.Add(new Embedding<float>(model.Embed(ids, th)) { ModelId = modelId, CreatedAt = DateTimeOffset.UtcNow });
            }
            return new GeneratedEmbeddings<Embedding<float>>(list) { Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens } };
        }, cancellationToken);
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(EmbeddingGeneratorMetadata) ? metadata
        : serviceType.IsInstanceOfType(this) ? this
        : null;

    public void Dispose() { }
}
