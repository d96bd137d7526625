using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using OpenWeights.Tensors.Quant;
using OpenWeights.Formats;

namespace OpenWeights.Formats.Gguf;

/// <summary>
/// A GGUF file (versions 2 and 3), memory-mapped: metadata and tensor infos are parsed at open, tensor
/// data stays in the map and is never copied whole. Malformed or hostile files fail at open with an
/// <see cref="InvalidModelFileException"/> whose one-line message names the problem.
/// </summary>
public sealed unsafe class GgufFile : ITensorSource
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const int DefaultAlignment = 32;

    private readonly MemoryMappedFile? map;
    private readonly MemoryMappedViewAccessor? view;
    private readonly byte* basePtr;
    private readonly Dictionary<string, GgufTensorInfo> tensorsByName;
    private bool disposed;

    public string Path { get; }
    public uint Version { get; }
    public long FileSize { get; }
    public int Alignment { get; }
    /// <summary>Absolute file offset where tensor data begins.</summary>
    public long DataOffset { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyList<string> MetadataKeys { get; }
    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    private GgufFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, long size)
    {
        Path = path; this.map = map; this.view = view; this.basePtr = basePtr; FileSize = size;
        try
        {
            var p = new GgufParser(basePtr, size, path);
            var h = p.Parse();
            Version = h.Version; Alignment = h.Alignment; DataOffset = h.DataOffset;
            Metadata = h.Metadata; MetadataKeys = h.Keys; Tensors = h.Tensors;
            tensorsByName = new Dictionary<string, GgufTensorInfo>(h.Tensors.Count, StringComparer.Ordinal);
            foreach (var t in h.Tensors) tensorsByName[t.Name] = t;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file.</summary>
    public static GgufFile Open(string path)
    {
        if (Directory.Exists(path)) throw new OpenWeightsException($"{path} is a directory, not a GGUF file");
        if (!File.Exists(path)) throw new OpenWeightsException($"model file not found: {path}");
        long size = FileLength(path); // follows symlinks (the hub store links snapshots to blobs; FileInfo.Length would be the link's own size)
        if (size < 24) throw new InvalidModelFileException($"{path}: not a GGUF file (only {size} bytes)");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.Read);
            byte* ptr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            return new GgufFile(path, map, view, ptr, size);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    public bool TryGetTensor(string name, out GgufTensorInfo info) => tensorsByName.TryGetValue(name, out info!);

    /// <summary>Pointer to a tensor's first byte inside the map (valid until Dispose).</summary>
    public byte* TensorPointer(GgufTensorInfo t)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return basePtr + DataOffset + t.Offset;
    }

    /// <summary>Every tensor lies in the read-only map of the file.</summary>
    public bool IsFileMapped(GgufTensorInfo t) => tensorsByName.ContainsKey(t.Name);

    private static long FileLength(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
        return fs.Length;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }
        map?.Dispose();
    }
}
