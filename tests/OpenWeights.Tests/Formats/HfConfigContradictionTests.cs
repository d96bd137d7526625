using System.Text.Json.Nodes;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tests.Fuzz;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// `convert` refuses a checkpoint that contradicts its own config.json before writing anything (issue 19: it used to exit 0
/// and write a GGUF that could not be loaded), and writes atomically: no output and no temporary file after a failure or a
/// cancellation, an existing output untouched.
/// </summary>
public class HfConfigContradictionTests
{
    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string Checkpoint(TempDir dir, Action<JsonObject>? config = null)
    {
        string ckpt = dir.File("ckpt");
        FormatSeeds.WriteCheckpoint(ckpt);
        if (config is not null)
        {
            string p = Path.Combine(ckpt, "config.json");
            var c = JsonNode.Parse(File.ReadAllText(p))!.AsObject();
            config(c);
            File.WriteAllText(p, c.ToJsonString());
        }
        return ckpt;
    }

    private static void AssertRefused(TempDir dir, string ckpt, string expected)
    {
        string outFile = dir.File("out.gguf");
        var (code, stdout, stderr) = Cli("convert", ckpt, "-o", outFile, "-t", "1");
        Assert.True(code == 1, $"exit {code}: {stdout} {stderr}");
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("openweights: error: ", stderr);
        Assert.Contains("does not match its config.json", stderr);
        Assert.Contains(expected, stderr);
        Assert.False(File.Exists(outFile), "no GGUF is written for a checkpoint that contradicts its config");
        Assert.Empty(Directory.GetFiles(dir.Path, "out.gguf*"));
    }

    [Fact]
    public void Layer_count_larger_than_the_file_is_refused_naming_the_first_missing_tensor_and_counting_the_others()
    {
        using var dir = new TempDir();
        // 3 layers in the config, 1 in the file: 2 layers × 9 required tensors are missing
        AssertRefused(dir, Checkpoint(dir, c => c["num_hidden_layers"] = 3), "tensor model.layers.1.input_layernorm.weight is missing (and 17 more problems)");
    }

    [Fact]
    public void Layer_count_smaller_than_the_file_is_refused()
    {
        using var dir = new TempDir();
        string ckpt = Checkpoint(dir);
        // add a second layer's norm to the file: config.json still says 1 layer
        Rewrite(ckpt, (name, _) => true, w => w.Add("model.layers.1.input_layernorm.weight", [FormatSeeds.Hidden], new float[FormatSeeds.Hidden]));
        AssertRefused(dir, ckpt, "unexpected tensor 'model.layers.1.input_layernorm.weight' (config.json: num_hidden_layers = 1)");
    }

    [Fact]
    public void Hidden_size_vocab_size_and_head_dim_contradictions_are_refused()
    {
        using var dir = new TempDir();
        AssertRefused(dir, Checkpoint(dir, c => c["hidden_size"] = 32),
            $"tensor model.embed_tokens.weight has shape [{FormatSeeds.Vocab}, {FormatSeeds.Hidden}] where config.json implies [{FormatSeeds.Vocab}, 32] (vocab_size, hidden_size)");
        Directory.Delete(dir.File("ckpt"), true);
        AssertRefused(dir, Checkpoint(dir, c => c["vocab_size"] = 300), "tensor model.embed_tokens.weight has shape [272, 16] where config.json implies [300, 16]");
        Directory.Delete(dir.File("ckpt"), true);
        AssertRefused(dir, Checkpoint(dir, c => c["head_dim"] = 4), "tensor model.layers.0.self_attn.q_proj.weight has shape [16, 16] where config.json implies [8, 16] (num_attention_heads × head_dim, hidden_size)");
    }

    [Fact]
    public void Missing_projection_is_refused()
    {
        using var dir = new TempDir();
        string ckpt = Checkpoint(dir);
        Rewrite(ckpt, (name, _) => name != "model.layers.0.mlp.up_proj.weight", null);
        AssertRefused(dir, ckpt, "tensor model.layers.0.mlp.up_proj.weight is missing");
    }

    [Fact]
    public void Untied_config_without_lm_head_is_refused()
    {
        using var dir = new TempDir();
        AssertRefused(dir, Checkpoint(dir, c => c["tie_word_embeddings"] = false), "tensor lm_head.weight is missing (tie_word_embeddings is false)");
    }

    /// <summary>Rewrites model.safetensors keeping the tensors <paramref name="keep"/> accepts, then lets <paramref name="add"/> add some.</summary>
    private static void Rewrite(string ckpt, Func<string, SafetensorsTensorInfo, bool> keep, Action<SafetensorsWriter>? add)
    {
        string p = Path.Combine(ckpt, "model.safetensors");
        var w = new SafetensorsWriter();
        using (var f = SafetensorsFile.Open(p))
            foreach (var t in f.Tensors)
                if (keep(t.Name, t)) w.Add(t.Name, t.DType, t.Shape, f.TensorData(t).ToArray());
        add?.Invoke(w);
        w.Write(p);
    }

    [Fact]
    public void Cancelled_convert_leaves_no_file_and_keeps_an_existing_output()
    {
        using var dir = new TempDir();
        string ckpt = Checkpoint(dir), outFile = dir.File("out.gguf");
        File.WriteAllText(outFile, "previous");
        using var cts = new CancellationTokenSource();
        int tensors = 0;
        using (var h = HfCheckpoint.Open(ckpt))
            Assert.ThrowsAny<OperationCanceledException>(() => HfConverter.Convert(h, outFile, "f16", 1, _ => { if (++tensors == 3) cts.Cancel(); }, ct: cts.Token));
        Assert.Equal(3, tensors);
        Assert.Equal("previous", File.ReadAllText(outFile));
        Assert.Equal([outFile], Directory.GetFiles(dir.Path, "out.gguf*"));
    }

    [Fact]
    public void Failed_write_leaves_no_temporary_file()
    {
        using var dir = new TempDir();
        string outFile = dir.File("x.gguf");
        var w = new GgufWriter().Set("general.architecture", "llama");
        w.AddTensor("t", GgmlType.F32, [4], 16, s => { s.Write(new byte[8]); throw new IOException("disk full (simulated)"); });
        Assert.Throws<IOException>(() => w.Write(outFile));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void A_type_the_rows_are_too_short_for_is_a_user_error_before_anything_is_written()
    {
        using var dir = new TempDir();
        string ckpt = Checkpoint(dir), outFile = dir.File("out.gguf");
        using var h = HfCheckpoint.Open(ckpt);
        // rows of 16 elements cannot hold Q8_0 blocks of 32
        var e = Assert.ThrowsAny<OpenWeightsException>(() => HfConverter.Convert(h, outFile, "q8_0", 1));
        Assert.Contains("cannot convert to q8_0", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path, "out.gguf*"));
    }

    [Fact]
    public void Temporaries_of_a_killed_writer_are_removed_by_the_next_write()
    {
        using var dir = new TempDir();
        string ckpt = Checkpoint(dir), outFile = dir.File("out.gguf");
        // int.MaxValue is never a running process id: as if a convert had been killed mid-write
        string stale = outFile + ".tmp-2147483647-deadbeef", mine = outFile + $".tmp-{Environment.ProcessId}-0badf00d";
        File.WriteAllText(stale, "half");
        File.WriteAllText(mine, "in progress elsewhere in this process");
        var (code, _, err) = Cli("convert", ckpt, "-o", outFile, "-t", "1");
        Assert.True(code == 0, err);
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(mine));
        using var g = GgufFile.Open(outFile);
        Assert.Equal("llama", g.GetString("general.architecture"));
    }
}
