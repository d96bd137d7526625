using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;
using OpenWeights.Tests.Server;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzing the OpenAI request parser with a structured mutation loop of our own: valid requests from the seed corpus
/// (Fuzz/corpus/openai/*.json) get bytes flipped, values swapped for other JSON types, huge numbers, lone surrogates and
/// invalid UTF-8, keys duplicated, deleted and renamed, subtrees spliced between requests, nesting deepened and the text
/// truncated. The property: parsing and reading every field either succeeds or answers a 4xx <see cref="ApiException"/>,
/// never another exception. The loop is seeded and deterministic (iteration i of seed s is always the same input), runs
/// a bounded time (OPENWEIGHTS_FUZZ_SECONDS, default 3; OPENWEIGHTS_FUZZ_SEED picks another seed), prints the seed and
/// iteration of a failure, and keeps each failing input in corpus/openai/regressions/, which every run replays.
/// </summary>
public class OpenAiRequestFuzzTests(ITestOutputHelper output)
{
    private const int DefaultSeed = 20261202;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SEED"), out int s) ? s : DefaultSeed;
    private static double Seconds => double.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out double d) ? d : 3;

    [Fact]
    public void ParserAnswersEveryMutationWithARequestOrA4xx()
    {
        var seeds = Corpus.Seeds();
        Assert.NotEmpty(seeds);
        var failures = new List<string>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int seed = Seed, i = 0;
        for (; i < 1_000_000 && sw.Elapsed.TotalSeconds < Seconds && failures.Count < 10; i++)
        {
            byte[] input = new RequestMutator(new Random(unchecked(seed * 1_000_003 + i)), seeds).Next();
            if (ParserHarness.Check(input) is { } failure)
                failures.Add($"seed {seed} iteration {i}: {failure} (kept as {Corpus.Keep(input, $"parser-{seed}-{i}")})");
        }
        output.WriteLine($"seed {seed}: {i} inputs in {sw.Elapsed.TotalSeconds:F1} s, {failures.Count} failures");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void RegressionCasesStayFixed()
    {
        var failures = Corpus.Regressions().Select(f => (f, ParserHarness.Check(File.ReadAllBytes(f)))).Where(r => r.Item2 is not null)
            .Select(r => $"{Path.GetFileName(r.f)}: {r.Item2}").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// The same loop through the whole server in process (tiny model, 64-token context so that a valid mutant generates
    /// little): no status 500 and every error in OpenAI's shape. Bounded to half the parser's time (at least 40 requests).
    /// </summary>
    [Fact]
    public async Task ServerAnswersEveryMutationWithoutA500()
    {
        using var f = new OwFactory(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 64, Threads = 2 });
        var http = f.CreateClient();
        var seeds = Corpus.Seeds();
        var failures = new List<string>();
        int seed = Seed, i = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var inputs = Corpus.Regressions().Select(File.ReadAllBytes)
            .Concat(Enumerable.Range(0, int.MaxValue).Select(k => new RequestMutator(new Random(unchecked(seed * 7_000_003 + k)), seeds).Next()));
        foreach (var input in inputs)
        {
            if ((sw.Elapsed.TotalSeconds > Seconds / 2 && i >= 40) || sw.Elapsed.TotalSeconds > 10 * Seconds || failures.Count >= 5) break;
            string endpoint = Encoding.UTF8.GetString(input).Contains("\"input\"") ? "/v1/embeddings" : Encoding.UTF8.GetString(input).Contains("\"prompt\"") ? "/v1/completions" : "/v1/chat/completions";
            string? problem;
            try
            {
                var resp = await http.PostAsync(endpoint, new ByteArrayContent(input) { Headers = { { "Content-Type", "application/json" } } });
                string text = await resp.Content.ReadAsStringAsync();
                problem = (int)resp.StatusCode >= 500 ? $"HTTP {(int)resp.StatusCode} {text}"
                    : (int)resp.StatusCode >= 400 && !IsOpenAiError(text) ? $"HTTP {(int)resp.StatusCode} without an OpenAI error body: {text}" : null;
            }
            catch (Exception e) when (e is not OutOfMemoryException) // the in-process server hands its unhandled exceptions to the client
            {
                problem = $"the server threw {e.GetType().Name}: {e.Message}";
            }
            if (problem is not null) failures.Add($"seed {seed} input {i}: {endpoint} {problem} (kept as {Corpus.Keep(input, $"server-{seed}-{i}")})");
            i++;
        }
        output.WriteLine($"seed {seed}: {i} requests in {sw.Elapsed.TotalSeconds:F1} s");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
    }

    private static bool IsOpenAiError(string text)
    {
        try { return JsonNode.Parse(text)?["error"] is JsonObject e && e["message"] is JsonValue && e["type"] is JsonValue && e.ContainsKey("param") && e.ContainsKey("code"); }
        catch (System.Text.Json.JsonException) { return false; }
    }

    [Fact]
    public void MutatorIsDeterministicAndVaried()
    {
        var seeds = Corpus.Seeds();
        var a = Enumerable.Range(0, 200).Select(k => new RequestMutator(new Random(k), seeds).Next()).ToList();
        var b = Enumerable.Range(0, 200).Select(k => new RequestMutator(new Random(k), seeds).Next()).ToList();
        Assert.Equal(a.Select(Convert.ToHexString), b.Select(Convert.ToHexString));
        int rejected = a.Count(x => { try { OpenAiRequest.Parse(x); return false; } catch (ApiException) { return true; } });
        Assert.InRange(rejected, 20, 180); // both sides of the parser get exercised
    }
}

