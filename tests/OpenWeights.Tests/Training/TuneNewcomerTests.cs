using OpenWeights.Cli.Commands;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tests.Cli;
using OpenWeights.Training;

namespace OpenWeights.Tests.Training;

/// <summary>`tune` as a newcomer meets it (issue 11): a rerun cannot silently replace a run, short runs are flagged, the result's use is printed.</summary>
public class TuneNewcomerTests
{
    private static string Model(TempDir dir)
    {
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), model);
        return model;
    }

    private static string PromptData(TempDir dir, int n = 8)
    {
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, n).Select(i => $"{{\"prompt\":\"Question {i}:\",\"completion\":\" answer {i * 7}\"}}"));
        return data;
    }

    private static readonly string[] Small = ["-c", "32", "-r", "4", "--targets", "q_proj,v_proj", "--threads", "2", "--lr", "1e-3"];

    private static (int Code, string Out, string Err) Tune(string model, string data, string outDir, params string[] more) =>
        CliTests.Run(["tune", model, "--data", data, "-o", outDir, .. Small, .. more]);

    [Fact]
    public void ARerunIntoAFolderWithACheckpointIsRefusedUnlessResumeOrOverwrite()
    {
        using var dir = new TempDir();
        string model = Model(dir), data = PromptData(dir), outDir = dir.File("out");
        var (code, _, err) = Tune(model, data, outDir, "--max-steps", "2");
        Assert.True(code == 0, err);
        var checkpoint = Path.Combine(outDir, LoraTrainer.CheckpointFile);
        var before = File.ReadAllBytes(checkpoint);

        (code, _, err) = Tune(model, data, outDir, "--max-steps", "2", "--seed", "7");
        Assert.Equal(1, code);
        var line = Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("already holds a training run", line);
        Assert.Contains("--resume", line);
        Assert.Contains("--overwrite", line);
        Assert.Equal(before, File.ReadAllBytes(checkpoint));

        (code, _, err) = Tune(model, data, outDir, "--resume", "--overwrite");
        Assert.Equal(1, code);
        Assert.Contains("contradict", err);

        (code, _, err) = Tune(model, data, outDir, "--max-steps", "2", "--seed", "7", "--overwrite");
        Assert.True(code == 0, err);
        Assert.Contains("removed the previous run", err);
        Assert.NotEqual(before, File.ReadAllBytes(checkpoint));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(outDir, LoraTrainer.MetricsFile)).Length);
    }

    [Fact]
    public void AFinishedAdapterAloneAlsoCountsAsARun()
    {
        using var dir = new TempDir();
        var outDir = dir.File("out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, LoraTrainer.GgufAdapterFile), "x");
        var e = Assert.Throws<OpenWeightsException>(() => TuneCommand.CheckOutput(outDir, resume: false, overwrite: false));
        Assert.Contains(LoraTrainer.GgufAdapterFile, e.Message);
        TuneCommand.CheckOutput(outDir, resume: true, overwrite: false);
        TuneCommand.CheckOutput(outDir, resume: false, overwrite: true);
        TuneCommand.CheckOutput(dir.File("fresh"), resume: false, overwrite: false);
        File.WriteAllText(Path.Combine(dir.Path, "notes.txt"), "mine");
        TuneCommand.CheckOutput(dir.Path, resume: false, overwrite: false);   // other files are not a run
    }

    [Fact]
    public void AShortRunIsWarnedAboutAndALongEnoughOneIsNot()
    {
        using var dir = new TempDir();
        string model = Model(dir), data = PromptData(dir);
        var (code, _, err) = Tune(model, data, dir.File("short"), "--max-steps", "3");
        Assert.True(code == 0, err);
        Assert.Contains("warning: 3 optimizer steps at --lr 1e-3 is usually too few", err);
        Assert.Contains("--max-steps 20", err);

        // 8 unpacked examples, no validation: 8 steps an epoch, 3 epochs = 24 steps at 1e-3 (24 >= 20, 0.024 >= 0.015)
        (code, _, err) = Tune(model, data, dir.File("long"), "--no-pack", "--val-split", "0", "--epochs", "3", "--checkpoint-every", "0", "--eval-every", "0");
        Assert.True(code == 0, err);
        Assert.Contains("step 24/24", err);
        Assert.DoesNotContain("warning", err);
    }

    [Theory]
    [InlineData(6, 6, 2e-4f, false, "--epochs 13 (78 steps), or --lr 1e-3 --epochs 4 (24 steps)")]
    [InlineData(3, 100, 2e-4f, true, "--max-steps 75, or --lr 1e-3 --max-steps 20")]
    [InlineData(12, 10, 1e-2f, false, "try --epochs 2 (20 steps);")]
    [InlineData(74, 74, 2e-4f, false, "try --epochs 2 (148 steps)")]
    public void ShortRunAdviceNamesTheFlagsThatFixIt(int steps, int perEpoch, float lr, bool maxStepsLimits, string expected)
    {
        var w = TuneAdvice.ShortRun(steps, perEpoch, lr, maxStepsLimits);
        Assert.NotNull(w);
        Assert.Contains(expected, w);
    }

    [Theory]
    [InlineData(75, 2e-4f)]
    [InlineData(20, 1e-3f)]
    [InlineData(400, 1e-4f)]
    public void LongEnoughRunsGetNoAdvice(int steps, float lr) => Assert.Null(TuneAdvice.ShortRun(steps, 10, lr, false));

    [Fact]
    public void TheEndPrintsTheCommandsThatUseTheAdapterAndValidationShowsProgress()
    {
        using var dir = new TempDir();
        string model = Model(dir), data = PromptData(dir), outDir = dir.File("out");
        var (code, stdout, err) = Tune(model, data, outDir, "--max-steps", "2", "--val-split", "0.25");
        Assert.True(code == 0, err);
        string gguf = Path.Combine(outDir, LoraTrainer.GgufAdapterFile);
        Assert.Contains($"openweights run {model} --lora {gguf} \"...\"", stdout);
        Assert.Contains($"openweights serve {model} --lora {gguf}", stdout);
        Assert.Contains($"openweights merge {model} {gguf} -o merged.gguf", stdout);
        Assert.Contains($"--lora {outDir} loads the PEFT folder", stdout);
        Assert.True(File.Exists(gguf));
        Assert.Contains("step 2/2  validating on 2 sequences", err);
    }

    [Fact]
    public void UsageLinesQuoteWhatTheShellWouldSplit()
    {
        Assert.Equal("runs/a-b_1.0", TuneAdvice.Sh("runs/a-b_1.0"));
        Assert.Equal("'my runs/x'", TuneAdvice.Sh("my runs/x"));
        Assert.Equal("'it'\\''s'", TuneAdvice.Sh("it's"));
        var lines = TuneAdvice.UsageLines("llama-3.2-1b-instruct", "my run").ToList();
        Assert.Contains(lines, l => l.Contains("openweights run llama-3.2-1b-instruct --lora 'my run/adapter.gguf'"));
    }

    [Fact]
    public void FlagVocabularyOldSpellingsAreHiddenAliases()
    {
        var (code, help, _) = CliTests.Run("tune", "--help");
        Assert.Equal(0, code);
        Assert.Contains("-o, --output", help);
        Assert.Contains("-c, --ctx", help);
        Assert.Contains("-r, --rank", help);
        Assert.Contains("--overwrite", help);
        Assert.Contains("--chat-template", help);
        Assert.DoesNotMatch(@"--out\b", help);
        Assert.DoesNotContain("--seq-len", help);

        var root = OpenWeights.Cli.Cli.BuildRoot();
        var pr = root.Parse(["tune", "m.gguf", "--data", "d.jsonl", "-o", "x"]);
        Assert.Empty(pr.Errors);
        Assert.Equal(8, pr.GetValue<int>("--rank"));
        Assert.Equal(512, pr.GetValue<int>("--ctx"));
        Assert.Equal("x", pr.GetValue<string?>("--output"));
        pr = root.Parse(["tune", "m.gguf", "--data", "d.jsonl", "--out", "y", "--seq-len", "64", "-r", "4", "-c", "128"]);
        Assert.Empty(pr.Errors);
        Assert.Equal("y", pr.GetValue<string?>("--out"));
        Assert.Equal(64, pr.GetValue<int?>("--seq-len"));
        Assert.Equal(128, pr.GetValue<int>("--ctx"));
        Assert.Equal(4, pr.GetValue<int>("--rank"));
    }

    [Fact]
    public void WithoutAnOutputFolderTheErrorNamesTheFlag()
    {
        using var dir = new TempDir();
        var (code, _, err) = CliTests.Run("tune", Model(dir), "--data", PromptData(dir));
        Assert.Equal(1, code);
        Assert.Contains("-o/--output", err);
    }

    [Fact]
    public void PlainTextLinesBecomeExamplesSoValidationRuns()
    {
        using var dir = new TempDir();
        string model = Model(dir), data = dir.File("notes.txt");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => $"Fact {i}: the sky is {(i % 2 == 0 ? "blue" : "grey")} today."));
        var (code, _, err) = Tune(model, data, dir.File("out"), "--max-steps", "1", "--val-split", "0.1");
        Assert.True(code == 0, err);
        Assert.Contains("20 examples -> ", err);
        Assert.Matches(@"step 1/1  loss [0-9.]+  val [0-9.]+", err);
    }

    [Fact]
    public void ChatDataForAModelWithoutATemplateNeedsChatTemplateFile()
    {
        using var dir = new TempDir();
        var model = dir.File("plain.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2") with { ChatTemplate = "" }, SynthType.Parse("f16"), model);
        var data = dir.File("chat.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 4).Select(i =>
            $"{{\"messages\":[{{\"role\":\"user\",\"content\":\"hi {i}\"}},{{\"role\":\"assistant\",\"content\":\"hello {i}\"}}]}}"));
        var (code, _, err) = Tune(model, data, dir.File("out"), "--max-steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("--chat-template FILE", err);

        var template = dir.File("chatml.jinja");
        File.WriteAllText(template, SynthPreset.ChatMl);
        (code, _, err) = Tune(model, data, dir.File("out"), "--max-steps", "1", "--chat-template", template);
        Assert.True(code == 0, err);
        Assert.Contains("4 examples", err);
    }

    [Fact]
    public void EveryMalformedLineIsListedOnItsOwnLine()
    {
        using var dir = new TempDir();
        string model = Model(dir), data = dir.File("bad.jsonl");
        var lines = Enumerable.Range(0, 30).Select(i => i % 5 == 0 ? "{\"prompt\":\"a\",\"completion\":\"b\"}" : "{\"prompt\":\"a\"}").ToList();
        File.WriteAllLines(data, lines);
        var (code, _, err) = Tune(model, data, dir.File("out"));
        Assert.Equal(1, code);
        var errLines = err.Trim().Split('\n');
        Assert.Equal(TrainingDataException.Listed + 2, errLines.Length);   // 20 listed, "... and 4 more", the error
        Assert.Contains($"{data} line 2: has \"prompt\" but no \"completion\"", errLines[0]);
        Assert.Contains("... and 4 more", errLines[^2]);
        Assert.Equal("openweights: error: bad.jsonl: 24 malformed lines, refusing to train (listed above)", errLines[^1].Trim());
    }
}
