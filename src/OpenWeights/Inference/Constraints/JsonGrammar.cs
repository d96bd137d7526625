using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace OpenWeights.Inference.Constraints;

internal enum NodeKind : byte { Object, FreeObject, Array, String, Number, Integer, Literals, Union }

internal sealed class GNode
{
    public NodeKind Kind;
    public byte[][] Keys = [];        // Object: JSON-encoded keys with quotes
    public int[] PropNodes = [];      // Object: value node of each key
    public int[] FirstRequired = [];  // Object: index of the first required property at or after i (Keys.Length if none); length Keys.Length + 1
    public int Child;                 // FreeObject: value node; Array: items node
    public int Min, Max = int.MaxValue; // Array: item counts; String: code points
    public int[] Lits = [];           // Literals: literal ids
    public int[] Alts = [];           // Union: alternatives
}

/// <summary>
/// A JSON schema compiled into a byte-level pushdown automaton. Immutable and shareable between generations.
/// Supported: type (incl. type arrays), properties, required, additionalProperties, items, minItems, maxItems,
/// enum, const, anyOf, oneOf (as alternatives), allOf with one schema, local $ref, minLength, maxLength;
/// annotations and format are ignored; other validation keywords are rejected at compile time.
/// </summary>
internal sealed class JsonGrammar
{
    /// <summary>Whitespace at one position: a single space, or a newline and up to this many spaces of indentation.</summary>
    public const int MaxIndent = 16;
    public const int MaxIntDigits = 16, MaxFracDigits = 16, MaxExpDigits = 2;

    internal readonly GNode[] Nodes;
    internal readonly byte[][] Literals;
    internal readonly int Root;
    internal readonly int KeyString;

    /// <summary>Whitespace between tokens is at most one space (no newlines, no indentation), as json.dumps writes it.</summary>
    internal bool SingleSpace { get; private set; }

    private JsonGrammar(GNode[] nodes, byte[][] lits, int root, int keyString) { Nodes = nodes; Literals = lits; Root = root; KeyString = keyString; }

