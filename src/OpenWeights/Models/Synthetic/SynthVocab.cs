namespace OpenWeights.Models.Synthetic;

/// <summary>
/// A small, valid byte-level BPE vocabulary (GPT-2 style) padded to a preset's vocabulary size:
/// 256 byte tokens, merges for every lower-case letter pair and space+letter, reserved control tokens,
/// and the special tokens the chat templates use.
/// </summary>
public sealed record SynthVocab(string[] Tokens, int[] TokenTypes, string[] Merges, int Bos, int Eos, int Eot)
{
    public const int Normal = 1, Control = 3;

    /// <summary>GPT-2's reversible byte -> printable character table.</summary>
    public static char[] ByteToUnicode()
    {
        var map = new char[256];
        var direct = new List<int>();
        for (int b = '!'; b <= '~'; b++) direct.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) direct.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) direct.Add(b);
        int extra = 0;
        for (int b = 0; b < 256; b++) map[b] = direct.Contains(b) ? (char)b : (char)(256 + extra++);
        return map;
    }

    public static SynthVocab Build(int vocabSize, bool llama3Specials) => llama3Specials
        ? Build(vocabSize, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")
        : Build(vocabSize, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>", "<|endoftext|>", "<|im_end|>");

    /// <summary>The vocabulary with Gemma's special tokens (the turn markers of <see cref="SynthPreset.Gemma"/>).</summary>
    public static SynthVocab BuildGemma(int vocabSize) =>
        Build(vocabSize, ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", "<end_of_turn>");

    /// <summary>
    /// The vocabulary with Phi-3's special tokens (the role markers and turn end of <see cref="SynthPreset.Phi3"/>):
    /// &lt;|endoftext|&gt; is BOS and EOS, &lt;|end|&gt; ends a turn, as in Phi-3.5-mini and Phi-4-mini.
    /// </summary>
    public static SynthVocab BuildPhi3(int vocabSize) =>
        Build(vocabSize, ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|endoftext|>", "<|endoftext|>", "<|end|>");

    /// <summary>
    /// The vocabulary with gpt-oss's harmony markers (o200k_harmony's special tokens, <see cref="SynthPreset.Harmony"/>):
    /// &lt;|startoftext|&gt; is BOS, &lt;|return|&gt; EOS (the end of a final answer), &lt;|end|&gt; ends a message.
    /// </summary>
    public static SynthVocab BuildHarmony(int vocabSize) =>
        Build(vocabSize, ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>", "<|call|>"],
            "<|startoftext|>", "<|return|>", "<|end|>");

    /// <summary>The vocabulary whose special tokens are the markers of the preset's chat template.</summary>
    public static SynthVocab For(SynthPreset p) =>
        p.ChatTemplate == SynthPreset.Gemma ? BuildGemma(p.VocabSize)
        : p.ChatTemplate == SynthPreset.Phi3 ? BuildPhi3(p.VocabSize)
        : p.ChatTemplate == SynthPreset.Harmony ? BuildHarmony(p.VocabSize)
        : Build(p.VocabSize, p.ChatTemplate == SynthPreset.Llama3);

    private static SynthVocab Build(int vocabSize, string[] specials, string bos, string eos, string eot)
    {
        var tokens = new List<string>(vocabSize);
        var merges = new List<string>();
        var b2u = ByteToUnicode();
        for (int b = 0; b < 256; b++) tokens.Add(b2u[b].ToString());
        char space = b2u[' '];
        for (char a = 'a'; a <= 'z'; a++) { merges.Add($"{space} {a}"); tokens.Add($"{space}{a}"); }
        for (char a = 'a'; a <= 'z'; a++)
            for (char c = 'a'; c <= 'z'; c++) { merges.Add($"{a} {c}"); tokens.Add($"{a}{c}"); }
        int firstSpecial = vocabSize - specials.Length;
        if (firstSpecial < tokens.Count) throw new ArgumentException($"vocabulary size {vocabSize} is too small for the synthetic vocabulary");
        var types = Enumerable.Repeat(Normal, tokens.Count).ToList();
        for (int i = tokens.Count; i < firstSpecial; i++) { tokens.Add($"<|reserved_{i}|>"); types.Add(Control); }
        foreach (var s in specials) { tokens.Add(s); types.Add(Control); }
        int Id(string s) => tokens.IndexOf(s, firstSpecial);
        return new SynthVocab([.. tokens], [.. types], [.. merges], Id(bos), Id(eos), Id(eot));
    }
}
