using OpenWeights.Formats.Gguf;

namespace OpenWeights.Tests.Chat;

/// <summary>
/// tiny-qwen2 (random weights) as a DeepSeek-R1 distill: two of its reserved control tokens renamed to &lt;think&gt; and
/// &lt;/think&gt; (single tokens, as in R1's and Qwen3's vocabularies) and the R1-Distill-Llama chat template
/// (../shared/testdata), whose generation prompt opens the thinking, as its own. Written once per test run; skips the
/// calling test when the template is absent.
/// </summary>
public static class ThinkTinyModel
{
    public static readonly string[] Markers = ["<think>", "</think>"];
    private static readonly Lazy<string> path = new(Write);

    /// <summary>The R1-Distill-Llama chat template's text (skips when ../shared/testdata is absent).</summary>
    public static string Template => File.ReadAllText(TestData.Require("chat-templates/llama.cpp/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"));

    public static string Path
    {
        get { _ = Template; return path.Value; }
    }

    private static string Write()
    {
        string src = TinyModels.Qwen;
        string dst = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(src)!, "tiny-think.gguf");
        string tmp = dst + "." + Guid.NewGuid().ToString("N")[..8];
        using (var f = GgufFile.Open(src))
        {
            var tokens = (string[])((string[])f.Metadata["tokenizer.ggml.tokens"]).Clone();
            int first = Array.FindIndex(tokens, t => t.StartsWith("<|reserved_", StringComparison.Ordinal));
            Assert.True(first > 0, "tiny-qwen2 has no reserved tokens to rename");
            for (int i = 0; i < Markers.Length; i++) tokens[first + i] = Markers[i];
            GgufWriter.CopyOf(f)
                .Set("tokenizer.ggml.tokens", tokens)
                .Set("tokenizer.chat_template", Template)
                .Write(tmp);
        }
        File.Move(tmp, dst, overwrite: true);
        return dst;
    }
}
