using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace OpenWeights.Tests.Fuzz;

/// <summary>A field of a binary header the mutator aims at: where it is, how wide, and what it means.</summary>
public enum FieldKind { Count, Length, TypeTag, Dimension, Offset, Value }

public readonly record struct Field(int Offset, int Size, FieldKind Kind);

/// <summary>
/// Structured mutations for the file-format fuzzers: bit flips, byte and field truncation, length and count fields set to
/// huge values, type tags changed, chunks deleted or duplicated (binary), and values replaced by other JSON kinds, keys
/// removed, duplicated or renamed, invalid UTF-8 and lone surrogates (JSON). Every choice comes from the given
/// <see cref="Random"/>, so a (seed, iteration) pair replays exactly.
/// </summary>
public static class FormatMutator
{
    private static readonly ulong[] HugeU64 = [ulong.MaxValue, long.MaxValue, 1UL << 63, 1UL << 32, (1UL << 32) - 1, 1UL << 31, int.MaxValue, 0x7FFF_FFFF_FFFF_FFF0, 0, 1];
    private static readonly uint[] OddU32 = [0, 1, 5, 7, 12, 13, 15, 31, 40, 41, 100, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF];

    /// <summary>One to three mutations of a binary file, aimed at <paramref name="fields"/> and the header bytes [0, headerEnd).</summary>
    public static byte[] Binary(byte[] seed, Random r, IReadOnlyList<Field> fields, int headerEnd)
    {
        var b = (byte[])seed.Clone();
        int n = 1 + r.Next(3);
        for (int k = 0; k < n && b.Length > 0; k++) b = BinaryOnce(b, r, fields, Math.Min(headerEnd, b.Length));
        return b;
    }

    private static byte[] BinaryOnce(byte[] b, Random r, IReadOnlyList<Field> fields, int headerEnd)
    {
        int h = Math.Max(1, headerEnd);
        var live = fields.Where(f => f.Offset + f.Size <= b.Length).ToList();
        switch (r.Next(10))
        {
            case 0: // bit flips in the header
                for (int i = 0, m = 1 + r.Next(8); i < m; i++) { int p = r.Next(h); b[p] ^= (byte)(1 << r.Next(8)); }
                return b;
            case 1: // interesting bytes
                b[r.Next(h)] = (byte)(r.Next(4) switch { 0 => 0, 1 => 0xFF, 2 => 0x7F, _ => 0x80 });
                return b;
            case 2: // truncate anywhere (mostly in the header)
                return b[..(r.Next(2) == 0 ? r.Next(h) : r.Next(b.Length))];
            case 3: // truncate at or inside a field
                if (live.Count == 0) goto case 2;
                var tf = live[r.Next(live.Count)];
                return b[..(tf.Offset + r.Next(tf.Size + 1))];
            case 4 or 5: // a length or count set to a huge or edge value
            {
                var lens = live.Where(f => f.Kind is FieldKind.Length or FieldKind.Count or FieldKind.Dimension or FieldKind.Offset).ToList();
                if (lens.Count == 0) goto case 0;
                var f = lens[r.Next(lens.Count)];
                ulong v = r.Next(3) == 0 ? (ulong)(b.Length + r.Next(-2, 3)) : HugeU64[r.Next(HugeU64.Length)];
                Write(b, f, v);
                return b;
            }
            case 6: // a type tag changed
            {
                var tags = live.Where(f => f.Kind == FieldKind.TypeTag).ToList();
                if (tags.Count == 0) goto case 0;
                var f = tags[r.Next(tags.Count)];
                Write(b, f, r.Next(2) == 0 ? (ulong)r.Next(16) : OddU32[r.Next(OddU32.Length)]);
                return b;
            }
            case 7: // a field's value nudged
            {
                if (live.Count == 0) goto case 0;
                var f = live[r.Next(live.Count)];
                ulong v = Read(b, f);
                Write(b, f, r.Next(2) == 0 ? v + 1 : v - 1);
                return b;
            }
            case 8: // delete a chunk
            {
                int p = r.Next(h), len = Math.Min(b.Length - p, 1 + r.Next(16));
                return [.. b.AsSpan(0, p), .. b.AsSpan(p + len)];
            }
            default: // duplicate a chunk
            {
                int p = r.Next(h), len = Math.Min(b.Length - p, 1 + r.Next(16));
                return [.. b.AsSpan(0, p + len), .. b.AsSpan(p, len), .. b.AsSpan(p + len)];
            }
        }
    }

