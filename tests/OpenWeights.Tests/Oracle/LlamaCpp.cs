using LLama;
using LLama.Common;
using LLama.Native;

namespace OpenWeights.Tests.Oracle;

/// <summary>
/// llama.cpp (through LLamaSharp 0.30.0, CPU backend) as the reference implementation: same GGUF file,
/// tokenization and logits to compare with ours. Test-only.
/// </summary>
public static class LlamaCpp
{
    private static readonly object gate = new();
    private static bool initialised;

    /// <summary>Loads the native library once, silencing its log; every oracle use goes through here.</summary>
    public static void Init()
    {
        lock (gate)
        {
            if (initialised) return;
            NativeLibraryConfig.All.WithLogCallback((level, msg) => { });
            NativeApi.llama_empty_call();
            initialised = true;
        }
    }

    public static int[] Tokenize(string path, string text, bool addBos, bool special)
    {
        Init();
        var p = new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 };
        using var w = LLamaWeights.LoadFromFile(p);
        return w.Tokenize(text, addBos, special, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray();
    }

    /// <summary>Logits (vocab floats) after every position of the prompt. KV cache kept in F32 so the comparison is tight.</summary>
    public static float[][] Logits(string path, int[] tokens, int threads = 2)
    {
        Init();
        var p = new ModelParams(path)
        {
            ContextSize = (uint)Math.Max(64, tokens.Length + 8), BatchSize = (uint)Math.Max(64, tokens.Length), UBatchSize = (uint)Math.Max(64, tokens.Length),
            GpuLayerCount = 0, Threads = threads, BatchThreads = threads, TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, true);
        var r = ctx.Decode(batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
        var result = new float[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++) result[i] = ctx.NativeHandle.GetLogitsIth(i).ToArray();
        return result;
    }

    /// <summary>
    /// Greedy continuation: the prompt in one batch, then <paramref name="count"/> tokens, each the argmax of the last
    /// logits (lowest id on ties), fed back one at a time. KV cache in F32 as in <see cref="Logits"/>.
    /// </summary>
    public static int[] ArgmaxContinuation(string path, int[] prompt, int count, int threads = 2)
    {
        Init();
        var p = new ModelParams(path)
        {
            ContextSize = (uint)(prompt.Length + count + 8), BatchSize = (uint)Math.Max(64, prompt.Length), UBatchSize = (uint)Math.Max(64, prompt.Length),
            GpuLayerCount = 0, Threads = threads, BatchThreads = threads, TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        var result = new int[count];
        for (int k = 0; k < count; k++)
        {
            var r = ctx.Decode(batch);
            if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
            result[k] = Compare.ArgMax(ctx.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            batch.Clear();
            batch.Add((LLamaToken)result[k], prompt.Length + k, LLamaSeqId.Zero, true);
        }
        return result;
    }
}
