using OpenWeights.Formats.Gguf;
using OpenWeights.Formats;
using OpenWeights.Models.HuggingFace;

namespace OpenWeights.Models;

/// <summary>Opens whatever holds a model: a GGUF file or a Hugging Face checkpoint folder (config.json + safetensors).</summary>
public static class ModelSources
{
    public static ITensorSource Open(string path) =>
        Directory.Exists(path) ? HfCheckpoint.Open(path) : GgufFile.Open(path);
}
