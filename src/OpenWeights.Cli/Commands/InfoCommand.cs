using System.CommandLine;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models.HuggingFace;
using OpenWeights.Models;
using OpenWeights.Models.Common;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights info MODEL [-c N]`: architecture, hyper-parameters, tensor types, size and memory needs.</summary>
public static class InfoCommand
{
    public sealed record TypeShare(string Type, int Tensors, long Parameters, long Bytes);

    /// <summary>
    /// Memory for a context of <see cref="Context"/> tokens. <see cref="Basis"/>: "default" (what run/chat/serve allocate
    /// without --ctx: 4096 capped at the trained context), "trained" (the model's own context length) or "requested" (--ctx).
    /// </summary>
    public sealed record MemoryEstimate(int Context, string Basis, long KvCacheBytes, long EstimatedBytes);

    /// <summary>The KV cache the memory estimates assume: its types and bytes per token (all layers, keys and values).</summary>
    public sealed record KvCacheInfo(string TypeK, string TypeV, long BytesPerToken);

    public sealed record ModelInfo(
        string Path, long FileBytes, uint GgufVersion, string Architecture, string? Name, int VocabSize, int ContextLength,
        int EmbeddingLength, int Layers, int Heads, int KvHeads, int HeadDim, int FeedForwardLength, float RopeFreqBase,
        string RopeStyle, long Parameters, double BitsPerWeight, TypeShare[] TensorTypes, string? Tokenizer, string? PreTokenizer,
        bool HasChatTemplate, MemoryEstimate[] Memory, string? SupportedBy, LatentAttentionInfo? LatentAttention = null, KvCacheInfo? KvCache = null);

    /// <summary>Multi-head latent attention's ranks (DeepSeek): query bottleneck (0: none), cached latent, rotary key dims.</summary>
    public sealed record LatentAttentionInfo(int QLoraRank, int KvLoraRank, int RopeDims);

    /// <summary>
    /// Describes a model. Memory is estimated at <paramref name="context"/> tokens when given (capped at the trained
    /// context, as run does), else at the context run/chat/serve use by default and, when longer, the trained context:
    /// a 512-token model is never reported at 4k, and a 128k model shows both its 4k and its full-context cost.
    /// </summary>
    public static ModelInfo Describe(ITensorSource f, int? context = null, KvCacheTypes? cacheTypes = null)
    {
        var kvTypes = cacheTypes ?? KvCacheTypes.Default;
        var c = ModelConfig.FromGguf(f);
        var types = f.Tensors.GroupBy(t => t.Type)
            .Select(g => new TypeShare(g.Key.ToString(), g.Count(), g.Sum(t => t.ElementCount), g.Sum(t => t.ByteSize)))
            .OrderByDescending(t => t.Bytes).ToArray();
        long parameters = f.Tensors.Where(t => t.Name != Architectures.Names.RopeFreqs).Sum(t => t.ElementCount);
        long weightBytes = f.Tensors.Sum(t => t.ByteSize);
        // Weights are memory-mapped (counted once); scratch for a 256-token batch and the logits come on top.
        long scratch = 256L * (4 * c.Dim + 2 * c.QDim + 2 * c.KvDim + 2 * c.FfnDim) * sizeof(float) + (long)c.VocabSize * sizeof(float);
        long fileBytes = f is GgufFile g ? g.FileSize : f is HfCheckpoint h ? h.WeightFiles.Sum(LinkedLength) : weightBytes;
        uint version = f is GgufFile gv ? gv.Version : 0;
        // The KV cache in the chosen types (F16 unless asked): layers x kv_dim keys and as many values per position; latent
        // attention (DeepSeek) caches one latent plus the rotary key per position and layer, (kv_lora_rank + rope dims), in the key type.
        long perPosition = c.Mla is { } mla ? c.Layers * KvCacheTypes.Bytes(kvTypes.K, mla.KvLoraRank + c.RopeDims)
            : c.Layers * (KvCacheTypes.Bytes(kvTypes.K, c.KvDim) + KvCacheTypes.Bytes(kvTypes.V, c.KvDim));
        MemoryEstimate At(int n, string basis)
        {
            long kv = perPosition * n;
            return new MemoryEstimate(n, basis, kv, weightBytes + kv + scratch);
        }
        int trained = Math.Max(1, c.ContextLength);
        MemoryEstimate[] memory = context is { } asked
            ? [At(Math.Min(asked, trained), asked >= trained ? "trained" : "requested")]
            : CommonOptions.DefaultContext < trained
                ? [At(CommonOptions.DefaultContext, "default"), At(trained, "trained")]
                : [At(trained, "trained")];
        return new ModelInfo(f.Path, fileBytes, version, c.Architecture.Name, f.GetString("general.name"), c.VocabSize, c.ContextLength,
            c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.RopeBase, c.RopeStyle.ToString().ToLowerInvariant(),
            parameters, weightBytes * 8.0 / Math.Max(1, parameters), types, f.GetString("tokenizer.ggml.model"), f.GetString("tokenizer.ggml.pre"),
            f.Contains("tokenizer.chat_template"), memory, c.Architecture.Description,
            c.Mla is { } m ? new LatentAttentionInfo(m.QLoraRank, m.KvLoraRank, c.RopeDims) : null,
            new KvCacheInfo(KvCacheTypes.Name(kvTypes.K), c.Mla is null ? KvCacheTypes.Name(kvTypes.V) : "-", perPosition));
    }

    public static Command Create()
    {
        var model = CommonOptions.Model();
        var json = CommonOptions.Json();
        var ctx = new Option<int?>("--ctx", "-c")
        {
            Description = $"Context in tokens for the memory estimate (default: {CommonOptions.DefaultContext}, what run/chat/serve use, capped at the model's trained context, and the trained context when longer)",
            Validators = { r => { if (r.GetValueOrDefault<int?>() < 1) r.AddError("--ctx must be at least 1"); } },
        }.HiddenAlias("--context");
        var cacheK = CommonOptions.CacheType("--cache-type-k", "key"); var cacheV = CommonOptions.CacheType("--cache-type-v", "value");
        var cmd = new Command("info", "Describe a model (GGUF or Hugging Face folder): architecture, hyper-parameters, tensor types, parameters, size, memory at its context") { model, ctx, cacheK, cacheV, json };
        cmd.SetAction(pr =>
        {
            var o = pr.InvocationConfiguration.Output;
            using var f = CommonOptions.OpenSource(CommonOptions.ResolveModel(pr.GetValue(model)!));
            var i = Describe(f, pr.GetValue(ctx), CommonOptions.CacheTypes(pr, cacheK, cacheV));
            if (pr.GetValue(json)) { CliJson.Write(o, i); return 0; }
            o.WriteLine($"file           {i.Path} ({Size(i.FileBytes)}, {(i.GgufVersion > 0 ? $"GGUF v{i.GgufVersion}" : "Hugging Face safetensors")})");
            o.WriteLine($"name           {(i.Name is null ? "-" : Cli.TerminalSafe(i.Name))}"); // from the file: no escape sequences to the terminal
            o.WriteLine($"architecture   {Cli.TerminalSafe(i.Architecture ?? "-")} ({i.SupportedBy})");
            o.WriteLine($"parameters     {i.Parameters:N0} ({i.Parameters / 1e9:F2} B), {i.BitsPerWeight:F2} bits per weight");
            o.WriteLine($"layers         {i.Layers}, embedding {i.EmbeddingLength}, feed-forward {i.FeedForwardLength}");
            if (i.LatentAttention is { } la)
                o.WriteLine($"attention      latent (MLA): {i.Heads} heads, query rank {(la.QLoraRank == 0 ? "full" : la.QLoraRank)}, cached latent {la.KvLoraRank} + rotary key {la.RopeDims} per position, rope {i.RopeStyle} base {i.RopeFreqBase:G}");
            else o.WriteLine($"attention      {i.Heads} heads, {i.KvHeads} KV heads, head dim {i.HeadDim}, rope {i.RopeStyle} base {i.RopeFreqBase:G}");
            o.WriteLine($"vocabulary     {i.VocabSize} ({Cli.TerminalSafe(i.Tokenizer ?? "-")}{(i.PreTokenizer is null ? "" : ", pre " + Cli.TerminalSafe(i.PreTokenizer))}), chat template: {(i.HasChatTemplate ? "yes" : "no")}");
            o.WriteLine($"context        {i.ContextLength} (trained)");
            o.WriteLine("tensor types");
            foreach (var t in i.TensorTypes) o.WriteLine($"  {t.Type,-6} {t.Tensors,5} tensors {t.Parameters,15:N0} params {Size(t.Bytes),10}");
            o.WriteLine($"KV cache       {Size(i.KvCache!.BytesPerToken)} per token ({(i.LatentAttention is null ? i.KvCache.TypeK == i.KvCache.TypeV ? i.KvCache.TypeK : $"K {i.KvCache.TypeK}, V {i.KvCache.TypeV}" : $"latent in {i.KvCache.TypeK}")})");
            for (int k = 0; k < i.Memory.Length; k++)
            {
                var m = i.Memory[k];
                string basis = m.Basis switch { "default" => "run's default context", "trained" => "the trained context", _ => "--ctx" };
                o.WriteLine($"{(k == 0 ? "memory" : ""),-14} {Size(m.EstimatedBytes)} at {m.Context} tokens ({basis}) = weights (memory-mapped) + KV cache {Size(m.KvCacheBytes)} + scratch");
            }
            return 0;
        });
        return cmd;
    }

    private static long LinkedLength(string p)
    {
        var fi = new FileInfo(p);
        return fi.LinkTarget is null ? fi.Length : (fi.ResolveLinkTarget(returnFinalTarget: true) as FileInfo)?.Length ?? fi.Length;
    }

    public static string Size(long b) => b >= 1L << 30 ? $"{b / (double)(1L << 30):F2} GiB" : b >= 1 << 20 ? $"{b / (double)(1 << 20):F1} MiB" : $"{b / 1024.0:F1} KiB";
}