/// <summary>Parses a body and reads every field the endpoints read, the way they read it.</summary>
internal static class ParserHarness
{
    /// <summary>Null when the property holds, else what broke it.</summary>
    public static string? Check(byte[] body)
    {
        try
        {
            var req = OpenAiRequest.Parse(body);
            Each(() => req.String("model"));
            Each(() => // chat
            {
                req.Messages(); req.Tools(); req.Integer("n", 1, 16); req.Bool("stream"); req.IncludeUsage(); req.Logprobs(chat: true);
                req.String("user"); req.ResponseFormat(); req.GenerationOptions(contextSize: 512, vocabSize: 1024, promptTokens: 5, index: 1);
            });
            Each(() => { req.Prompts(); req.Bool("echo"); req.Logprobs(chat: false); req.Stops(); }); // text completions
            Each(() => // responses
            {
                var r = new ResponsesRequest(req);
                r.Input([]); r.Tools(); r.TextFormat(); r.TemplateVariables(); r.Ignored(); r.Store(); r.PreviousResponseId(); r.Instructions();
            });
            Each(() => { req.EmbeddingInput(); req.String("encoding_format"); req.Integer("dimensions", 1, 256); }); // embeddings
            return null;
        }
        catch (ApiException e) when (e.Status is >= 400 and < 500) { return null; }
        catch (Exception e) { return $"{e.GetType().Name}: {e.Message}"; }
    }

    private static void Each(Action read)
    {
        try { read(); }
        catch (ApiException e) when (e.Status is >= 400 and < 500) { }
    }
}

/// <summary>The committed seed corpus and regression cases (found from the test binary up to the source tree).</summary>
internal static class Corpus
{
    private static readonly Lazy<string> dir = new(() =>
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "OpenWeights.Tests", "Fuzz", "corpus", "openai");
            if (Directory.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException("tests/OpenWeights.Tests/Fuzz/corpus/openai not found above " + AppContext.BaseDirectory);
    });

    public static IReadOnlyList<byte[]> Seeds() => Directory.GetFiles(dir.Value, "*.json").Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();

    public static IEnumerable<string> Regressions()
    {
        var r = Path.Combine(dir.Value, "regressions");
        return Directory.Exists(r) ? Directory.GetFiles(r, "*.json").Order(StringComparer.Ordinal) : [];
    }

    /// <summary>Writes a failing input into regressions/ (to be committed) and returns its path.</summary>
    public static string Keep(byte[] input, string name)
    {
        var r = Path.Combine(dir.Value, "regressions");
        Directory.CreateDirectory(r);
        var path = Path.Combine(r, name + ".json");
        File.WriteAllBytes(path, input);
        return path;
    }
}

