using System.Text.Json;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Cli;

public class CliTests
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void MissingModelFileIsOneLineError()
    {
        var (code, _, err) = Run("run", "/nonexistent/model.gguf", "hi");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: model file not found: /nonexistent/model.gguf", err.Trim());
    }

    [Fact]
    public void DirectoryInsteadOfFileIsOneLineError()
    {
        using var dir = new TempDir();
        foreach (var cmd in new[] { "info", "tokenize" })
        {
            var (code, _, err) = cmd == "info" ? Run(cmd, dir.Path) : Run(cmd, dir.Path, "x");
            Assert.Equal(1, code);
            Assert.Contains("is a directory", err);
            Assert.Single(err.Trim().Split('\n'));
        }
    }

    [Fact]
    public void CorruptFileIsOneLineErrorWithoutStackTrace()
    {
        using var dir = new TempDir();
        var p = dir.File("bad.gguf");
        File.WriteAllBytes(p, new byte[100]);
        var (code, _, err) = Run("info", p);
        Assert.Equal(1, code);
        Assert.Contains("not a GGUF file", err);
        Assert.DoesNotContain(" at ", err);
    }

    [Fact]
    public void UnknownFlagFails()
    {
        var (code, _, err) = Run("info", "x.gguf", "--bogus");
        Assert.NotEqual(0, code);
        Assert.Contains("--bogus", err);
    }

    [Fact]
    public void BadSamplingValueIsRefused()
    {
        var p = TestData.Require("models/stories260K.gguf");
        var (code, _, err) = Run("run", p, "hi", "--top-p", "1.5");
        Assert.Equal(1, code);
        Assert.Contains("top-p", err);
    }

    [Fact]
    public void FitEstimatesTheReadmeModel()
    {
        // stories260K's ffn rows (172) are no multiple of a 32-block: the estimate counts them as F16 instead of failing
        var p = TestData.Require("models/stories260K.gguf");
        var (code, output, err) = Run("fit", p);
        Assert.True(code == 0, err);
        Assert.Contains("verdict        fits", output);
        Assert.Contains("Q8_0", output);
    }

    [Fact]
    public void RunStreamsGreedyContinuation()
    {
        var p = TestData.Require("models/stories260K.gguf");
        var (code, output, _) = Run("run", p, "Once upon a time", "--temp", "0", "-n", "12", "--threads", "1");
        Assert.Equal(0, code);
        Assert.StartsWith(", there was a little girl named Lily.", output);
    }

    [Fact]
    public void InfoAndTokenizeReportJson()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, outp, err) = Run("synth", "--preset", "tiny-qwen2", "--type", "q8_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        Assert.Contains("wrote", outp);

        (code, outp, _) = Run("info", path, "--json");
        Assert.Equal(0, code);
        var info = JsonDocument.Parse(outp).RootElement;
        Assert.Equal("qwen2", info.GetProperty("architecture").GetString());
        Assert.Equal(2, info.GetProperty("layers").GetInt32());
        Assert.Equal(256, info.GetProperty("embedding_length").GetInt32());
        var p = SynthPreset.Get("tiny-qwen2");
        long expectedParams = (long)p.VocabSize * p.Dim + p.Dim + p.Layers * (2L * p.Dim + 2L * p.Dim * p.Dim + 2L * p.Dim * p.KvHeads * p.HeadDim
            + p.Dim + 2L * p.KvHeads * p.HeadDim + 3L * p.Dim * p.FfnDim);
        Assert.Equal(expectedParams, info.GetProperty("parameters").GetInt64());
        Assert.Contains(info.GetProperty("tensor_types").EnumerateArray(), t => t.GetProperty("type").GetString() == "Q8_0");
        Assert.Equal(2L * 2 * 128 * 2048 * 2, info.GetProperty("memory")[0].GetProperty("kv_cache_bytes").GetInt64()); // F16 at its 2048-token context
        Assert.Equal(2L * 2 * 128 * 2, info.GetProperty("kv_cache").GetProperty("bytes_per_token").GetInt64());

        // K in q8_0 (34 bytes per 32), V in f32
        (code, outp, _) = Run("info", path, "--cache-type-k", "q8_0", "--cache-type-v", "f32", "--json");
        Assert.Equal(0, code);
        info = JsonDocument.Parse(outp).RootElement;
        Assert.Equal(2L * (128 / 32 * 34 + 128 * 4), info.GetProperty("kv_cache").GetProperty("bytes_per_token").GetInt64());
        Assert.Equal("q8_0", info.GetProperty("kv_cache").GetProperty("type_k").GetString());
        (code, outp, _) = Run("info", path, "--cache-type-k", "q8_0");
        Assert.Equal(0, code);
        Assert.Contains("KV cache       0.8 KiB per token (K q8_0, V f16)", outp);

        (code, outp, _) = Run("tokenize", path, "hello world", "--json");
        Assert.Equal(0, code);
        var tok = JsonDocument.Parse(outp).RootElement;
        Assert.Equal(tok.GetProperty("tokens").GetArrayLength(), tok.GetProperty("count").GetInt32());
        Assert.Equal("hello world", string.Concat(tok.GetProperty("tokens").EnumerateArray().Select(t => t.GetProperty("text").GetString())));
    }

    [Fact]
    public void SynthRefusesUnknownPresetAndType()
    {
        using var dir = new TempDir();
        var (code, _, err) = Run("synth", "--preset", "gpt-5", "-o", dir.File("x.gguf"));
        Assert.Equal(1, code);
        Assert.Contains("unknown preset", err);
        (code, _, err) = Run("synth", "--preset", "tiny-llama", "--type", "q9_9", "-o", dir.File("x.gguf"));
        Assert.Equal(1, code);
        Assert.Contains("unknown type", err);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    /// <summary>`synth --context N` writes the trained context (long-context benchmark files); out of range is one line.</summary>
    [Fact]
    public void SynthWritesTheContextAskedFor()
    {
        using var dir = new TempDir();
        var path = dir.File("long.gguf");
        var (code, _, err) = Run("synth", "--preset", "tiny-llama", "--context", "65536", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        (code, var outp, _) = Run("info", path, "--json");
        Assert.Equal(0, code);
        Assert.Equal(65536, JsonDocument.Parse(outp).RootElement.GetProperty("context_length").GetInt32());
        (code, _, err) = Run("synth", "--preset", "tiny-llama", "--context", "0", "-o", dir.File("zero.gguf"));
        Assert.Equal(1, code);
        Assert.Contains("--context 0", err);
        Assert.DoesNotContain('\n', err.Trim());
        Assert.False(File.Exists(dir.File("zero.gguf")));
    }
}

public class BenchCommandTests
{
    [Fact]
    public void BenchReportsPositiveSpeedsAndMemoryAsJson()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, _, err) = CliTests.Run("synth", "--preset", "tiny-llama", "--type", "q8_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);

        (code, var outp, err) = CliTests.Run("bench", path, "--threads", "1", "--prompt", "16", "--gen", "4", "--json");
        Assert.True(code == 0, err);
        var r = JsonDocument.Parse(outp).RootElement;
        Assert.Equal(16, r.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(4, r.GetProperty("generated_tokens").GetInt32());
        Assert.Equal(1, r.GetProperty("threads").GetInt32());
        Assert.True(r.GetProperty("prefill_tokens_per_second").GetDouble() > 0);
        Assert.True(r.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.True(r.GetProperty("peak_memory_bytes").GetInt64() > 0);
        Assert.True(r.GetProperty("load_seconds").GetDouble() > 0);
        Assert.True(r.GetProperty("file_bytes").GetInt64() > 0);
        Assert.Equal(OpenWeights.Tensors.Kernels.QuantDot.KernelPath, r.GetProperty("kernels").GetString()); // the path that ran
    }

    [Fact]
    public void BenchTextOutputNamesEachMeasurement()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, _, err) = CliTests.Run("synth", "--preset", "tiny-llama", "--type", "q4_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        (code, var outp, err) = CliTests.Run("bench", path, "--threads", "1", "--prompt", "8", "--gen", "2");
        Assert.True(code == 0, err);
        foreach (var word in new[] { "load", "prefill", "decode", "peak mem", "kernels" }) Assert.Contains(word, outp);
    }

    [Fact]
    public void BenchTakesTheContextAndTheCacheTypes()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, _, err) = CliTests.Run("synth", "--preset", "tiny-llama", "--type", "q8_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        (code, var outp, err) = CliTests.Run("bench", path, "--threads", "1", "--prompt", "8", "--gen", "2", "--ctx", "300", "--cache-type", "q8_0", "--cache-type-v", "f16", "--json");
        Assert.True(code == 0, err);
        var r = JsonDocument.Parse(outp).RootElement;
        Assert.Equal(300, r.GetProperty("context_size").GetInt32());
        Assert.Equal("q8_0", r.GetProperty("cache_type_k").GetString());
        Assert.Equal("f16", r.GetProperty("cache_type_v").GetString());
        (code, _, err) = CliTests.Run("bench", path, "--prompt", "8", "--gen", "2", "--ctx", "9");
        Assert.Equal(1, code);
        Assert.Contains("--ctx 9", err);
    }

    [Theory]
    [InlineData("bench", "--cache-type")]
    [InlineData("bench", "--cache-type-k")]
    [InlineData("run", "--cache-type-v")]
    [InlineData("info", "--cache-type-k")]
    public void UnknownCacheTypeIsAnErrorNamingTheValues(string command, string option)
    {
        var args = command == "run" ? new[] { command, "/nonexistent/model.gguf", "hi", option, "q4_0" } : [command, "/nonexistent/model.gguf", option, "q4_0"];
        var (code, _, err) = CliTests.Run(args);
        Assert.NotEqual(0, code);
        Assert.Contains($"{option}: unknown KV cache type 'q4_0' (expected f32, f16 or q8_0)", err);
    }

    [Fact]
    public void BenchMissingModelIsOneLineError()
    {
        var (code, _, err) = CliTests.Run("bench", "/nonexistent/model.gguf");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: model file not found: /nonexistent/model.gguf", err.Trim());
    }

    [Fact]
    public void BenchRefusesPromptBeyondContextAndBadCounts()
    {
        using var dir = new TempDir();
        var path = dir.File("tiny.gguf");
        var (code, _, err) = CliTests.Run("synth", "--preset", "tiny-llama", "--type", "q8_0", "-o", path, "--threads", "1");
        Assert.True(code == 0, err);
        (code, _, err) = CliTests.Run("bench", path, "--prompt", "4000", "--gen", "128");
        Assert.Equal(1, code);
        Assert.Contains("context length", err);
        Assert.Single(err.Trim().Split('\n'));
        (code, _, err) = CliTests.Run("bench", path, "--gen", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--gen", err);
    }
}
