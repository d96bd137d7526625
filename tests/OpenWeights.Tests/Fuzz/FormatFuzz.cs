using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace OpenWeights.Tests.Fuzz;

/// <summary>
/// The loop of the file-format fuzzers. Iteration i of seed S draws its mutation from <c>new Random(HashCode(S, i))</c>,
/// so a failure names (seed, iteration) and replays alone with <c>OPENWEIGHTS_FUZZ_SEED=S OPENWEIGHTS_FUZZ_ITERATION=i</c>.
/// A run stops after its iteration count or its time budget (a few seconds in the normal test run, but at least
/// <see cref="MinIterations"/> inputs;
/// <c>OPENWEIGHTS_FUZZ_SECONDS</c> and <c>OPENWEIGHTS_FUZZ_ITERATIONS</c> make it longer), whichever comes first.
/// The property: every input loads or fails with a user-facing exception (what the CLI prints as one line), never any
/// other exception and never a hang (one input may take at most <see cref="HangSeconds"/>).
/// </summary>
public static class FormatFuzz
{
    public const double HangSeconds = 20;

    /// <summary>Inputs tried even when the time budget is spent (a loaded machine spends the first seconds compiling).</summary>
    public const int MinIterations = 25;

    public static int Seed => int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SEED"), out int s) ? s : 19;

    private static int? OnlyIteration => int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_ITERATION"), out int i) ? i : null;

    private static double Seconds(double def) => double.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out double s) ? s : def;

    private static int Iterations(int def) => int.TryParse(Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_ITERATIONS"), out int n) ? n : def;

    /// <summary>Whether an exception is one the CLI reports as a one-line user error.</summary>
    public static bool IsUserError(Exception e) => e is OpenWeightsException or InvalidDataException;

    /// <summary>
    /// Runs <paramref name="once"/> for each iteration; <paramref name="once"/> mutates with the Random it is given and loads the
    /// result. <paramref name="lastInput"/> gives the bytes of the input being tried: with <c>OPENWEIGHTS_FUZZ_SAVE=DIR</c> a
    /// crashing input is saved there (to become a regression case), and <c>OPENWEIGHTS_FUZZ_KEEP_GOING=1</c> goes on after
    /// a crash to collect more of them, failing at the end.
    /// </summary>
    /// <returns>how many iterations ran, how many inputs loaded.</returns>
    public static (int Ran, int Loaded) Run(string name, Func<Random, int, bool> once, int iterations = 400, double seconds = 3, ITestOutputHelper? log = null,
        Func<byte[]?>? lastInput = null)
    {
        string? save = Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_SAVE");
        bool keepGoing = Environment.GetEnvironmentVariable("OPENWEIGHTS_FUZZ_KEEP_GOING") == "1";
        var crashes = new Dictionary<string, int>(StringComparer.Ordinal);
        int seed = Seed;
        int n = Iterations(iterations);
        double budget = Seconds(seconds);
        int current = -1, ran = 0, loaded = 0;
        Exception? failure = null;
        var sw = Stopwatch.StartNew();
        var worker = new Thread(() =>
        {
            try
            {
                IEnumerable<int> its = OnlyIteration is int only ? [only] : Enumerable.Range(0, n);
                foreach (int i in its)
                {
                    if (sw.Elapsed.TotalSeconds > budget && OnlyIteration is null && i >= MinIterations) break;
                    Volatile.Write(ref current, i);
                    var r = new Random(HashCode.Combine(seed, i, name.Length));
                    try
                    {
                        try { if (once(r, i)) loaded++; }
                        catch (Exception e) when (IsUserError(e))
                        {
                            if (e.Message.Contains('\n') || e.Message.Contains('\r') || e.Message.Contains('\u001b'))
                                throw new Xunit.Sdk.XunitException($"{name}: seed {seed} iteration {i}: the error message is not one safe line: {e.Message.Replace("\u001b", "\\e")}");
                        }
                    }
                    catch (Exception e)
                    {
                        if (save is not null && lastInput?.Invoke() is { } input)
                        {
                            Directory.CreateDirectory(save);
                            File.WriteAllBytes(Path.Combine(save, $"{name}-{seed}-{i}.bin"), input);
                        }
                        if (!keepGoing) throw;
                        // one line per distinct exception type and throwing method
                        string site = $"{e.GetType().Name} at {e.TargetSite?.DeclaringType?.Name}.{e.TargetSite?.Name}";
                        crashes[site] = crashes.GetValueOrDefault(site) + 1;
                    }
                    ran++;
                }
            }
            catch (Exception e) { failure = e; }
        }, 64 << 20) { IsBackground = true, Name = "fuzz " + name };
        worker.Start();
        // the time budget, plus the longest one input may take
        var deadline = TimeSpan.FromSeconds(budget + HangSeconds);
        while (!worker.Join(TimeSpan.FromMilliseconds(200)))
        {
            if (sw.Elapsed > deadline)
                Assert.Fail($"{name}: seed {Seed} iteration {Volatile.Read(ref current)} did not finish in {HangSeconds} s (hang?); replay with OPENWEIGHTS_FUZZ_SEED={Seed} OPENWEIGHTS_FUZZ_ITERATION={Volatile.Read(ref current)}");
        }
        if (failure is Xunit.Sdk.XunitException) throw failure;
        if (failure is not null)
            Assert.Fail($"{name}: seed {seed} iteration {current}: {failure.GetType().Name}: {failure.Message}; replay with OPENWEIGHTS_FUZZ_SEED={seed} OPENWEIGHTS_FUZZ_ITERATION={current}\n{failure}");
        log?.WriteLine($"{name}: seed {seed}, {ran} inputs in {sw.Elapsed.TotalSeconds:F1} s, {loaded} loaded");
        if (crashes.Count > 0)
            Assert.Fail($"{name}: seed {seed}: {crashes.Values.Sum()} crashing inputs: " + string.Join("; ", crashes.Select(kv => $"{kv.Value} × {kv.Key}")));
        Assert.True(ran > 0, $"{name}: no iteration ran");
        return (ran, loaded);
    }

    /// <summary>Tests/OpenWeights.Tests/Fuzz/corpus in the source tree (found from this file's path, else upward from the test binaries).</summary>
    public static string CorpusDir([CallerFilePath] string here = "")
    {
        string beside = Path.Combine(Path.GetDirectoryName(here) ?? "", "corpus");
        if (Directory.Exists(beside)) return beside;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string p = Path.Combine(d.FullName, "tests", "OpenWeights.Tests", "Fuzz", "corpus");
            if (Directory.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException("tests/OpenWeights.Tests/Fuzz/corpus not found (run from the repository)");
    }

    /// <summary>The committed seed files of one format (corpus/FORMAT/*).</summary>
    public static string[] Seeds(string format) => Directory.GetFiles(Path.Combine(CorpusDir(), format)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The committed regression inputs of one format (corpus/regressions/FORMAT/*): inputs that once crashed.</summary>
    public static string[] Regressions(string format)
    {
        string d = Path.Combine(CorpusDir(), "regressions", format);
        return Directory.Exists(d) ? Directory.GetFiles(d).Order(StringComparer.Ordinal).ToArray() : [];
    }
}
