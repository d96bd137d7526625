using System.Text;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Formats.Gguf;

/// <summary>Bounds-checked parse of a GGUF header from memory. Every count and length is checked against the bytes left.</summary>
internal sealed unsafe class GgufParser(byte* p, long size, string path)
{
    private long pos;
    private readonly string name = System.IO.Path.GetFileName(path);
    private const int MaxDims = 4;           // GGML_MAX_DIMS
    private const int MaxNesting = 8;

    internal sealed record Header(uint Version, int Alignment, long DataOffset, Dictionary<string, object> Metadata, List<string> Keys, List<GgufTensorInfo> Tensors);

    private InvalidModelFileException Fail(string what) => new($"{name}: {what}");

    public Header Parse()
    {
        uint magic = U32("magic");
        if (magic != GgufFile.Magic)
        {
            if (magic == 0x47475546) throw Fail("big-endian GGUF files are not supported");
            throw Fail($"not a GGUF file (bad magic 0x{magic:X8})");
        }
        uint version = U32("version");
        if (version == 1) throw Fail("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)");
        if (version is not (2 or 3)) throw Fail($"unsupported GGUF version {version}");
        ulong nTensors = U64("tensor count");
        ulong nKv = U64("metadata count");
        // Each tensor info takes at least 8+4+8+4+8 bytes and each key/value at least 8+4+1.
        if (nTensors > (ulong)Remaining / 32) throw Fail($"tensor count {nTensors} is larger than the file can hold");
        if (nKv > (ulong)Remaining / 13) throw Fail($"metadata count {nKv} is larger than the file can hold");

        var meta = new Dictionary<string, object>((int)nKv, StringComparer.Ordinal);
        var keys = new List<string>((int)nKv);
        for (ulong i = 0; i < nKv; i++)
        {
            string key = Str($"metadata key #{i}");
            var type = (GgufValueType)U32($"type of {Q(key)}");
            object value = Value(type, Q(key), 0);
            if (!meta.TryAdd(key, value)) throw Fail($"duplicate metadata key {Q(key)}");
            keys.Add(key);
        }

        int alignment = GgufFile.DefaultAlignment;
        if (meta.TryGetValue("general.alignment", out var al))
        {
            if (al is not uint a || a == 0 || (a & (a - 1)) != 0 || a > 1 << 20) throw Fail($"general.alignment {Q(al.ToString())} is not a power of two uint32");
            alignment = (int)a;
        }

        var tensors = new List<GgufTensorInfo>((int)nTensors);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < nTensors; i++)
        {
            string raw = Str($"tensor name #{i}");
            if (!seen.Add(raw)) throw Fail($"duplicate tensor name {Q(raw)}");
            string tname = Q(raw); // for messages
            uint nd = U32($"dimension count of {tname}");
            if (nd > MaxDims) throw Fail($"tensor {tname} has {nd} dimensions (at most {MaxDims})");
            var dims = new long[nd];
            long n = 1;
            for (int d = 0; d < nd; d++)
            {
                ulong v = U64($"dimension {d} of {tname}");
                if (v > long.MaxValue / 2) throw Fail($"tensor {tname} dimension {d} = {v} is absurd");
                dims[d] = (long)v;
                if (v != 0 && n > long.MaxValue / (long)v) throw Fail($"tensor {tname} element count overflows");
                n *= (long)v;
            }
            uint rawType = U32($"type of {tname}");
            var type = (GgmlType)rawType;
            var layout = GgmlTypes.TryGetLayout(type);
            if (layout is null || !Enum.IsDefined(type))
                throw Fail($"tensor {tname} has unknown or unsupported type {(Enum.IsDefined(type) ? type.ToString() : rawType.ToString())}");
            var (bs, bb) = layout.Value;
            if (nd > 0 && dims[0] % bs != 0) throw Fail($"tensor {tname} row length {dims[0]} is not a multiple of the {type} block size {bs}");
            ulong off = U64($"offset of {tname}");
            if (off % (ulong)alignment != 0) throw Fail($"tensor {tname} offset {off} is not aligned to {alignment}");
            long bytes = n / bs * bb;
            tensors.Add(new GgufTensorInfo(raw, dims, type, (long)Math.Min(off, long.MaxValue), bytes));
        }

        long dataOffset = (pos + alignment - 1) / alignment * alignment;
        if (nTensors > 0 && dataOffset > size) throw Fail("file is truncated before the tensor data");
        long dataSize = size - Math.Min(dataOffset, size);

