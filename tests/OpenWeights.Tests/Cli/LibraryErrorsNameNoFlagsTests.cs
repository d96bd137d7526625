using OpenWeights.Catalog;
using OpenWeights.Cli.Commands;
using OpenWeights.Hardware;
using OpenWeights.Hub;
using OpenWeights.Lora;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Tests.Cli;

/// <summary>
/// Issue 11: errors the library throws name its options, never a command-line flag (a program using the library has no
/// `--accept-license`); the CLI still tells its users which flag to pass.
/// </summary>
public class LibraryErrorsNameNoFlagsTests
{
    private static void NamesNoFlag(string message) => Assert.DoesNotMatch(@"(^|[\s(])--?[a-z]", message);

    [Fact]
    public void Licence_refusals_name_AcceptLicense_and_pull_still_says_accept_license()
    {
        var gate = new CatalogPullGate();
        var restrictive = Assert.Throws<LicenseNotAcceptedException>(() =>
            gate.BeforePull(new PullContext("meta-llama/Llama-3.2-1B-Instruct", "main", "c0ffee", "llama3.2", null, [], AcceptLicense: false)));
        NamesNoFlag(restrictive.Message);
        Assert.Contains("PullOptions.AcceptLicense", restrictive.Message);
        Assert.Equal("llama-3.2-1b-instruct", restrictive.ModelId);
        Assert.StartsWith(restrictive.Problem, restrictive.Message);

        var gated = Assert.Throws<LicenseNotAcceptedException>(() =>
            gate.BeforePull(new PullContext("someone/private-model", "main", "c0ffee", "other", "manual", [], AcceptLicense: false)));
        NamesNoFlag(gated.Message);
        Assert.Contains("PullOptions.AcceptLicense", gated.Message);

        // accepting lets both through
        gate.BeforePull(new PullContext("meta-llama/Llama-3.2-1B-Instruct", "main", "c0ffee", "llama3.2", null, [], AcceptLicense: true));
        gate.BeforePull(new PullContext("someone/private-model", "main", "c0ffee", "other", "manual", [], AcceptLicense: true));

        // the CLI words the same refusals with its flag (LicensePullGateTests runs `pull` end to end)
        string cli = PullCommand.AcceptAdvice(restrictive);
        Assert.Contains("pass --accept-license", cli);
        Assert.Contains("openweights models show llama-3.2-1b-instruct", cli);
        Assert.Contains("pass --accept-license", PullCommand.AcceptAdvice(gated));
    }

    [Fact]
    public void Fit_names_FitOptions_and_the_cli_names_target_and_bandwidth()
    {
        var shape = ModelShape.FromCatalog(ModelCatalog.Default.Get("llama-3.2-1b"));
        var noGpu = HardwareInfo.Synthetic(16L << 30, 25);
        var e = Assert.Throws<OpenWeightsOptionException>(() => FitEstimator.Estimate(shape, noGpu, new FitOptions { Target = FitTarget.Gpu }));
        NamesNoFlag(e.Message);
        Assert.Equal("FitOptions.Target", e.Option);

        var gpu = noGpu with { Gpus = [new GpuInfo("Test GPU", 24L << 30, 20L << 30)] };
        var est = FitEstimator.Estimate(shape, gpu, new FitOptions { Target = FitTarget.Gpu });
        Assert.Contains(FitEstimator.BandwidthUnknown, est.Assumptions);
        foreach (var a in est.Assumptions) NamesNoFlag(a);
        var w = new StringWriter();
        FitCommand.Print(w, est);
        Assert.Contains("pass --bandwidth for a speed estimate", w.ToString());

        NamesNoFlag(Assert.Throws<OpenWeightsException>(() => FitMeasure.SynthTypeFor("Q5_K_M")).Message);
        var (code, _, err) = CliTests.Run("fit", "llama-3.2-1b", "--measure", "--measure-tokens", "0");
        Assert.Equal(1, code);
        Assert.Contains("--measure-tokens", err);
    }

    [Fact]
    public void Merge_type_and_lora_spec_errors_name_no_flag_and_merge_names_quant()
    {
        var t = Assert.Throws<OpenWeightsException>(() => MergeType.Parse("q3_xx"));
        NamesNoFlag(t.Message);
        Assert.Contains("unknown merge type 'q3_xx'", t.Message);
        NamesNoFlag(Assert.Throws<OpenWeightsException>(() => LoraSpec.Parse(" ")).Message);

        var cli = Assert.Throws<OpenWeightsException>(() => MergeCommand.ParseType("q3_xx"));
        Assert.StartsWith("-q/--quant: unknown merge type 'q3_xx'", cli.Message);
    }

    [Fact]
    public void A_resume_with_another_seed_names_TrainOptions_Seed_and_tune_names_seed()
    {
        using var dir = new TempDir();
        var model = dir.File("m.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), model);
        var data = dir.File("d.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 8).Select(i => $"{{\"prompt\":\"Question {i}:\",\"completion\":\" answer {i * 7}\"}}"));
        string outDir = dir.File("out");
        string[] tune = ["tune", model, "--data", data, "-o", outDir, "-c", "32", "-r", "4", "--targets", "q_proj,v_proj", "--threads", "2", "--max-steps", "1"];
        var (code, _, err) = CliTests.Run([.. tune, "--seed", "7"]);
        Assert.True(code == 0, err);

        using (var m = DecoderModel.Load(model, repack: false))
        {
            var tok = Tokenizer.FromGguf(m.Source);
            var train = TrainingData.Pack(TrainingData.Load(data, tok), 32, true);
            var lm = new LoraModel(m, new LoraOptions { Rank = 4, Targets = ["q_proj", "v_proj"] }, 42) { Threads = 2 };
            var trainer = new LoraTrainer(lm, new TrainOptions { Seed = 42, SeqLen = 32, MaxSteps = 1 }, train, []);
            var e = Assert.Throws<OpenWeightsOptionException>(() => trainer.TryResume(outDir));
            NamesNoFlag(e.Message);
            Assert.Equal(LoraTrainer.SeedOption, e.Option);
            Assert.Contains("seed 7", e.Message);
        }

        (code, _, err) = CliTests.Run([.. tune, "--resume"]);
        Assert.Equal(1, code);
        Assert.Contains("seed 7; resume with the same --seed", err);
    }

    [Fact]
    public void Chat_data_without_a_template_names_the_argument_in_the_library()
    {
        using var dir = new TempDir();
        var model = dir.File("plain.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-qwen2") with { ChatTemplate = "" }, SynthType.Parse("f16"), model);
        var data = dir.File("chat.jsonl");
        File.WriteAllLines(data, ["{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}"]);
        using var m = DecoderModel.Load(model);
        var e = Assert.ThrowsAny<OpenWeightsOptionException>(() => TrainingData.Load(data, Tokenizer.FromGguf(m.Source)));
        NamesNoFlag(e.Message);
        Assert.Equal(TrainingData.ChatTemplateOption, e.Option);
        // `tune` says --chat-template FILE: TuneNewcomerTests.ChatDataForAModelWithoutATemplateNeedsChatTemplateFile
    }
}
