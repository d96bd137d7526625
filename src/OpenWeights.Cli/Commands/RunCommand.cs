using System.CommandLine;
using OpenWeights.Inference;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>
/// `openweights run MODEL "prompt"`: answer the prompt as one user message through the model's chat template (a model
/// without one, or --raw, continues the text instead), streamed as it is produced.
/// </summary>
public static class RunCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = new Argument<string?>("prompt")
        {
            Description = "The prompt; - (or none, with stdin redirected) reads it from stdin",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var file = new Option<string?>("--file", "-f") { Description = "Read the prompt from a file" };
        var raw = new Option<bool>("--raw") { Description = "Continue the prompt as plain text (no chat template)" };
        var template = new Option<string?>("--chat-template") { Description = "Jinja chat template file (default: the model's own)" };
        var n = new Option<int>("-n", "--max-tokens")
        {
            Description = "Most tokens to generate (-1 = until the end of the reply or a full context)",
            DefaultValueFactory = _ => -1,
        };
        var temp = new Option<float>("--temp") { Description = "Temperature (0 = greedy)", DefaultValueFactory = _ => SamplingOptions.Default.Temperature };
        var topK = new Option<int>("--top-k") { Description = "Top-k (0 = off)", DefaultValueFactory = _ => SamplingOptions.Default.TopK };
        var topP = new Option<float>("--top-p") { Description = "Top-p (1 = off)", DefaultValueFactory = _ => SamplingOptions.Default.TopP };
        var minP = new Option<float>("--min-p") { Description = "Min-p (0 = off)", DefaultValueFactory = _ => SamplingOptions.Default.MinP };
        var repeat = new Option<float>("--repeat-penalty") { Description = "Repetition penalty (1 = off)", DefaultValueFactory = _ => SamplingOptions.Default.RepeatPenalty };
        var presence = new Option<float>("--presence-penalty") { Description = "Presence penalty" };
        var frequency = new Option<float>("--frequency-penalty") { Description = "Frequency penalty" };
        var seed = new Option<ulong?>("--seed") { Description = "Random seed (same seed, same output)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var threads = CommonOptions.Threads();
        var ctx = CommonOptions.Context();
        var special = new Option<bool>("--special") { Description = "Parse special tokens such as <|im_start|> in a --raw prompt" };
        var lora = CommonOptions.Lora();
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var stats = new Option<bool>("--stats") { Description = "Print prefill/decode speed to stderr at the end" };
        var audit = new CliAudit();
        var cmd = new Command("run", "Answer a prompt (through the model's chat template; --raw continues plain text), streamed as it is produced")
        {
            model, prompt, file, raw, template, n, temp, topK, topP, minP, repeat, presence, frequency, seed, stop, threads, ctx, special, stats, lora, cacheK, cacheV,
        };
        audit.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            var output = pr.InvocationConfiguration.Output;
            var error = pr.InvocationConfiguration.Error;
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            var sampling = new SamplingOptions
            {
                Temperature = pr.GetValue(temp), TopK = pr.GetValue(topK), TopP = pr.GetValue(topP), MinP = pr.GetValue(minP),
                RepeatPenalty = pr.GetValue(repeat), PresencePenalty = pr.GetValue(presence), FrequencyPenalty = pr.GetValue(frequency),
                Seed = pr.GetValue(seed),
            };
            sampling.Validate();
            int maxTokens = pr.GetValue(n);
            if (maxTokens < -1) throw new OpenWeightsException("-n must be -1 (no limit) or >= 0");
            string text = ReadPrompt(pr.GetValue(prompt), pr.GetValue(file));
            string? templateSource = ChatCommand.ReadTemplate(pr.GetValue(template));
            if (pr.GetValue(raw) && templateSource is not null) throw new OpenWeightsException("--raw and --chat-template contradict each other");
            using var m = DecoderModel.LoadOwned(CommonOptions.OpenSource(path));
            CommonOptions.AttachLoras(m, pr.GetValue(lora));
            var tok = Tokenizer.FromGguf(m.Source);
            var session = new InferenceSession(m, pr.GetValue(ctx), pr.GetValue(threads), cacheTypes: CommonOptions.CacheTypes(pr, cacheK, cacheV));
            var options = new GenerationOptions
            {
                MaxTokens = maxTokens < 0 ? int.MaxValue : maxTokens, Sampling = sampling, StopStrings = pr.GetValue(stop) ?? [],
            };
            int[] ids;
            IReplyParser? parser = null; // models that think (harmony, <think>): the answer apart from the reasoning
            bool chat = !pr.GetValue(raw) && (templateSource is not null || tok.ChatTemplate is not null);
            if (chat)
            {
                var formatter = new ChatFormatter(tok, templateSource);
                string rendered = formatter.Render([ChatTurn.User(text)]);
                ids = formatter.Encode(rendered);
                options = formatter.ForReply(options);
                if (formatter.SeparatesReasoning) parser = formatter.CreateReplyParser(rendered, toolCalls: false);
            }
            else
            {
                ids = tok.Encode(text, addSpecial: true, parseSpecial: pr.GetValue(special));
                // a generated BOS starts another document (llama2.c's story models separate stories so): the continuation is done
                if (tok.Bos >= 0 && !tok.EndOfGeneration.Contains(tok.Bos)) options = options with { StopTokens = new HashSet<int> { tok.Bos } };
            }
            if (ids.Length == 0) throw new OpenWeightsException("the prompt encodes to no tokens");
            using var log = audit.Open(pr, path, pr.GetValue(lora), chat ? templateSource ?? tok.ChatTemplate : null, CommonOptions.CacheTypes(pr, cacheK, cacheV), session.ContextSize);
            if (log is not null) options = CliAudit.WithSeed(options);
            var reply = new System.Text.StringBuilder();
            if (ids.Length >= session.ContextSize)
                throw new OpenWeightsException($"the prompt has {ids.Length} tokens but the context holds {session.ContextSize}{(AtModelMaximum(session) ? ", the model's maximum" : "; use --ctx to raise it")}");
            GenerationStats? st = null;
            FinishReason finish = FinishReason.Stop;
            // gpt-oss (harmony), <think> models: the answer goes to stdout, the thinking to stderr, the markers and tags nowhere
            void Write(IReadOnlyList<ReplyDelta> deltas)
            {
                foreach (var d in deltas)
                    if (d.Kind == ReplyDeltaKind.Content) output.Write(d.Text);
                    else if (d.Kind == ReplyDeltaKind.Reasoning) { error.Write(d.Text); error.Flush(); }
            }
            await foreach (var chunk in Generator.GenerateAsync(session, tok, ids, options, ct))
            {
                reply.Append(chunk.Text);
                if (parser is null) output.Write(chunk.Text);
                else Write(chunk.Finish is null ? parser.Push(chunk.Text) : [.. parser.Push(chunk.Text), .. parser.Complete()]);
                output.Flush();
                st = chunk.Stats ?? st;
                if (chunk.Finish is { } f) finish = f;
            }
            output.WriteLine();
            if (log is not null) CliAudit.Record(log, "run", tok, options, ids, reply.ToString(), st?.GeneratedTokens ?? 0, finish);
            if (ContextFullMessage(finish, session) is { } full) error.WriteLine(full);
            if (pr.GetValue(stats) && st is not null)
                error.WriteLine(
                    $"prompt {st.PromptTokens} tokens, {st.PrefillTokensPerSecond:F1} tok/s; generated {st.GeneratedTokens} tokens, {st.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return cmd;
    }

    /// <summary>The prompt from the argument, "-" (stdin), -f FILE, or a redirected stdin when no argument was given.</summary>
    public static string ReadPrompt(string? argument, string? file)
    {
        if (file is not null)
        {
            if (argument is not null) throw new OpenWeightsException("give the prompt as an argument or with -f FILE, not both");
            if (!File.Exists(file)) throw new OpenWeightsException($"prompt file not found: {file}");
            string text = CliInput.TrimFinalNewline(File.ReadAllText(file));
            return text.Trim().Length > 0 ? text : throw new OpenWeightsException($"no prompt: {file} is empty");
        }
        if (argument == "-" || (argument is null && CliInput.IsRedirected))
        {
            string read = CliInput.ReadAll();
            return read.Trim().Length > 0 ? read : throw new OpenWeightsException("no prompt: stdin was empty (give the prompt as an argument, or -f FILE)");
        }
        return argument ?? throw new OpenWeightsException("no prompt: give it as an argument, - to read stdin, or -f FILE");
    }

    /// <summary>The stderr line when generation stopped because the context filled up; null otherwise.</summary>
    public static string? ContextFullMessage(FinishReason finish, InferenceSession session) =>
        finish == FinishReason.Length && session.Remaining < 1
            ? $"stopped: context full ({session.ContextSize} tokens{(AtModelMaximum(session) ? ", the model's maximum)" : "); use --ctx to raise it")}"
            : null;

    private static bool AtModelMaximum(InferenceSession session) => session.ContextSize >= session.Model.Config.ContextLength;
}
