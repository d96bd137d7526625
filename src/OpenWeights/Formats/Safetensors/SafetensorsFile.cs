using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;

namespace OpenWeights.Formats.Safetensors;

/// <summary>Element types of the safetensors format.</summary>
public enum SafetensorsDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64 }

/// <summary>One tensor: shape in row-major (PyTorch) order, so a Linear weight is [out, in]. Offsets relative to the data section.</summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount { get { long n = 1; foreach (var d in Shape) n *= d; return n; } }
    public long ByteSize => End - Begin;
}

/// <summary>
/// A .safetensors file, memory-mapped: 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the data. Malformed files fail at open with one line.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private const long MaxHeader = 100L << 20; // the reference implementation's limit
    private readonly MemoryMappedFile? map;
    private readonly MemoryMappedViewAccessor? view;
    private readonly byte* basePtr;
    private readonly Dictionary<string, SafetensorsTensorInfo> byName;
    private bool disposed;

    public string Path { get; }
    public long DataOffset { get; }
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static int DTypeSize(SafetensorsDType t) => t switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 or SafetensorsDType.U32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 or SafetensorsDType.U16 => 2,
        _ => 1,
    };

    private SafetensorsFile(string path)
    {
        Path = path;
        string name = System.IO.Path.GetFileName(path);
        long size = FileLength(path); // follows symlinks (the hub store links snapshots to blobs; FileInfo.Length would be the link's own size)
        if (size < 8) throw new InvalidModelFileException($"{name}: not a safetensors file ({size} bytes)");
        map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            basePtr = p + view.PointerOffset;
            ulong n = *(ulong*)basePtr;
            if (n > (ulong)MaxHeader || (long)n > size - 8) throw new InvalidModelFileException($"{name}: header length {n} is invalid for a {size}-byte file");
            DataOffset = 8 + (long)n;
            long dataSize = size - DataOffset;
            var tensors = new List<SafetensorsTensorInfo>();
            var meta = new Dictionary<string, string>();
            var headerBytes = new ReadOnlySpan<byte>(basePtr + 8, (int)n).ToArray();
            if (!System.Text.Unicode.Utf8.IsValid(headerBytes)) throw new InvalidModelFileException($"{name}: header is not valid UTF-8");
            JsonDocument doc;
            try { doc = JsonDocument.Parse(headerBytes); }
            catch (JsonException e) { throw new InvalidModelFileException($"{name}: header is not valid JSON ({e.Message.Split('\n')[0]})"); }
            using (doc)
            {
                try
                {
                    if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException($"{name}: header is not a JSON object");
                    var names = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var prop in doc.RootElement.EnumerateObject())
                    {
                        if (prop.Name == "__metadata__")
                        {
                            if (prop.Value.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException($"{name}: __metadata__ is not an object");
                            foreach (var m in prop.Value.EnumerateObject())
                                meta[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw new InvalidModelFileException($"{name}: metadata {UntrustedText.Quote(m.Name)} is not a string");
                            continue;
                        }
                        if (!names.Add(prop.Name)) throw new InvalidModelFileException($"{name}: tensor {UntrustedText.Quote(prop.Name)} appears twice in the header");
                        tensors.Add(ParseTensor(name, prop, dataSize));
                    }
                }
                catch (InvalidOperationException e)
                {
                    // a JSON value of an unexpected kind, or a string escape that is not valid UTF-16 (lone surrogate)
                    throw new InvalidModelFileException($"{name}: header holds an invalid value ({e.Message.Split('\n')[0]})");
                }
            }
            var sorted = tensors.OrderBy(t => t.Begin).ToList();
            long prevEnd = 0;
            foreach (var t in sorted)
            {
                if (t.Begin < prevEnd) throw new InvalidModelFileException($"{name}: tensor {UntrustedText.Quote(t.Name)} overlaps another tensor");
                prevEnd = t.End;
            }
            Tensors = tensors;
            Metadata = meta;
            byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string file, JsonProperty prop, long dataSize)
    {
        var v = prop.Value;
        string tn = prop.Name, q = UntrustedText.Quote(tn);
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InvalidModelFileException($"{file}: tensor {q} needs dtype (a string), shape (an array) and data_offsets (two integers)");
        string dts = dt.GetString()!;
        // Enum.TryParse would also accept numbers ("1") and case variants
        if (!Enum.GetNames<SafetensorsDType>().Contains(dts, StringComparer.Ordinal) || !Enum.TryParse<SafetensorsDType>(dts, out var dtype))
            throw new InvalidModelFileException($"{file}: tensor {q} has unknown dtype {UntrustedText.Quote(dts)}");
        var shape = new long[sh.GetArrayLength()];
        long count = 1; int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x < 0) throw new InvalidModelFileException($"{file}: tensor {q} has an invalid shape (dimensions must be non-negative integers)");
            shape[i++] = x;
            if (x != 0 && count > long.MaxValue / x) throw new InvalidModelFileException($"{file}: tensor {q} shape overflows");
            count *= x;
        }
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number || !off[0].TryGetInt64(out long b) || !off[1].TryGetInt64(out long e))
            throw new InvalidModelFileException($"{file}: tensor {q} data_offsets must be two integers");
        if (b < 0 || e < b || e > dataSize)
            throw new InvalidModelFileException($"{file}: tensor {q} data offsets [{b}, {e}] run past the end of the file");
        int size = DTypeSize(dtype);
        if (count > (e - b) / size || e - b != count * size) throw new InvalidModelFileException($"{file}: tensor {q} holds {e - b} bytes but its shape needs {(count > long.MaxValue / size ? "more" : (count * size).ToString(System.Globalization.CultureInfo.InvariantCulture))}");
        return new SafetensorsTensorInfo(tn, dtype, shape, b, e);
    }

    public static SafetensorsFile Open(string path)
    {
        if (Directory.Exists(path)) throw new OpenWeightsException($"{path} is a directory, not a safetensors file");
        if (!File.Exists(path)) throw new OpenWeightsException($"file not found: {path}");
        return new SafetensorsFile(path);
    }

    public bool TryGetTensor(string name, out SafetensorsTensorInfo info) => byName.TryGetValue(name, out info!);

    public SafetensorsTensorInfo GetTensor(string name) =>
        byName.TryGetValue(name, out var t) ? t : throw new InvalidModelFileException($"{System.IO.Path.GetFileName(Path)}: tensor {UntrustedText.Quote(name)} is missing");

    public byte* TensorPointer(SafetensorsTensorInfo t) { ObjectDisposedException.ThrowIf(disposed, this); return basePtr + DataOffset + t.Begin; }

    public ReadOnlySpan<byte> TensorData(SafetensorsTensorInfo t) =>
        t.ByteSize <= int.MaxValue ? new ReadOnlySpan<byte>(TensorPointer(t), (int)t.ByteSize) : throw new NotSupportedException($"tensor {t.Name} is larger than 2 GiB");

    /// <summary>A tensor converted to F32 (F32, F16 and BF16 sources).</summary>
    public float[] ReadF32(SafetensorsTensorInfo t)
    {
        var r = new float[t.ElementCount];
        var src = TensorData(t);
        switch (t.DType)
        {
            case SafetensorsDType.F32: System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(src).CopyTo(r); break;
            case SafetensorsDType.F16: System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(src), r); break;
            case SafetensorsDType.BF16:
                var u = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < r.Length; i++) r[i] = BitConverter.Int32BitsToSingle(u[i] << 16);
                break;
            default: throw new OpenWeightsException($"tensor {t.Name} has dtype {t.DType}; only F32, F16 and BF16 can be read as floats");
        }
        return r;
    }

    private static long FileLength(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
        return fs.Length;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (view is not null) { view.SafeMemoryMappedViewHandle.ReleasePointer(); view.Dispose(); }
        map?.Dispose();
    }
}