    /// <summary>Compiles a schema; null means any JSON object (json_object mode).</summary>
    /// <exception cref="OpenWeightsException">the schema is not valid JSON or uses an unsupported keyword.</exception>
    public static JsonGrammar Compile(string? jsonSchema)
    {
        var c = new Compiler();
        if (jsonSchema is null) return c.Finish(c.AnyObject);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(jsonSchema); }
        catch (JsonException e) { throw new OpenWeightsException($"JSON schema: not valid JSON: {e.Message.Split('\n')[0]}"); }
        using (doc)
        {
            c.RootElement = doc.RootElement;
            int root = c.Compile(doc.RootElement, "#");
            return c.Finish(root);
        }
    }

    /// <summary>
    /// A tool call: <c>{"name": NAME, ARGUMENTS_KEY: ARGS}</c> with one alternative per tool, ARGS that tool's parameters
    /// (see <see cref="Arguments(string?)"/>); with <paramref name="inArray"/>, inside a one-element array. Whitespace between
    /// tokens is at most one space, as templates write calls (json.dumps / tojson).
    /// </summary>
    public static JsonGrammar ToolCall(IReadOnlyList<(string Name, string? Parameters)> tools, string argumentsKey, bool inArray)
    {
        if (tools.Count == 0) throw new ArgumentException("no tools", nameof(tools));
        var c = new Compiler();
        var alts = new List<int>();
        foreach (var (name, parameters) in tools)
        {
            int args = c.ToolArguments(parameters);
            int nameNode = c.Literal(JsonSerializer.SerializeToUtf8Bytes(name, Compiler.KeyOptions));
            alts.Add(c.FixedObject(["name", argumentsKey], [nameNode, args]));
        }
        int call = alts.Count == 1 ? alts[0] : c.Add(new GNode { Kind = NodeKind.Union, Alts = [.. alts] });
        var g = c.Finish(inArray ? c.Add(new GNode { Kind = NodeKind.Array, Child = call, Min = 1, Max = 1 }) : call);
        g.SingleSpace = true;
        return g;
    }

    /// <summary>
    /// A tool's arguments: an object following the tool's parameter schema. null parameters: <c>{}</c>. Validation keywords
    /// outside the supported subset (pattern, minimum, ...) are not enforced; a schema that still does not compile, or whose
    /// root is not an object schema, gives any JSON object. Whitespace between tokens is at most one space.
    /// </summary>
    public static JsonGrammar Arguments(string? parameters)
    {
        var c = new Compiler();
        var g = c.Finish(c.ToolArguments(parameters));
        g.SingleSpace = true;
        return g;
    }

    public JsonState Start() => new(this);

    /// <summary>Whether the bytes form one complete value that the grammar accepts (no trailing bytes).</summary>
    public bool Accepts(ReadOnlySpan<byte> utf8)
    {
        var s = Start();
        foreach (var b in utf8) if (!s.Advance(b)) return false;
        return s.IsComplete;
    }

    public bool Accepts(string text) => Accepts(Encoding.UTF8.GetBytes(text));

    // ---- compiler ----

    private sealed class Compiler
    {
        public readonly List<GNode> Nodes = [];
        public readonly List<byte[]> Lits = [];
        private readonly Dictionary<string, int> litIds = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> refs = new(StringComparer.Ordinal);
        public JsonElement RootElement;
        /// <summary>Unsupported validation keywords are ignored instead of rejected (tool parameters: best effort).</summary>
        public bool Lenient;
        public readonly int Any, AnyObject, String, KeyString;

        private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
        {
            "title", "description", "default", "examples", "$comment", "$schema", "$id", "$anchor", "format", "deprecated",
            "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "contentSchema", "$defs", "definitions", "$vocabulary",
            "nullable", "discriminator", "strict", "name",
        };
        private static readonly HashSet<string> Unsupported = new(StringComparer.Ordinal)
        {
            "pattern", "patternProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
            "minProperties", "maxProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies",
            "prefixItems", "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
            "if", "then", "else", "not", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "additionalItems",
        };

        public static readonly JsonSerializerOptions KeyOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

        public Compiler()
        {
            String = Add(new GNode { Kind = NodeKind.String });
            KeyString = String;
            int num = Add(new GNode { Kind = NodeKind.Number });
            int lits = Add(new GNode { Kind = NodeKind.Literals, Lits = [Lit("true"u8), Lit("false"u8), Lit("null"u8)] });
            Any = Add(new GNode { Kind = NodeKind.Union });
            AnyObject = Add(new GNode { Kind = NodeKind.FreeObject, Child = Any });
            int anyArray = Add(new GNode { Kind = NodeKind.Array, Child = Any });
            Nodes[Any].Alts = [AnyObject, anyArray, String, num, lits];
        }

        public int Add(GNode n) { Nodes.Add(n); return Nodes.Count - 1; }

        public int Literal(byte[] json) => Add(new GNode { Kind = NodeKind.Literals, Lits = [Lit(json)] });

        /// <summary>An object with exactly these keys, all required, in this order.</summary>
        public int FixedObject(string[] keys, int[] values)
        {
            var first = new int[keys.Length + 1];
            for (int i = 0; i <= keys.Length; i++) first[i] = i;
            return Add(new GNode
            {
                Kind = NodeKind.Object, Keys = keys.Select(k => JsonSerializer.SerializeToUtf8Bytes(k, KeyOptions)).ToArray(),
                PropNodes = values, FirstRequired = first,
            });
        }

        /// <summary>A tool's parameter schema compiled leniently into this grammar, as <see cref="JsonGrammar.Arguments"/> describes.</summary>
        public int ToolArguments(string? parameters)
        {
            if (parameters is null) return FixedObject([], []);
            // compile alone first (a $ref cycle is found only by Finish), then into this grammar, where it cannot fail
            try
            {
                using var doc = JsonDocument.Parse(parameters);
                var alone = new Compiler { Lenient = true, RootElement = doc.RootElement };
                int r = alone.Compile(doc.RootElement, "#");
                if (alone.Nodes[r].Kind is not (NodeKind.Object or NodeKind.FreeObject)) return AnyObject;
                alone.Finish(r);
                refs.Clear();
                RootElement = doc.RootElement;
                Lenient = true;
                try { return Compile(doc.RootElement, "#"); }
                finally { Lenient = false; refs.Clear(); }
            }
            catch (Exception e) when (e is OpenWeightsException or JsonException) { return AnyObject; }
        }

        private int Lit(ReadOnlySpan<byte> bytes)
        {
            string k = Convert.ToHexString(bytes);
            if (litIds.TryGetValue(k, out int id)) return id;
            Lits.Add(bytes.ToArray());
            litIds[k] = Lits.Count - 1;
            return Lits.Count - 1;
        }

        private static byte[] Compact(JsonElement e)
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                e.WriteTo(w);
            return ms.ToArray();
        }

        private static OpenWeightsException Error(string msg, string path) =>
            new(path == "#" ? $"JSON schema: {msg}" : $"JSON schema: {msg} (at {path})");

        public int Compile(JsonElement s, string path)
        {
            if (s.ValueKind == JsonValueKind.True) return Any;
            if (s.ValueKind == JsonValueKind.False) throw Error("schema 'false' allows no value", path);
            if (s.ValueKind != JsonValueKind.Object) throw Error($"a schema must be an object or a boolean, not {s.ValueKind.ToString().ToLowerInvariant()}", path);

            var constraints = new List<string>();
            foreach (var p in s.EnumerateObject())
            {
                if (Annotations.Contains(p.Name)) continue;
                if (Unsupported.Contains(p.Name))
                {
                    if (Lenient) continue;
                    throw Error($"unsupported schema keyword '{p.Name}'", path);
                }
                if (p.Name == "uniqueItems")
                {
                    if (p.Value.ValueKind == JsonValueKind.True && !Lenient) throw Error("unsupported schema keyword 'uniqueItems'", path);
                    continue;
                }
                constraints.Add(p.Name);
            }
            bool Has(string k) => s.TryGetProperty(k, out _);
            void Alone(string k, params string[] allowed)
            {
                var other = constraints.Where(c => c != k && !allowed.Contains(c)).ToList();
                if (other.Count > 0) throw Error($"'{k}' combined with '{other[0]}' is not supported", path);
            }

            if (s.TryGetProperty("$ref", out var refEl))
            {
                Alone("$ref");
                string r = refEl.GetString() ?? "";
                if (refs.TryGetValue(r, out int existing)) return existing;
                int idx = Add(new GNode { Kind = NodeKind.Union });
                refs[r] = idx;
                var target = Resolve(r, path);
                Nodes[idx].Alts = [Compile(target, r)];
                return idx;
            }
            if (s.TryGetProperty("allOf", out var allOf))
            {
                Alone("allOf");
                if (allOf.ValueKind != JsonValueKind.Array || allOf.GetArrayLength() != 1) throw Error("'allOf' is supported only with exactly one schema", path);
                return Compile(allOf[0], path + "/allOf/0");
            }
            foreach (var k in (string[])["anyOf", "oneOf"])
            {
                if (!s.TryGetProperty(k, out var alts)) continue;
                Alone(k);
                if (alts.ValueKind != JsonValueKind.Array || alts.GetArrayLength() == 0) throw Error($"'{k}' must be a non-empty array", path);
                var ids = new List<int>();
                int i = 0;
                foreach (var a in alts.EnumerateArray()) ids.Add(Compile(a, $"{path}/{k}/{i++}"));
                return Add(new GNode { Kind = NodeKind.Union, Alts = [.. ids] });
            }

            // types
            List<string>? types = null;
            if (s.TryGetProperty("type", out var t))
            {
                types = t.ValueKind switch
                {
                    JsonValueKind.String => [t.GetString()!],
                    JsonValueKind.Array => t.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw Error("'type' entries must be strings", path)).ToList(),
                    _ => throw Error("'type' must be a string or an array of strings", path),
                };
                foreach (var ty in types)
                    if (ty is not ("object" or "array" or "string" or "number" or "integer" or "boolean" or "null"))
                        throw Error($"unknown type '{ty}'", path);
                if (types.Count == 0) throw Error("'type' is an empty array", path);
            }

            if (Has("enum") || Has("const"))
            {
                if (Has("enum") && Has("const")) throw Error("'enum' combined with 'const' is not supported", path);
                Alone(Has("enum") ? "enum" : "const", "type");
                var values = new List<JsonElement>();
                if (s.TryGetProperty("const", out var cv)) values.Add(cv);
                else
                {
                    var ev = s.GetProperty("enum");
                    if (ev.ValueKind != JsonValueKind.Array) throw Error("'enum' must be an array", path);
                    values.AddRange(ev.EnumerateArray());
                }
                var ids = values.Where(v => types is null || types.Any(ty => TypeMatches(ty, v))).Select(v => Lit(Compact(v))).Distinct().ToArray();
                if (ids.Length == 0) throw Error("'enum' allows no value", path);
                return Add(new GNode { Kind = NodeKind.Literals, Lits = ids });
            }

            if (types is null)
            {
                types = [];
                if (Has("properties") || Has("required") || Has("additionalProperties")) types.Add("object");
                if (Has("items") || Has("minItems") || Has("maxItems")) types.Add("array");
                if (Has("minLength") || Has("maxLength")) types.Add("string");
                if (types.Count == 0) return Any;
            }
            var nodes = types.Distinct().Select(ty => ty switch
            {
                "object" => CompileObject(s, path),
                "array" => CompileArray(s, path),
                "string" => CompileString(s, path),
                "number" => Add(new GNode { Kind = NodeKind.Number }),
                "integer" => Add(new GNode { Kind = NodeKind.Integer }),
                "boolean" => Add(new GNode { Kind = NodeKind.Literals, Lits = [Lit("true"u8), Lit("false"u8)] }),
                _ => Add(new GNode { Kind = NodeKind.Literals, Lits = [Lit("null"u8)] }),
            }).ToArray();
            return nodes.Length == 1 ? nodes[0] : Add(new GNode { Kind = NodeKind.Union, Alts = nodes });
        }

        private static bool TypeMatches(string type, JsonElement v) => type switch
        {
            "object" => v.ValueKind == JsonValueKind.Object,
            "array" => v.ValueKind == JsonValueKind.Array,
            "string" => v.ValueKind == JsonValueKind.String,
            "number" => v.ValueKind == JsonValueKind.Number,
            "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out var d) && d == decimal.Truncate(d),
            "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
            _ => v.ValueKind == JsonValueKind.Null,
        };

        private int Count(JsonElement s, string key, string path, int def)
        {
            if (!s.TryGetProperty(key, out var v)) return def;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n) || n < 0) throw Error($"'{key}' must be a non-negative integer", path);
            return (int)Math.Min(n, int.MaxValue);
        }

        private int CompileString(JsonElement s, string path)
        {
            int min = Count(s, "minLength", path, 0), max = Count(s, "maxLength", path, int.MaxValue);
            if (min > max) throw Error($"minLength {min} is greater than maxLength {max}", path);
            if (min == 0 && max == int.MaxValue) return String;
            return Add(new GNode { Kind = NodeKind.String, Min = min, Max = max });
        }

        private int CompileArray(JsonElement s, string path)
        {
            int min = Count(s, "minItems", path, 0), max = Count(s, "maxItems", path, int.MaxValue);
            if (min > max) throw Error($"minItems {min} is greater than maxItems {max}", path);
            int items = Any;
            if (s.TryGetProperty("items", out var it))
            {
                if (it.ValueKind == JsonValueKind.Array) throw Error("tuple-form 'items' (an array of schemas) is not supported", path);
                if (it.ValueKind == JsonValueKind.False) { if (min > 0) throw Error("'items' is false but minItems > 0", path); max = 0; }
                else items = Compile(it, path + "/items");
            }
            return Add(new GNode { Kind = NodeKind.Array, Child = items, Min = min, Max = max });
        }

        private int CompileObject(JsonElement s, string path)
        {
            var names = new List<string>();
            var schemas = new List<int>();
            var forbidden = new HashSet<string>(StringComparer.Ordinal);
            int node = Add(new GNode { Kind = NodeKind.Object });
            if (s.TryGetProperty("properties", out var props))
            {
                if (props.ValueKind != JsonValueKind.Object) throw Error("'properties' must be an object", path);
                foreach (var p in props.EnumerateObject())
                {
                    if (p.Value.ValueKind == JsonValueKind.False) { forbidden.Add(p.Name); continue; } // may not appear
                    names.Add(p.Name);
                    schemas.Add(Compile(p.Value, $"{path}/properties/{p.Name}"));
                }
            }
            var required = new HashSet<string>(StringComparer.Ordinal);
            if (s.TryGetProperty("required", out var req))
            {
                if (req.ValueKind != JsonValueKind.Array) throw Error("'required' must be an array of strings", path);
                foreach (var r in req.EnumerateArray())
                {
                    if (r.ValueKind != JsonValueKind.String) throw Error("'required' must be an array of strings", path);
                    required.Add(r.GetString()!);
                }
            }
            bool additionalFalse = false;
            int additional = Any;
            if (s.TryGetProperty("additionalProperties", out var ap))
            {
                if (ap.ValueKind == JsonValueKind.False) additionalFalse = true;
                else additional = Compile(ap, path + "/additionalProperties");
            }
            foreach (var r in required)
            {
                if (names.Contains(r)) continue;
                if (forbidden.Contains(r)) throw Error($"required property '{r}' has schema 'false'", path);
                if (additionalFalse) throw Error($"required property '{r}' is not in 'properties' and additionalProperties is false", path);
                names.Add(r); schemas.Add(additional);
            }
            var n = Nodes[node];
            if (names.Count == 0 && !additionalFalse)
            {
                n.Kind = NodeKind.FreeObject; n.Child = additional;
                return node;
            }
            n.Keys = names.Select(k => JsonSerializer.SerializeToUtf8Bytes(k, KeyOptions)).ToArray();
            n.PropNodes = [.. schemas];
            n.FirstRequired = new int[names.Count + 1];
            n.FirstRequired[names.Count] = names.Count;
            for (int i = names.Count - 1; i >= 0; i--) n.FirstRequired[i] = required.Contains(names[i]) ? i : n.FirstRequired[i + 1];
            return node;
        }

        private JsonElement Resolve(string r, string path)
        {
            if (!r.StartsWith('#')) throw Error($"only local $ref ('#/...') is supported, not '{r}'", path);
            var cur = RootElement;
            if (r.Length <= 1) return cur;
            if (r[1] != '/') throw Error($"$ref '{r}' is not a JSON pointer", path);
            foreach (var raw in r[2..].Split('/'))
            {
                string seg = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
                if (cur.ValueKind == JsonValueKind.Object && cur.TryGetProperty(seg, out var next)) cur = next;
                else if (cur.ValueKind == JsonValueKind.Array && int.TryParse(seg, out int i) && i >= 0 && i < cur.GetArrayLength()) cur = cur[i];
                else throw Error($"$ref '{r}' does not resolve", path);
            }
            return cur;
        }

        public JsonGrammar Finish(int root)
        {
            // a union reached again through unions only would never consume a byte
            var state = new byte[Nodes.Count];
            void Visit(int i)
            {
                if (Nodes[i].Kind != NodeKind.Union) return;
                if (state[i] == 2) return;
                if (state[i] == 1) throw new OpenWeightsException("JSON schema: a $ref cycle that never enters an object or array");
                state[i] = 1;
                foreach (var a in Nodes[i].Alts) Visit(a);
                state[i] = 2;
            }
            for (int i = 0; i < Nodes.Count; i++) Visit(i);
            return new JsonGrammar([.. Nodes], [.. Lits], root, KeyString);
        }
    }
}
