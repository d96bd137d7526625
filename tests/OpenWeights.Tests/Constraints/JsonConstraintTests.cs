using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Json.Schema;
using OpenWeights.Inference;
using OpenWeights.Inference.Constraints;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;

namespace OpenWeights.Tests.Constraints;

/// <summary>Shared synthetic tokenizer (tiny-llama preset), built once.</summary>
public sealed class TinyVocabFixture : IDisposable
{
    private readonly TempDir dir = new();
    public string ModelPath { get; }
    public Tokenizer Tokenizer { get; }

    public TinyVocabFixture()
    {
        ModelPath = dir.File("tiny-llama.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse("q8_0"), ModelPath, threads: 2);
        Tokenizer = Tokenizer.FromGguf(ModelPath);
    }

    public void Dispose() => dir.Dispose();
}

public class JsonConstraintTests(TinyVocabFixture tiny) : IClassFixture<TinyVocabFixture>
{
    public static readonly string?[] Schemas =
    [
        null,
        """
        {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":5},"age":{"type":"integer"},
         "tags":{"type":"array","items":{"type":"string"},"maxItems":2},"ok":{"type":"boolean"}},
         "required":["name","age"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"color":{"enum":["red","green","blue","日本"]},"n":{"const":3},"v":{"type":["number","null"]}},
         "required":["color","n","v"],"additionalProperties":false}
        """,
        """
        {"type":"array","items":{"type":"object","properties":{"id":{"type":"integer"},"label":{"type":"string","maxLength":8}},
         "required":["id","label"],"additionalProperties":false},"minItems":1,"maxItems":3}
        """,
        """
        {"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
         "kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"],"additionalProperties":false}}}
        """,
        """
        {"type":"object","properties":{"shape":{"oneOf":[
          {"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"],"additionalProperties":false},
          {"type":"object","properties":{"kind":{"const":"rect"},"w":{"type":"integer"},"h":{"type":"integer"}},"required":["kind","w","h"],"additionalProperties":false}]}},
         "required":["shape"],"additionalProperties":false}
        """,
        """{"type":"object","additionalProperties":{"type":"array","items":{"type":"boolean"}}}""",
        """{"type":"object","properties":{"s":{"type":"string","minLength":3,"maxLength":6},"any":{}},"required":["s","any"]}""",
        """{"anyOf":[{"type":"string","maxLength":2},{"type":"string","minLength":4,"maxLength":7},{"enum":["abc","xyz\n"]}]}""",
    ];

    /// <summary>Samples random allowed tokens until the constraint completes; returns the output bytes.</summary>
    internal static byte[] RandomDocument(TokenTrie trie, ITokenConstraint c, Random rng, float[] logits)
    {
        var output = new List<byte>();
        var allowed = new List<int>();
        var closing = new List<int>();
        var eog = trie.EndOfGeneration.ToHashSet();
        for (int step = 0; step < 4000; step++)
        {
            Array.Clear(logits);
            c.MaskLogits(logits);
            allowed.Clear(); closing.Clear();
            bool canStop = false;
            for (int i = 0; i < logits.Length; i++)
            {
                if (float.IsNegativeInfinity(logits[i])) continue;
                if (eog.Contains(i)) { canStop = true; continue; }
                allowed.Add(i);
                if (trie.Bytes[i].AsSpan().IndexOfAny("\"}]"u8) >= 0) closing.Add(i);
            }
            Assert.Equal(c.IsComplete, canStop);
            if (canStop && (allowed.Count == 0 || rng.NextDouble() < 0.5))
            {
                c.Accept(trie.EndOfGeneration.First(e => !float.IsNegativeInfinity(logits[e])));
                return [.. output];
            }
            Assert.NotEmpty(allowed);
            double pClose = step < 30 ? 0.3 : 0.9;
            var pool = closing.Count > 0 && rng.NextDouble() < pClose ? closing : allowed;
            int id = pool[rng.Next(pool.Count)];
            c.Accept(id);
            output.AddRange(trie.Bytes[id]);
        }
        Assert.Fail("no complete document after 4000 tokens: " + Encoding.UTF8.GetString([.. output]));
        return [];
    }

