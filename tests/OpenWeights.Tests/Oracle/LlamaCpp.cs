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

    /// <summary>Logits (vocab floats) after every position of the prompt. KV cache kept in F32 so the comparison is tight.
    /// <paramref name="contextSize"/>: llama.cpp's n_ctx (0: max(64, n+8)); some families choose by it (Phi-3's LongRoPE).</summary>
    public static float[][] Logits(string path, int[] tokens, int threads = 2, int contextSize = 0)
    {
        Init();
        var p = new ModelParams(path)
        {
            ContextSize = contextSize > 0 ? (uint)contextSize : (uint)Math.Max(64, tokens.Length + 8), BatchSize = (uint)Math.Max(64, tokens.Length), UBatchSize = (uint)Math.Max(64, tokens.Length),
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

    /// <summary>Greedy continuation with a context of at least 64 (<see cref="GreedyDecode"/>).</summary>
    public static int[] GreedyTokens(string path, int[] prompt, int count, int threads = 2) =>
        GreedyDecode(path, prompt, count, Math.Max(64, prompt.Length + count + 8), threads);

    /// <summary>Greedy continuation with a context just large enough (<see cref="GreedyDecode"/>).</summary>
    public static int[] ArgmaxContinuation(string path, int[] prompt, int count, int threads = 2) =>
        GreedyDecode(path, prompt, count, prompt.Length + count + 8, threads);

    /// <summary>
    /// Greedy continuation: the prompt in one batch, then <paramref name="count"/> tokens, each the argmax of the last
    /// logits (first index on ties), fed back one at a time. F32 KV cache, n_ctx = <paramref name="contextSize"/>.
    /// </summary>
    public static int[] GreedyDecode(string path, int[] prompt, int count, int contextSize, int threads = 2)
    {
        Init();
        var p = new ModelParams(path)
        {
            ContextSize = (uint)contextSize, BatchSize = (uint)Math.Max(64, prompt.Length), UBatchSize = (uint)Math.Max(64, prompt.Length),
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
            int next = Compare.ArgMax(ctx.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            result[k] = next;
            batch.Clear();
            batch.Add((LLamaToken)next, prompt.Length + k, LLamaSeqId.Zero, true);
        }
        return result;
    }
}