/// <summary>Writes .safetensors files atomically (temporary file + rename), header padded to 8 bytes as the reference does.</summary>
public sealed class SafetensorsWriter
{
    private readonly List<(string Name, SafetensorsDType DType, long[] Shape, byte[] Data)> tensors = [];
    private readonly Dictionary<string, string> metadata = [];

    public SafetensorsWriter SetMetadata(string key, string value) { metadata[key] = value; return this; }

    public SafetensorsWriter Add(string name, SafetensorsDType dtype, long[] shape, byte[] data)
    {
        long n = 1; foreach (var d in shape) n *= d;
        if (data.Length != n * SafetensorsFile.DTypeSize(dtype)) throw new ArgumentException($"tensor {name}: {data.Length} bytes for shape [{string.Join(",", shape)}] {dtype}");
        if (tensors.Any(t => t.Name == name)) throw new ArgumentException($"duplicate tensor {name}");
        tensors.Add((name, dtype, shape, data));
        return this;
    }

    public SafetensorsWriter Add(string name, long[] shape, float[] data) =>
        Add(name, SafetensorsDType.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());

    public void Write(string path)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long off = 0;
            foreach (var t in tensors)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToString());
                w.WriteStartArray("shape"); foreach (var d in t.Shape) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(off); w.WriteNumberValue(off + t.Data.Length); w.WriteEndArray();
                w.WriteEndObject();
                off += t.Data.Length;
            }
            w.WriteEndObject();
        }
        var header = ms.ToArray().ToList();
        while (header.Count % 8 != 0) header.Add((byte)' ');
        string full = System.IO.Path.GetFullPath(path);
        string tmp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew))
            {
                fs.Write(BitConverter.GetBytes((ulong)header.Count));
                fs.Write(header.ToArray());
                foreach (var t in tensors) fs.Write(t.Data);
                fs.Flush(true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
