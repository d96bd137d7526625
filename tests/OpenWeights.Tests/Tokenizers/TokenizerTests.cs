using System.Diagnostics;
using System.Text;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Tokenizers;

public sealed class TokenizerTests(ITestOutputHelper output)
{
    private static Tokenizer Load(string relative) => Tokenizer.FromGguf(TestData.Require(relative));
    private const string Spm = "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf";
    private const string Gpt2 = "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf";
    private const string Phi3 = "tokenizers/llama.cpp-vocab/ggml-vocab-phi-3.gguf";

    [Fact]
    public void Stories260K_prompt_encodes_to_the_expected_ids()
    {
        var tok = Load("models/stories260K.gguf");
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal([1, 403, 407, 261, 378], tok.Encode("Once upon a time"));
        Assert.Equal("Once upon a time", tok.Decode(tok.Encode("Once upon a time", addSpecial: false)));
        Assert.Equal(1, tok.Bos);
        Assert.Equal(2, tok.Eos);
        Assert.Contains(2, tok.EndOfGeneration);
    }

    [Fact]
    public void Bos_and_eos_follow_the_model_defaults_and_flags()
    {
        var spm = Load(Spm);
        Assert.True(spm.AddBos);
        Assert.False(spm.AddEos);
        Assert.Equal([1, 15043, 3186], spm.Encode("Hello world"));
        Assert.Equal([15043, 3186], spm.Encode("Hello world", addSpecial: false));
        Assert.Equal([1], spm.Encode(""));
        Assert.Empty(spm.Encode("", addSpecial: false));

        var gpt2 = Load(Gpt2); // no add_bos_token: byte-level BPE adds nothing by default
        Assert.False(gpt2.AddBos);
        Assert.Equal(gpt2.Encode("Hello world", addSpecial: false), gpt2.Encode("Hello world"));
        Assert.Equal(50256, gpt2.Eos);
        Assert.Contains(50256, gpt2.EndOfGeneration);

        var coder = Load("tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf"); // add_bos_token = true
        Assert.Equal(32013, coder.Encode("x")[0]);
        Assert.Equal(32014, coder.Eos);
        Assert.Equal(32014, coder.Eot); // detected by text like llama.cpp: <｜end▁of▁sentence｜> (<|EOT|> is not in its list)
    }

    [Fact]
    public void Special_tokens_are_parsed_only_when_asked()
    {
        var spm = Load(Spm);
        Assert.Equal([15043, 2, 1], spm.Encode("Hello</s><s>", addSpecial: false, parseSpecial: true));
        var plain = spm.Encode("Hello</s><s>", addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(2, plain);
        Assert.Equal("Hello</s><s>", spm.Decode(plain));

        var phi3 = Load(Phi3);
        var chat = phi3.Encode("<|user|>\nHi<|end|>\n<|assistant|>", addSpecial: true, parseSpecial: true);
        Assert.Equal(1, chat[0]);
        Assert.Equal(32010, chat[1]);
        Assert.Contains(32007, chat);
        Assert.Equal(32001, chat[^1]);
        Assert.Contains(32007, phi3.EndOfGeneration); // <|end|>
        Assert.Contains(32000, phi3.EndOfGeneration); // <|endoftext|> (also EOS)
        Assert.DoesNotContain(32010, phi3.Encode("<|user|>", parseSpecial: false));
        Assert.NotNull(phi3.ChatTemplate);
    }

    [Fact]
    public void Decode_follows_llama_detokenize()
    {
        var spm = Load(Spm);
        Assert.Equal("Hello world", spm.Decode([15043, 3186]));               // leading space of the first piece removed
        Assert.Equal("<s> Hello world", spm.Decode([1, 15043, 3186]));        // after BOS llama.cpp keeps it
        Assert.Equal(" Hello world", spm.Decode([1, 15043, 3186], skipSpecial: true));
        Assert.Equal("Hello", spm.Decode([15043, 2], skipSpecial: true));
        Assert.Equal("\u00e9", spm.Decode(spm.Encode("\u00e9", addSpecial: false)));

        var gpt2 = Load(Gpt2); // clean_up_tokenization_spaces
        Assert.Equal("Hello, world! I'm here.", gpt2.Decode(gpt2.Encode("Hello , world ! I 'm here .")));
        Assert.Equal(" Hello", Encoding.UTF8.GetString(gpt2.TokenBytes(gpt2.Encode(" Hello")[0])));
        Assert.Throws<ArgumentOutOfRangeException>(() => gpt2.Decode([gpt2.VocabSize]));
    }

    public static TheoryData<string> RoundTripFiles => new(
        Spm, Phi3, Gpt2, "tokenizers/llama.cpp-vocab/ggml-vocab-baichuan.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-neox.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-mpt.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-falcon.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-starcoder.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-refact.gguf",
        "tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf", "tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf",
        "models/stories260K.gguf");

    [Theory]
    [MemberData(nameof(RoundTripFiles))]
    public void Decode_of_encode_round_trips_war_and_peace(string relative)
    {
        var tok = Load(relative);
        var text = File.ReadAllText(TestData.Require("corpus/war-and-peace.txt"));
        var chunks = Enumerable.Range(0, 20).Select(i => text.Substring(i * 150_000, 3000))
            .Append("Emoji 🦙🚀😶‍🌫️ and CJK 我想在apple工作 한국어 — “quotes” naïve café\n\ttabs").ToList();
        foreach (var chunk in chunks)
        {
            var ids = tok.Encode(chunk, addSpecial: false);
            var bytes = ids.SelectMany(tok.TokenBytes).ToArray();
            string lossless = tok.AddSpacePrefix && bytes.Length > 0 && bytes[0] == ' ' ? Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1) : Encoding.UTF8.GetString(bytes);
            Assert.Equal(chunk, lossless);
            if (!tok.CleanSpaces) Assert.Equal(chunk, tok.Decode(ids)); // clean-up of " ," etc. is lossy by design
        }
    }

