using System.Buffers.Binary;
using OpenWeights.Formats.Gguf;
using OpenWeights.Tensors.Kernels;
using OpenWeights.Tensors.Quant;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the GGUF reader and the tokenizer built from its metadata: mutations aimed at the header's counts, string
/// lengths, type tags, dimensions and offsets (<see cref="Fields"/>), over the seeds in corpus/gguf.
/// </summary>
public class GgufFuzzTests(ITestOutputHelper output)
{
    /// <summary>Opens a GGUF, reads every metadata value and the first row of every tensor, builds and runs its tokenizer.</summary>
    public static bool Load(string path)
    {
        using var f = GgufFile.Open(path);
        foreach (var k in f.MetadataKeys) _ = f.Metadata[k];
        foreach (var t in f.Tensors)
        {
            if (t.Dimensions.Length == 0 || t.RowLength is <= 0 or > 1 << 16 || t.RowCount == 0) continue;
            if (t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0)) continue;
            long rb = GgmlTypes.RowBytes(t.Type, (int)t.RowLength);
            if (rb > t.ByteSize) throw new Xunit.Sdk.XunitException($"tensor {t.Name}: a row of {rb} bytes in {t.ByteSize}");
            RowDecoder.Decode(t.Type, f.TensorData(t)[..(int)rb], new float[t.RowLength]);
        }
        if (f.Contains("tokenizer.ggml.model"))
        {
            var tok = Tokenizer.FromGguf(f);
            var ids = tok.Encode("hello world <s> <|begin_of_text|> naïve 日本", addSpecial: true, parseSpecial: true);
            _ = tok.Decode(ids);
            foreach (var id in ids) _ = tok.TokenBytes(id);
        }
        return true;
    }

    /// <summary>The header fields of a well-formed GGUF (the seeds), for the mutator to aim at; also returns where the header ends.</summary>
    public static (List<Field> Fields, int HeaderEnd) Fields(byte[] b)
    {
        var fields = new List<Field>();
        int p = 0;
        Field Add(int size, FieldKind k) { var f = new Field(p, size, k); fields.Add(f); p += size; return f; }
        ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(p));
        uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(p));
        p = 4; // magic
        Add(4, FieldKind.Value); // version
        ulong nt = U64(); Add(8, FieldKind.Count);
        ulong nkv = U64(); Add(8, FieldKind.Count);
        void Str() { ulong len = U64(); Add(8, FieldKind.Length); p += (int)len; }
        void Value(uint type)
        {
            switch ((GgufValueType)type)
            {
                case GgufValueType.String: Str(); break;
                case GgufValueType.Array:
                {
                    uint et = U32(); Add(4, FieldKind.TypeTag);
                    ulong n = U64(); Add(8, FieldKind.Length);
                    for (ulong i = 0; i < n; i++) Value(et);
                    break;
                }
                default: Add(GgufValues.ScalarSize((GgufValueType)type), FieldKind.Value); break;
            }
        }
        for (ulong i = 0; i < nkv; i++)
        {
            Str();
            uint type = U32(); Add(4, FieldKind.TypeTag);
            Value(type);
        }
        for (ulong i = 0; i < nt; i++)
        {
            Str();
            uint nd = U32(); Add(4, FieldKind.Count);
            for (uint d = 0; d < nd; d++) Add(8, FieldKind.Dimension);
            Add(4, FieldKind.TypeTag);
            Add(8, FieldKind.Offset);
        }
        // array elements are many; keep the walk's fields but thin out per-element scalars so lengths and tags get most hits
        var kept = fields.Where((f, i) => f.Kind != FieldKind.Value || i % 8 == 0).ToList();
        return (kept, p);
    }

    [Fact]
    public void Seeds_load()
    {
        var seeds = FormatFuzz.Seeds("gguf");
        Assert.NotEmpty(seeds);
        foreach (var s in seeds) Assert.True(Load(s), s);
    }

    [Fact]
    public void Mutated_gguf_files_load_or_fail_with_one_line()
    {
        using var dir = new TempDir();
        var seeds = FormatFuzz.Seeds("gguf").Select(File.ReadAllBytes).Select(b => (Bytes: b, Walk: Fields(b))).ToList();
        string path = dir.File("fuzz.gguf");
        byte[]? last = null;
        FormatFuzz.Run("gguf", (r, _) =>
        {
            var (bytes, (fields, headerEnd)) = seeds[r.Next(seeds.Count)];
            File.WriteAllBytes(path, last = FormatMutator.Binary(bytes, r, fields, headerEnd));
            return Load(path);
        }, iterations: 3000, seconds: 3, log: output, lastInput: () => last);
    }

    [Fact]
    public void Regression_inputs_fail_with_one_line()
    {
        foreach (var file in FormatFuzz.Regressions("gguf"))
        {
            var e = Record.Exception(() => Load(file));
            Assert.True(e is null || FormatFuzz.IsUserError(e), $"{Path.GetFileName(file)}: {e}");
        }
    }
}
