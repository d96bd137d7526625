using OpenWeights.Formats.Safetensors;

namespace OpenWeights.Tests.Formats;

public class SafetensorsTests
{
    [Fact]
    public void RoundTripsTensorsAndMetadata()
    {
        using var dir = new TempDir();
        var p = dir.File("a.safetensors");
        new SafetensorsWriter().SetMetadata("format", "pt")
            .Add("w", [2, 3], [1, 2, 3, 4, 5, 6])
            .Add("h", SafetensorsDType.F16, [2], [0x00, 0x3C, 0x00, 0xC0]) // 1.0, -2.0
            .Add("b", SafetensorsDType.BF16, [1], [0x80, 0x3F]) // 1.0
            .Write(p);
        using var f = SafetensorsFile.Open(p);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(0, f.DataOffset % 8);
        var w = f.GetTensor("w");
        Assert.Equal([2L, 3L], w.Shape);
        Assert.Equal([1f, 2, 3, 4, 5, 6], f.ReadF32(w));
        Assert.Equal([1f, -2f], f.ReadF32(f.GetTensor("h")));
        Assert.Equal([1f], f.ReadF32(f.GetTensor("b")));
    }

    [Fact]
    public void MalformedFilesFailWithOneLine()
    {
        using var dir = new TempDir();
        var good = dir.File("a.safetensors");
        new SafetensorsWriter().Add("w", [2, 2], [1, 2, 3, 4]).Write(good);
        var bytes = File.ReadAllBytes(good);
        var bad = dir.File("bad.safetensors");
        for (int len = 0; len < bytes.Length; len++)
        {
            File.WriteAllBytes(bad, bytes[..len]);
            var e = Assert.Throws<InvalidModelFileException>(() => SafetensorsFile.Open(bad).Dispose());
            Assert.DoesNotContain('\n', e.Message);
        }
        var json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8]}}";
        File.WriteAllBytes(bad, [.. BitConverter.GetBytes((ulong)json.Length), .. System.Text.Encoding.UTF8.GetBytes(json), .. new byte[16]]);
        Assert.Contains("needs 16", Assert.Throws<InvalidModelFileException>(() => SafetensorsFile.Open(bad)).Message);
        json = "{\"w\":{\"dtype\":\"Q9\",\"shape\":[4],\"data_offsets\":[0,16]}}";
        File.WriteAllBytes(bad, [.. BitConverter.GetBytes((ulong)json.Length), .. System.Text.Encoding.UTF8.GetBytes(json), .. new byte[16]]);
        Assert.Contains("unknown dtype", Assert.Throws<InvalidModelFileException>(() => SafetensorsFile.Open(bad)).Message);
        File.WriteAllBytes(bad, [.. BitConverter.GetBytes(5UL), .. "{oops"u8.ToArray()]);
        Assert.Contains("not valid JSON", Assert.Throws<InvalidModelFileException>(() => SafetensorsFile.Open(bad)).Message);
    }
}
