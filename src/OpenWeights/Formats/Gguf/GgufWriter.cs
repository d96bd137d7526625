using System.Text;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Formats.Gguf;

/// <summary>
/// Writes GGUF v3 files. Metadata keeps insertion order; tensor data is written in insertion order,
/// each aligned. The file is written to a temporary name and renamed into place, so a failure never
/// leaves a half-written file behind.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, object>> metadata = [];
    private readonly List<PendingTensor> tensors = [];

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Dimensions, long ByteSize, Action<Stream> WriteData);

    public int Alignment { get; private set; } = GgufFile.DefaultAlignment;

    /// <summary>Told at each tensor's start and every few MB of tensor data written (called on the writing thread).</summary>
    public IProgress<GgufWriteProgress>? Progress { get; set; }

    /// <summary>Adds or replaces a metadata value (see <see cref="GgufValues"/> for the .NET types allowed).</summary>
    public GgufWriter Set(string key, object value)
    {
        GgufValues.TypeOf(value); // validates
        if (value is Array a) ValidateArray(a, 0);
        if (key == "general.alignment")
        {
            if (value is not uint u || u == 0 || (u & (u - 1)) != 0) throw new ArgumentException("general.alignment must be a power-of-two uint");
            Alignment = (int)u;
        }
        int i = metadata.FindIndex(kv => kv.Key == key);
        if (i >= 0) metadata[i] = new(key, value); else metadata.Add(new(key, value));
        return this;
    }

    public GgufWriter Remove(string key) { metadata.RemoveAll(kv => kv.Key == key); return this; }

    /// <summary>Copies every metadata entry of an open file.</summary>
    public GgufWriter CopyMetadata(GgufFile src, Func<string, bool>? include = null)
    {
        foreach (var k in src.MetadataKeys) if (include?.Invoke(k) ?? true) Set(k, src.Metadata[k]);
        return this;
    }

    /// <summary>
    /// A writer holding every metadata entry and tensor of an open file (tensor bytes are streamed from its map
    /// when written), to be edited and written elsewhere. The source must stay open until Write returns.
    /// </summary>
    public static unsafe GgufWriter CopyOf(GgufFile src)
    {
        var w = new GgufWriter().CopyMetadata(src);
        foreach (var t in src.Tensors)
        {
            var info = t;
            w.AddTensor(t.Name, t.Type, t.Dimensions, t.ByteSize, s =>
            {
                byte* p = src.TensorPointer(info);
                for (long off = 0; off < info.ByteSize; off += 1 << 30)
                    s.Write(new ReadOnlySpan<byte>(p + off, (int)Math.Min(1 << 30, info.ByteSize - off)));
            });
        }
        return w;
    }

    private static void ValidateArray(Array a, int depth)
    {
        if (depth > 8) throw new ArgumentException("arrays nested too deep");
        var et = GgufValues.ElementTypeOf(a);
        if (et == GgufValueType.Array) foreach (Array inner in a) ValidateArray(inner, depth + 1);
    }

    /// <summary>Adds a tensor; <paramref name="dims"/> in ggml order (innermost first); data is its raw bytes.</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, ReadOnlyMemory<byte> data)
    {
        long bytes = ExpectedBytes(type, dims);
        if (data.Length != bytes) throw new ArgumentException($"tensor {name}: {data.Length} bytes given, {bytes} expected for {type} {string.Join("x", dims)}");
        return AddTensor(name, type, dims, bytes, s => s.Write(data.Span));
    }

    /// <summary>Adds an F32 tensor from floats.</summary>
    public GgufWriter AddTensor(string name, long[] dims, float[] data) =>
        AddTensor(name, GgmlType.F32, dims, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());

    /// <summary>Adds a tensor whose bytes are produced while writing (for large, streamed data).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, long byteSize, Action<Stream> writeData)
    {
        if (tensors.Any(t => t.Name == name)) throw new ArgumentException($"duplicate tensor {name}");
        if (dims.Length is 0 or > 4) throw new ArgumentException($"tensor {name}: 1 to 4 dimensions");
        if (byteSize != ExpectedBytes(type, dims)) throw new ArgumentException($"tensor {name}: byte size {byteSize} does not match {type} {string.Join("x", dims)}");
        tensors.Add(new PendingTensor(name, type, (long[])dims.Clone(), byteSize, writeData));
        return this;
    }

    public static long ExpectedBytes(GgmlType type, long[] dims)
    {
        long n = 1; foreach (var d in dims) n *= d;
        var (bs, bb) = GgmlTypes.TryGetLayout(type) ?? throw new ArgumentException($"unsupported type {type}");
        if (dims[0] % bs != 0) throw new ArgumentException($"row length {dims[0]} is not a multiple of the {type} block size {bs}");
        return n / bs * bb;
    }

    /// <summary>
    /// Writes the file atomically: a temporary file in the same folder, renamed into place once complete. The temporary
    /// file is deleted on any failure or cancellation (checked between tensors), so no half-written file is ever left;
    /// temporary files of this path left by a process that was killed are removed first.
    /// </summary>
    public void Write(string path, CancellationToken ct = default)
    {
        string full = System.IO.Path.GetFullPath(path);
        RemoveStaleTemporaries(full);
        string tmp = full + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(fs, ct);
                ct.ThrowIfCancellationRequested();
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary><c>{path}.tmp-{pid}-{id}</c> files whose process is gone (killed while writing).</summary>
    private static void RemoveStaleTemporaries(string full)
    {
        string? dir = System.IO.Path.GetDirectoryName(full);
        string prefix = System.IO.Path.GetFileName(full) + ".tmp-";
        if (dir is null || !Directory.Exists(dir)) return;
        foreach (var f in Directory.EnumerateFiles(dir, prefix + "*"))
        {
            var rest = System.IO.Path.GetFileName(f).AsSpan(prefix.Length);
            int dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest[..dash], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == Environment.ProcessId || IsRunning(pid)) continue;
            try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>Writes the whole file to a seekable or forward-only stream.</summary>
    public void WriteTo(Stream s) => WriteTo(s, default);

    /// <summary>Writes the whole file to a stream, checking for cancellation between tensors.</summary>
    public void WriteTo(Stream s, CancellationToken ct)
    {
        var w = new BinaryWriter(s, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (k, v) in metadata)
        {
            WriteString(w, k);
            var t = GgufValues.TypeOf(v);
            w.Write((uint)t);
            WriteValue(w, t, v);
        }
        long offset = 0;
        var offsets = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            offsets[i] = offset;
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = Align(offset + t.ByteSize);
        }
        w.Flush();
        long written = HeaderBytes();
        Pad(s, Align(written) - written);
        long pos = 0;
        long dataBytes = tensors.Count == 0 ? 0 : offsets[^1] + tensors[^1].ByteSize;
        for (int i = 0; i < tensors.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            Pad(s, offsets[i] - pos);
            var counting = new CountingStream(s);
            if (Progress is { } progress)
            {
                var (index, name, start) = (i, tensors[i].Name, offsets[i]);
                progress.Report(new GgufWriteProgress(index, tensors.Count, name, start, dataBytes));
                counting.OnWritten = n => progress.Report(new GgufWriteProgress(index, tensors.Count, name, start + n, dataBytes));
            }
            tensors[i].WriteData(counting);
            if (counting.Count != tensors[i].ByteSize) throw new InvalidOperationException($"tensor {tensors[i].Name}: wrote {counting.Count} bytes, expected {tensors[i].ByteSize}");
            pos = offsets[i] + tensors[i].ByteSize;
        }
        Progress?.Report(new GgufWriteProgress(tensors.Count, tensors.Count, null, dataBytes, dataBytes));
    }

    private long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private long HeaderBytes()
    {
        long n = 4 + 4 + 8 + 8;
        foreach (var (k, v) in metadata) n += 8 + Encoding.UTF8.GetByteCount(k) + 4 + ValueBytes(GgufValues.TypeOf(v), v);
        foreach (var t in tensors) n += 8 + Encoding.UTF8.GetByteCount(t.Name) + 4 + 8L * t.Dimensions.Length + 4 + 8;
        return n;
    }

    private static long ValueBytes(GgufValueType t, object v) => t switch
    {
        GgufValueType.String => 8 + Encoding.UTF8.GetByteCount((string)v),
        GgufValueType.Array => ArrayBytes((Array)v),
        _ => GgufValues.ScalarSize(t),
    };

    private static long ArrayBytes(Array a)
    {
        var et = GgufValues.ElementTypeOf(a);
        long n = 4 + 8;
        if (et == GgufValueType.String) foreach (string s in a) n += 8 + Encoding.UTF8.GetByteCount(s);
        else if (et == GgufValueType.Array) foreach (Array inner in a) n += ArrayBytes(inner);
        else n += (long)a.Length * GgufValues.ScalarSize(et);
        return n;
    }

    private static void Pad(Stream s, long n) { for (long i = 0; i < n; i++) s.WriteByte(0); }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType t, object v)
    {
        switch (v)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case Array a:
                var et = GgufValues.ElementTypeOf(a);
                w.Write((uint)et);
                w.Write((ulong)a.Length);
                foreach (var item in a) WriteValue(w, et, item!);
                break;
            default: throw new ArgumentException($"cannot write {t}");
        }
    }

    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Count { get; private set; }
        /// <summary>Called with <see cref="Count"/> each time another 4 MiB has gone through.</summary>
        public Action<long>? OnWritten;
        private long reported;
        public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Added(count); }
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Added(buffer.Length); }
        public override void WriteByte(byte value) { inner.WriteByte(value); Added(1); }
        private void Added(long n)
        {
            Count += n;
            if (OnWritten is not null && Count - reported >= 4 << 20) { reported = Count; OnWritten(Count); }
        }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Count; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}

/// <summary>
/// Where a <see cref="GgufWriter"/> is: tensor <see cref="Tensor"/> of <see cref="Tensors"/> (its name; null once all are
/// written) and the tensor-data bytes written of the total.
/// </summary>
public readonly record struct GgufWriteProgress(int Tensor, int Tensors, string? Name, long BytesWritten, long BytesTotal)
{
    public double Fraction => BytesTotal > 0 ? Math.Min(1.0, (double)BytesWritten / BytesTotal) : Tensors > 0 ? (double)Tensor / Tensors : 1.0;
    public bool Completed => Tensor >= Tensors;
}
