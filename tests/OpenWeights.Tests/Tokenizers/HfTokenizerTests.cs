using System.Text;
using OpenWeights.Formats;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

/// <summary>
/// What the real tokenizers (<see cref="RealTokenizerTests"/>) taught HfTokenizer and our tokenizers, on tiny
/// tokenizer.json files, so that it is checked without npm: DeepSeek-V3's pre-tokenizer, Qwen's NFC normalizer, Gemma's
/// whitespace tokens, convert_hf_to_gguf's control-looking added tokens.
/// </summary>
public sealed class HfTokenizerTests
{
    private sealed class MetadataOf(Dictionary<string, object> values) : IModelMetadata
    {
        public string Path => "tokenizer.json";
        public IReadOnlyDictionary<string, object> Metadata => values;
    }

    private static Dictionary<string, object> Convert(string tokenizerJson, int vocabSize)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer.json"), tokenizerJson);
        var meta = new Dictionary<string, object>();
        HfTokenizer.AddMetadata(dir.Path, vocabSize, (k, v) => meta[k] = v);
        return meta;
    }

    /// <summary>A byte-level vocabulary: the 256 byte characters (ids 0-255) and the given merges' results after them.</summary>
    private static string ByteLevelJson(string normalizer, string preTokenizer, string[] merges, string addedTokens = "[]")
    {
        var vocab = new List<string>();
        for (int b = 0; b < 256; b++) vocab.Add(((char)ByteLevel.ByteToChar[b]).ToString());
        foreach (var m in merges) vocab.Add(m.Replace(" ", "", StringComparison.Ordinal));
        string Q(string s) => System.Text.Json.JsonSerializer.Serialize(s);
        return "{\"added_tokens\": " + addedTokens + ", \"normalizer\": " + normalizer + ", \"pre_tokenizer\": " + preTokenizer
            + ", \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {"
            + string.Join(", ", vocab.Select((t, i) => $"{Q(t)}: {i}")) + "}, \"merges\": [" + string.Join(", ", merges.Select(Q)) + "]}}";
    }

    [Fact]
    public void DeepSeek_V3_pre_tokenizer_is_recognised_with_literal_line_breaks_in_its_regex()
    {
        // as in DeepSeek-V3's tokenizer.json: the third Split holds a CR and an LF themselves, not \r \n escapes
        string pre = """
            {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
              {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
              {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
              {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
            """;
        var meta = Convert(ByteLevelJson("null", pre, []), 256);
        Assert.Equal("deepseek-v3", meta["tokenizer.ggml.pre"]);
        Assert.False(meta.ContainsKey(HfTokenizer.NormalizerKey));
    }

    [Fact]
    public void An_NFC_normalizer_composes_the_text_before_it_is_split()
    {
        string pre = """{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}""";
        var meta = Convert(ByteLevelJson("""{"type": "NFC"}""", pre, ["Ã ©"]), 257);
        Assert.Equal("qwen2", meta["tokenizer.ggml.pre"]);
        Assert.Equal("NFC", meta[HfTokenizer.NormalizerKey]);
        var tok = Tokenizer.FromGguf(new MetadataOf(meta));
        Assert.Equal(NormalizationForm.FormC, tok.Normalization);
        Assert.Equal([256], tok.Encode("e\u0301", addSpecial: false));         // composed to é, one merged token
        Assert.Equal([256], tok.Encode("\u00E9", addSpecial: false));
        Assert.Equal("\u00E9", tok.Decode(tok.Encode("e\u0301", addSpecial: false)));
        Assert.Equal([tok.TokenToId("e"), 256], tok.Encode("ee\u0301", addSpecial: false));

        // without the normalizer (llama.cpp's reading of the same vocabulary) the accent stays apart
        meta.Remove(HfTokenizer.NormalizerKey);
        var plain = Tokenizer.FromGguf(new MetadataOf(meta));
        Assert.Equal(3, plain.Encode("e\u0301", addSpecial: false).Length);
    }

    [Fact]
    public void Gemma_whitespace_tokens_are_written_with_spaces_and_reached_from_spaces_or_a_literal_U2581()
    {
        // SentencePiece-style BPE without a dummy prefix (Gemma 3): "▁▁" is an added token that is not special
        var meta = Convert("""
            {"added_tokens": [{"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
                              {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true},
                              {"id": 4, "content": "<unused0>", "special": false}, {"id": 5, "content": "▁▁", "special": false},
                              {"id": 6, "content": "<｜fim▁hole｜>", "special": false}, {"id": 7, "content": "[multimodal]", "special": false}],
             "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
             "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
             "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
                       "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<unused0>": 4, "▁▁": 5, "<｜fim▁hole｜>": 6, "[multimodal]": 7,
                                 "<0x00>": 8, "▁": 9, "a": 10, "▁a": 11},
                       "merges": ["▁ ▁", "▁ a"]}}
            """, 12);
        var tokens = (string[])meta["tokenizer.ggml.tokens"];
        var types = (int[])meta["tokenizer.ggml.token_type"];
        Assert.Equal("  ", tokens[5]);                     // convert_hf_to_gguf's "pre-normalize user-defined spaces"
        Assert.Equal(HfTokenizer.UserDefined, types[5]);
        Assert.Equal("<｜fim▁hole｜>", tokens[6]);          // looks special: a control token, its ▁ kept
        Assert.Equal(HfTokenizer.Control, types[6]);
        Assert.Equal(HfTokenizer.Control, types[4]);       // <unused0>
        Assert.Equal(HfTokenizer.UserDefined, types[7]);
        Assert.Equal(false, meta["tokenizer.ggml.add_space_prefix"]);

        var tok = Tokenizer.FromGguf(new MetadataOf(meta));
        Assert.Equal([10, 5, 10], tok.Encode("a  a", addSpecial: false));
        Assert.Equal([10, 5, 10], tok.Encode("a\u2581\u2581a", addSpecial: false)); // Hugging Face: ▁ and space are one symbol
        Assert.Equal([10, 5, 10], tok.Encode("a\u2581 a", addSpecial: false));
        Assert.Equal([10, 11], tok.Encode("a a", addSpecial: false));
        Assert.Equal("a  a a", tok.Decode([10, 5, 10, 11]));
    }
}
