using System.Globalization;
using OpenWeights.Formats;
using OpenWeights.Models;

namespace OpenWeights.Lora;

/// <summary>An adapter file and its user scale, written <c>FILE[:SCALE]</c> (as the command line gives it).</summary>
public readonly record struct LoraSpec(string Path, float Scale = 1f)
{
    /// <summary>
    /// "adapter.gguf", "adapter.gguf:0.5", "peft_dir:2". A suffix that is not a number is part of the path only when it
    /// holds a path separator ("C:\x\a.gguf") or the whole text names an existing file or folder; otherwise it is a
    /// mistyped scale ("adapter.gguf:abc") and the error says so, rather than that "adapter.gguf:abc" does not exist.
    /// </summary>
    public static LoraSpec Parse(string s)
    {
        if (string.IsNullOrWhiteSpace(s)) throw new OpenWeightsException("a LoRA adapter spec needs a file (FILE[:SCALE])");
        int i = s.LastIndexOf(':');
        if (i > 0 && i < s.Length - 1)
        {
            string suffix = s[(i + 1)..];
            if (float.TryParse(suffix, NumberStyles.Float, CultureInfo.InvariantCulture, out float scale))
            {
                if (!float.IsFinite(scale)) throw new OpenWeightsException($"LoRA adapter {s}: the scale must be a finite number");
                return new LoraSpec(s[..i], scale);
            }
            if (suffix.IndexOfAny(['/', '\\']) < 0 && !File.Exists(s) && !Directory.Exists(s))
                throw new OpenWeightsException($"LoRA adapter {s}: the scale '{suffix}' is not a number (FILE[:SCALE], e.g. {s[..i]}:0.5)");
        }
        return new LoraSpec(s, 1f);
    }

    public override string ToString() => Scale == 1f ? Path : $"{Path}:{Scale.ToString(CultureInfo.InvariantCulture)}";
}

/// <summary>
/// Loading LoRA adapters (GGUF or PEFT) against a base model and attaching them to its projections; what
/// <c>run</c>, <c>chat</c> and <c>serve</c> call for <c>--lora</c>.
/// </summary>
public static class LoraLoader
{
    /// <summary>
    /// Reads a GGUF LoRA file or a PEFT adapter (folder, adapter_config.json or adapter_model.safetensors), B rows
    /// in the row order of <paramref name="model"/>, and checks every pair against the model's tensors.
    /// </summary>
    public static LoraAdapter Load(string path, ITensorSource model, ModelConfig config)
    {
        LoraAdapter a;
        try
        {
            if (Directory.Exists(path) || PeftAdapter.IsPeft(path)) a = PeftAdapter.Read(path, config);
            else if (!File.Exists(path)) throw new OpenWeightsException($"LoRA adapter not found: {path}");
            else if (GgufLoraAdapter.IsGguf(path)) a = GgufLoraAdapter.Read(path, config);
            else throw new OpenWeightsException("not a LoRA adapter (expected a GGUF LoRA file or a PEFT folder with adapter_config.json and adapter_model.safetensors)");
        }
        catch (OpenWeightsException e) when (!e.Message.Contains(System.IO.Path.GetFileName(path.TrimEnd('/', '\\')), StringComparison.Ordinal))
        {
            throw new OpenWeightsException($"{path}: {e.Message}");
        }
        Validate(a, model, config, path);
        return a;
    }

    /// <summary>Checks that each adapted weight exists in the model with the adapter's (in, out); a mismatch is one line naming both.</summary>
    public static void Validate(LoraAdapter a, ITensorSource model, ModelConfig config, string adapterName)
    {
        foreach (var w in LoraNames.Ordered(a, config.Architecture))
        {
            var (layer, _) = LoraNames.ParseGguf(w.Target, config.Architecture);
            if (layer >= config.Layers)
                throw new OpenWeightsException($"LoRA {adapterName} does not fit this model: it adapts {w.Target} but the model has {config.Layers} layers (wrong base model?)");
            if (!model.TryGetTensor(w.Target, out var t))
                throw new OpenWeightsException($"LoRA {adapterName} does not fit this model: {w.Target} is not in the model (wrong base model?)");
            if (t.Dimensions.Length != 2 || t.Dimensions[0] != w.In || t.Dimensions[1] != w.Out)
                throw new OpenWeightsException($"LoRA {adapterName} does not fit this model: {w.Target} is {t.ShapeText} in the model, the adapter expects [{w.In}, {w.Out}] (wrong base model?)");
        }
    }

