using System.CommandLine;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models.Llama;
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
        var n = new Option<int>("-n", "--max-tokens") { Description = "Most tokens per reply", DefaultValueFactory = _ => 512 };
        var sampling = new SamplingFlags();
        var threads = CommonOptions.Threads();
        var ctx = CommonOptions.Context();
        var lora = CommonOptions.Lora();
        var cmd = new Command("chat", "Chat with a model in the terminal (/reset, /system TEXT, /exit; Ctrl-C stops a reply)")
        {
            model, system, template, n, threads, ctx, lora,
        };
        sampling.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            var options = new GenerationOptions { MaxTokens = pr.GetValue(n), Sampling = sampling.Read(pr) };
            if (options.MaxTokens < 1) throw new OpenWeightsException("-n must be >= 1");
            string? templateSource = ReadTemplate(pr.GetValue(template));
            using var m = LlamaModel.LoadOwned(CommonOptions.OpenSource(path));
            CommonOptions.AttachLoras(m, pr.GetValue(lora));
            var tok = Tokenizer.FromGguf(m.Source);
            var formatter = new ChatFormatter(tok, templateSource);
            var session = new InferenceSession(m, pr.GetValue(ctx), pr.GetValue(threads));
            var loop = new ChatLoop(session, formatter, options, pr.GetValue(system));
            CancellationTokenSource? current = null;
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                var c = Volatile.Read(ref current);
                if (c is null) return; // no reply running: Ctrl-C quits as usual
                e.Cancel = true;
                c.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                await loop.RunAsync(Console.In, pr.InvocationConfiguration.Output, () => { var c = CancellationTokenSource.CreateLinkedTokenSource(ct); Volatile.Write(ref current, c); return c; },
                    () => Volatile.Write(ref current, null), ct);
            }
            finally { Console.CancelKeyPress -= onCancel; }
            return 0;
        });
        return cmd;
    }

    public static string? ReadTemplate(string? file)
    {
        if (file is null) return null;
        if (!File.Exists(file)) throw new OpenWeightsException($"chat template file not found: {file}");
        return File.ReadAllText(file);
    }
}

/// <summary>The chat command's loop over a reader and writer (the terminal, or strings in tests).</summary>
public sealed class ChatLoop(InferenceSession session, ChatFormatter formatter, GenerationOptions options, string? system)
{
    private readonly List<ChatTurn> history = [];
    private string? system = system;

    public IReadOnlyList<ChatTurn> History => history;

    /// <summary>Reads lines until /exit or end of input. beginReply returns the token source that cancels the reply (Ctrl-C).</summary>
    public async Task RunAsync(TextReader input, TextWriter output, Func<CancellationTokenSource>? beginReply = null, Action? endReply = null,
        CancellationToken ct = default)
    {
        var replyOptions = formatter.ForReply(options);
        while (!ct.IsCancellationRequested)
        {
            output.Write("> ");
            output.Flush();
            string? line = await input.ReadLineAsync(ct);
            if (line is null) { output.WriteLine(); return; }
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line == "/exit" || line == "/quit") return;
            if (line == "/reset") { history.Clear(); session.Reset(); output.WriteLine("(conversation cleared)"); continue; }
            if (line == "/system" || line.StartsWith("/system ", StringComparison.Ordinal))
            {
                system = line.Length > 8 ? line[8..].Trim() : null;
                history.Clear();
                output.WriteLine(system is null ? "(system message removed; conversation cleared)" : "(system message set; conversation cleared)");
                continue;
            }
            if (line.StartsWith('/') && !line.StartsWith("//", StringComparison.Ordinal))
            {
                output.WriteLine("commands: /reset, /system TEXT, /exit");
                continue;
            }
            history.Add(ChatTurn.User(line));
            var turns = system is null ? history : [ChatTurn.System(system), .. history];
            int[] prompt = formatter.EncodeConversation(turns);
            if (prompt.Length >= session.ContextSize)
            {
                history.RemoveAt(history.Count - 1);
                output.WriteLine($"(the conversation has {prompt.Length} tokens and no longer fits the context of {session.ContextSize}; /reset to start over)");
                continue;
            }
            using var cts = beginReply?.Invoke() ?? CancellationTokenSource.CreateLinkedTokenSource(ct);
            var reply = new System.Text.StringBuilder();
            FinishReason finish = FinishReason.Stop;
            try
            {
                await foreach (var c in Generator.GenerateAsync(session, formatter.Tokenizer, prompt, replyOptions, cts.Token))
                {
                    output.Write(c.Text);
                    output.Flush();
                    reply.Append(c.Text);
                    if (c.Finish is { } f) finish = f;
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { finish = FinishReason.Cancelled; }
            finally { endReply?.Invoke(); }
            output.WriteLine();
            if (finish == FinishReason.Cancelled) output.WriteLine("(stopped)");
            history.Add(ChatTurn.Assistant(reply.ToString()));
        }
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
