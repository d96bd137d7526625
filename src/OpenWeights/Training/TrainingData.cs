using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
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
/// Reads training data. JSONL (<c>.jsonl</c>, or <c>.json</c> holding one record per line or a JSON array of records),
/// each record one of: chat (<c>{"messages":[{"role","content"}]}</c>, chat template applied, loss on assistant tokens
/// only by default), prompt/completion (loss on the completion), Alpaca (<c>instruction</c>, optional <c>input</c>,
/// <c>output</c>: a chat exchange when there is a chat template, else Stanford Alpaca's prompt; loss on the output) or
/// <c>text</c> (one document, loss on everything). Any other file is plain text: paragraphs separated by blank lines
/// are the documents when the file has a blank line, else every line is one. The file must be UTF-8 (as Python's
/// json and <c>datasets</c> require); a file with malformed lines is refused as a whole, with every malformed line
/// and what is wrong with it (<see cref="TrainingDataException"/>).
/// </summary>
public static class TrainingData
{
    private static readonly byte[] Utf8Bom = [0xEF, 0xBB, 0xBF];

    /// <summary>The option a chat-format file for a model without a template names (<see cref="OpenWeightsOptionException.Option"/>).</summary>
    public const string ChatTemplateOption = "TrainingData.Load(chatTemplate)";

    public static List<TrainExample> Load(string path, Tokenizer tok, string? chatTemplate = null, bool trainOnPrompt = false)
    {
        if (!File.Exists(path)) throw new OpenWeightsException($"data file {path} does not exist");
        bool json = path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        var bytes = File.ReadAllBytes(path);
        if (bytes is [0xFF, 0xFE, ..] or [0xFE, 0xFF, ..]) throw new OpenWeightsException($"{path} is UTF-16 text; save it as UTF-8");
        var problems = new List<DataProblem>();
        var lines = DecodeLines(bytes, problems);
        List<TrainExample> examples;
        if (!json) examples = TextDocuments(lines, tok);
        else
        {
            var records = new RecordReader(tok, chatTemplate, trainOnPrompt, problems);
            if (FirstNonBlank(lines) is '[') { if (problems.Count == 0) records.ReadArray(bytes.AsSpan().StartsWith(Utf8Bom) ? bytes[3..] : bytes); }
            else records.ReadLines(lines);
            examples = records.Examples;
        }
        if (problems.Count > 0) throw new TrainingDataException(path, [.. problems.OrderBy(p => p.Line)]);
        if (examples.Count == 0) throw new OpenWeightsException($"{path}: no training examples");
        return examples;
    }

    /// <summary>
    /// The file's lines (a UTF-8 byte order mark dropped, \r\n or \n endings); a line that is not valid UTF-8 is null
    /// and adds a problem naming the line and the first bad byte.
    /// </summary>
    public static List<string?> DecodeLines(byte[] bytes, List<DataProblem> problems)
    {
        var lines = new List<string?>();
        int start = bytes.AsSpan().StartsWith(Utf8Bom) ? 3 : 0;
        while (true)
        {
            int nl = Array.IndexOf(bytes, (byte)'\n', start);
            var line = bytes.AsSpan(start, (nl < 0 ? bytes.Length : nl) - start);
            if (line.Length > 0 && line[^1] == '\r') line = line[..^1];
            int bad = InvalidUtf8At(line);
            if (bad < 0) lines.Add(Encoding.UTF8.GetString(line));
            else
            {
                problems.Add(new DataProblem(lines.Count + 1, $"not valid UTF-8 (byte 0x{line[bad]:X2} at byte {bad + 1} of the line)"));
                lines.Add(null);
            }
            if (nl < 0) return lines;
            start = nl + 1;
        }
    }

