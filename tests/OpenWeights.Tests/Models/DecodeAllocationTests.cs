using OpenWeights.Inference;
using OpenWeights.Models.Llama;
using OpenWeights.Models.Synthetic;

namespace OpenWeights.Tests.Models;

/// <summary>The steady-state decode loop (evaluate one token, sample the next) allocates nothing, worker threads included.</summary>
[Collection(nameof(DecodeAllocationCollection))]
public class DecodeAllocationTests
{
    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_k_m")]
    [InlineData("f16")]
    public void DecodeStepsAllocateNothing(string type)
    {
        using var dir = new TempDir();
        var path = dir.File($"alloc-{type}.gguf");
        SyntheticModel.Write(SynthPreset.Get("tiny-llama"), SynthType.Parse(type), path, threads: 2);
        using var model = LlamaModel.Load(path);
        var session = new InferenceSession(model, contextSize: 256, threads: 2, batchSize: 16);
        var sampler = new Sampler(new SamplingOptions(), model.Config.VocabSize);
        int[] prompt = [5, 300, 301, 17, 900, 44];
        var history = new List<int>(256);
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
        Assert.True(thread == 0, $"decode thread allocated {thread} bytes over 50 steps (sampler {a1 - a0}/10, evaluate {a2 - a1}/10)");
        // other threads of the test host may allocate a little meanwhile; the pool's workers must not allocate per token
        Assert.True(total < 50 * 64, $"{total} bytes allocated process-wide over 50 decode steps");
    }
}

[CollectionDefinition(nameof(DecodeAllocationCollection), DisableParallelization = true)]
public sealed class DecodeAllocationCollection;
