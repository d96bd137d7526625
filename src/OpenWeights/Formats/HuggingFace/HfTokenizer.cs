using System.Text.Json;

namespace OpenWeights.Formats.HuggingFace;

/// <summary>
/// <c>tokenizer.json</c> + <c>tokenizer_config.json</c> (+ <c>chat_template.jinja</c>) as GGUF <c>tokenizer.*</c>
/// metadata, the way llama.cpp's convert_hf_to_gguf.py builds it: byte-level BPE -> model "gpt2" with a
/// <c>tokenizer.ggml.pre</c> guessed from the pre-tokenizer; SentencePiece-style BPE (byte_fallback) -> model "llama".
/// </summary>
public static class HfTokenizer
{
    // GGUF token types (llama.cpp llama_token_type)
    public const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    /// <summary>Adds the tokenizer metadata of a checkpoint folder; nothing when it has no tokenizer.json.</summary>
    public static void AddMetadata(string dir, int vocabSize, Action<string, object> set)
    {
        string path = Path.Combine(dir, "tokenizer.json");
        var config = ReadConfig(Path.Combine(dir, "tokenizer_config.json"));
        if (File.Exists(path))
        {
            using var doc = HfJson.Parse(path, "tokenizer.json");
            HfJson.Read("tokenizer.json", () => AddVocab(doc.RootElement, config, vocabSize, set));
        }
        string? template = null;
        string jinja = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinja)) template = File.ReadAllText(jinja);
        else if (config is { } c && c.TryGetProperty("chat_template", out var ct))
            template = HfJson.Read("tokenizer_config.json", () => ChatTemplates(ct, set));
        if (template is not null) set("tokenizer.chat_template", template);
    }

    /// <summary>The default template of tokenizer_config.json's chat_template (a string or a list of named templates); the others are set as tokenizer.chat_template.NAME.</summary>
    private static string? ChatTemplates(JsonElement ct, Action<string, object> set)
    {
        string? template = null;
        if (ct.ValueKind == JsonValueKind.String) template = ct.GetString();
        else if (ct.ValueKind == JsonValueKind.Array)
        {
            // the list form: [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
            foreach (var e in ct.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("name", out var n) || !e.TryGetProperty("template", out var t)
                    || n.ValueKind != JsonValueKind.String || t.ValueKind != JsonValueKind.String)
                    throw new InvalidModelFileException("tokenizer_config.json: chat_template list entries need a name and a template");
                if (n.GetString() == "default") template = t.GetString();
                else set("tokenizer.chat_template." + n.GetString(), t.GetString()!);
            }
        }
        else if (ct.ValueKind != JsonValueKind.Null) throw new InvalidModelFileException("tokenizer_config.json: chat_template is neither a string nor a list");
        return template;
    }

    private static JsonElement? ReadConfig(string path)
    {
        if (!File.Exists(path)) return null;
        using var doc = HfJson.Parse(path, "tokenizer_config.json");
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidModelFileException("tokenizer_config.json is not a JSON object");
        return doc.RootElement.Clone();
    }

    private static void AddVocab(JsonElement root, JsonElement? config, int vocabSize, Action<string, object> set)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidModelFileException("tokenizer.json has no model object");
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE") throw new OpenWeightsException($"tokenizer.json: {UntrustedText.Quote(type)} tokenizers are not supported yet (BPE only)");
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new InvalidModelFileException("tokenizer.json: model.vocab is missing");

        var byId = new Dictionary<int, string>();
        var types = new Dictionary<int, int>();
        foreach (var p in vocab.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0) throw new InvalidModelFileException($"tokenizer.json: token {UntrustedText.Quote(p.Name)} has an invalid id");
            byId[id] = p.Name;
        }
        var specialIds = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind is not (JsonValueKind.Array or JsonValueKind.Null))
            throw new InvalidModelFileException("tokenizer.json: added_tokens is not a list");
        if (added.ValueKind == JsonValueKind.Array)
            foreach (var a in added.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("id", out var idE) || idE.ValueKind != JsonValueKind.Number || !idE.TryGetInt32(out int id) || id < 0
                    || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                    throw new InvalidModelFileException("tokenizer.json: an added token is not an object with an integer id and a string content");
                string content = c.GetString()!;
                bool special = a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                bool control = special || LooksSpecial(content);
                types[id] = control ? Control : UserDefined;
                // convert_hf_to_gguf writes user-defined tokens with their SentencePiece spaces as spaces (Gemma's "▁▁"
                // whitespace tokens): llama.cpp matches user-defined tokens in raw text and renders them verbatim
                byId[id] = control ? content : content.Replace('\u2581', ' ');
                if (special) specialIds.Add(id);
            }

        bool byteLevel = HasType(root, "pre_tokenizer", "ByteLevel") || HasType(root, "decoder", "ByteLevel");
        bool byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
        if (!byteLevel && !byteFallback) throw new OpenWeightsException("tokenizer.json: a BPE tokenizer that is neither byte-level nor SentencePiece-style (byte_fallback) is not supported");

        int maxId = byId.Count == 0 ? -1 : byId.Keys.Max();
        int n = Math.Max(vocabSize, maxId + 1);
        if (maxId >= vocabSize) throw new InvalidModelFileException($"tokenizer.json: token id {maxId} is outside the model's vocabulary of {vocabSize}");
        var tokens = new string[n];
        var tokenTypes = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (byId.TryGetValue(i, out var s))
            {
                tokens[i] = s;
                tokenTypes[i] = types.TryGetValue(i, out var ty) ? ty
                    : !byteLevel && s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s.EndsWith('>') ? Byte
                    : Normal;
            }
            else { tokens[i] = $"[PAD{i}]"; tokenTypes[i] = Unused; }
        }

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var mg) && mg.ValueKind == JsonValueKind.Array)
            foreach (var m in mg.EnumerateArray())
            {
                if (m.ValueKind == JsonValueKind.String) merges.Add(m.GetString()!);
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                    merges.Add(m[0].GetString() + " " + m[1].GetString());
                else throw new InvalidModelFileException("tokenizer.json: a merge is neither \"a b\" nor [a, b]");
            }

        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = n - 1; i >= 0; i--) if (tokenTypes[i] != Unused) ids[tokens[i]] = i;
        string? unk = model.TryGetProperty("unk_token", out var uk) && uk.ValueKind == JsonValueKind.String ? uk.GetString() : null;

        if (byteLevel)
        {
            set("tokenizer.ggml.model", "gpt2");
            set("tokenizer.ggml.pre", GuessPre(root));
            set("tokenizer.ggml.tokens", tokens);
            set("tokenizer.ggml.token_type", tokenTypes);
            set("tokenizer.ggml.merges", merges.ToArray());
        }
        else
        {
            // SentencePiece BPE: merge priority is the token's score; HF orders the vocabulary by the SentencePiece scores.
            var scores = new float[n];
            for (int i = 0; i < n; i++) scores[i] = tokenTypes[i] == Normal ? -i : 0f;
            if (unk is not null && ids.TryGetValue(unk, out int u)) tokenTypes[u] = Unknown;
            set("tokenizer.ggml.model", "llama");
            set("tokenizer.ggml.tokens", tokens);
            set("tokenizer.ggml.scores", scores);
            set("tokenizer.ggml.token_type", tokenTypes);
            set("tokenizer.ggml.add_space_prefix", AddsSpacePrefix(root));
        }

        if (UnicodeNormalization(root) is { } form) set(NormalizerKey, form);

        // special tokens: tokenizer_config.json first, then the post-processor template
        int? Special(string key)
        {
            if (config is not { } c || !c.TryGetProperty(key, out var v)) return null;
            string? content = v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var cc) && cc.ValueKind == JsonValueKind.String => cc.GetString(),
                _ => null,
            };
            return content is not null && ids.TryGetValue(content, out int id) ? id : null;
        }
        bool? Flag(string key) => config is { } c && c.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
        var (tplBos, tplEos) = PostProcessorSpecials(root, ids);
        int? bos = Special("bos_token") ?? tplBos, eos = Special("eos_token") ?? tplEos;
        if (bos is { } b) set("tokenizer.ggml.bos_token_id", (uint)b);
        if (eos is { } e) set("tokenizer.ggml.eos_token_id", (uint)e);
        int? unkId = Special("unk_token") ?? (unk is not null && ids.TryGetValue(unk, out int uu) ? uu : null);
        if (unkId is { } un) set("tokenizer.ggml.unknown_token_id", (uint)un);
        if (Special("pad_token") is { } pad) set("tokenizer.ggml.padding_token_id", (uint)pad);
        bool addBos = Flag("add_bos_token") ?? (tplBos is not null && bos == tplBos);
        bool addEos = Flag("add_eos_token") ?? (tplEos is not null && eos == tplEos);
        set("tokenizer.ggml.add_bos_token", addBos && bos is not null);
        set("tokenizer.ggml.add_eos_token", addEos && eos is not null);
    }

    /// <summary>An added token not marked special that is a control token all the same (convert_hf_to_gguf's does_token_look_special, plus the SentencePiece markers).</summary>
    /// <summary>
    /// GGUF key for the tokenizer.json normalizer's Unicode normalization form (NFC, NFD, NFKC or NFKD), applied to text
    /// before pre-tokenization (Qwen's tokenizers are NFC). llama.cpp has no such key and ignores it: a Qwen GGUF made by
    /// convert_hf_to_gguf tokenizes decomposed text ("e" + U+0301) differently from the model's own tokenizer.
    /// </summary>
    public const string NormalizerKey = "tokenizer.huggingface.normalizer";

    /// <summary>The Unicode normalization form among the normalizer's components, or null.</summary>
    private static string? UnicodeNormalization(JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var n)) return null;
        var forms = Components(n).Select(c => c.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null)
            .Where(t => t is "NFC" or "NFD" or "NFKC" or "NFKD").Distinct().ToList();
        if (forms.Count > 1) throw new OpenWeightsException($"tokenizer.json: the normalizer applies several Unicode normalization forms ({string.Join(", ", forms)}); not supported");
        return forms.Count == 1 ? forms[0] : null;
    }

    private static bool LooksSpecial(string s) =>
        (s.StartsWith("<|", StringComparison.Ordinal) && s.EndsWith("|>", StringComparison.Ordinal))
        || (s.StartsWith("<\uFF5C", StringComparison.Ordinal) && s.EndsWith("\uFF5C>", StringComparison.Ordinal)) // DeepSeek's fullwidth <｜...｜>
        || (s.StartsWith("<unused", StringComparison.Ordinal) && s.EndsWith('>'))                                 // Gemma
        || s is "<s>" or "</s>" or "<unk>" or "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]";

    /// <summary>Whether a component (pre_tokenizer, decoder...) is, or is a Sequence holding, the given type.</summary>
    private static bool HasType(JsonElement root, string component, string type) =>
        root.TryGetProperty(component, out var c) && Components(c).Any(x => x.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == type);

    private static IEnumerable<JsonElement> Components(JsonElement c)
    {
        if (c.ValueKind != JsonValueKind.Object) yield break;
        yield return c;
        foreach (var listName in new[] { "pretokenizers", "processors", "decoders", "normalizers" })
            if (c.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var x in list.EnumerateArray()) foreach (var y in Components(x)) yield return y;
    }

    /// <summary>
    /// <c>tokenizer.ggml.pre</c> from the pre-tokenizer (llama.cpp hashes the tokenization of a test text instead;
    /// the Split regex says the same for the families we load): Llama 3 -> llama-bpe, Qwen 2 -> qwen2, DeepSeek-V3 -> deepseek-v3,
    /// o200k (gpt-oss) -> gpt-4o.
    /// </summary>
    public static string GuessPre(JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pt)) return "default";
        var parts = Components(pt).ToList();
        var regexes = parts.Where(p => p.TryGetProperty("type", out var t) && t.GetString() == "Split" && p.TryGetProperty("pattern", out _))
            .Select(p => p.GetProperty("pattern")).Select(p => p.ValueKind == JsonValueKind.Object && (p.TryGetProperty("Regex", out var r) || p.TryGetProperty("String", out r)) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "")
            .ToList();
        foreach (var r0 in regexes)
        {
            string r = r0.Replace("\r", @"\r", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal); // some files hold CR/LF themselves
            if (r.Contains(@"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+", StringComparison.Ordinal) && r.Contains(@"\p{N}{1,3}", StringComparison.Ordinal)) return "gpt-4o"; // o200k (gpt-oss)
            if (r.Contains(@"[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+", StringComparison.Ordinal) && regexes.Contains(@"\p{N}{1,3}")) return "deepseek-v3";
            if (r.Contains(@"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+", StringComparison.Ordinal)) return "qwen35";
            if (r.Contains(@"[^\r\n\p{L}\p{N}]?\p{L}+", StringComparison.Ordinal) && r.Contains(@"\p{N}{1,3}", StringComparison.Ordinal)) return "llama-bpe";
            if (r.Contains(@"[^\r\n\p{L}\p{N}]?\p{L}+", StringComparison.Ordinal) && r.Contains(@"|\p{N}|", StringComparison.Ordinal)) return "qwen2";
        }
        bool digits = parts.Any(p => p.TryGetProperty("type", out var t) && t.GetString() == "Digits" && p.TryGetProperty("individual_digits", out var d) && d.ValueKind == JsonValueKind.True);
        bool byteLevelRegex = parts.Any(p => p.TryGetProperty("type", out var t) && t.GetString() == "ByteLevel" && (!p.TryGetProperty("use_regex", out var u) || u.ValueKind != JsonValueKind.False));
        if (digits && byteLevelRegex) return "smollm";
        if (byteLevelRegex && regexes.Count == 0) return "gpt-2";
        return "default";
    }

    /// <summary>BOS/EOS that the post-processor's TemplateProcessing puts around a single sequence.</summary>
    private static (int? Bos, int? Eos) PostProcessorSpecials(JsonElement root, Dictionary<string, int> ids)
    {
        if (!root.TryGetProperty("post_processor", out var pp)) return (null, null);
        foreach (var c in Components(pp))
        {
            if (!c.TryGetProperty("type", out var t) || t.GetString() != "TemplateProcessing" || !c.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array) continue;
            var items = single.EnumerateArray().ToList();
            int? Id(JsonElement e) => e.TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && ids.TryGetValue(id.GetString()!, out int x) ? x : null;
            return (items.Count > 0 ? Id(items[0]) : null, items.Count > 1 ? Id(items[^1]) : null);
        }
        return (null, null);
    }

    private static bool AddsSpacePrefix(JsonElement root)
    {
        if (root.TryGetProperty("normalizer", out var n))
            foreach (var c in Components(n))
                if (c.TryGetProperty("type", out var t) && t.GetString() == "Prepend" && c.TryGetProperty("prepend", out var p) && p.GetString() == "\u2581") return true;
        if (root.TryGetProperty("pre_tokenizer", out var pt))
            foreach (var c in Components(pt))
                if (c.TryGetProperty("type", out var t) && t.GetString() == "Metaspace")
                    return !(c.TryGetProperty("prepend_scheme", out var ps) && ps.GetString() == "never") && !(c.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False);
        return false;
    }
}