    /// <summary>Index of the first byte of the first invalid UTF-8 sequence, or -1 when the text is valid.</summary>
    public static int InvalidUtf8At(ReadOnlySpan<byte> text)
    {
        if (Utf8.IsValid(text)) return -1;
        var chars = new char[text.Length];
        var status = Utf8.ToUtf16(text, chars, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
        return status == OperationStatus.Done ? -1 : Math.Min(read, text.Length - 1);
    }

    private static char? FirstNonBlank(List<string?> lines)
    {
        foreach (var l in lines)
        {
            if (l is null) return null;
            foreach (var c in l) if (!char.IsWhiteSpace(c)) return c;
        }
        return null;
    }

    /// <summary>Plain text: see <see cref="SplitText"/>; loss on every token.</summary>
    public static List<TrainExample> LoadText(string text, Tokenizer tok) =>
        TextDocuments([.. text.Replace("\r\n", "\n").Split('\n')], tok);

    private static List<TrainExample> TextDocuments(List<string?> lines, Tokenizer tok) =>
        [.. SplitText(lines).Select(d => TextDocument(d, tok))];

    /// <summary>
    /// Plain text into documents: when the text has a blank line between two non-blank ones, the paragraphs separated by
    /// blank lines (runs of them count as one); otherwise every non-blank line. Documents are trimmed. Null lines (not
    /// UTF-8, already reported) are skipped.
    /// </summary>
    public static List<string> SplitText(IReadOnlyList<string?> lines)
    {
        static bool Blank(string? l) => l is not null && string.IsNullOrWhiteSpace(l);
        int first = 0, last = lines.Count - 1;
        while (first <= last && (lines[first] is null || Blank(lines[first]))) first++;
        while (last >= first && (lines[last] is null || Blank(lines[last]))) last--;
        bool paragraphs = false;
        for (int i = first; i <= last; i++) paragraphs |= Blank(lines[i]);
        if (!paragraphs) return [.. lines.Skip(first).Take(last - first + 1).OfType<string>().Select(l => l.Trim()).Where(l => l.Length > 0)];
        var docs = new List<string>();
        var cur = new List<string>();
        void Flush() { if (cur.Count > 0) docs.Add(string.Join("\n", cur).Trim()); cur.Clear(); }
        for (int i = first; i <= last; i++)
        {
            if (Blank(lines[i])) Flush();
            else if (lines[i] is { } l) cur.Add(l);
        }
        Flush();
        return docs;
    }

    /// <summary>One document: BOS + text + EOS, loss on every prediction.</summary>
    public static TrainExample TextDocument(string text, Tokenizer tok)
    {
        var ids = new List<int>();
        if (tok.Bos >= 0) ids.Add(tok.Bos);
        ids.AddRange(tok.Encode(text, addSpecial: false));
        if (tok.Eos >= 0) ids.Add(tok.Eos);
        var loss = new bool[ids.Count];
        for (int i = 1; i < loss.Length; i++) loss[i] = true;
        return new TrainExample([.. ids], loss);
    }

    /// <summary>Reads JSON records (one per line, or the items of a JSON array), collecting a problem per bad record.</summary>
    private sealed class RecordReader(Tokenizer tok, string? chatTemplate, bool trainOnPrompt, List<DataProblem> problems)
    {
        public List<TrainExample> Examples { get; } = [];
        private ChatTemplate? template;
        private bool templateLoaded;

        public void ReadLines(List<string?> lines)
        {
            for (int i = 0; i < lines.Count; i++)
            {
                var line = lines[i]?.Trim();
                if (string.IsNullOrEmpty(line)) continue;
                JsonDocument doc;
                try { doc = JsonDocument.Parse(line); }
                catch (JsonException e) { problems.Add(new DataProblem(i + 1, $"invalid JSON at column {(e.BytePositionInLine ?? 0) + 1}: {JsonReason(e)}")); continue; }
                using (doc) Add(i + 1, doc.RootElement);
            }
        }

        public void ReadArray(byte[] json)
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            int line = 1; long counted = 0;
            try
            {
                reader.Read();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    for (; counted < reader.TokenStartIndex; counted++) if (json[counted] == '\n') line++;
                    using var doc = JsonDocument.ParseValue(ref reader);
                    Add(line, doc.RootElement);
                }
                reader.Read();
            }
            catch (JsonException e) { problems.Add(new DataProblem((int)(e.LineNumber ?? 0) + 1, $"invalid JSON at column {(e.BytePositionInLine ?? 0) + 1}: {JsonReason(e)}")); }
        }

        private void Add(int line, JsonElement root)
        {
            try { Examples.Add(Record(root)); }
            catch (Exception e) when (e is FormatException or InvalidOperationException or KeyNotFoundException or TemplateException)
            {
                // a model's template is untrusted and its raise_exception text may quote the record: escaped and cut like any untrusted text
                problems.Add(new DataProblem(line, e is TemplateException t ? "chat template: " + Quote(t.Reason, 200, quotes: false) : Quote(e.Message, 400, quotes: false)));
            }
        }

        private TrainExample Record(JsonElement root)
        {
            if (root.ValueKind != JsonValueKind.Object) throw new FormatException($"expected a JSON object, found {Kind(root)}");
            if (root.TryGetProperty("messages", out var msgs)) return Chat(Messages(msgs), Template(required: true)!, tok, trainOnPrompt);
            bool hasPrompt = root.TryGetProperty("prompt", out var p), hasCompletion = root.TryGetProperty("completion", out var c);
            if (hasPrompt || hasCompletion)
            {
                if (!hasPrompt || !hasCompletion) throw new FormatException(hasPrompt ? "has \"prompt\" but no \"completion\"" : "has \"completion\" but no \"prompt\"");
                return PromptCompletion(Str(p, "prompt"), Str(c, "completion"), tok, trainOnPrompt);
            }
            bool hasInstruction = root.TryGetProperty("instruction", out var ins), hasOutput = root.TryGetProperty("output", out var o);
            if (hasInstruction || hasOutput)
            {
                if (!hasInstruction || !hasOutput) throw new FormatException(hasInstruction ? "has \"instruction\" but no \"output\"" : "has \"output\" but no \"instruction\"");
                string input = root.TryGetProperty("input", out var inp) && inp.ValueKind != JsonValueKind.Null ? Str(inp, "input") : "";
                return Alpaca(Str(ins, "instruction"), input, Str(o, "output"));
            }
            if (root.TryGetProperty("text", out var t)) return TextDocument(Str(t, "text"), tok);
            var keys = root.EnumerateObject().Select(x => Quote(x.Name, 30)).Take(6).ToList();
            throw new FormatException($"expected \"messages\", \"prompt\"+\"completion\", \"instruction\"+\"output\" or \"text\"; found {(keys.Count == 0 ? "an empty object" : string.Join(", ", keys))}");
        }