        // Bounds and overlaps: sort by offset, each must end before the next begins and before the end of file.
        var sorted = tensors.OrderBy(t => t.Offset).ToList();
        long prevEnd = 0; string? prevName = null;
        foreach (var t in sorted)
        {
            if (t.Offset > dataSize || t.ByteSize > dataSize - t.Offset)
                throw Fail($"tensor {Q(t.Name)} data (offset {t.Offset}, {t.ByteSize} bytes) runs past the end of the file (truncated?)");
            if (t.Offset < prevEnd) throw Fail($"tensors {Q(prevName)} and {Q(t.Name)} overlap");
            prevEnd = t.Offset + t.ByteSize; prevName = t.Name;
        }
        return new Header(version, alignment, dataOffset, meta, keys, tensors);
    }

    private static string Q(string? s) => UntrustedText.Quote(s);

    private long Remaining => size - pos;

    private void Need(long n, string what)
    {
        if (n < 0 || n > Remaining) throw Fail($"truncated while reading {what} (offset {pos}, need {n} bytes, {Remaining} left)");
    }

    private uint U32(string what) { Need(4, what); uint v = *(uint*)(p + pos); pos += 4; return v; }
    private ulong U64(string what) { Need(8, what); ulong v = *(ulong*)(p + pos); pos += 8; return v; }

    private string Str(string what)
    {
        ulong len = U64(what);
        if (len > (ulong)Remaining) throw Fail($"string length {len} of {what} runs past the end of the file");
        if (len > int.MaxValue) throw Fail($"string length {len} of {what} is absurd");
        string s = Encoding.UTF8.GetString(p + pos, (int)len);
        pos += (long)len;
        return s;
    }

    private object Value(GgufValueType type, string key, int depth)
    {
        switch (type)
        {
            case GgufValueType.UInt8: Need(1, key); return p[pos++];
            case GgufValueType.Int8: Need(1, key); return (sbyte)p[pos++];
            case GgufValueType.Bool:
                Need(1, key);
                byte b = p[pos++];
                if (b > 1) throw Fail($"metadata {key} holds bool value {b}");
                return b == 1;
            case GgufValueType.UInt16: Need(2, key); { var v = *(ushort*)(p + pos); pos += 2; return v; }
            case GgufValueType.Int16: Need(2, key); { var v = *(short*)(p + pos); pos += 2; return v; }
            case GgufValueType.UInt32: return U32(key);
            case GgufValueType.Int32: return (int)U32(key);
            case GgufValueType.Float32: Need(4, key); { var v = *(float*)(p + pos); pos += 4; return v; }
            case GgufValueType.UInt64: return U64(key);
            case GgufValueType.Int64: return (long)U64(key);
            case GgufValueType.Float64: Need(8, key); { var v = *(double*)(p + pos); pos += 8; return v; }
            case GgufValueType.String: return Str(key);
            case GgufValueType.Array: return ArrayValue(key, depth);
            default: throw Fail($"metadata {key} has unknown value type {(uint)type}");
        }
    }

    private Array ArrayValue(string key, int depth)
    {
        if (depth >= MaxNesting) throw Fail($"metadata {key} nests arrays deeper than {MaxNesting}");
        var et = (GgufValueType)U32($"array type of {key}");
        ulong count = U64($"array length of {key}");
        int min = et switch { GgufValueType.String => 8, GgufValueType.Array => 12, _ => GgufValues.ScalarSize(et) };
        if (min == 0) throw Fail($"metadata {key} is an array of unknown type {(uint)et}");
        if (count > (ulong)Remaining / (ulong)min) throw Fail($"metadata {key} array length {count} is larger than the file can hold");
        if (count > int.MaxValue) throw Fail($"metadata {key} array length {count} is absurd");
        int n = (int)count;
        switch (et)
        {
            case GgufValueType.String: { var a = new string[n]; for (int i = 0; i < n; i++) a[i] = Str(key); return a; }
            case GgufValueType.Array: { var a = new Array[n]; for (int i = 0; i < n; i++) a[i] = ArrayValue(key, depth + 1); return a; }
            case GgufValueType.Bool:
            {
                var a = new bool[n];
                for (int i = 0; i < n; i++) { byte b = p[pos++]; if (b > 1) throw Fail($"metadata {key} holds bool value {b}"); a[i] = b == 1; }
                return a;
            }
            default:
            {
                Array a = et switch
                {
                    GgufValueType.UInt8 => new byte[n], GgufValueType.Int8 => new sbyte[n],
                    GgufValueType.UInt16 => new ushort[n], GgufValueType.Int16 => new short[n],
                    GgufValueType.UInt32 => new uint[n], GgufValueType.Int32 => new int[n],
                    GgufValueType.Float32 => new float[n], GgufValueType.UInt64 => new ulong[n],
                    GgufValueType.Int64 => new long[n], _ => new double[n],
                };
                long bytes = (long)n * min;
                var handle = System.Runtime.InteropServices.GCHandle.Alloc(a, System.Runtime.InteropServices.GCHandleType.Pinned);
                try { Buffer.MemoryCopy(p + pos, (void*)handle.AddrOfPinnedObject(), bytes, bytes); }
                finally { handle.Free(); }
                pos += bytes;
                return a;
            }
        }
    }
}