    /// <summary>Loads each adapter and wraps the model's projections; adapters stack in order.</summary>
    public static IReadOnlyList<LoraAdapter> Attach(DecoderModel model, IEnumerable<LoraSpec> specs)
    {
        var loaded = specs.Select(s => (Adapter: Load(s.Path, model.Source, model.Config), s.Scale)).ToList();
        foreach (var (a, scale) in loaded) Attach(model, a, scale);
        return [.. loaded.Select(l => l.Adapter)];
    }

    /// <summary>Convenience overload: "FILE[:SCALE]" strings.</summary>
    public static IReadOnlyList<LoraAdapter> Attach(DecoderModel model, IEnumerable<string> specs) => Attach(model, specs.Select(LoraSpec.Parse));

    /// <summary>Wraps the adapted projections of <paramref name="model"/> (adapter already in the model's row order).</summary>
    public static void Attach(DecoderModel model, LoraAdapter adapter, float scale = 1f)
    {
        foreach (var w in LoraNames.Ordered(adapter, model.Config.Architecture))
        {
            var (layer, _) = LoraNames.ParseGguf(w.Target, model.Config.Architecture);
            if (layer >= model.Layers.Count) throw new OpenWeightsException($"LoRA adapts {w.Target} but the model has {model.Layers.Count} layers");
            string part = w.Target[(w.Target.IndexOf('.', 4) + 1)..]; // "blk.3.attn_q.weight" -> "attn_q.weight"
            var L = model.Layers[layer];
            float s = LoraNames.ScaleOf(adapter, w) * scale;
            foreach (var (p, piece) in Split(model.Config, part, w))
                L.SetProjection(p, new LoraLinear(L.GetProjection(p), [new AppliedLora(piece, s)]));
        }
    }

    /// <summary>
    /// The LoRA of a fused tensor as LoRAs of the projections the engine splits it into: W + s·B·A restricted to a row range
    /// is W_rows + s·B_rows·A, so each part keeps A and takes its rows of B (Phi-3: attn_qkv -> Q | K | V, the gate-up
    /// ffn_up -> gate | up). An unfused projection is itself.
    /// </summary>
    internal static IEnumerable<(string Part, LoraWeights Piece)> Split(ModelConfig c, string part, LoraWeights w)
    {
        (string, int, int)[] pieces = part switch
        {
            Architectures.Names.AttnQkv => [(Architectures.Names.AttnQ, 0, c.QDim), (Architectures.Names.AttnK, c.QDim, c.KvDim), (Architectures.Names.AttnV, c.QDim + c.KvDim, c.KvDim)],
            Architectures.Names.FfnUp when c.Architecture.Block.Any(t => t.Gguf == part && t.Shape == TensorShape.GateUp)
                => [(Architectures.Names.FfnGate, 0, c.FfnDim), (Architectures.Names.FfnUp, c.FfnDim, c.FfnDim)],
            _ => [],
        };
        if (pieces.Length == 0) { yield return (part, w); yield break; }
        foreach (var (p, row, count) in pieces)
            yield return (p, new LoraWeights { Target = w.Target, Rank = w.Rank, In = w.In, Out = count, A = w.A, B = w.B.AsSpan(row * w.Rank, count * w.Rank).ToArray() });
    }

    /// <summary>Removes every LoRA wrapper, restoring the base projections.</summary>
    public static void Detach(DecoderModel model)
    {
        foreach (var L in model.Layers)
            foreach (var part in new[] { Architectures.Names.AttnQ, Architectures.Names.AttnK, Architectures.Names.AttnV, Architectures.Names.AttnOut,
                                         Architectures.Names.FfnGate, Architectures.Names.FfnUp, Architectures.Names.FfnDown })
                if (L.GetProjection(part) is LoraLinear ll) L.SetProjection(part, ll.Base);
    }
}
