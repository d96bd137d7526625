using OpenWeights.Formats.Gguf;
using OpenWeights.Models;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Models;

/// <summary>
/// A GGUF whose metadata contradicts itself (or its tensors) is refused at load with a one-line
/// <see cref="InvalidModelFileException"/> naming the key, as llama.cpp refuses it, instead of loading and failing
/// with an internal error (IndexOutOfRangeException, ArgumentException) at the first token. The files are tiny-qwen2
/// (vocab 1024, dim 256, 4 heads of 64, 2 kv heads, ffn 512) rewritten by <see cref="GgufWriter"/> with one key changed.
/// </summary>
public class InconsistentMetadataTests
{
    public static TheoryData<string, string, object?> Cases() => new()
    {
        { "rope dimension larger than the head", "qwen2.rope.dimension_count", 128u },
        { "odd rope dimension", "qwen2.rope.dimension_count", 63u },
        { "head count not dividing the embedding", "qwen2.attention.head_count", 3u },
        { "kv heads not dividing the heads", "qwen2.attention.head_count_kv", 3u },
        { "more kv heads than heads", "qwen2.attention.head_count_kv", 8u },
        { "more heads than embedding", "qwen2.attention.head_count", 512u },
        { "zero embedding", "qwen2.embedding_length", 0u },
        { "negative block count", "qwen2.block_count", -1 },
        { "zero context", "qwen2.context_length", 0u },
        { "zero kv heads", "qwen2.attention.head_count_kv", 0u },
        { "huge head count", "qwen2.attention.head_count", 1u << 30 },
        { "feed-forward size disagreeing with the tensors", "qwen2.feed_forward_length", 768u },
        { "embedding size disagreeing with the tensors", "qwen2.embedding_length", 512u },
        { "key length disagreeing with the tensors", "qwen2.attention.key_length", 128u },
        { "key length making the rope too wide", "qwen2.attention.key_length", 32u },
        { "value length unlike the key length", "qwen2.attention.value_length", 32u },
        { "more layers than tensors", "qwen2.block_count", 3u },
        { "vocabulary disagreeing with the tensors", "qwen2.vocab_size", 2048u },
        { "more tokens than the vocabulary", "tokenizer.ggml.tokens", Enumerable.Range(0, 2000).Select(i => $"t{i}").ToArray() },
        { "NaN epsilon", "qwen2.attention.layer_norm_rms_epsilon", float.NaN },
        { "negative rope base", "qwen2.rope.freq_base", -1f },
        { "a string where a count belongs", "qwen2.block_count", "two" },
        { "missing head count", "qwen2.attention.head_count", null },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void IsRefusedAtLoadWithOneLine(string what, string key, object? value)
    {
        string path = Rewrite(key, value);
        try
        {
            var e = Assert.Throws<InvalidModelFileException>(() =>
            {
                using var m = DecoderModel.Load(path);
                // what used to happen: the load succeeded and the first token failed
                var state = m.CreateState(1, 16);
                m.Forward([1], m.CreateCache(16), state, 1);
            });
            Assert.DoesNotContain('\n', e.Message);
            Assert.True(e.Message.Contains("metadata ") || e.Message.Contains("tensor "), $"{what}: '{e.Message}' names neither a metadata key nor a tensor");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TheUnchangedCopyLoadsAndRuns()
    {
        string path = Rewrite("general.name", "unchanged copy");
        try
        {
            using var m = DecoderModel.Load(path);
            var state = m.CreateState(1, 16);
            m.Forward([1], m.CreateCache(16), state, 1);
            Assert.True(float.IsFinite(state.Logits[0]));
        }
        finally { File.Delete(path); }
    }

    // tiny-qwen2 with one metadata key set (null: removed), written next to it
    private static string Rewrite(string key, object? value)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ow-badmeta-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        using var src = GgufFile.Open(TinyModels.Qwen);
        var w = GgufWriter.CopyOf(src);
        if (value is null) w.Remove(key); else w.Set(key, value);
        w.Write(path);
        return path;
    }
}
