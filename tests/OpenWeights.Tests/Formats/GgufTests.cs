using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Quant;

namespace OpenWeights.Tests.Formats;

public class GgufTests
{
    private static GgufWriter SampleWriter()
    {
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.Set("u8", (byte)200).Set("i8", (sbyte)-5).Set("u16", (ushort)60000).Set("i16", (short)-300)
         .Set("u32", 4000000000u).Set("i32", -7).Set("f32", 1.5f).Set("bool", true).Set("u64", ulong.MaxValue)
         .Set("i64", long.MinValue).Set("f64", Math.PI).Set("str", "héllo ▁ 🙂")
         .Set("strs", new[] { "a", "", "ünï" }).Set("ints", new[] { 1, -2, 3 }).Set("floats", new[] { 0.5f, -1f })
         .Set("nested", new Array[] { new[] { 1, 2 }, new[] { "x" }, Array.Empty<float>() })
         .Set("empty", Array.Empty<string>());
        w.AddTensor("a", [4, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
        w.AddTensor("b", GgmlType.F16, [32], new byte[64]);
        w.AddTensor("c", GgmlType.Q8_0, [64, 3], Enumerable.Range(0, 6 * 34).Select(i => (byte)i).ToArray());
        return w;
    }

    [Fact]
    public void RoundTripsEveryValueTypeAndTensor()
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        SampleWriter().Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal((byte)200, f.Metadata["u8"]);
        Assert.Equal((sbyte)-5, f.Metadata["i8"]);
        Assert.Equal((ushort)60000, f.Metadata["u16"]);
        Assert.Equal((short)-300, f.Metadata["i16"]);
        Assert.Equal(4000000000L, f.GetInteger("u32"));
        Assert.Equal(-7L, f.GetInteger("i32"));
        Assert.Equal(1.5f, f.Metadata["f32"]);
        Assert.True(f.GetBool("bool"));
        Assert.Equal(ulong.MaxValue, f.Metadata["u64"]);
        Assert.Equal(long.MinValue, f.GetInteger("i64"));
        Assert.Equal(Math.PI, f.GetNumber("f64"));
        Assert.Equal("héllo ▁ 🙂", f.GetString("str"));
        Assert.Equal(["a", "", "ünï"], f.GetArray<string>("strs")!);
        Assert.Equal([1, -2, 3], f.GetArray<int>("ints")!);
        Assert.Equal([1L, -2L, 3L], f.GetArray<long>("ints")!);
        Assert.Equal([0.5f, -1f], f.GetArray<float>("floats")!);
        var nested = (Array[])f.Metadata["nested"];
        Assert.Equal([1, 2], (int[])nested[0]);
        Assert.Equal(["x"], (string[])nested[1]);
        Assert.Empty((float[])nested[2]);
        Assert.Empty(f.GetArray<string>("empty")!);
        Assert.Null(f.GetString("missing"));
        Assert.Equal(["general.architecture", "u8"], f.MetadataKeys.Take(2));

        Assert.Equal(3, f.Tensors.Count);
        var a = f.GetTensor("a");
        Assert.Equal([4L, 2L], a.Dimensions);
        Assert.Equal(4, a.RowLength);
        Assert.Equal(2, a.RowCount);
        var data = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.TensorData(a)).ToArray();
        Assert.Equal([1f, 2, 3, 4, 5, 6, 7, 8], data);
        var c = f.GetTensor("c");
        Assert.Equal(GgmlType.Q8_0, c.Type);
        Assert.Equal(6 * 34, c.ByteSize);
        Assert.Equal((byte)5, f.TensorData(c)[5]);
        foreach (var t in f.Tensors) Assert.Equal(0, (f.DataOffset + t.Offset) % 32);
    }

