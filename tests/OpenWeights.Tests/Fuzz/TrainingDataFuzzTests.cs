using System.Diagnostics;
using OpenWeights.Models.Synthetic;
using OpenWeights.Tokenizers;
using OpenWeights.Training;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// Fuzzes the JSONL training-data reader (issue 19, "make it stay fixed"): every input either loads or is refused with
/// an <see cref="OpenWeightsException"/> whose message is bounded and free of raw control characters — never another
/// exception type, never a hang. Inputs are the committed corpus (Fuzz/corpus/training: seeds and the regression
/// cases of crashes found) and, for about 3 s, structured mutations of it (<see cref="TrainingFuzzMutator"/>).
/// Deterministic: input k of seed s is always the same; a failure names both, and writes the input to a file.
/// OPENWEIGHTS_FUZZ_SEED and OPENWEIGHTS_FUZZ_SECONDS change the seed and the time (e.g. 300 for a long local run);
/// OPENWEIGHTS_FUZZ_START=k starts at input k (to rerun a failure at once).
/// </summary>
public class TrainingDataFuzzTests(ITestOutputHelper output)
{
    /// <summary>Longest error message accepted: 20 listed problems of a few hundred characters each, and the file name.</summary>
    public const int MaxMessage = 8192;
    /// <summary>Longest single problem (one line of tune's listing).</summary>
    public const int MaxProblem = 512;
    /// <summary>An input taking longer than this (on a busy 2-core machine) counts as a hang.</summary>
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(30);
    private const int DefaultSeed = 1919;

