using System.Buffers.Binary;
using System.Text.Json.Nodes;
using OpenWeights.Formats.Safetensors;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the safetensors reader: the JSON header mutated structurally (values of other JSON kinds, keys removed or
/// renamed, offsets and shapes changed, invalid UTF-8, lone surrogates, duplicate keys) and the file mutated as bytes
/// (header length set to huge values, bit flips, truncation), over the seeds in corpus/safetensors.
/// </summary>
public class SafetensorsFuzzTests(ITestOutputHelper output)
{
    /// <summary>Opens a file and reads every F32/F16/BF16 tensor as floats.</summary>
    public static bool Load(string path)
    {
        using var f = SafetensorsFile.Open(path);
        foreach (var t in f.Tensors)
        {
            if (t.DType is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 && t.ByteSize < 1 << 20) _ = f.ReadF32(t);
            _ = f.GetTensor(t.Name);
        }
        _ = f.Metadata.Count;
        return true;
    }

    /// <summary>The header JSON and the data of a well-formed file.</summary>
    private static (JsonNode Header, byte[] Data) Split(byte[] b)
    {
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(b);
        return (JsonNode.Parse(b.AsSpan(8, n))!, b[(8 + n)..]);
    }

    private static byte[] Join(byte[] header, byte[] data) =>
        [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. data];

    [Fact]
    public void Seeds_load()
    {
        var seeds = FormatFuzz.Seeds("safetensors");
        Assert.NotEmpty(seeds);
        foreach (var s in seeds) Assert.True(Load(s), s);
    }

    [Fact]
    public void Mutated_safetensors_files_load_or_fail_with_one_line()
    {
        using var dir = new TempDir();
        var seeds = FormatFuzz.Seeds("safetensors").Select(File.ReadAllBytes).ToList();
        string path = dir.File("fuzz.safetensors");
        byte[]? last = null;
        FormatFuzz.Run("safetensors", (r, _) =>
        {
            var seed = seeds[r.Next(seeds.Count)];
            byte[] file;
            if (r.Next(3) == 0)
            {
                int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
                file = FormatMutator.Binary(seed, r, [new Field(0, 8, FieldKind.Length)], 8 + n);
            }
            else
            {
                var (header, data) = Split(seed);
                file = Join(FormatMutator.Json(header, r), data);
            }
            File.WriteAllBytes(path, last = file);
            return Load(path);
        }, iterations: 3000, seconds: 3, log: output, lastInput: () => last);
    }

    [Fact]
    public void Regression_inputs_fail_with_one_line()
    {
        foreach (var file in FormatFuzz.Regressions("safetensors"))
        {
            var e = Record.Exception(() => Load(file));
            Assert.True(e is null || FormatFuzz.IsUserError(e), $"{Path.GetFileName(file)}: {e}");
        }
    }
}
