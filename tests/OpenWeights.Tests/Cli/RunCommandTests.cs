using System.Diagnostics;
using System.Text.RegularExpressions;
using OpenWeights.Cli.Commands;
using OpenWeights.Inference.Chat;
using OpenWeights.Models;
using OpenWeights.Tests.Chat;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Cli;

/// <summary>`run`: the chat template for instruct models, --raw, prompts from stdin and files, a full context said so.</summary>
public class RunCommandTests
{
    /// <summary>Runs the CLI in-process with <paramref name="stdin"/> standing for a redirected standard input.</summary>
    public static (int Code, string Out, string Err) RunWithStdin(string? stdin, params string[] args)
    {
        CliInput.Override.Value = stdin is null ? null : new StringReader(stdin);
        try { return CliTests.Run(args); }
        finally { CliInput.Override.Value = null; }
    }

    private static int PromptTokens(string err) => int.Parse(Regex.Match(err, @"prompt (\d+) tokens").Groups[1].Value);

    private static (int Chat, int Raw) ExpectedPromptTokens(string model, string text)
    {
        using var m = DecoderModel.Load(model);
        var tok = Tokenizer.FromGguf(m.Source);
        return (new ChatFormatter(tok).EncodeConversation([ChatTurn.User(text)]).Length, tok.Encode(text, addSpecial: true).Length);
    }

    [Fact]
    public void RunAppliesTheChatTemplateAndRawDoesNot()
    {
        var (chat, raw) = ExpectedPromptTokens(TinyModels.Qwen, "What is the capital of France?");
        Assert.True(chat > raw + 4); // <|im_start|>user ... <|im_end|> <|im_start|>assistant
        var (code, _, err) = CliTests.Run("run", TinyModels.Qwen, "What is the capital of France?", "-n", "2", "--temp", "0", "--threads", "1", "--stats");
        Assert.True(code == 0, err);
        Assert.Equal(chat, PromptTokens(err));
        (code, _, err) = CliTests.Run("run", TinyModels.Qwen, "What is the capital of France?", "--raw", "-n", "2", "--temp", "0", "--threads", "1", "--stats");
        Assert.True(code == 0, err);
        Assert.Equal(raw, PromptTokens(err));
    }

    [Fact]
    public void RunReadsThePromptFromStdinOrAFile()
    {
        var (chat, _) = ExpectedPromptTokens(TinyModels.Qwen, "two\nlines");
        string[] common = ["-n", "1", "--temp", "0", "--threads", "1", "--stats"];
        var (code, _, err) = RunWithStdin("two\nlines\n", ["run", TinyModels.Qwen, "-", .. common]);
        Assert.True(code == 0, err);
        Assert.Equal(chat, PromptTokens(err)); // the final line break is not part of the prompt
        (code, _, err) = RunWithStdin("two\nlines\n", ["run", TinyModels.Qwen, .. common]); // no argument, stdin redirected
        Assert.True(code == 0, err);
        Assert.Equal(chat, PromptTokens(err));
        using var dir = new TempDir();
        File.WriteAllText(dir.File("p.txt"), "two\nlines\n");
        (code, _, err) = CliTests.Run(["run", TinyModels.Qwen, "-f", dir.File("p.txt"), .. common]);
        Assert.True(code == 0, err);
        Assert.Equal(chat, PromptTokens(err));
        (code, _, err) = CliTests.Run(["run", TinyModels.Qwen, "hi", "-f", dir.File("p.txt"), .. common]);
        Assert.Equal(1, code);
        Assert.Contains("not both", err);
        (code, _, err) = RunWithStdin("", ["run", TinyModels.Qwen, .. common]); // e.g. CI's closed stdin: no prompt, not an empty one
        Assert.Equal("openweights: error: no prompt: stdin was empty (give the prompt as an argument, or -f FILE)", err.Trim());
        (code, _, err) = CliTests.Run(["run", TinyModels.Qwen, "-f", dir.File("absent.txt"), .. common]);
        Assert.Equal("openweights: error: prompt file not found: " + dir.File("absent.txt"), err.Trim());
        File.WriteAllText(dir.File("empty.txt"), "\n");
        (code, _, err) = CliTests.Run(["run", TinyModels.Qwen, "-f", dir.File("empty.txt"), .. common]);
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: no prompt: " + dir.File("empty.txt") + " is empty", err.Trim());
    }

    [Fact]
    public void RunContinuesStdinPromptOfAModelWithoutTemplate()
    {
        var p = TestData.Require("models/stories260K.gguf");
        var (code, output, err) = RunWithStdin("Once upon a time\n", "run", p, "-", "--temp", "0", "-n", "12", "--threads", "1");
        Assert.True(code == 0, err);
        Assert.StartsWith(", there was a little girl named Lily.", output);
    }

    [Fact]
    public void RunWithoutLimitStopsAtAFullContextAndSaysSo()
    {
        var p = TestData.Require("models/stories260K.gguf");
        var (code, output, err) = CliTests.Run("run", p, "Once upon a time", "--temp", "0", "--ctx", "24", "--threads", "1");
        Assert.True(code == 0, err);
        Assert.StartsWith(", there was a little girl named Lily.", output);
        Assert.Equal("stopped: context full (24 tokens); use --ctx to raise it", err.Trim());
    }

    [Fact]
    public void RunContinuationEndsWhereTheModelStartsAnotherDocument()
    {
        var p = TestData.Require("models/stories260K.gguf");
        // stories260K ends a story with BOS, the start of the next one; without -n, run stops there (as llama2.c does)
        var (code, output, err) = CliTests.Run("run", p, "Once upon a time", "--temp", "0", "--threads", "1");
        Assert.True(code == 0, err);
        Assert.StartsWith(", there was a little girl named Lily.", output);
        Assert.DoesNotContain("Once upon a time", output);
        Assert.Equal("", err);
    }

    [Fact]
    public void RunAtTheModelsOwnContextSaysItIsTheMaximum()
    {
        var p = TestData.Require("models/stories260K.gguf");
        // --ctx above the model's 512 tokens is capped there: raising --ctx would not help, so the message does not suggest it
        using var m = DecoderModel.Load(p);
        var session = new OpenWeights.Inference.InferenceSession(m, 100000, 1);
        Assert.Equal(512, session.ContextSize);
        session.Evaluate(new int[session.ContextSize], CancellationToken.None);
        Assert.Equal("stopped: context full (512 tokens, the model's maximum)", RunCommand.ContextFullMessage(OpenWeights.Inference.FinishReason.Length, session));
        Assert.Null(RunCommand.ContextFullMessage(OpenWeights.Inference.FinishReason.Stop, session));
    }

    public static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx"))) return d.FullName;
        throw new InvalidOperationException("repository root not found");
    }

    public static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h
        : Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p
        : "dotnet";
}
