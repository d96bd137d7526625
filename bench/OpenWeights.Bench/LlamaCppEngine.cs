using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;
using OpenWeights.Inference;

namespace OpenWeights.Bench;

/// <summary>
/// llama.cpp through LLamaSharp's low-level API (LLamaWeights / LLamaContext / LLamaBatch / Decode), in the
/// configuration .NET users get: default flash attention, memory-mapped weights, CPU only; the KV cache types and context
/// size ours runs with (f16 by default, llama.cpp's own default; a quantized V cache needs flash attention in llama.cpp).
/// Same token ids, same greedy loop and same warm-up as ours.
/// </summary>
public static class LlamaCppEngine
{
    public static EngineResult Run(BenchOptions o)
    {
        NativeLibraryConfig.All.WithLogCallback((level, msg) => { });
        NativeApi.llama_empty_call();
        var sw = Stopwatch.StartNew();
        var p = new ModelParams(o.Model!)
        {
            ContextSize = (uint)o.ContextSize,
            TypeK = Ggml(o.CacheTypes.K), TypeV = Ggml(o.CacheTypes.V),
            BatchSize = (uint)Math.Max(o.Prompt, 1),
            GpuLayerCount = 0,
            Threads = o.Threads,
            BatchThreads = o.Threads,
        };
        if (o.CacheTypes.V == OpenWeights.Tensors.Quant.GgmlType.Q8_0) p.FlashAttention = true;
        using var w = LLamaWeights.LoadFromFile(p);
        using var ctx = w.CreateContext(p);
        double load = sw.Elapsed.TotalSeconds;
        int vocab = w.Vocab.Count;
        var ids = SpeedTest.PromptTokens(o.Prompt, vocab);
        var batch = new LLamaBatch();

        // warm-up: 8 prompt tokens and one decode step, then an empty context
        int warm = Math.Min(8, ids.Length);
        for (int i = 0; i < warm; i++) batch.Add((LLamaToken)ids[i], i, LLamaSeqId.Zero, i == warm - 1);
        Decode(ctx, batch);
        int t0 = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(warm - 1));
        batch.Clear();
        batch.Add((LLamaToken)t0, warm, LLamaSeqId.Zero, true);
        Decode(ctx, batch);
        ctx.NativeHandle.MemoryClear(true);

        batch.Clear();
        for (int i = 0; i < ids.Length; i++) batch.Add((LLamaToken)ids[i], i, LLamaSeqId.Zero, i == ids.Length - 1);
        sw.Restart();
        Decode(ctx, batch);
        int next = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(ids.Length - 1));
        double prefill = sw.Elapsed.TotalSeconds;

        sw.Restart();
        for (int g = 0; g < o.Gen; g++)
        {
            batch.Clear();
            batch.Add((LLamaToken)next, ids.Length + g, LLamaSeqId.Zero, true);
            Decode(ctx, batch);
            next = Sampler.ArgMax(ctx.NativeHandle.GetLogitsIth(0));
        }
        double decode = sw.Elapsed.TotalSeconds;

        string info = $"flash_attention={Describe(p.FlashAttention)} type_k={Describe(p.TypeK)} type_v={Describe(p.TypeV)} n_ubatch={ctx.NativeHandle.UBatchSize}; {SystemInfo()}";
        return new EngineResult("llamacpp", load, o.Prompt / prefill, o.Gen / decode, SpeedTest.PeakMemoryBytes(), info);
    }

    private static string Describe(object? v) => v?.ToString() ?? "default";

    /// <summary>Our cache type as llama.cpp's type_k / type_v.</summary>
    public static GGMLType Ggml(OpenWeights.Tensors.Quant.GgmlType t) => t switch
    {
        OpenWeights.Tensors.Quant.GgmlType.F32 => GGMLType.GGML_TYPE_F32,
        OpenWeights.Tensors.Quant.GgmlType.F16 => GGMLType.GGML_TYPE_F16,
        OpenWeights.Tensors.Quant.GgmlType.Q8_0 => GGMLType.GGML_TYPE_Q8_0,
        _ => throw new ArgumentException($"{t} is not a KV cache type"),
    };

    internal static void Decode(LLamaContext ctx, LLamaBatch batch)
    {
        var r = ctx.Decode(batch);
        if (r != DecodeResult.Ok) throw new OpenWeightsException($"llama.cpp decode failed: {r}");
    }

    internal static string SystemInfo()
    {
        try { return System.Runtime.InteropServices.Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info())?.Trim() ?? ""; }
        catch (Exception e) { return "system info unavailable: " + e.GetType().Name; }
    }
}