/// <summary>
/// Mutates a request from the corpus, one to three times: byte-level (flip, overwrite with a telling byte, cut, repeat or
/// drop a span, truncate) or structured on the parsed tree (swap a value for another type or a raw token such as 1e400,
/// "\ud800", invalid UTF-8 or 70 levels of nesting; delete, duplicate or rename a key; splice in a subtree of another seed).
/// Raw tokens that JsonNode cannot hold travel as marked strings and are put in after serialisation.
/// </summary>
internal sealed class RequestMutator(Random rng, IReadOnlyList<byte[]> seeds)
{
    private static readonly string[] Raw =
    [
        "1e400", "-1e400", "1e12", "99999999999999999999999", "-0", "0.5", "1.5", "-1", "2147483648", "1e-400",
        "\"\\ud800\"", "\"a\\udc00b\"", "\"\\udc00\\ud800\"", "\"\\u0000\"", "\"\"", "null", "true", "[]", "{}", "[null]", "[[null]]", "[[\"a\"]]", "[1.5]", "[1e12]",
        "[{\"type\":1}]", "[{\"type\":\"text\",\"text\":5}]", "[{\"type\":\"text\"}]", "{\"type\":\"json_schema\"}",
        new string('[', 70) + new string(']', 70), string.Concat(Enumerable.Repeat("{\"a\":", 70)) + "0" + new string('}', 70),
        new string('[', 60) + new string(']', 60),
    ];
    private static readonly byte[][] BadBytes = [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0x80], [0xF5, 0x80, 0x80, 0x80], [0x00]];
    private static readonly string[] Keys =
    [
        "model", "messages", "role", "content", "type", "text", "tools", "function", "name", "arguments", "tool_calls", "tool_choice",
        "prompt", "input", "max_tokens", "temperature", "n", "seed", "stop", "logit_bias", "logprobs", "top_logprobs", "stream",
        "stream_options", "include_usage", "response_format", "json_schema", "schema", "encoding_format", "dimensions", "echo", "user",
        "instructions", "previous_response_id", "call_id", "output", "format", "reasoning", "effort", "summary", "store", "parameters",
    ];
    private const string RawMark = "\u0005RAW", DupMark = "\u0002DUP\u0002", BadMark = "\u0004BAD\u0004";

    public byte[] Next()
    {
        byte[] cur = seeds[rng.Next(seeds.Count)];
        for (int r = 1 + rng.Next(3); r > 0; r--)
            cur = rng.Next(4) == 0 ? Bytes(cur) : Structured(cur) ?? Bytes(cur);
        return cur;
    }

    private byte[] Bytes(byte[] s)
    {
        var b = new List<byte>(s);
        if (b.Count == 0) return [(byte)rng.Next(256)];
        int at = rng.Next(b.Count);
        switch (rng.Next(7))
        {
            case 0: b[at] ^= (byte)(1 << rng.Next(8)); break;
            case 1: b.RemoveAt(at); b.InsertRange(at, BadBytes[rng.Next(BadBytes.Length)]); break;
            case 2: b.RemoveRange(at, b.Count - at); break; // truncate
            case 3: { int len = Math.Min(b.Count - at, 1 + rng.Next(16)); b.InsertRange(at, b.GetRange(at, len)); break; }
            case 4: b.RemoveRange(at, Math.Min(b.Count - at, 1 + rng.Next(16))); break;
            case 5: b.InsertRange(at, Encoding.UTF8.GetBytes("{[\",:}]\\"[rng.Next(8)].ToString())); break;
            default: b[at] = (byte)"{}[]\",:0-e.\\ntu"[rng.Next(15)]; break;
        }
        return [.. b];
    }

    // null when the input is not JSON the tree can hold (lazily parsed: duplicate keys or bad text throw on first touch)
    private byte[]? Structured(byte[] s)
    {
        try { return Mutate(JsonNode.Parse(s)); }
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or InvalidOperationException) { return null; }
    }

    private byte[]? Mutate(JsonNode? root)
    {
        if (root is null) return null;
        var nodes = new List<(JsonNode? Parent, string? Key, int Index, JsonNode? Node)> { (null, null, -1, root) };
        Collect(root, nodes);
        var (parent, key, index, node) = nodes[rng.Next(nodes.Count)];
        switch (rng.Next(8))
        {
            case 0 or 1: root = Set(root, parent, key, index, JsonValue.Create($"{RawMark}{rng.Next(Raw.Length)}\u0005")); break;
            case 2: // another type
                JsonNode? other = rng.Next(6) switch { 0 => null, 1 => JsonValue.Create(rng.Next(2) == 0), 2 => JsonValue.Create(rng.Next(-5, 100000)), 3 => JsonValue.Create("x"), 4 => new JsonArray(), _ => new JsonObject() };
                root = Set(root, parent, key, index, other); break;
            case 3: // delete
                if (parent is JsonObject po && key is not null) po.Remove(key);
                else if (parent is JsonArray pa) pa.RemoveAt(index);
                break;
            case 4: // duplicate a key (or add one from the vocabulary)
                if (parent is JsonObject dp && key is not null) dp[DupMark + key] = node?.DeepClone();
                else if (node is JsonObject o) o[Keys[rng.Next(Keys.Length)]] = JsonValue.Create($"{RawMark}{rng.Next(Raw.Length)}\u0005");
                break;
            case 5: // rename a key
                if (parent is JsonObject rp && key is not null) { var v = node?.DeepClone(); rp.Remove(key); rp[Keys[rng.Next(Keys.Length)]] = v; }
                break;
            case 6: // invalid UTF-8 inside a string
                root = Set(root, parent, key, index, JsonValue.Create("ab" + BadMark + "cd")); break;
            default: // splice a subtree of another seed
                var donor = JsonNode.Parse(seeds[rng.Next(seeds.Count)])!;
                var donorNodes = new List<(JsonNode?, string?, int, JsonNode?)>();
                Collect(donor, donorNodes);
                if (donorNodes.Count > 0) root = Set(root, parent, key, index, donorNodes[rng.Next(donorNodes.Count)].Item4?.DeepClone());
                break;
        }
        return Serialize(root);
    }

    private static JsonNode? Set(JsonNode? root, JsonNode? parent, string? key, int index, JsonNode? value)
    {
        if (parent is null) return value;
        if (parent is JsonObject o) o[key!] = value; else ((JsonArray)parent)[index] = value;
        return root;
    }

    private static void Collect(JsonNode node, List<(JsonNode?, string?, int, JsonNode?)> into)
    {
        if (node is JsonObject o)
            foreach (var (k, v) in o.ToList()) { into.Add((o, k, -1, v)); if (v is not null) Collect(v, into); }
        else if (node is JsonArray a)
            for (int i = 0; i < a.Count; i++) { into.Add((a, null, i, a[i])); if (a[i] is { } v) Collect(v, into); }
    }

    // serialises, then swaps the markers for the raw text, duplicate keys and invalid bytes they stand for
    private static byte[] Serialize(JsonNode? root)
    {
        string text = root?.ToJsonString() ?? "null";
        for (int k = Raw.Length - 1; k >= 0; k--) text = text.Replace($"\"\\u0005RAW{k}\\u0005\"", Raw[k]);
        text = text.Replace("\\u0002DUP\\u0002", "");
        var parts = text.Split("\\u0004BAD\\u0004");
        var bytes = new List<byte>();
        for (int p = 0; p < parts.Length; p++)
        {
            if (p > 0) bytes.AddRange(BadBytes[p % BadBytes.Length]);
            bytes.AddRange(Encoding.UTF8.GetBytes(parts[p]));
        }
        return [.. bytes];
    }
}
