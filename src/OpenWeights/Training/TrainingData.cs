using System.Text.Json;
using OpenWeights.Inference.ChatTemplates;
using OpenWeights.Tokenizers;

namespace OpenWeights.Training;

/// <summary>One tokenized document. Loss[i]: whether predicting Tokens[i] from Tokens[..i] counts in the loss. Both: (len).</summary>
public sealed record TrainExample(int[] Tokens, bool[] Loss);

/// <summary>
/// A training sequence of one or more whole documents packed together. Tokens[t] predicts Targets[t] when Mask[t];
/// Start[t] is the index of the first token of t's document (attention and positions restart there). All: (n).
/// </summary>
public sealed record PackedSequence(int[] Tokens, int[] Targets, bool[] Mask, int[] Start)
{
    public int Length => Tokens.Length;
    public int MaskedCount => Mask.Count(m => m);

    /// <summary>Concatenates sequences into one micro-batch (documents stay isolated through Start).</summary>
    public static PackedSequence Concat(IReadOnlyList<PackedSequence> parts)
    {
        if (parts.Count == 1) return parts[0];
        int n = parts.Sum(p => p.Length), o = 0;
        var tok = new int[n]; var tgt = new int[n]; var mask = new bool[n]; var start = new int[n];
        foreach (var p in parts)
        {
            p.Tokens.CopyTo(tok, o); p.Targets.CopyTo(tgt, o); p.Mask.CopyTo(mask, o);
            for (int i = 0; i < p.Length; i++) start[o + i] = p.Start[i] + o;
            o += p.Length;
        }
        return new PackedSequence(tok, tgt, mask, start);
    }
}

/// <summary>
/// Reads training data: JSONL chat (<c>{"messages":[{"role","content"}]}</c>, chat template applied, loss on assistant
/// tokens only by default), prompt/completion JSONL (loss on the completion), or plain text (documents separated by
/// blank lines, loss on everything). A file with malformed lines is refused as a whole: the exception lists the first few
/// with their line numbers.
/// </summary>
public static class TrainingData
{
    public static List<TrainExample> Load(string path, Tokenizer tok, string? chatTemplate = null, bool trainOnPrompt = false)
    {
        if (!File.Exists(path)) throw new OpenWeightsException($"data file {path} does not exist");
        bool jsonl = path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        var text = File.ReadAllText(path);
        var examples = jsonl ? LoadJsonl(path, text, tok, chatTemplate, trainOnPrompt) : LoadText(text, tok);
        if (examples.Count == 0) throw new OpenWeightsException($"{path}: no training examples");
        return examples;
    }

    public static List<TrainExample> LoadText(string text, Tokenizer tok)
    {
        var docs = text.Replace("\r\n", "\n").Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var list = new List<TrainExample>();
        foreach (var d in docs)
        {
            var ids = new List<int>();
            if (tok.Bos >= 0) ids.Add(tok.Bos);
            ids.AddRange(tok.Encode(d, addSpecial: false));
            if (tok.Eos >= 0) ids.Add(tok.Eos);
            var loss = new bool[ids.Count];
            for (int i = 1; i < loss.Length; i++) loss[i] = true;
            list.Add(new TrainExample([.. ids], loss));
        }
        return list;
    }

    public static List<TrainExample> LoadJsonl(string path, string text, Tokenizer tok, string? chatTemplate, bool trainOnPrompt)
    {
        var errors = new List<string>();
        var list = new List<TrainExample>();
        ChatTemplate? template = null;
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (int ln = 0; ln < lines.Length; ln++)
        {
            var line = lines[ln].Trim();
            if (line.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new FormatException("not a JSON object");
                if (root.TryGetProperty("messages", out var msgs))
                {
                    template ??= new ChatTemplate(chatTemplate ?? tok.ChatTemplate ?? throw new OpenWeightsException("the model has no chat template; pass one or use prompt/completion data"));
                    list.Add(Chat(msgs, template, tok, trainOnPrompt));
                }
                else if (root.TryGetProperty("prompt", out var p) && root.TryGetProperty("completion", out var c))
                {
                    if (p.ValueKind != JsonValueKind.String || c.ValueKind != JsonValueKind.String) throw new FormatException("prompt and completion must be strings");
                    list.Add(PromptCompletion(p.GetString()!, c.GetString()!, tok, trainOnPrompt));
                }
                else if (root.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String)
                    list.AddRange(LoadText(t.GetString()!.Replace("\n\n", "\n"), tok));
                else throw new FormatException("expected \"messages\", \"prompt\"+\"completion\" or \"text\"");
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or KeyNotFoundException or OpenWeights.Inference.ChatTemplates.TemplateException)
            {
                errors.Add($"line {ln + 1}: {FirstLine(e.Message)}");
            }
        }
        if (errors.Count > 0)
            throw new OpenWeightsException($"{Path.GetFileName(path)}: {errors.Count} malformed line(s), refusing to train: {string.Join("; ", errors.Take(5))}{(errors.Count > 5 ? "; ..." : "")}");
        return list;
    }

    private static string FirstLine(string s) { int i = s.IndexOf('\n'); return i < 0 ? s : s[..i]; }