    public static string CorpusDir
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "OpenWeights.slnx")))
                    return Path.Combine(d.FullName, "tests", "OpenWeights.Tests", "Fuzz", "corpus", "training");
            throw new DirectoryNotFoundException("repository root (OpenWeights.slnx) not found above " + AppContext.BaseDirectory);
        }
    }

    public static TheoryData<string> CorpusFiles() => [.. Directory.GetFiles(CorpusDir).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal)];

    /// <summary>
    /// A model file's template is untrusted: this one raises an error holding a system message's content (which the
    /// fuzzer fills with control characters and huge strings); otherwise it is ChatML.
    /// </summary>
    public const string HostileTemplate =
        "{%- for m in messages %}{%- if m['role'] == 'system' %}{{ raise_exception('no system messages: ' ~ m['content']) }}{%- endif %}" +
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}";

    /// <summary>How inputs are read: ChatML (no BOS), Llama 3 (BOS), no chat template, the hostile template (training on prompts too).</summary>
    private static readonly Lazy<Reader[]> Readers = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), "ow-training-fuzz-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        try
        {
            Tokenizer Make(SynthPreset p, string name)
            {
                var path = Path.Combine(dir, name);
                SyntheticModel.Write(p, SynthType.Parse("f32"), path);
                return Tokenizer.FromGguf(path);
            }
            var qwen = Make(SynthPreset.Get("tiny-qwen2"), "qwen.gguf");
            return [new(qwen, null, false), new(Make(SynthPreset.Get("tiny-llama"), "llama.gguf"), null, false),
                    new(Make(SynthPreset.Get("tiny-qwen2") with { ChatTemplate = "" }, "plain.gguf"), null, false), new(qwen, HostileTemplate, true)];
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    });

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void CorpusFileLoadsOrIsRefusedCleanly(string name)
    {
        var bytes = File.ReadAllBytes(Path.Combine(CorpusDir, name));
        var input = new TrainingFuzzInput(bytes, Path.GetExtension(name));
        using var dir = new TempDir();
        for (int t = 0; t < Readers.Value.Length; t++)
        {
            var failure = Check(input, Readers.Value[t], dir, out var loaded);
            Assert.True(failure is null, $"{name} (reader {t}): {failure}");
            // valid-* seeds are well-formed for a tokenizer with a chat template: they must load, so mutations start from data that works
            if (name.StartsWith("valid-", StringComparison.Ordinal) && t < 2) Assert.True(loaded, $"{name} (reader {t}) did not load");
        }
    }

    [Fact]
    public void MutatedTrainingDataLoadsOrIsRefusedCleanly()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SEED"), out var s) ? s : DefaultSeed;
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var sec) ? sec : 3;
        var corpus = Directory.GetFiles(CorpusDir).Order(StringComparer.Ordinal)
            .Select(f => new TrainingFuzzInput(File.ReadAllBytes(f), Path.GetExtension(f))).ToList();
        var readers = Readers.Value;
        double slowest = 0; int slowestK = -1; TrainingFuzzInput? slowestInput = null;
        using var dir = new TempDir();
        int first = int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_START"), out var f) ? f : 0;
        var clock = Stopwatch.StartNew();
        int k = first, loaded = 0;
        for (; clock.Elapsed.TotalSeconds < seconds; k++)
        {
            var (input, t) = Input(seed, k, corpus, readers.Length);
            var started = clock.Elapsed.TotalSeconds;
            var failure = Check(input, readers[t], dir, out bool ok);
            if (clock.Elapsed.TotalSeconds - started > slowest) (slowest, slowestK, slowestInput) = (clock.Elapsed.TotalSeconds - started, k, input);
            if (failure is not null)
            {
                var saved = Path.Combine(Path.GetTempPath(), $"training-fuzz-seed{seed}-input{k}{input.Extension}");
                File.WriteAllBytes(saved, input.Bytes);
                Assert.Fail($"training-data fuzz: seed {seed}, input {k} (rerun: OPENWEIGHTS_FUZZ_SEED={seed} OPENWEIGHTS_FUZZ_START={k}), saved to {saved}: {failure}");
            }
            if (ok) loaded++;
        }
        if (slowest > 1 && slowestInput is not null) // worth a look: saved beside the failures
            File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"training-fuzz-seed{seed}-input{slowestK}-slowest{slowestInput.Extension}"), slowestInput.Bytes);
        output.WriteLine($"training-data fuzz: seed {seed}, inputs {first}..{k - 1} in {clock.Elapsed.TotalSeconds:F1} s, {loaded} loaded, {k - first - loaded} refused; slowest: input {slowestK}, {slowest:F2} s");
    }

    /// <summary>
    /// Input k of a seed and the reader it is read with: a corpus file mutated by a Random seeded from (seed, k)
    /// alone (splitmix64, not the per-process randomized HashCode), so one input can be rebuilt without the others.
    /// </summary>
    public static (TrainingFuzzInput Input, int Reader) Input(int seed, int k, IReadOnlyList<TrainingFuzzInput> corpus, int readers)
    {
        ulong z = ((ulong)(uint)seed << 32 | (uint)k) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        var rng = new Random(unchecked((int)(z ^ (z >> 31))));
        int t = rng.Next(readers);
        return (TrainingFuzzMutator.Mutate(rng, corpus[rng.Next(corpus.Count)], corpus), t);
    }

    /// <summary>Loads the input; null when it loaded or was refused properly, else what went wrong.</summary>
    private static string? Check(TrainingFuzzInput input, Reader reader, TempDir dir, out bool loaded)
    {
        loaded = false;
        var path = dir.File("data" + input.Extension);
        File.WriteAllBytes(path, input.Bytes);
        var load = Task.Run(() => TrainingData.Load(path, reader.Tok, reader.Template, reader.TrainOnPrompt));
        try
        {
            if (!load.Wait(HangAfter)) return $"hang: still loading after {HangAfter.TotalSeconds} s";
        }
        catch (AggregateException ae) when (ae.InnerException is { } e)
        {
            if (e is not OpenWeightsException) return $"{e.GetType().Name} instead of an OpenWeightsException: {e}";
            if (e is TrainingDataException tde)
            {
                if (tde.Problems.Count == 0) return "TrainingDataException without problems";
                foreach (var p in tde.ListedProblems())
                    if (Bad(p, MaxProblem) is { } why) return $"problem line {why}";
            }
            return Bad(e.Message, MaxMessage) is { } bad ? $"message {bad}" : null;
        }
        foreach (var ex in load.Result)
            if (ex.Tokens.Length != ex.Loss.Length) return $"example with {ex.Tokens.Length} tokens but {ex.Loss.Length} loss flags";
        loaded = true;
        return null;
    }

    /// <summary>Why a message is unfit for a terminal (too long, a raw control character in a line), or null.</summary>
    private static string? Bad(string message, int max)
    {
        if (message.Length > max) return $"of {message.Length} characters (limit {max}): {message[..200]}...";
        foreach (var line in message.Split('\n'))
            foreach (var c in line)
                if (char.IsControl(c) || c is '\u2028' or '\u2029')
                    return $"holds raw U+{(int)c:X4}: {TrainingData.Quote(message, 300)}";
        return null;
    }

    /// <summary>The arguments of one way to read the data.</summary>
    public sealed record Reader(Tokenizer Tok, string? Template, bool TrainOnPrompt);
}
