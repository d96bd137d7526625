using System.CommandLine;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights chat MODEL`: an interactive terminal chat with history, streamed replies and slash commands.</summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var system = new Option<string?>("--system", "-s") { Description = "System message" };
        var template = new Option<string?>("--chat-template") { Description = "Jinja chat template file (default: the model's own)" };
        var n = new Option<int>("-n", "--max-tokens")
        {
            Description = "Most tokens per reply (-1 = until the end of the turn or a full context)",
            DefaultValueFactory = _ => -1,
        };
        var noThink = new Option<bool>("--no-think")
        {
            Description = "Ask the model not to think before answering, where its template has the switch (Qwen3, DeepSeek-V3.1/V3.2: enable_thinking=false)",
        };
        var sampling = new SamplingFlags();
        var threads = CommonOptions.Threads();
        var ctx = CommonOptions.Context();
        var lora = CommonOptions.Lora();
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var audit = new CliAudit();
        var cmd = new Command("chat", "Chat with a model in the terminal (/? for help, /bye to quit, \"\"\" for multi-line input; Ctrl-C stops a reply)")
        {
            model, system, template, n, noThink, threads, ctx, lora, cacheK, cacheV,
        };
        sampling.AddTo(cmd);
        audit.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            var output = pr.InvocationConfiguration.Output;
            string spec = pr.GetValue(model)!;
            var path = CommonOptions.ResolveModel(spec);
            int maxTokens = pr.GetValue(n);
            if (maxTokens is 0 or < -1) throw new OpenWeightsException("-n must be -1 (no limit) or >= 1");
            var options = new GenerationOptions { MaxTokens = maxTokens < 0 ? int.MaxValue : maxTokens, Sampling = sampling.Read(pr) };
            string? templateSource = ReadTemplate(pr.GetValue(template));
            using var m = DecoderModel.LoadOwned(CommonOptions.OpenSource(path));
            CommonOptions.AttachLoras(m, pr.GetValue(lora));
            var tok = Tokenizer.FromGguf(m.Source);
            if (templateSource is null && tok.ChatTemplate is null)
                throw new OpenWeightsException($"{spec} has no chat template (tokenizer.chat_template); give one with --chat-template FILE, or use `openweights run {spec} --raw` to continue text");
            var formatter = new ChatFormatter(tok, templateSource);
            var session = new InferenceSession(m, pr.GetValue(ctx), pr.GetValue(threads), cacheTypes: CommonOptions.CacheTypes(pr, cacheK, cacheV));
            using var log = audit.Open(pr, path, pr.GetValue(lora), formatter.Template.Source, CommonOptions.CacheTypes(pr, cacheK, cacheV), session.ContextSize);
            bool terminal = CliInput.Override.Value is null && !Console.IsInputRedirected && !Console.IsOutputRedirected;
            var loop = new ChatLoop(session, formatter, options, pr.GetValue(system))
            {
                ShowReasoning = terminal, TemplateVariables = pr.GetValue(noThink) ? ChatFormatter.ThinkingVariables(false) : null,
                OnReply = log is null ? null : (prompt, o, text, generated, finish) => CliAudit.Record(log, "chat", tok, o, prompt, text, generated, finish),
            };
            output.WriteLine(Banner(spec, session, templateSource is not null));
            ILineSource lines = terminal ? LineEditor.ForConsole(output) : new ReaderLineSource(CliInput.Reader, output);
            CancellationTokenSource? current = null;
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                var c = Volatile.Read(ref current);
                if (c is null) { output.WriteLine(); output.WriteLine("bye"); output.Flush(); return; } // no reply running: Ctrl-C quits
                e.Cancel = true;
                c.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                await loop.RunAsync(lines, output, () => { var c = CancellationTokenSource.CreateLinkedTokenSource(ct); Volatile.Write(ref current, c); return c; },
                    () => Volatile.Write(ref current, null), ct);
            }
            finally { Console.CancelKeyPress -= onCancel; }
            return 0;
        });
        return cmd;
    }

    /// <summary>The first lines of a chat: the model, its context and where to find help.</summary>
    public static string Banner(string model, InferenceSession session, bool ownTemplate) =>
        $"openweights chat: {model} (context {session.ContextSize} tokens{(ownTemplate ? ", template from --chat-template" : "")})\n" +
        "/? for help, /bye to quit, \"\"\" for multi-line input, Up for earlier lines, Ctrl-C stops a reply";

    /// <summary>Reads a `--chat-template FILE` (null: none given).</summary>
    public static string? ReadTemplate(string? file) => file is null ? null : ChatTemplateSource.FromFile(file);
}

/// <summary>The numbers of one reply, for /stats.</summary>
public sealed record ReplyStats(int PromptTokens, int GeneratedTokens, TimeSpan TimeToFirstToken, TimeSpan Duration, double DecodeTokensPerSecond,
    double PrefillTokensPerSecond, int ContextUsed, int ContextSize)
{
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"last reply: {GeneratedTokens} tokens, {DecodeTokensPerSecond:F1} tok/s, time to first token {TimeToFirstToken.TotalSeconds:F2} s, " +
        $"total {Duration.TotalSeconds:F2} s; prompt {PromptTokens} tokens ({PrefillTokensPerSecond:F1} tok/s); " +
        $"context {ContextUsed} of {ContextSize} tokens used ({100.0 * ContextUsed / ContextSize:F0}%)");
}

/// <summary>The chat command's loop over a line source and a writer (the terminal, or strings in tests).</summary>
public sealed class ChatLoop(InferenceSession session, ChatFormatter formatter, GenerationOptions options, string? system)
{
    public const string Help = """"
        commands:
          /bye, /exit      quit (also Ctrl-D, or Ctrl-C at an empty prompt)
          /reset           start a new conversation
          /system TEXT     set the system message (starts a new conversation); /system alone removes it
          /stats           tokens, speed and context use of the last reply
          /?, /help        this help
          """              begin and end a multi-line message
          Up, Down         earlier lines (in a terminal)
          Ctrl-C           stop a reply
        """";

    private readonly List<ChatTurn> history = [];
    private string? system = system;

    public IReadOnlyList<ChatTurn> History => history;
    /// <summary>Write a thinking model's reasoning (gpt-oss's analysis channel, the text in &lt;think&gt;…&lt;/think&gt;), dimmed; otherwise only the answer is written.</summary>
    public bool ShowReasoning { get; init; }
    /// <summary>Extra chat-template variables for every turn (e.g. <see cref="ChatFormatter.ThinkingVariables"/> from --no-think); null: none.</summary>
    public IReadOnlyDictionary<string, object?>? TemplateVariables { get; init; }
    /// <summary>The last reply's numbers (null before the first).</summary>
    public ReplyStats? LastReply { get; private set; }
    /// <summary>`chat --audit`: called after each reply with its prompt, options (seed fixed), text, generated count and finish; null: none.</summary>
    public Action<int[], GenerationOptions, string, int, FinishReason>? OnReply { get; init; }

    /// <summary>Reads lines until /bye, /exit or end of input. beginReply returns the token source that cancels the reply (Ctrl-C).</summary>
    public Task RunAsync(TextReader input, TextWriter output, Func<CancellationTokenSource>? beginReply = null, Action? endReply = null,
        CancellationToken ct = default) =>
        RunAsync(new ReaderLineSource(input, output), output, beginReply, endReply, ct);

    public async Task RunAsync(ILineSource input, TextWriter output, Func<CancellationTokenSource>? beginReply = null, Action? endReply = null,
        CancellationToken ct = default)
    {
        var replyOptions = formatter.ForReply(options);
        while (!ct.IsCancellationRequested)
        {
            string? read = await input.ReadLineAsync("> ", ct);
            if (read is null) { output.WriteLine(); return; }
            if (ReferenceEquals(read, LineEditor.Interrupted)) { output.WriteLine("bye"); return; }
            string line = read.Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith("\"\"\"", StringComparison.Ordinal))
            {
                string? text = await ReadMultiLineAsync(input, read.TrimStart()[3..], ct);
                if (text is null) { output.WriteLine(); return; }
                if (text.Trim().Length == 0) continue;
                await ReplyAsync(text, output, replyOptions, beginReply, endReply, ct);
                continue;
            }
            if (line is "/bye" or "/exit" or "/quit") return;
            if (line == "/reset") { history.Clear(); session.Reset(); output.WriteLine("(conversation cleared)"); continue; }
            if (line is "/?" or "/help") { output.WriteLine(Help); continue; }
            if (line == "/stats")
            {
                output.WriteLine(LastReply?.ToString() ?? "(no reply yet)");
                continue;
            }
            if (line == "/system" || line.StartsWith("/system ", StringComparison.Ordinal))
            {
                system = line.Length > 8 ? line[8..].Trim() : null;
                history.Clear();
                output.WriteLine(system is null ? "(system message removed; conversation cleared)" : "(system message set; conversation cleared)");
                continue;
            }
            if (line.StartsWith('/') && !line.StartsWith("//", StringComparison.Ordinal))
            {
                output.WriteLine($"unknown command {line.Split(' ')[0]}");
                output.WriteLine(Help);
                continue;
            }
            await ReplyAsync(line, output, replyOptions, beginReply, endReply, ct);
        }
    }

    /// <summary>The lines after an opening \"\"\" up to the closing one (which may end a line); null when input ends first.</summary>
    private static async Task<string?> ReadMultiLineAsync(ILineSource input, string first, CancellationToken ct)
    {
        var lines = new List<string>();
        string current = first;
        while (true)
        {
            int close = current.TrimEnd().EndsWith("\"\"\"", StringComparison.Ordinal) ? current.TrimEnd().Length - 3 : -1;
            if (close >= 0) { lines.Add(current[..close]); break; }
            lines.Add(current);
            string? next = await input.ReadLineAsync("... ", ct);
            if (next is null || ReferenceEquals(next, LineEditor.Interrupted)) return null;
            current = next;
        }
        if (lines.Count > 0 && lines[0].Length == 0) lines.RemoveAt(0);
        return string.Join("\n", lines).TrimEnd();
    }

    private async Task ReplyAsync(string text, TextWriter output, GenerationOptions replyOptions, Func<CancellationTokenSource>? beginReply,
        Action? endReply, CancellationToken ct)
    {
        history.Add(ChatTurn.User(text));
        var turns = system is null ? history : [ChatTurn.System(system), .. history];
        string rendered = formatter.Render(turns, extra: TemplateVariables);
        int[] prompt = formatter.Encode(rendered);
        if (prompt.Length >= session.ContextSize)
        {
            history.RemoveAt(history.Count - 1);
            output.WriteLine($"(the conversation has {prompt.Length} tokens and no longer fits the context of {session.ContextSize}; /reset to start over)");
            return;
        }
        using var cts = beginReply?.Invoke() ?? CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (OnReply is not null) replyOptions = CliAudit.WithSeed(replyOptions); // the seed the line names is the one used
        var reply = new System.Text.StringBuilder();
        // harmony and <think> models: the answer apart from the reasoning
        var parser = formatter.SeparatesReasoning ? formatter.CreateReplyParser(rendered, toolCalls: false) : null;
        bool dim = false;
        void Write(IReadOnlyList<ReplyDelta> deltas)
        {
            foreach (var d in deltas)
            {
                bool thinking = d.Kind == ReplyDeltaKind.Reasoning;
                if (thinking && !ShowReasoning) continue;
                if (d.Kind is not (ReplyDeltaKind.Reasoning or ReplyDeltaKind.Content)) continue;
                if (thinking != dim) { output.Write(thinking ? "\u001b[2m" : "\u001b[0m\n"); dim = thinking; }
                output.Write(d.Text);
            }
        }
        FinishReason finish = FinishReason.Stop;
        GenerationStats? stats = null;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? first = null;
        try
        {
            await foreach (var c in Generator.GenerateAsync(session, formatter.Tokenizer, prompt, replyOptions, cts.Token))
            {
                first ??= clock.Elapsed;
                if (parser is null) output.Write(c.Text);
                else Write(parser.Push(c.Text));
                output.Flush();
                reply.Append(c.Text);
                if (c.Finish is { } f) { finish = f; stats = c.Stats; }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { finish = FinishReason.Cancelled; }
        finally { endReply?.Invoke(); }
        if (parser is not null)
        {
            Write(parser.Complete());
            if (dim) output.Write("\u001b[0m");
        }
        output.WriteLine();
        OnReply?.Invoke(prompt, replyOptions, reply.ToString(), stats?.GeneratedTokens ?? 0, finish);
        if (finish == FinishReason.Cancelled) output.WriteLine("(stopped)");
        else if (finish == FinishReason.Length && session.Remaining < 1)
            output.WriteLine($"(stopped: context full ({session.ContextSize} tokens); /reset to start over)");
        // the template takes the answer and the thinking apart (harmony refuses channel markers in content; Qwen3 drops old thinking)
        history.Add(parser is null ? ChatTurn.Assistant(reply.ToString()) : new ChatTurn("assistant", parser.Result.Content, Reasoning: parser.Result.Reasoning));
        if (stats is not null)
            LastReply = new ReplyStats(stats.PromptTokens, stats.GeneratedTokens, first ?? clock.Elapsed, clock.Elapsed, stats.DecodeTokensPerSecond,
                stats.PrefillTokensPerSecond, session.ContextSize - session.Remaining, session.ContextSize);
    }
}

/// <summary>Sampling flags shared by chat-like commands.</summary>
public sealed class SamplingFlags
{
    public readonly Option<float> Temp = new("--temp") { Description = "Temperature (0 = greedy)", DefaultValueFactory = _ => SamplingOptions.Default.Temperature };
    public readonly Option<int> TopK = new("--top-k") { Description = "Top-k (0 = off)", DefaultValueFactory = _ => SamplingOptions.Default.TopK };
    public readonly Option<float> TopP = new("--top-p") { Description = "Top-p (1 = off)", DefaultValueFactory = _ => SamplingOptions.Default.TopP };
    public readonly Option<float> MinP = new("--min-p") { Description = "Min-p (0 = off)", DefaultValueFactory = _ => SamplingOptions.Default.MinP };
    public readonly Option<float> Repeat = new("--repeat-penalty") { Description = "Repetition penalty (1 = off)", DefaultValueFactory = _ => SamplingOptions.Default.RepeatPenalty };
    public readonly Option<float> Presence = new("--presence-penalty") { Description = "Presence penalty" };
    public readonly Option<float> Frequency = new("--frequency-penalty") { Description = "Frequency penalty" };
    public readonly Option<ulong?> Seed = new("--seed") { Description = "Random seed (same seed, same output)" };

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Temp, TopK, TopP, MinP, Repeat, Presence, Frequency, Seed }) cmd.Options.Add(o);
    }

    public SamplingOptions Read(ParseResult pr)
    {
        var s = new SamplingOptions
        {
            Temperature = pr.GetValue(Temp), TopK = pr.GetValue(TopK), TopP = pr.GetValue(TopP), MinP = pr.GetValue(MinP),
            RepeatPenalty = pr.GetValue(Repeat), PresencePenalty = pr.GetValue(Presence), FrequencyPenalty = pr.GetValue(Frequency),
            Seed = pr.GetValue(Seed),
        };
        s.Validate();
        return s;
    }
}
