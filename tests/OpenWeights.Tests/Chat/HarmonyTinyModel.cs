using OpenWeights.Formats.Gguf;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// tiny-qwen2 (random weights) with a harmony vocabulary: seven of its reserved control tokens renamed to gpt-oss's
/// &lt;|start|&gt; &lt;|channel|&gt; &lt;|message|&gt; &lt;|end|&gt; &lt;|return|&gt; &lt;|call|&gt; &lt;|constrain|&gt;, EOS
/// &lt;|return|&gt; (as in gpt-oss's GGUF) and the gpt-oss chat template (../shared/testdata) as its own. Written once per
/// test run; skips the calling test when the template is absent.
/// </summary>
public static class HarmonyTinyModel
{
    public static readonly string[] Markers = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"];
    private static readonly Lazy<string> path = new(Write);

    /// <summary>The gpt-oss chat template's text (skips when ../shared/testdata is absent).</summary>
    public static string Template => File.ReadAllText(TestData.Require("chat-templates/llama.cpp/openai-gpt-oss-120b.jinja"));

    public static string Path
    {
        get { _ = Template; return path.Value; }
    }

    private static string Write()
    {
        string src = TinyModels.Qwen;
        string dst = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(src)!, "tiny-harmony.gguf");
        string tmp = dst + "." + Guid.NewGuid().ToString("N")[..8];
        using (var f = GgufFile.Open(src))
        {
            var tokens = (string[])f.Metadata["tokenizer.ggml.tokens"];
            tokens = (string[])tokens.Clone();
            int first = Array.FindIndex(tokens, t => t.StartsWith("<|reserved_", StringComparison.Ordinal));
            Assert.True(first > 0, "tiny-qwen2 has no reserved tokens to rename");
            for (int i = 0; i < Markers.Length; i++) tokens[first + i] = Markers[i];
            GgufWriter.CopyOf(f)
                .Set("tokenizer.ggml.tokens", tokens)
                .Set("tokenizer.ggml.eos_token_id", (uint)(first + 4))
                .Remove("tokenizer.ggml.eot_token_id")
                .Set("tokenizer.chat_template", Template)
                .Write(tmp);
        }
        File.Move(tmp, dst, overwrite: true);
        return dst;
    }
}