    private static TrainExample PromptCompletion(string prompt, string completion, Tokenizer tok, bool trainOnPrompt)
    {
        var ids = new List<int>(); var loss = new List<bool>();
        if (tok.AddBos && tok.Bos >= 0) { ids.Add(tok.Bos); loss.Add(false); }
        foreach (var id in tok.Encode(prompt, addSpecial: false)) { ids.Add(id); loss.Add(trainOnPrompt); }
        foreach (var id in tok.Encode(completion, addSpecial: false)) { ids.Add(id); loss.Add(true); }
        if (tok.Eos >= 0) { ids.Add(tok.Eos); loss.Add(true); }
        loss[0] = false;
        return new TrainExample([.. ids], [.. loss]);
    }

    /// <summary>
    /// Renders the conversation prefix by prefix: the text each assistant message adds (its content and the template's
    /// closing markers, e.g. &lt;|im_end|&gt;) is trained on; everything else is context.
    /// </summary>
    private static TrainExample Chat(JsonElement msgs, ChatTemplate template, Tokenizer tok, bool trainOnPrompt)
    {
        if (msgs.ValueKind != JsonValueKind.Array || msgs.GetArrayLength() == 0) throw new FormatException("\"messages\" must be a non-empty array");
        var messages = new List<IReadOnlyDictionary<string, object?>>();
        foreach (var m in msgs.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var r) || r.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                throw new FormatException("each message needs string \"role\" and \"content\"");
            messages.Add(ChatTemplate.Message(r.GetString()!, c.GetString()!));
        }
        if (!messages.Any(m => (string?)m["role"] == "assistant")) throw new FormatException("conversation has no assistant message");
        string bos = tok.Bos >= 0 ? tok.TokenPiece(tok.Bos) : "", eos = tok.Eos >= 0 ? tok.TokenPiece(tok.Eos) : "";
        var ids = new List<int>(); var loss = new List<bool>();
        string done = "";
        void Emit(string full, bool train)
        {
            if (!full.StartsWith(done, StringComparison.Ordinal)) throw new FormatException("the chat template does not render conversations prefix by prefix");
            var piece = full[done.Length..];
            foreach (var id in tok.Encode(piece, addSpecial: false, parseSpecial: true)) { ids.Add(id); loss.Add(train); }
            done = full;
        }
        for (int i = 0; i < messages.Count; i++)
        {
            if ((string?)messages[i]["role"] == "assistant")
            {
                Emit(template.Render(messages.Take(i).ToList(), addGenerationPrompt: true, bosToken: bos, eosToken: eos), trainOnPrompt);
                Emit(template.Render(messages.Take(i + 1).ToList(), addGenerationPrompt: false, bosToken: bos, eosToken: eos), true);
            }
        }
        if (tok.AddBos && tok.Bos >= 0 && (ids.Count == 0 || ids[0] != tok.Bos)) { ids.Insert(0, tok.Bos); loss.Insert(0, false); }
        if (ids.Count > 0) loss[0] = false;
        return new TrainExample([.. ids], [.. loss]);
    }

    /// <summary>Deterministic shuffle (Fisher–Yates on a seeded stream).</summary>
    public static void Shuffle<T>(IList<T> list, ulong seed)
    {
        var rng = new TrainRng(seed);
        for (int i = list.Count - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (list[i], list[j]) = (list[j], list[i]); }
    }

    /// <summary>Splits off a validation fraction (at least one example when the fraction is positive and there are two or more).</summary>
    public static (List<TrainExample> Train, List<TrainExample> Val) Split(List<TrainExample> all, double valFraction, ulong seed)
    {
        var shuffled = all.ToList();
        Shuffle(shuffled, seed ^ 0x5EEDUL);
        int nVal = valFraction <= 0 || shuffled.Count < 2 ? 0 : Math.Clamp((int)Math.Round(shuffled.Count * valFraction), 1, shuffled.Count - 1);
        return (shuffled.Skip(nVal).ToList(), shuffled.Take(nVal).ToList());
    }

    /// <summary>
    /// Packs whole documents greedily into sequences of at most seqLen predictions (documents longer than that are cut
    /// into seqLen windows). Documents without any trained token are dropped.
    /// </summary>
    public static List<PackedSequence> Pack(IEnumerable<TrainExample> examples, int seqLen, bool pack = true)
    {
        var seqs = new List<PackedSequence>();
        var tok = new List<int>(); var tgt = new List<int>(); var mask = new List<bool>(); var start = new List<int>();
        void Flush() { if (tok.Count > 0 && mask.Any(m => m)) seqs.Add(new PackedSequence([.. tok], [.. tgt], [.. mask], [.. start])); tok.Clear(); tgt.Clear(); mask.Clear(); start.Clear(); }
        foreach (var e in examples)
        {
            for (int off = 0; off < e.Tokens.Length - 1; off += seqLen)
            {
                int m = Math.Min(seqLen, e.Tokens.Length - 1 - off);
                bool any = false; for (int i = 0; i < m; i++) any |= e.Loss[off + i + 1];
                if (!any) continue;
                if (!pack || tok.Count + m > seqLen) Flush();
                int s = tok.Count;
                for (int i = 0; i < m; i++) { tok.Add(e.Tokens[off + i]); tgt.Add(e.Tokens[off + i + 1]); mask.Add(e.Loss[off + i + 1]); start.Add(s); }
            }
        }
        Flush();
        return seqs;
    }
}
