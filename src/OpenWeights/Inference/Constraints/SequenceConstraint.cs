namespace OpenWeights.Inference.Constraints;

/// <summary>A piece of a <see cref="SequenceConstraint"/>: exact tokens, or one JSON value.</summary>
public sealed class ConstraintPart
{
    internal int[]? Tokens { get; private init; }
    internal JsonGrammar? Grammar { get; private init; }

    private ConstraintPart() { }

    /// <summary>These tokens, in this order. Special (control) tokens are fine; end-of-generation tokens are not.</summary>
    public static ConstraintPart Exact(params int[] tokens) => new() { Tokens = [.. tokens] };

    /// <summary>One JSON value following <paramref name="schema"/> (null: any JSON object).</summary>
    /// <exception cref="OpenWeightsException">the schema is invalid or unsupported (as <see cref="JsonConstraint.Create(OpenWeights.Tokenizers.Tokenizer, string?)"/>).</exception>
    public static ConstraintPart Json(string? schema) => new() { Grammar = JsonGrammar.Compile(schema) };

    /// <summary>
    /// A tool's arguments: an object following its parameter schema (null: <c>{}</c>). Never throws: keywords outside the
    /// supported subset are not enforced, and a schema that still does not compile (or is not an object schema) allows any object.
    /// </summary>
    public static ConstraintPart ToolArguments(string? parametersSchema) => new() { Grammar = JsonGrammar.Arguments(parametersSchema) };

    /// <summary>
    /// A tool call <c>{"name": NAME, ARGUMENTS_KEY: ARGS}</c>: one alternative per tool, NAME its name, ARGS as
    /// <see cref="ToolArguments"/>; with <paramref name="inArray"/> inside a one-element array (<c>[{...}]</c>).
    /// </summary>
    public static ConstraintPart ToolCall(IReadOnlyList<(string Name, string? Parameters)> tools, string argumentsKey = "arguments", bool inArray = false) =>
        new() { Grammar = JsonGrammar.ToolCall(tools, argumentsKey, inArray) };
}

/// <summary>
/// Constrained decoding of a sequence of parts (exact tokens, JSON values), with alternatives: the output is one of the
/// alternatives, and the constraint is complete once one of them is. Used to force a tool call in a model's own format,
/// e.g. <c>&lt;tool_call&gt;\n</c> + a call object + <c>\n&lt;/tool_call&gt;</c>.
/// </summary>
/// <remarks>
/// A token never spans two parts: a part's exact tokens are produced as given, and a JSON value is produced by
/// tokens that hold JSON only. Alternatives are followed together (the mask is the union of theirs), so they may share
/// a prefix of tokens and diverge later.
/// </remarks>
public static class SequenceConstraint
{
    /// <summary>A constraint for one generation.</summary>
    /// <param name="vocab">the model's vocabulary trie (<see cref="TokenTrie.For"/>)</param>
    /// <param name="alternatives">one or more sequences of parts</param>
    public static ITokenConstraint Create(TokenTrie vocab, IReadOnlyList<IReadOnlyList<ConstraintPart>> alternatives)
    {
        ArgumentNullException.ThrowIfNull(vocab);
        if (alternatives.Count == 0) throw new ArgumentException("at least one alternative is needed", nameof(alternatives));
        foreach (var alt in alternatives)
            foreach (var p in alt)
                if (p.Tokens is { } t)
                    foreach (var id in t)
                    {
                        if ((uint)id >= (uint)vocab.VocabSize) throw new ArgumentException($"token {id} is outside the vocabulary", nameof(alternatives));
                        if (vocab.EndOfGeneration.Contains(id)) throw new ArgumentException($"token {id} ends generation and cannot be part of a sequence", nameof(alternatives));
                    }
        return new SequenceTokenConstraint(vocab, alternatives);
    }
}

