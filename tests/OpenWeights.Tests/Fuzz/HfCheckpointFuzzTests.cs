using System.Text.Json.Nodes;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Models;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the Hugging Face checkpoint reader through its JSON files: config.json (and sometimes tokenizer_config.json)
/// of the tiny checkpoint in corpus/checkpoint mutated structurally. A checkpoint that opens must convert, and the GGUF
/// written must load as a model with a tokenizer: the reader may refuse a checkpoint, but what it accepts must work.
/// </summary>
public class HfCheckpointFuzzTests(ITestOutputHelper output)
{
    public static bool Load(string dir, string gguf)
    {
        using (var h = HfCheckpoint.Open(dir))
        {
            _ = Tokenizer.FromGguf(h);
            HfConverter.Convert(h, gguf, "f16", threads: 1);
        }
        // accepted means usable: a converted file that does not load is a failure (issue 19), not a user error
        try
        {
            using var f = GgufFile.Open(gguf);
            using (var m = DecoderModel.Load(f, repack: false)) Assert.Equal(FormatSeeds.Layers, m.Config.Layers);
            _ = Tokenizer.FromGguf(f).Encode("hello world");
        }
        catch (OpenWeightsException e)
        {
            throw new Xunit.Sdk.XunitException($"the checkpoint was accepted and converted, but the GGUF does not load: {e.Message}");
        }
        return true;
    }

    private static string CopySeed(TempDir dir)
    {
        string src = Path.Combine(FormatFuzz.CorpusDir(), "checkpoint"), dst = dir.File("ckpt");
        Directory.CreateDirectory(dst);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        return dst;
    }

    [Fact]
    public void Seed_checkpoint_loads_and_converts()
    {
        using var dir = new TempDir();
        Assert.True(Load(CopySeed(dir), dir.File("out.gguf")));
    }

    [Fact]
    public void Mutated_config_json_loads_or_fails_with_one_line()
    {
        using var dir = new TempDir();
        string ckpt = CopySeed(dir), cfgPath = Path.Combine(ckpt, "config.json"), tcPath = Path.Combine(ckpt, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllBytes(cfgPath))!;
        var tokConfig = JsonNode.Parse(File.ReadAllBytes(tcPath))!;
        byte[] goodCfg = File.ReadAllBytes(cfgPath), goodTc = File.ReadAllBytes(tcPath);
        byte[]? last = null;
        FormatFuzz.Run("config.json", (r, _) =>
        {
            bool tc = r.Next(5) == 0;
            // a regression case is a config.json; a tokenizer_config.json mutation is saved too (named by the run)
            File.WriteAllBytes(cfgPath, tc ? goodCfg : last = FormatMutator.Json(config, r));
            File.WriteAllBytes(tcPath, tc ? last = FormatMutator.Json(tokConfig, r) : goodTc);
            return Load(ckpt, dir.File("out.gguf"));
        }, iterations: 1500, seconds: 3, log: output, lastInput: () => last);
    }

    [Fact]
    public void Regression_inputs_fail_with_one_line()
    {
        using var dir = new TempDir();
        string ckpt = CopySeed(dir);
        byte[] goodCfg = File.ReadAllBytes(Path.Combine(ckpt, "config.json")), goodTc = File.ReadAllBytes(Path.Combine(ckpt, "tokenizer_config.json"));
        foreach (var (kind, target) in new[] { ("config", "config.json"), ("tokenizer_config", "tokenizer_config.json") })
            foreach (var file in FormatFuzz.Regressions(kind))
            {
                File.WriteAllBytes(Path.Combine(ckpt, "config.json"), goodCfg);
                File.WriteAllBytes(Path.Combine(ckpt, "tokenizer_config.json"), goodTc);
                File.Copy(file, Path.Combine(ckpt, target), overwrite: true);
                var e = Record.Exception(() => Load(ckpt, dir.File("out.gguf")));
                Assert.True(e is null || FormatFuzz.IsUserError(e), $"{kind}/{Path.GetFileName(file)}: {e}");
            }
    }
}
