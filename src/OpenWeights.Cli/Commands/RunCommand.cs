using System.CommandLine;
using OpenWeights.Inference;
using OpenWeights.Models.Llama;
using OpenWeights.Tokenizers;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights run MODEL "prompt"`: stream a continuation of the prompt.</summary>
public static class RunCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = new Argument<string>("prompt") { Description = "Text to continue" };
        var n = new Option<int>("-n", "--max-tokens") { Description = "Tokens to generate", DefaultValueFactory = _ => 128 };
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
        var special = new Option<bool>("--special") { Description = "Parse special tokens such as <|im_start|> in the prompt" };
        var lora = CommonOptions.Lora();
        var stats = new Option<bool>("--stats") { Description = "Print prefill/decode speed to stderr at the end" };
        var cmd = new Command("run", "Generate a continuation of a prompt, streamed as it is produced")
        {
            model, prompt, n, temp, topK, topP, minP, repeat, presence, frequency, seed, stop, threads, ctx, special, stats, lora,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            var output = pr.InvocationConfiguration.Output;
            var path = CommonOptions.ResolveModel(pr.GetValue(model)!);
            var sampling = new SamplingOptions
            {
                Temperature = pr.GetValue(temp), TopK = pr.GetValue(topK), TopP = pr.GetValue(topP), MinP = pr.GetValue(minP),
                RepeatPenalty = pr.GetValue(repeat), PresencePenalty = pr.GetValue(presence), FrequencyPenalty = pr.GetValue(frequency),
                Seed = pr.GetValue(seed),
            };
            sampling.Validate();
            int maxTokens = pr.GetValue(n);
            if (maxTokens < 0) throw new OpenWeightsException("-n must be >= 0");
            using var m = LlamaModel.LoadOwned(CommonOptions.OpenSource(path));
            CommonOptions.AttachLoras(m, pr.GetValue(lora));
            var tok = Tokenizer.FromGguf(m.Source);
            var ids = tok.Encode(pr.GetValue(prompt) ?? "", addSpecial: true, parseSpecial: pr.GetValue(special));
            if (ids.Length == 0) throw new OpenWeightsException("the prompt encodes to no tokens");
            var session = new InferenceSession(m, pr.GetValue(ctx), pr.GetValue(threads));
            var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling, StopStrings = pr.GetValue(stop) ?? [] };
            GenerationStats? st = null;
            await foreach (var chunk in Generator.GenerateAsync(session, tok, ids, options, ct))
            {
                output.Write(chunk.Text);
                output.Flush();
                st = chunk.Stats ?? st;
            }
            output.WriteLine();
            if (pr.GetValue(stats) && st is not null)
                pr.InvocationConfiguration.Error.WriteLine(
                    $"prompt {st.PromptTokens} tokens, {st.PrefillTokensPerSecond:F1} tok/s; generated {st.GeneratedTokens} tokens, {st.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return cmd;
    }
}
