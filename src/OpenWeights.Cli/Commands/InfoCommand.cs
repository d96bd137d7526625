using System.CommandLine;
using OpenWeights.Formats;
using OpenWeights.Formats.Gguf;
using OpenWeights.Formats.HuggingFace;
using OpenWeights.Models;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Cli.Commands;

/// <summary>`openweights info MODEL`: architecture, hyper-parameters, tensor types, size and memory needs.</summary>
public static class InfoCommand
{
    public sealed record TypeShare(string Type, int Tensors, long Parameters, long Bytes);

    public sealed record ModelInfo(
        string Path, long FileBytes, uint GgufVersion, string Architecture, string? Name, int VocabSize, int ContextLength,
        int EmbeddingLength, int Layers, int Heads, int KvHeads, int HeadDim, int FeedForwardLength, float RopeFreqBase,
        string RopeStyle, long Parameters, double BitsPerWeight, TypeShare[] TensorTypes, string? Tokenizer, string? PreTokenizer,
        bool HasChatTemplate, long KvCacheBytes4k, long EstimatedMemoryBytes4k, string? SupportedBy);

    public static ModelInfo Describe(ITensorSource f)
    {
        var c = ModelConfig.FromGguf(f);
        var types = f.Tensors.GroupBy(t => t.Type)
            .Select(g => new TypeShare(g.Key.ToString(), g.Count(), g.Sum(t => t.ElementCount), g.Sum(t => t.ByteSize)))
            .OrderByDescending(t => t.Bytes).ToArray();
        long parameters = f.Tensors.Where(t => t.Name != Architectures.Names.RopeFreqs).Sum(t => t.ElementCount);
        long weightBytes = f.Tensors.Sum(t => t.ByteSize);
        // Our engine keeps the KV cache in F32: 2 (K and V) x layers x kv_dim x positions x 4 bytes.
        long kv = 2L * c.Layers * c.KvDim * 4096 * sizeof(float);
        // Weights are memory-mapped (counted once); scratch for a 256-token batch and the logits come on top.
        long scratch = 256L * (4 * c.Dim + 2 * c.QDim + 2 * c.KvDim + 2 * c.FfnDim) * sizeof(float) + (long)c.VocabSize * sizeof(float);
        long fileBytes = f is GgufFile g ? g.FileSize : f is HfCheckpoint h ? h.WeightFiles.Sum(LinkedLength) : weightBytes;
        uint version = f is GgufFile gv ? gv.Version : 0;
        return new ModelInfo(f.Path, fileBytes, version, c.Architecture.Name, f.GetString("general.name"), c.VocabSize, c.ContextLength,
            c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.RopeBase, c.RopeStyle.ToString().ToLowerInvariant(),
            parameters, weightBytes * 8.0 / Math.Max(1, parameters), types, f.GetString("tokenizer.ggml.model"), f.GetString("tokenizer.ggml.pre"),
            f.Contains("tokenizer.chat_template"), kv, weightBytes + kv + scratch, c.Architecture.Description);
    }

    public static Command Create()
    {
        var model = CommonOptions.Model();
        var json = CommonOptions.Json();
        var cmd = new Command("info", "Describe a model (GGUF or Hugging Face folder): architecture, hyper-parameters, tensor types, parameters, size, memory for a 4k context") { model, json };
        cmd.SetAction(pr =>
        {
            var o = pr.InvocationConfiguration.Output;
            using var f = CommonOptions.OpenSource(CommonOptions.ResolveModel(pr.GetValue(model)!));
            var i = Describe(f);
            if (pr.GetValue(json)) { CliJson.Write(o, i); return 0; }
            o.WriteLine($"file           {i.Path} ({Size(i.FileBytes)}, {(i.GgufVersion > 0 ? $"GGUF v{i.GgufVersion}" : "Hugging Face safetensors")})");
            o.WriteLine($"name           {i.Name ?? "-"}");
            o.WriteLine($"architecture   {i.Architecture} ({i.SupportedBy})");
            o.WriteLine($"parameters     {i.Parameters:N0} ({i.Parameters / 1e9:F2} B), {i.BitsPerWeight:F2} bits per weight");
            o.WriteLine($"layers         {i.Layers}, embedding {i.EmbeddingLength}, feed-forward {i.FeedForwardLength}");
            o.WriteLine($"attention      {i.Heads} heads, {i.KvHeads} KV heads, head dim {i.HeadDim}, rope {i.RopeStyle} base {i.RopeFreqBase:G}");
            o.WriteLine($"vocabulary     {i.VocabSize} ({i.Tokenizer ?? "-"}{(i.PreTokenizer is null ? "" : ", pre " + i.PreTokenizer)}), chat template: {(i.HasChatTemplate ? "yes" : "no")}");
            o.WriteLine($"context        {i.ContextLength} (trained)");
            o.WriteLine("tensor types");
            foreach (var t in i.TensorTypes) o.WriteLine($"  {t.Type,-6} {t.Tensors,5} tensors {t.Parameters,15:N0} params {Size(t.Bytes),10}");
            o.WriteLine($"memory (4k)    {Size(i.EstimatedMemoryBytes4k)} = weights (memory-mapped) + KV cache {Size(i.KvCacheBytes4k)} + scratch");
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