    [Fact]
    public void WrongMetadataTypeIsAClearError()
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        SampleWriter().Write(path);
        using var f = GgufFile.Open(path);
        var e = Assert.Throws<InvalidModelFileException>(() => f.GetString("u32"));
        Assert.Contains("u32", e.Message);
        Assert.Throws<InvalidModelFileException>(() => f.GetTensor("nope"));
    }

    [Fact]
    public void CustomAlignmentIsHonoured()
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        var w = SampleWriter().Set("general.alignment", 64u);
        w.Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(64, f.Alignment);
        foreach (var t in f.Tensors) Assert.Equal(0, (f.DataOffset + t.Offset) % 64);
        Assert.Equal([1f, 2, 3, 4, 5, 6, 7, 8], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.TensorData(f.GetTensor("a"))).ToArray());
    }

    [Fact]
    public void EveryTruncationFailsWithAClearError()
    {
        using var dir = new TempDir();
        var full = dir.File("m.gguf");
        SampleWriter().Write(full);
        var bytes = File.ReadAllBytes(full);
        var cut = dir.File("cut.gguf");
        for (int len = 0; len < bytes.Length; len++)
        {
            File.WriteAllBytes(cut, bytes[..len]);
            var e = Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(cut).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains("cut.gguf", e.Message);
        }
    }

    private static byte[] Patch(byte[] src, int offset, ulong value, int width)
    {
        var b = (byte[])src.Clone();
        for (int i = 0; i < width; i++) b[offset + i] = (byte)(value >> (8 * i));
        return b;
    }

    [Theory]
    [InlineData(0, 0x12345678UL, 4, "bad magic")]
    [InlineData(4, 1UL, 4, "version 1")]
    [InlineData(4, 99UL, 4, "version 99")]
    [InlineData(8, 1UL << 60, 8, "tensor count")]
    [InlineData(16, 1UL << 60, 8, "metadata count")]
    [InlineData(24, 1UL << 62, 8, "string length")]
    public void HostileHeadersAreRefused(int offset, ulong value, int width, string expected)
    {
        using var dir = new TempDir();
        var full = dir.File("m.gguf");
        SampleWriter().Write(full);
        var bad = dir.File("bad.gguf");
        File.WriteAllBytes(bad, Patch(File.ReadAllBytes(full), offset, value, width));
        var e = Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose());
        Assert.Contains(expected, e.Message);
    }

    /// <summary>Finds the tensor-info fields of tensor <paramref name="name"/> in a written file.</summary>
    private static int TensorInfoOffset(byte[] bytes, string name)
    {
        var needle = System.Text.Encoding.UTF8.GetBytes(name);
        var lenPrefix = BitConverter.GetBytes((ulong)needle.Length);
        var pat = lenPrefix.Concat(needle).ToArray();
        int idx = bytes.AsSpan().LastIndexOf(pat);
        Assert.True(idx > 0);
        return idx + pat.Length; // points at n_dims
    }

    [Fact]
    public void ReadsVersion2()
    {
        using var dir = new TempDir();
        var full = dir.File("m.gguf");
        SampleWriter().Write(full);
        var v2 = dir.File("v2.gguf");
        File.WriteAllBytes(v2, Patch(File.ReadAllBytes(full), 4, 2, 4)); // v2 has v3's layout (64-bit counts)
        using var f = GgufFile.Open(v2);
        Assert.Equal(2u, f.Version);
        Assert.Equal(3, f.Tensors.Count);
    }

    [Fact]
    public void UnknownTensorTypeIsNamed()
    {
        using var dir = new TempDir();
        var full = dir.File("m.gguf");
        SampleWriter().Write(full);
        var bytes = File.ReadAllBytes(full);
        int p = TensorInfoOffset(bytes, "b"); // n_dims(4) dims(8) type(4)
        var bad = dir.File("bad.gguf");
        File.WriteAllBytes(bad, Patch(bytes, p + 4 + 8, 77, 4));
        var e = Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose());
        Assert.Contains("unknown or unsupported type 77", e.Message);
    }

    [Fact]
    public void OverlappingAndOutOfRangeTensorsAreRefused()
    {
        using var dir = new TempDir();
        var full = dir.File("m.gguf");
        SampleWriter().Write(full);
        var bytes = File.ReadAllBytes(full);
        int p = TensorInfoOffset(bytes, "b"); // n_dims(4) dims(8) type(4) offset(8)
        var bad = dir.File("bad.gguf");
        File.WriteAllBytes(bad, Patch(bytes, p + 4 + 8 + 4, 0, 8)); // b now starts where a starts
        Assert.Contains("overlap", Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose()).Message);
        File.WriteAllBytes(bad, Patch(bytes, p + 4 + 8 + 4, 1UL << 40, 8));
        Assert.Contains("past the end", Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose()).Message);
        File.WriteAllBytes(bad, Patch(bytes, p + 4 + 8 + 4, 33, 8));
        Assert.Contains("not aligned", Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose()).Message);
        File.WriteAllBytes(bad, Patch(bytes, p, 9, 4));
        Assert.Contains("dimensions", Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(bad).Dispose()).Message);
    }

    [Fact]
    public void MissingFileAndDirectoryAreClearErrors()
    {
        using var dir = new TempDir();
        Assert.Contains("not found", Assert.Throws<OpenWeightsException>(() => GgufFile.Open(dir.File("none.gguf"))).Message);
        Assert.Contains("directory", Assert.Throws<OpenWeightsException>(() => GgufFile.Open(dir.Path)).Message);
        var txt = dir.File("x.gguf");
        File.WriteAllText(txt, "this is definitely not a gguf file at all");
        Assert.Contains("bad magic", Assert.Throws<InvalidModelFileException>(() => GgufFile.Open(txt)).Message);
    }

    [Fact]
    public void WriterFailureLeavesNoFile()
    {
        using var dir = new TempDir();
        var path = dir.File("m.gguf");
        var w = new GgufWriter().Set("general.architecture", "llama");
        w.AddTensor("x", GgmlType.F32, [4], 16, s => throw new IOException("disk full"));
        Assert.Throws<IOException>(() => w.Write(path));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void ReadsRealFiles()
    {
        var p = TestData.Require("models/llama-2-tiny-random.gguf");
        using var f = GgufFile.Open(p);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(12, f.Tensors.Count);
        Assert.Equal(32000, f.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        Assert.All(f.Tensors.Where(t => t.Dimensions.Length == 2), t => Assert.Equal(GgmlType.F16, t.Type));

        using var s = GgufFile.Open(TestData.Require("models/stories260K.gguf"));
        Assert.Equal(512, s.GetArray<string>("tokenizer.ggml.tokens")!.Length);
        Assert.Equal(64, s.GetInteger("llama.embedding_length"));
    }
}
