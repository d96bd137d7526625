using OpenWeights.Inference;
using OpenWeights.Models;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Models;

/// <summary>The steady-state decode loop (evaluate one token, sample the next) allocates nothing, worker threads included.</summary>
[Collection(nameof(DecodeAllocationCollection))]
public class DecodeAllocationTests
{
    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_k_m")]
    [InlineData("pure-q4_0")] // interleaved Q4_0x8 weights
    [InlineData("f16")]
    public void DecodeStepsAllocateNothing(string type)
    {
        using var dir = new TempDir();
        var path = dir.File($"alloc-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse(type), path, threads: 2);
        using var model = DecoderModel.Load(path);
        var session = new InferenceSession(model, contextSize: 512, threads: 2, batchSize: 16);
        var sampler = new Sampler(new SamplingOptions(), model.Config.VocabSize);
        int[] prompt = [5, 300, 301, 17, 900, 44];
        var history = new List<int>(512);
        history.AddRange(prompt);
        var one = new int[1];
        var logits = session.EvaluatePrompt(prompt).ToArray();
        void Step()
        {
            one[0] = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            history.Add(one[0]);
            session.Evaluate(one).CopyTo(logits);
        }
        for (int i = 0; i < 40; i++) Step(); // warm up past the JIT's tier-up thresholds, thread-static scratch, pool threads
        // (context 512: prompt 6 + warm-up 40 + 6 x (50 + 10) tokens = 406 fit)
        // Up to 6 windows of 50 steps: the decode thread must allocate nothing in a window, and process-wide allocation
        // must stay under 64 bytes a step (other tests of the host — fuzzers, servers, child-process readers — may still
        // be finishing and allocate meanwhile, so a window in which they did is measured again, after a pause, rather
        // than failed; a decode loop that allocates fails every window).
        var windows = new List<string>();
        bool clean = false;
        for (int w = 0; w < 6 && !clean; w++)
        {
            if (w > 0) Thread.Sleep(250);
            long before = GC.GetTotalAllocatedBytes(precise: true);
            long beforeThread = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 50; i++) Step();
            long thread = GC.GetAllocatedBytesForCurrentThread() - beforeThread;
            long total = GC.GetTotalAllocatedBytes(precise: true) - before;
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10; i++) sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            long a1 = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10; i++) session.Evaluate(one);
            long a2 = GC.GetAllocatedBytesForCurrentThread();
            windows.Add($"thread {thread} B, process {total} B (sampler {a1 - a0}/10, evaluate {a2 - a1}/10)");
            clean = thread == 0 && total < 50 * 64;
        }
        Assert.True(clean, "every window of 50 decode steps allocated: " + string.Join("; ", windows));
    }
}

[CollectionDefinition(nameof(DecodeAllocationCollection), DisableParallelization = true)]
public sealed class DecodeAllocationCollection;