    [Theory]
    [InlineData(Spm)]
    [InlineData(Gpt2)]
    [InlineData("tokenizers/llama.cpp-vocab/ggml-vocab-baichuan.gguf")]
    [InlineData("models/stories260K.gguf")]
    public void Streaming_decoder_never_emits_half_a_character(string relative)
    {
        var tok = Load(relative);
        const string text = "Hi 🦙 llama, 😶‍🌫️ fog; 世界你好 ✅ done. Ünïcödé 𝐀𝐁𝐂 \u0301x";
        var ids = tok.Encode(text, addSpecial: true);
        var dec = new StreamingDecoder(tok, skipSpecial: true);
        var sb = new StringBuilder();
        int empties = 0;
        foreach (var id in ids)
        {
            var piece = dec.Push(id);
            Assert.DoesNotContain('\uFFFD', piece);
            if (piece.Length > 0) Assert.False(char.IsHighSurrogate(piece[^1]), "split surrogate pair");
            if (piece.Length == 0) empties++;
            sb.Append(piece);
        }
        sb.Append(dec.Flush());
        Assert.Equal(tok.Decode(ids, skipSpecial: true), sb.ToString());
        if (tok.Model == "llama") Assert.True(empties > 0, "expected some byte tokens that hold back an incomplete character");
        output.WriteLine($"{Path.GetFileName(relative)}: {ids.Length} tokens, {empties} held back");
    }

    [Fact]
    public void Streaming_decoder_holds_back_split_bytes_and_flushes_garbage_as_replacement()
    {
        var tok = Load(Spm);
        int B(byte b) => tok.TokenToId($"<0x{b:X2}>");
        var dec = new StreamingDecoder(tok);
        Assert.Equal("", dec.Push(B(0xF0)));
        Assert.Equal("", dec.Push(B(0x9F)));
        Assert.Equal("", dec.Push(B(0xA6)));
        Assert.Equal("🦙", dec.Push(B(0x99)));
        Assert.Equal("", dec.Push(B(0xE4)));
        Assert.Equal("\uFFFD", dec.Flush());
        Assert.Equal("", dec.Flush());
    }

    [Fact]
    public void Unsupported_tokenizer_models_fail_with_a_clear_message()
    {
        using var dir = new TempDir();
        var path = dir.File("t.gguf");
        new OpenWeights.Formats.Gguf.GgufWriter().Set("general.architecture", "llama").Set("tokenizer.ggml.model", "rwkv")
            .Set("tokenizer.ggml.tokens", new[] { "a", "b" }).Write(path);
        var e = Assert.Throws<OpenWeightsException>(() => Tokenizer.FromGguf(path));
        Assert.Contains("'rwkv' is not supported", e.Message);
    }
}
