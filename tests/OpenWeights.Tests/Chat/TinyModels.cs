using OpenWeights.Inference.Constraints;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Chat;

/// <summary>Tiny synthetic models with chat templates, written once per test run.</summary>
public static class TinyModels
{
    private static readonly string Dir = Path.Combine(Path.GetTempPath(), "ow-chat-tests-" + Environment.ProcessId);
    private static readonly Lazy<string> qwen = new(() => Write("tiny-qwen2"));
    private static readonly Lazy<string> llama = new(() => Write("tiny-llama"));

    /// <summary>tiny-qwen2, q8_0, ChatML template (&lt;|im_start|&gt; / &lt;|im_end|&gt;).</summary>
    public static string Qwen => qwen.Value;
    /// <summary>tiny-llama, q8_0, Llama 3 template (writes bos_token, &lt;|eot_id|&gt;).</summary>
    public static string Llama => llama.Value;

    private static string Write(string preset)
    {
        Directory.CreateDirectory(Dir);
        var path = Path.Combine(Dir, preset + ".gguf");
        var tmp = path + "." + Guid.NewGuid().ToString("N")[..8];
        SyntheticModel.Write(SynthPreset.Get(preset), SynthType.Parse("q8_0"), tmp, threads: 2);
        File.Move(tmp, path, overwrite: true);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } };
        return path;
    }
}

/// <summary>A test constraint that forces an exact token sequence, then is complete.</summary>
public sealed class ForcedTokens(int[] tokens) : ITokenConstraint
{
    private int pos;
    public int Accepted => pos;
    public void MaskLogits(Span<float> logits)
    {
        if (pos >= tokens.Length) return;
        for (int i = 0; i < logits.Length; i++) if (i != tokens[pos]) logits[i] = float.NegativeInfinity;
    }
    public void Accept(int tokenId)
    {
        Assert.Equal(tokens[pos], tokenId);
        pos++;
    }
    public bool IsComplete => pos >= tokens.Length;

    public static ForcedTokens Text(Tokenizer tok, string text) => new(tok.Encode(text, addSpecial: false, parseSpecial: false));
}
