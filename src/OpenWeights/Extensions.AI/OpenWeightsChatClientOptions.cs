using OpenWeights.Hub;
using OpenWeights.Inference.Chat;

namespace OpenWeights.Extensions.AI;

/// <summary>How <see cref="OpenWeightsChatClient.Load(string, OpenWeightsChatClientOptions)"/> and the DI helper load a model.</summary>
public sealed class OpenWeightsChatClientOptions
{
    /// <summary>Context size in tokens (capped at the model's own).</summary>
    public int ContextSize { get; set; } = 4096;
    /// <summary>Worker threads; 0 uses every core.</summary>
    public int Threads { get; set; }
    /// <summary>Jinja chat template text; null uses <see cref="ChatTemplateFile"/> or the model's own.</summary>
    public string? ChatTemplate { get; set; }
    /// <summary>A Jinja chat template file; null uses <see cref="ChatTemplate"/> or the model's own.</summary>
    public string? ChatTemplateFile { get; set; }
    /// <summary>The id the client reports (<c>ChatClientMetadata.DefaultModelId</c>); null: the model file's name.</summary>
    public string? ModelId { get; set; }
    /// <summary>LoRA adapters to apply, FILE[:SCALE] (GGUF LoRA files or PEFT folders).</summary>
    public IList<string> Loras { get; } = new List<string>();
    /// <summary>The local model store to resolve org/name and catalog ids in; null: from the environment (HF_HOME, HF_HUB_CACHE).</summary>
    public HubSettings? Hub { get; set; }

    /// <summary>The template text these options name (null: the model's own).</summary>
    internal string? TemplateText()
    {
        if (ChatTemplate is not null && ChatTemplateFile is not null)
            throw new OpenWeightsException("give a chat template as text or as a file, not both");
        return ChatTemplateFile is not null ? ChatTemplateSource.FromFile(ChatTemplateFile)
            : ChatTemplate is not null ? ChatTemplateSource.Check(ChatTemplate) : null;
    }
}