    private static ulong Read(byte[] b, Field f) => f.Size switch
    {
        1 => b[f.Offset], 2 => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(f.Offset)),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(f.Offset)), _ => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(f.Offset)),
    };

    private static void Write(byte[] b, Field f, ulong v)
    {
        switch (f.Size)
        {
            case 1: b[f.Offset] = (byte)v; break;
            case 2: BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(f.Offset), (ushort)v); break;
            case 4: BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(f.Offset), (uint)v); break;
            default: BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(f.Offset), v); break;
        }
    }

    // ---- JSON ----

    /// <summary>One to three structural mutations of a JSON document, serialized; sometimes followed by a byte-level one (invalid UTF-8, truncation).</summary>
    public static byte[] Json(JsonNode seed, Random r)
    {
        var root = seed.DeepClone();
        int n = 1 + r.Next(3);
        for (int k = 0; k < n; k++) root = JsonOnce(root, r);
        // a lone surrogate cannot be serialized, so it is written as a marker and escaped afterwards
        var bytes = Encoding.UTF8.GetBytes(root.ToJsonString().Replace(LoneSurrogate, "\\ud800", StringComparison.Ordinal));
        return r.Next(8) switch
        {
            0 => InvalidUtf8(bytes, r),
            1 => bytes[..r.Next(bytes.Length + 1)],
            2 => DuplicateKey(bytes, r),
            _ => bytes,
        };
    }

    private static JsonNode JsonOnce(JsonNode root, Random r)
    {
        var nodes = new List<JsonNode>();
        Collect(root, nodes);
        var target = nodes[r.Next(nodes.Count)];
        var parent = target.Parent;
        JsonNode replacement = RandomValue(r, target);
        switch (r.Next(6))
        {
            case 0 when parent is JsonObject po: // remove a property
                po.Remove(target.GetPropertyName());
                return root;
            case 1 when parent is JsonObject po2: // rename a property
            {
                string name = target.GetPropertyName();
                po2.Remove(name);
                po2[RandomKey(r, name)] = target;
                return root;
            }
            case 2 when parent is JsonArray pa: // remove or duplicate an element
            {
                int i = target.GetElementIndex();
                if (r.Next(2) == 0) pa.RemoveAt(i); else pa.Insert(i, target.DeepClone());
                return root;
            }
            default: // replace a value by another kind
                if (parent is null) return replacement;
                target.ReplaceWith(replacement);
                return root;
        }
    }

    private const string LoneSurrogate = "LONE-SURROGATE-MARK";

    private static void Collect(JsonNode? n, List<JsonNode> into)
    {
        if (n is null) return;
        into.Add(n);
        if (n is JsonObject o) foreach (var (_, v) in o) Collect(v, into);
        else if (n is JsonArray a) foreach (var v in a) Collect(v, into);
    }

    private static string RandomKey(Random r, string old) => r.Next(4) switch
    {
        0 => "", 1 => old.ToUpperInvariant(), 2 => old + "\u0000\u001b[31m", _ => old[..Math.Min(old.Length, r.Next(old.Length + 1))],
    };

    private static JsonNode RandomValue(Random r, JsonNode like) => r.Next(16) switch
    {
        0 => JsonValue.Create(0)!, 1 => JsonValue.Create(-1)!, 2 => JsonValue.Create(1.5)!, 3 => JsonValue.Create(1e308)!,
        4 => JsonValue.Create(long.MaxValue)!, 5 => JsonValue.Create(ulong.MaxValue)!,
        6 => JsonValue.Create("")!, 7 => JsonValue.Create(LoneSurrogate)!, 8 => JsonValue.Create("\u001b]0;pwned\u0007" + new string('x', 200))!,
        9 => JsonValue.Create(true)!, 10 => new JsonArray(), 11 => new JsonObject(), 12 => JsonValue.Create("12")!,
        13 => new JsonArray(JsonValue.Create("a"), JsonValue.Create(1)),
        14 => JsonValue.Create(int.MaxValue)!,
        _ => r.Next(2) == 0 ? new JsonArray(like.DeepClone()) : new JsonObject { ["x"] = like.DeepClone() },
    };

    private static byte[] InvalidUtf8(byte[] b, Random r)
    {
        // inside a string when possible: after a quote
        int q = Array.IndexOf(b, (byte)'"', r.Next(Math.Max(1, b.Length)));
        int p = q >= 0 ? q + 1 : r.Next(b.Length + 1);
        byte[][] bad = [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]];
        return [.. b.AsSpan(0, p), .. bad[r.Next(bad.Length)], .. b.AsSpan(p)];
    }

    private static byte[] DuplicateKey(byte[] b, Random r)
    {
        // {"k": v, ...} -> {"k": v, "k": v, ...} for the first property of the top-level object
        string s = Encoding.UTF8.GetString(b);
        int colon = s.IndexOf(':');
        int comma = colon < 0 ? -1 : s.IndexOf(',', colon);
        if (s.Length == 0 || s[0] != '{' || comma < 0) return b;
        string first = s[1..comma];
        return Encoding.UTF8.GetBytes("{" + first + "," + s[1..]);
    }
}