        /// <summary>
        /// Alpaca: with a chat template the instruction (and input, after a blank line) is the user's message and the
        /// output the assistant's; without one, Stanford Alpaca's prompt, trained like prompt/completion.
        /// </summary>
        private TrainExample Alpaca(string instruction, string input, string output)
        {
            string user = input.Length > 0 ? instruction + "\n\n" + input : instruction;
            if (Template(required: false) is { } tpl)
                return Chat([ChatTemplate.Message("user", user), ChatTemplate.Message("assistant", output)], tpl, tok, trainOnPrompt);
            return PromptCompletion(AlpacaPrompt(instruction, input), output, tok, trainOnPrompt);
        }

        private ChatTemplate? Template(bool required)
        {
            if (!templateLoaded)
            {
                templateLoaded = true;
                if ((chatTemplate ?? tok.ChatTemplate) is { } source && !string.IsNullOrWhiteSpace(source))
                {
                    try { template = new ChatTemplate(source); }
                    catch (TemplateException e) { throw new OpenWeightsException($"{(chatTemplate is null ? "the model's chat template" : "the chat template given")} cannot be used: {e.Message}"); }
                }
            }
            if (template is null && required)
                throw new NoChatTemplateException();
            return template;
        }
    }

    /// <summary>Stanford Alpaca's prompt (github.com/tatsu-lab/stanford_alpaca), what the response is trained after.</summary>
    public static string AlpacaPrompt(string instruction, string input) => input.Length > 0
        ? $"Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
        : $"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

    private static string Str(JsonElement e, string name)
    {
        if (e.ValueKind != JsonValueKind.String) throw new FormatException($"\"{name}\" must be a string, not {Kind(e)}");
        try { return e.GetString()!; }
        catch (InvalidOperationException) { throw new FormatException($"\"{name}\" holds an invalid \\u escape (a lone surrogate)"); }
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object", JsonValueKind.Array => "an array", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", _ => "null",
    };

    /// <summary>System.Text.Json's reason without its position suffix (we report line and column ourselves).</summary>
    private static string JsonReason(JsonException e)
    {
        var m = e.Message;
        foreach (var cut in new[] { " Path:", " LineNumber:", " | LineNumber:" }) { int i = m.IndexOf(cut, StringComparison.Ordinal); if (i >= 0) m = m[..i]; }
        return Quote(m.TrimEnd(), 160, quotes: false);
    }

    /// <summary>Untrusted text for a message: control characters escaped, at most max characters, in quotes.</summary>
    public static string Quote(string s, int max, bool quotes = true)
    {
        var sb = new StringBuilder();
        foreach (var ch in s)
        {
            if (sb.Length >= max) { sb.Append("..."); break; }
            if (char.IsControl(ch) || ch is '\u2028' or '\u2029') sb.Append($"\\u{(int)ch:x4}");
            else sb.Append(ch);
        }
        return quotes ? "\"" + sb + "\"" : sb.ToString();
    }

    /// <summary>
    /// Most messages in one chat record. A conversation is rendered once per assistant message (prefix by prefix), so
    /// its cost grows with the square of its length: 360 messages took 3.7 s on a busy 2-core machine, thousands would
    /// stall the load for minutes (found by the fuzzer, issue 19).
    /// </summary>
    public const int MaxMessages = 256;

    private static List<IReadOnlyDictionary<string, object?>> Messages(JsonElement msgs)
    {
        if (msgs.ValueKind != JsonValueKind.Array || msgs.GetArrayLength() == 0) throw new FormatException("\"messages\" must be a non-empty array");
        if (msgs.GetArrayLength() > MaxMessages)
            throw new FormatException($"a conversation of {msgs.GetArrayLength()} messages; at most {MaxMessages} are read (split it into shorter conversations)");
        var messages = new List<IReadOnlyDictionary<string, object?>>();
        int n = 0;
        foreach (var m in msgs.EnumerateArray())
        {
            n++;
            if (m.ValueKind != JsonValueKind.Object) throw new FormatException($"messages[{n - 1}] is {Kind(m)}, not an object");
            if (!m.TryGetProperty("role", out var r)) throw new FormatException($"messages[{n - 1}] has no \"role\"");
            if (!m.TryGetProperty("content", out var c)) throw new FormatException($"messages[{n - 1}] has no \"content\"");
            messages.Add(ChatTemplate.Message(Str(r, $"messages[{n - 1}].role"), Str(c, $"messages[{n - 1}].content")));
        }
        if (!messages.Any(m => (string?)m["role"] == "assistant")) throw new FormatException("conversation has no assistant message");
        return messages;
    }

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
    private static TrainExample Chat(List<IReadOnlyDictionary<string, object?>> messages, ChatTemplate template, Tokenizer tok, bool trainOnPrompt)
    {
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