internal sealed class SequenceTokenConstraint : ITokenConstraint
{
    // one live way of reading the output so far: which alternative, which part, where in it
    private sealed class Cursor(ConstraintPart[] parts, int part)
    {
        public readonly ConstraintPart[] Parts = parts;
        public readonly int Part = part;
        public int Pos;                      // exact part: tokens produced
        public JsonTokenConstraint? Json;    // JSON part: its state
        public bool Finished => Part == Parts.Length;
    }

    private readonly TokenTrie trie;
    private List<Cursor> cursors = [];
    private bool[] allowed = [];
    private bool ended;

    public SequenceTokenConstraint(TokenTrie trie, IReadOnlyList<IReadOnlyList<ConstraintPart>> alternatives)
    {
        this.trie = trie;
        foreach (var alt in alternatives) Settle(new Cursor([.. alt], 0), cursors);
    }

    public bool IsComplete
    {
        get
        {
            foreach (var c in cursors) if (c.Finished) return true;
            return false;
        }
    }

    /// <summary>Adds the cursor to <paramref name="into"/> once it waits for a token; passes done parts, and forks at a complete JSON value.</summary>
    private void Settle(Cursor c, List<Cursor> into)
    {
        while (true)
        {
            if (c.Finished) { into.Add(c); return; }
            var p = c.Parts[c.Part];
            if (p.Tokens is { } toks)
            {
                if (c.Pos < toks.Length) { into.Add(c); return; }
                c = new Cursor(c.Parts, c.Part + 1);
                continue;
            }
            c.Json ??= new JsonTokenConstraint(trie, p.Grammar!);
            into.Add(c);
            if (!c.Json.IsComplete) return;
            c = new Cursor(c.Parts, c.Part + 1); // a complete value may end its part (and may also go on: the cursor above stays)
        }
    }

    internal int ComputeAllowed()
    {
        if (allowed.Length != trie.VocabSize) allowed = new bool[trie.VocabSize];
        else Array.Clear(allowed);
        if (ended) return 0;
        foreach (var c in cursors)
        {
            if (c.Finished) continue;
            if (c.Parts[c.Part].Tokens is { } toks) { allowed[toks[c.Pos]] = true; continue; }
            c.Json!.ComputeAllowed();
            var a = c.Json.Allowed;
            for (int i = 0; i < a.Length; i++) if (a[i]) allowed[i] = true;
        }
        bool complete = IsComplete;
        foreach (var e in trie.EndOfGeneration) if ((uint)e < (uint)allowed.Length) allowed[e] = complete;
        int count = 0;
        foreach (var x in allowed) if (x) count++;
        return count;
    }

    public void MaskLogits(Span<float> logits)
    {
        int n = ComputeAllowed();
        if (n == 0 && !ended) throw new OpenWeightsException("constrained decoding: no token of the vocabulary can continue the output");
        TokenMask.Apply(allowed, logits);
    }

    public void Accept(int tokenId)
    {
        if ((uint)tokenId >= (uint)trie.VocabSize) throw new OpenWeightsException($"constrained decoding: token {tokenId} is outside the vocabulary");
        if (ended) throw new OpenWeightsException($"constrained decoding: token {tokenId} after the end of generation");
        if (trie.EndOfGeneration.Contains(tokenId))
        {
            if (!IsComplete) throw new OpenWeightsException($"constrained decoding: end-of-generation token {tokenId} before the output is complete");
            ended = true;
            return;
        }
        var next = new List<Cursor>(cursors.Count);
        foreach (var c in cursors)
        {
            if (c.Finished) continue;
            if (c.Parts[c.Part].Tokens is { } toks)
            {
                if (toks[c.Pos] != tokenId) continue;
                c.Pos++;
                Settle(c, next);
            }
            else if (c.Json!.TryAdvance(tokenId)) Settle(c, next);
        }
        if (next.Count == 0) throw new OpenWeightsException($"constrained decoding: token {tokenId} is not allowed here");
        cursors = next;
    }
}