    internal static void AssertValid(string? schema, byte[] doc)
    {
        string text = Encoding.UTF8.GetString(doc);
        JsonDocument parsed;
        try { parsed = JsonDocument.Parse(doc); }
        catch (JsonException e) { Assert.Fail($"output does not parse ({e.Message}): {text}"); return; }
        using (parsed)
        {
            if (schema is null) { Assert.Equal(JsonValueKind.Object, parsed.RootElement.ValueKind); return; }
            var s = JsonSchema.FromText(schema);
            var r = s.Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            Assert.True(r.IsValid, $"output does not validate: {text}\nschema: {schema}");
        }
    }

    private static void RunProperty(TokenTrie trie, int docsPerSchema, int seed)
    {
        var logits = new float[trie.VocabSize];
        for (int si = 0; si < Schemas.Length; si++)
        {
            var rng = new Random(seed + si);
            for (int d = 0; d < docsPerSchema; d++)
            {
                var c = JsonConstraint.Create(trie, Schemas[si]);
                var doc = RandomDocument(trie, c, rng, logits);
                AssertValid(Schemas[si], doc);
            }
        }
    }

    [Fact]
    public void Random_allowed_tokens_always_give_valid_documents_synthetic_vocab()
    {
        RunProperty(TokenTrie.For(tiny.Tokenizer), docsPerSchema: 25, seed: 1);
    }

    [Fact]
    public void Random_allowed_tokens_always_give_valid_documents_gpt2_vocab()
    {
        var tok = Tokenizer.FromGguf(TestData.Require("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"));
        RunProperty(TokenTrie.For(tok), docsPerSchema: 3, seed: 100);
    }

