using System.Text;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Formats.Safetensors;
using OpenWeights.Tests.Fuzz;

namespace OpenWeights.Tests.Formats;

/// <summary>
/// Headers with invalid UTF-8, lone surrogates and values of the wrong JSON type fail with one-line user errors
/// (issue 19: they escaped as InvalidOperationException), and messages quote what came from the file.
/// </summary>
public class HostileHeaderTests
{
    private static void AssertUserError(Exception? e, string contains)
    {
        Assert.NotNull(e);
        Assert.True(e is OpenWeightsException, e.GetType().Name + ": " + e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\u001b', e.Message);
        Assert.Contains(contains, e.Message);
    }

    private static byte[] Safetensors(byte[] header, int dataBytes = 8) =>
        [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. new byte[dataBytes]];

    private static Exception? OpenSafetensors(TempDir dir, byte[] file)
    {
        string p = dir.File("x.safetensors");
        File.WriteAllBytes(p, file);
        return Record.Exception(() => SafetensorsFile.Open(p).Dispose());
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}""", "data_offsets must be two integers")]
    [InlineData("""{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}""", "invalid shape")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", "invalid shape")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}""", "data_offsets must be two integers")]
    [InlineData("""{"w":{"dtype":"1","shape":[2],"data_offsets":[0,8]}}""", "unknown dtype '1'")]
    [InlineData("""{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}""", "unknown dtype 'f32'")]
    [InlineData("""{"w":[],"x":1}""", "needs dtype")]
    [InlineData("""{"w\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", "x.safetensors: header holds an invalid value")]
    [InlineData("""{"__metadata__":{"k\udc00":"v"}}""", "x.safetensors: header holds an invalid value")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", "tensor 'w' appears twice")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}}""", "holds 8 bytes but its shape needs more")]
    [InlineData("""{"\u001b[2Jw":{"dtype":"F\u001b[31m","shape":[2],"data_offsets":[0,8]}}""", @"'\x1B[2Jw' has unknown dtype 'F\x1B[31m'")]
    public void Safetensors_headers_of_the_wrong_shape_are_one_line_errors(string header, string expected)
    {
        using var dir = new TempDir();
        AssertUserError(OpenSafetensors(dir, Safetensors(Encoding.UTF8.GetBytes(header))), expected);
    }

    [Fact]
    public void Safetensors_header_with_invalid_utf8_is_a_one_line_error()
    {
        using var dir = new TempDir();
        var header = Encoding.UTF8.GetBytes("""{"w?":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""");
        header[3] = 0xFF;
        AssertUserError(OpenSafetensors(dir, Safetensors(header)), "header is not valid UTF-8");
    }

    private static Exception? LoadTokenizer(TempDir dir, string json, int vocab = 16)
    {
        File.WriteAllText(dir.File("tokenizer.json"), json);
        return Record.Exception(() => HfTokenizer.AddMetadata(dir.Path, vocab, (_, _) => { }));
    }

    private const string SeedAdded = """[{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}]""";

    private static string Spm(string addedTokens) => FormatSeeds.SpmTokenizerText.Replace(SeedAdded, addedTokens);

    [Theory]
    [InlineData("""[1, 2]""", "an added token is not an object")]
    [InlineData("""[{"id": "0", "content": "<unk>"}]""", "an added token is not an object with an integer id")]
    [InlineData("""[{"id": 0, "content": 5}]""", "string content")]
    [InlineData("""[{"id": 1.5, "content": "x"}]""", "integer id")]
    [InlineData("""{"id": 0}""", "added_tokens is not a list")]
    public void Malformed_added_tokens_are_one_line_errors(string added, string expected)
    {
        using var dir = new TempDir();
        string json = Spm(added);
        Assert.Contains(added.Replace(" ", ""), json.Replace(" ", "")); // the replacement happened
        AssertUserError(LoadTokenizer(dir, json), expected);
    }

    [Theory]
    [InlineData("{\"type\": \"Prepend\"", "{\"type\": 5")]
    [InlineData("\"prepend\": \"▁\"", "\"prepend\": {}")]
    [InlineData("{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}", "[1]")]
    [InlineData("{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}", "{\"SpecialToken\": [1]}")]
    [InlineData("\"<unk>\": 0,", "\"<unk>\": \"0\",")]
    [InlineData("\"merges\": [\"▁ a\", \"a b\"]", "\"merges\": [\"▁ a\", 5]")]
    public void Values_of_the_wrong_json_type_anywhere_in_tokenizer_json_are_one_line_errors(string from, string to)
    {
        using var dir = new TempDir();
        Assert.Contains(from, FormatSeeds.SpmTokenizerText);
        AssertUserError(LoadTokenizer(dir, FormatSeeds.SpmTokenizerText.Replace(from, to)), "tokenizer.json");
    }

    [Fact]
    public void Byte_level_pre_tokenizer_of_the_wrong_json_type_is_a_one_line_error()
    {
        using var dir = new TempDir();
        var tok = FormatSeeds.ByteLevelTokenizerJson();
        tok["pre_tokenizer"]!["pretokenizers"]![0]!["type"] = 5;
        AssertUserError(LoadTokenizer(dir, tok.ToJsonString(), FormatSeeds.Vocab), "tokenizer.json holds a value of an unexpected type");
    }

    [Fact]
    public void Tokenizer_json_with_invalid_utf8_or_lone_surrogates_is_a_one_line_error()
    {
        using var dir = new TempDir();
        var bytes = Encoding.UTF8.GetBytes(FormatSeeds.SpmTokenizerText);
        int i = Array.IndexOf(bytes, (byte)'a');
        bytes[i] = 0xC0;
        File.WriteAllBytes(dir.File("tokenizer.json"), bytes);
        AssertUserError(Record.Exception(() => HfTokenizer.AddMetadata(dir.Path, 16, (_, _) => { })), "tokenizer.json is not valid UTF-8");
        Assert.Contains("\"▁a\": 6", FormatSeeds.SpmTokenizerText);
        AssertUserError(LoadTokenizer(dir, FormatSeeds.SpmTokenizerText.Replace("\"▁a\": 6", "\"\\ud800\": 6")), "tokenizer.json holds a value of an unexpected type");
    }

    [Theory]
    [InlineData("\"hidden_size\": 16", "\"hidden_size\": \"16\"", "hidden_size is not an integer")]
    [InlineData("\"rms_norm_eps\": 1E-05", "\"rms_norm_eps\": \"tiny\"", "rms_norm_eps is not a number")]
    [InlineData("\"rope_theta\": 10000", "\"rope_theta\": 1e999", "config.json")]
    [InlineData("\"factor\": 8", "\"factor\": [8]", "factor is not a number")]
    [InlineData("\"LlamaForCausalLM\"", "\"Llama\\u001b[31mForCausalLM\"", @"'Llama\x1B[31mForCausalLM'")]
    [InlineData("\"head_dim\": 8", "\"head_dim\": 7", "head_dim 7 is odd")]
    [InlineData("\"original_max_position_embeddings\": 64", "\"original_max_position_embeddings\": 1e300", "original_max_position_embeddings")]
    public void Config_json_values_of_the_wrong_type_are_one_line_errors(string from, string to, string expected)
    {
        using var dir = new TempDir();
        string ckpt = dir.File("ckpt");
        FormatSeeds.WriteCheckpoint(ckpt);
        string cfg = Path.Combine(ckpt, "config.json");
        string text = File.ReadAllText(cfg);
        Assert.Contains(from, text);
        File.WriteAllText(cfg, text.Replace(from, to));
        AssertUserError(Record.Exception(() => HfCheckpoint.Open(ckpt).Dispose()), expected);
    }
}
