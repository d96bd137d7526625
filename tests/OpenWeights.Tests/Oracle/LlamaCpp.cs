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

    /// <summary>
    /// Whether llama.cpp's Hadamard rotation of quantized KV caches is off in this process. Since ggml-org/llama.cpp#21038
    /// (in LLamaSharp 0.30.0's build) a quantized K or V cache with head_dim a multiple of 64 is stored rotated (q, k, v
    /// multiplied by an orthonormal Hadamard matrix, the output rotated back): the same attention in exact arithmetic, other
    /// quantization errors. Ours stores the plain values, so the oracle runs with LLAMA_ATTN_ROT_DISABLE=1 (set in the
    /// native environment: .NET's own environment block is not what getenv reads). F32 / F16 caches are never rotated.
    /// </summary>
    public static bool KvRotationDisabled { get; private set; }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    /// <summary>Loads the native library once, silencing its log; every oracle use goes through here.</summary>
    public static void Init()
    {
        lock (gate)
        {
            if (initialised) return;
            if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) KvRotationDisabled = SetEnv("LLAMA_ATTN_ROT_DISABLE", "1", 1) == 0;
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
    public static float[][] Logits(string path, int[] tokens, int threads = 2, int contextSize = 0) =>
        Logits(path, tokens, GGMLType.GGML_TYPE_F32, GGMLType.GGML_TYPE_F32, flashAttention: false, threads, contextSize);

    /// <summary>As above with the KV cache in <paramref name="typeK"/> / <paramref name="typeV"/> (LLamaSharp's
    /// ModelParams.TypeK / TypeV; a quantized V cache needs <paramref name="flashAttention"/> in llama.cpp).</summary>
    public static float[][] Logits(string path, int[] tokens, GGMLType typeK, GGMLType typeV, bool flashAttention, int threads = 2, int contextSize = 0)
    {
        Init();
        var p = new ModelParams(path)
        {
            ContextSize = contextSize > 0 ? (uint)contextSize : (uint)Math.Max(64, tokens.Length + 8), BatchSize = (uint)Math.Max(64, tokens.Length), UBatchSize = (uint)Math.Max(64, tokens.Length),
            GpuLayerCount = 0, Threads = threads, BatchThreads = threads, TypeK = typeK, TypeV = typeV, FlashAttention = flashAttention,
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