    [Fact]
    public void Random_allowed_tokens_always_give_valid_documents_spm_vocab()
    {
        var tok = Tokenizer.FromGguf(TestData.Require("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
        RunProperty(TokenTrie.For(tok), docsPerSchema: 3, seed: 200);
    }

    [Fact]
    public void Trie_is_cached_per_tokenizer()
    {
        Assert.Same(TokenTrie.For(tiny.Tokenizer), TokenTrie.For(tiny.Tokenizer));
    }

    [Fact]
    public void Accept_rejects_disallowed_and_special_tokens()
    {
        var tok = tiny.Tokenizer;
        var c = JsonConstraint.Create(tok, Schemas[1]);
        int brace = tok.Encode("{", addSpecial: false).Single();
        int quote = tok.Encode("\"", addSpecial: false).Single();
        int a = tok.Encode("a", addSpecial: false).Single();
        Assert.Throws<OpenWeightsException>(() => c.Accept(a));
        Assert.Throws<OpenWeightsException>(() => c.Accept(tok.Eot));  // end of generation before the value is complete
        Assert.Throws<OpenWeightsException>(() => c.Accept(tok.Bos));  // control token
        c.Accept(brace);
        Assert.Throws<OpenWeightsException>(() => c.Accept(brace));   // state is unchanged after a rejected token
        c.Accept(quote);
        Assert.False(c.IsComplete);

        var logits = new float[tok.VocabSize + 8]; // a model vocabulary may be padded beyond the tokenizer's
        JsonConstraint.Create(tok, null).MaskLogits(logits);
        Assert.False(float.IsNegativeInfinity(logits[brace]));
        Assert.True(float.IsNegativeInfinity(logits[quote]));
        Assert.True(float.IsNegativeInfinity(logits[tok.Eot]));
        Assert.True(float.IsNegativeInfinity(logits[^1]));
    }

    [Fact]
    public void Mask_allows_exactly_the_tokens_accept_takes()
    {
        var tok = tiny.Tokenizer;
        var trie = TokenTrie.For(tok);
        var rng = new Random(5);
        var logits = new float[tok.VocabSize];
        foreach (var schema in Schemas)
        {
            var c = JsonConstraint.Create(trie, schema);
            var prefix = new List<int>();
            for (int step = 0; step < 12 && !c.IsComplete; step++)
            {
                Array.Clear(logits);
                c.MaskLogits(logits);
                // brute force: replay the prefix plus each candidate on a fresh constraint
                for (int id = step % 11; id < tok.VocabSize; id += 11)
                {
                    if (tok.IsEndOfGeneration(id)) continue;
                    var probe = JsonConstraint.Create(trie, schema);
                    foreach (var p in prefix) probe.Accept(p);
                    bool ok = true;
                    try { probe.Accept(id); } catch (OpenWeightsException) { ok = false; }
                    Assert.Equal(ok, !float.IsNegativeInfinity(logits[id]));
                }
                var allowed = Enumerable.Range(0, tok.VocabSize).Where(i => !float.IsNegativeInfinity(logits[i]) && !tok.IsEndOfGeneration(i)).ToArray();
                int pick = allowed[rng.Next(allowed.Length)];
                c.Accept(pick); prefix.Add(pick);
            }
        }
    }

    [Fact]
    public void A_random_model_generates_valid_json_with_the_sampler()
    {
        const string schema = """
            {"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer"},
             "ok":{"type":"boolean"},"color":{"enum":["red","green","blue"]},"tags":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2}},
             "required":["name","age","ok","color","tags"],"additionalProperties":false}
            """;
        using var model = DecoderModel.Load(tiny.ModelPath);
        var tok = tiny.Tokenizer;
        foreach (var sampling in new[] { SamplingOptions.Greedy, new SamplingOptions { Temperature = 1.0f, TopK = 0, TopP = 1, MinP = 0, Seed = 7 }, new SamplingOptions { Seed = 11 } })
        {
            var session = new InferenceSession(model, contextSize: 512, threads: 2);
            var sampler = new Sampler(sampling, model.Config.VocabSize);
            var c = JsonConstraint.Create(tok, schema);
            var prompt = tok.Encode("Reply with JSON:", addSpecial: true);
            var history = new List<int>(prompt);
            var logits = session.EvaluatePrompt(prompt).ToArray();
            var output = new List<int>();
            bool stopped = false;
            for (int i = 0; i < 400 && !stopped; i++)
            {
                c.MaskLogits(logits);
                int id = sampler.Sample(logits, history.ToArray());
                c.Accept(id);
                if (tok.IsEndOfGeneration(id)) { stopped = true; break; }
                output.Add(id); history.Add(id);
                session.Evaluate([id]).CopyTo(logits);
            }
            Assert.True(stopped, "the model did not finish: " + tok.Decode(output.ToArray()));
            var bytes = output.SelectMany(tok.TokenBytes).ToArray();
            AssertValid(schema, bytes);
        }
    }

    [Fact]
    public void Masking_a_step_is_fast_on_a_real_vocabulary()
    {
        var tok = Tokenizer.FromGguf(TestData.Require("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"));
        var trie = TokenTrie.For(tok);
        var (mean, max) = MaskTiming.Measure(trie, Schemas[1], "{\"name\":\"Bo", 20);
        TestContext.Current.SendDiagnosticMessage($"gpt-2 ({trie.VocabSize} tokens, {trie.NodeCount} trie nodes): mask in a string {mean:F2} ms mean, {max:F2} ms max");
        Assert.True(mean < 200, $"masking took {mean:F1} ms per step");
    }
}

internal static class MaskTiming
{
    /// <summary>Times MaskLogits after a forced prefix (ms per step: mean, max).</summary>
    public static (double Mean, double Max) Measure(TokenTrie trie, string? schema, string prefix, int reps)
    {
        var c = (JsonTokenConstraint)JsonConstraint.Create(trie, schema);
        // feed the prefix byte by byte through single-byte tokens
        var single = new Dictionary<byte, int>();
        for (int i = 0; i < trie.VocabSize; i++) if (trie.InTrie[i] && trie.Bytes[i].Length == 1) single.TryAdd(trie.Bytes[i][0], i);
        foreach (var b in Encoding.UTF8.GetBytes(prefix)) c.Accept(single[b]);
        var logits = new float[trie.VocabSize];
        for (int i = 0; i < 3; i++) c.MaskLogits(logits); // warm up
        double total = 0, max = 0;
        for (int r = 0; r < reps; r++)
        {
            var sw = Stopwatch.StartNew();
            c.MaskLogits(logits);
            double ms = sw.Elapsed.TotalMilliseconds;
            total += ms; max = Math.Max(max, ms);
        }
        return (total / reps, max);
    }
}

/// <summary>Mask timings for the report (run explicitly, in Release).</summary>
public class JsonConstraintBenchmarks
{
    private static readonly (string Name, string? Schema, string Prefix)[] States =
    [
        ("object start", null, ""),
        ("after {", null, "{"),
        ("in a string", null, "{\"key\":\"va"),
        ("in a number", JsonConstraintTests.Schemas[1], "{\"name\":\"Bob\",\"age\":12"),
        ("schema key", JsonConstraintTests.Schemas[1], "{\"name\":\"Bob\","),
    ];

    private static void Report(string label, TokenTrie trie)
    {
        foreach (var (name, schema, prefix) in States)
        {
            var (mean, max) = MaskTiming.Measure(trie, schema, prefix, 30);
            TestContext.Current.SendDiagnosticMessage($"{label} ({trie.VocabSize} tokens, {trie.NodeCount} trie nodes) {name}: {mean:F2} ms mean, {max:F2} ms max");
        }
    }

    [Fact(Explicit = true)]
    public void Mask_timings()
    {
        var sw = Stopwatch.StartNew();
        var gpt2 = Tokenizer.FromGguf(TestData.Require("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"));
        var trie = TokenTrie.For(gpt2);
        TestContext.Current.SendDiagnosticMessage($"gpt-2 trie built in {sw.ElapsedMilliseconds} ms");
        Report("gpt-2", trie);

        var ds = Tokenizer.FromGguf(TestData.Require("tokenizers/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf"));
        sw.Restart();
        var dsTrie = TokenTrie.For(ds);
        TestContext.Current.SendDiagnosticMessage($"deepseek-llm trie built in {sw.ElapsedMilliseconds} ms");
        Report("deepseek-llm", dsTrie);

        // SynthVocab at qwen2.5's size: 958 text tokens, the rest reserved control tokens
        var sv = SynthVocab.Build(151936, false);
        var u2b = new Dictionary<char, byte>();
        var b2u = SynthVocab.ByteToUnicode();
        for (int b = 0; b < 256; b++) u2b[b2u[b]] = (byte)b;
        var svBytes = sv.Tokens.Select((t, i) => sv.TokenTypes[i] == SynthVocab.Normal ? t.Select(ch => u2b[ch]).ToArray() : Encoding.UTF8.GetBytes(t)).ToArray();
        var svSpecial = sv.TokenTypes.Select(t => t != SynthVocab.Normal).ToArray();
        Report("synth-vocab 151936", new TokenTrie(svBytes, svSpecial, [sv.Eos, sv.Eot]));

        // a realistic 150k text vocabulary: gpt-2's tokens plus distinct concatenations of two of them
        var rng = new Random(3);
        var seen = new HashSet<string>();
        var list = new List<byte[]>();
        for (int i = 0; i < gpt2.VocabSize; i++) { var b = gpt2.TokenBytes(i); if (b.Length > 0 && seen.Add(Convert.ToHexString(b))) list.Add(b); }
        while (list.Count < 151936)
        {
            var a = gpt2.TokenBytes(rng.Next(gpt2.VocabSize)); var b = gpt2.TokenBytes(rng.Next(gpt2.VocabSize));
            var c = a.Concat(b).ToArray();
            if (c.Length <= 16 && seen.Add(Convert.ToHexString(c))) list.Add(c);
        }
        Report("gpt-2 + pairs 151936", new TokenTrie([.. list], null, []));
    }
}
