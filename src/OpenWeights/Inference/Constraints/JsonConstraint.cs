using OpenWeights.Tokenizers;

namespace OpenWeights.Inference.Constraints;

/// <summary>
/// Constrained decoding for OpenAI's <c>response_format</c>: <c>json_object</c> (any JSON object) and
/// <c>json_schema</c>. The output always parses, and validates against the schema.
/// </summary>
/// <remarks>
/// Supported keywords: type (and type arrays), properties, required, additionalProperties, items, minItems, maxItems,
/// enum, const, anyOf, oneOf (as alternatives), allOf with one schema, local $ref (#/$defs/..., #/definitions/...),
/// minLength, maxLength. Annotations (title, description, default, examples, format, ...) are ignored. Keywords that
/// would change validity and are not supported (pattern, minimum, maximum, multipleOf, uniqueItems: true, ...) fail
/// <see cref="Create(Tokenizer, string?)"/> with an <see cref="OpenWeightsException"/>.
/// Objects with listed properties are generated with those keys only, in schema order (optional keys may be skipped).
/// Whitespace between tokens is limited to one space, or a newline and up to 16 spaces; none before or after the value.
/// </remarks>
public static class JsonConstraint
{
    /// <summary>A constraint for one generation.</summary>
    /// <param name="tok">the model's tokenizer</param>
    /// <param name="jsonSchema">a JSON schema, or null for any JSON object (json_object mode)</param>
    /// <exception cref="OpenWeightsException">the schema is invalid or uses an unsupported keyword.</exception>
    public static ITokenConstraint Create(Tokenizer tok, string? jsonSchema) => Create(TokenTrie.For(tok), jsonSchema);

    /// <summary>A constraint over an explicit vocabulary trie.</summary>
    public static ITokenConstraint Create(TokenTrie vocab, string? jsonSchema)
    {
        ArgumentNullException.ThrowIfNull(vocab);
        return new JsonTokenConstraint(vocab, JsonGrammar.Compile(jsonSchema));
    }

    /// <summary>Checks a schema without building a constraint (throws like <see cref="Create(Tokenizer, string?)"/>).</summary>
    public static void Validate(string? jsonSchema) => JsonGrammar.Compile(jsonSchema);
}

internal sealed class JsonTokenConstraint : ITokenConstraint
{
    private readonly TokenTrie trie;
    private readonly JsonState state;
    private readonly List<StackList> levels = [];
    private bool[] allowed = [];
    private bool ended;

    public JsonTokenConstraint(TokenTrie trie, JsonGrammar grammar)
    {
        this.trie = trie;
        state = grammar.Start();
    }

    public bool IsComplete => state.IsComplete;

    /// <summary>Computes the allowed tokens into <see cref="allowed"/>; returns how many.</summary>
    internal int ComputeAllowed()
    {
        if (allowed.Length != trie.VocabSize) allowed = new bool[trie.VocabSize];
        else Array.Clear(allowed);
        int count = 0;
        if (ended) return 0;
        if (levels.Count == 0) levels.Add(new StackList());
        levels[0].CopyFrom(state.Current);
        // fast path inside a string: plain tokens only add code points, so check them by count and walk only the rest
        // (with several alternatives, all plain-string positions: a plain token is allowed when some alternative has room)
        bool prune = true;
        long room = -1;
        for (int i = 0; i < state.Current.Count && prune; i++)
        {
            if (state.Current.Items[i].Top is { Kind: FrameKind.String, Phase: 0, B: 0 } top)
                room = Math.Max(room, (long)state.Grammar.Nodes[top.Node].Max - top.A);
            else prune = false;
        }
        if (prune)
        {
            var ids = trie.PlainIds; var cps = trie.PlainCodePoints;
            for (int k = 0; k < ids.Length; k++) if (cps[k] <= room) { allowed[ids[k]] = true; count++; }
        }
        count += Walk(0, 0, prune);
        if (state.IsComplete)
            foreach (var e in trie.EndOfGeneration) if ((uint)e < (uint)allowed.Length && !allowed[e]) { allowed[e] = true; count++; }
        return count;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private int Walk(int node, int depth, bool prune)
    {
        var g = state.Grammar;
        if (levels.Count <= depth + 1) levels.Add(new StackList());
        var cur = levels[depth];
        var nxt = levels[depth + 1];
        int count = 0;
        for (int c = trie.FirstChild[node]; c >= 0; c = trie.NextSibling[c])
        {
            if (prune && !trie.HasNonPlainBelow[c]) continue;
            byte b = trie.Byte[c];
            nxt.Clear();
            for (int i = 0; i < cur.Count; i++) JsonMachine.Step(g, cur.Items[i], b, nxt);
            if (nxt.Count == 0) continue;
            int tc = trie.TokCount[c];
            if (tc > 0)
            {
                int ts = trie.TokStart[c];
                for (int k = ts; k < ts + tc; k++)
                {
                    ref bool a = ref allowed[trie.SortedIds[k]];
                    if (!a) { a = true; count++; }
                }
            }
            if (trie.FirstChild[c] >= 0) count += Walk(c, depth + 1, prune);
        }
        return count;
    }

    public void MaskLogits(Span<float> logits)
    {
        int n = ComputeAllowed();
        if (n == 0 && !ended)
            throw new OpenWeightsException("constrained decoding: no token of the vocabulary can continue the JSON output");
        TokenMask.Apply(allowed, logits);
    }

    public void Accept(int tokenId)
    {
        if ((uint)tokenId >= (uint)trie.VocabSize) throw new OpenWeightsException($"constrained decoding: token {tokenId} is outside the vocabulary");
        if (ended) throw new OpenWeightsException($"constrained decoding: token {tokenId} after the end of generation");
        if (trie.EndOfGeneration.Contains(tokenId))
        {
            if (!state.IsComplete) throw new OpenWeightsException($"constrained decoding: end-of-generation token {tokenId} before the JSON value is complete");
            ended = true;
            return;
        }
        if (!trie.InTrie[tokenId]) throw new OpenWeightsException($"constrained decoding: token {tokenId} is a special token and not allowed");
        if (!TryAdvance(tokenId)) throw new OpenWeightsException($"constrained decoding: token {tokenId} is not allowed here");
    }

    /// <summary>Consumes an ordinary token's bytes; false (state unchanged) when the JSON cannot continue with them.</summary>
    internal bool TryAdvance(int tokenId)
    {
        if ((uint)tokenId >= (uint)trie.VocabSize || !trie.InTrie[tokenId] || ended) return false;
        var saved = new StackList();
        saved.CopyFrom(state.Current);
        foreach (var b in trie.Bytes[tokenId])
        {
            if (!state.Advance(b))
            {
                state.Current.CopyFrom(saved);
                return false;
            }
        }
        return true;
    }

    /// <summary>The tokens allowed after the last <see cref="ComputeAllowed"/> (indexed by token id).</summary>
    internal bool[] Allowed => allowed;
}
