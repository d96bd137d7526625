using OpenWeights.Formats.Gguf;

namespace OpenWeights.Formats;

/// <summary>
/// Model metadata under GGUF key names and value types (`general.architecture`, `{arch}.block_count`,
/// `tokenizer.ggml.tokens`, ...), whatever file it came from.
/// </summary>
public interface IModelMetadata
{
    string Path { get; }
    IReadOnlyDictionary<string, object> Metadata { get; }
}

/// <summary>
/// Where a model's weights come from: a GGUF file, or a Hugging Face checkpoint presented under GGUF
/// tensor names. Tensors keep their stored type; <see cref="TensorPointer"/> points into a memory map.
/// </summary>
public unsafe interface ITensorSource : IModelMetadata, IDisposable
{
    IReadOnlyList<GgufTensorInfo> Tensors { get; }
    bool TryGetTensor(string name, out GgufTensorInfo info);
    byte* TensorPointer(GgufTensorInfo t);

    /// <summary>
    /// Whether a tensor's bytes lie in a read-only file mapping, whose pages may be handed back to the OS once copied
    /// (they fault in again from the file if read); false for anything in process memory.
    /// </summary>
    bool IsFileMapped(GgufTensorInfo t) => false;
}
