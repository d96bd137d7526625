using System.Diagnostics;
using System.Threading.Channels;
using OpenWeights.Inference;
using OpenWeights.Models.Common;
using OpenWeights.Models.Llama;
using OpenWeights.Tokenizers;

namespace OpenWeights.Server;

/// <summary>One generation's output as the scheduler produces it: chunks, then a final chunk (Finish set) or an error.</summary>
public readonly record struct JobEvent(int Index, GenerationChunk? Chunk, Exception? Error);

/// <summary>A request for one completion (one choice).</summary>
public sealed class GenerationJob(int[] prompt, GenerationOptions options, int index, ChannelWriter<JobEvent> output, CancellationToken ct)
{
    public int[] Prompt { get; } = prompt;
    public GenerationOptions Options { get; } = options;
    public int Index { get; } = index;
    public ChannelWriter<JobEvent> Output { get; } = output;
    public CancellationToken Cancellation { get; } = ct;
    internal TokenStream? Stream;
    internal int Prefilled;
    internal int NextToken = -1;
    internal long StartTicks, FirstTokenTicks;
}

/// <summary>Thrown when the queue is full (HTTP 429).</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>
/// Continuous batching: N slots, each with its own KV cache. Each step, every slot with work contributes its tokens
/// (one token when decoding, a chunk of its prompt when prefilling) to one batched forward pass; a freed slot takes
/// the next queued job at once. Cancelled jobs (client gone) free their slot at the next step.
/// </summary>
public sealed class Scheduler : IDisposable
{
    private sealed class Slot(KvCache cache)
    {
        public readonly KvCache Cache = cache;
        public readonly List<int> Tokens = []; // what the cache holds, in order
        public GenerationJob? Job;
    }

    private readonly LlamaModel model;
    private readonly Tokenizer tokenizer;
    private readonly Slot[] slots;
    private readonly RunState state;
    private readonly float[] logits;
    private readonly int threads, maxBatch;
    private readonly LinkedList<GenerationJob> queue = new();
    private readonly object gate = new();
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread loop;
    private volatile bool stopping;

    public int Parallel => slots.Length;
    public int ContextSize { get; }
    public int MaxQueue { get; }
    public ServerMetrics Metrics { get; }

    public Scheduler(LlamaModel model, Tokenizer tokenizer, int parallel, int contextSize, int threads, int maxQueue, ServerMetrics metrics, int maxBatch = 256)
    {
        if (parallel < 1) throw new OpenWeightsException($"--parallel {parallel} must be at least 1");
        this.model = model; this.tokenizer = tokenizer; this.threads = threads;
        ContextSize = Math.Min(contextSize, model.Config.ContextLength);
        MaxQueue = maxQueue; Metrics = metrics;
        this.maxBatch = Math.Max(maxBatch, parallel);
        slots = new Slot[parallel];
        for (int i = 0; i < parallel; i++) slots[i] = new Slot(model.CreateCache(ContextSize));
        state = model.CreateState(this.maxBatch, ContextSize);
        logits = new float[parallel * model.Config.VocabSize];
        loop = new Thread(Run) { IsBackground = true, Name = "openweights-scheduler" };
        loop.Start();
    }

    public int QueueDepth { get { lock (gate) return queue.Count; } }
    public int ActiveSlots { get { lock (gate) return slots.Count(s => s.Job is not null); } }

    /// <summary>Queues jobs (all or none); throws <see cref="QueueFullException"/> when they do not fit.</summary>
    public void Submit(IReadOnlyList<GenerationJob> jobs)
    {
        foreach (var j in jobs)
        {
            if (j.Prompt.Length == 0) throw new OpenWeightsException("the prompt is empty (no tokens)");
            if (j.Prompt.Length >= ContextSize) throw new OpenWeightsException($"the prompt has {j.Prompt.Length} tokens but the context holds {ContextSize}");
        }
        var streams = jobs.Select(j => new TokenStream(tokenizer, model.Config.VocabSize, j.Prompt, j.Options)).ToArray(); // validates options
        lock (gate)
        {
            int free = slots.Count(s => s.Job is null);
            if (queue.Count + jobs.Count > MaxQueue + Math.Max(0, free - queue.Count))
                throw new QueueFullException($"the server is busy: {queue.Count} requests are queued (limit {MaxQueue}); retry later");
            for (int i = 0; i < jobs.Count; i++)
            {
                jobs[i].Stream = streams[i];
                jobs[i].StartTicks = Stopwatch.GetTimestamp();
                queue.AddLast(jobs[i]);
            }
        }
        foreach (var j in jobs) j.Cancellation.Register(() => wake.Release());
        wake.Release();
    }

    private void Run()
    {
        var segments = new List<SequenceBatch>();
        var owners = new List<Slot>();
        while (!stopping)
        {
            bool any;
            lock (gate)
            {
                foreach (var s in slots)
                    if (s.Job is { Cancellation.IsCancellationRequested: true } j) { Finish(s, FinishReason.Cancelled); }
                for (var n = queue.First; n is not null;)
                {
                    var next = n.Next;
                    if (n.Value.Cancellation.IsCancellationRequested)
                    {
                        queue.Remove(n);
                        n.Value.Output.TryWrite(new JobEvent(n.Value.Index, n.Value.Stream!.Final(FinishReason.Cancelled, Stats(n.Value, 0, 0)), null));
                    }
                    n = next;
                }
                while (queue.First is { } first && Assign(first.Value)) queue.RemoveFirst();
                any = slots.Any(s => s.Job is not null);
            }
            if (!any) { wake.Wait(200); continue; }
            try { Step(segments, owners); }
            catch (Exception e)
            {
                lock (gate)
                    foreach (var s in slots)
                        if (s.Job is { } j) { j.Output.TryWrite(new JobEvent(j.Index, null, e)); s.Job = null; s.Tokens.Clear(); s.Cache.Length = 0; }
            }
        }
    }

    // Puts a job into the free slot whose cache shares the longest prefix with its prompt.
    private bool Assign(GenerationJob job)
    {
        Slot? best = null; int bestCommon = -1;
        foreach (var s in slots)
        {
            if (s.Job is not null) continue;
            int c = 0;
            while (c < s.Tokens.Count && c < job.Prompt.Length && s.Tokens[c] == job.Prompt[c]) c++;
            if (c > bestCommon) { best = s; bestCommon = c; }
        }
        if (best is null) return false;
        if (bestCommon == job.Prompt.Length) bestCommon--; // re-evaluate the last prompt token for its logits
        best.Tokens.RemoveRange(bestCommon, best.Tokens.Count - bestCommon);
        best.Cache.Length = bestCommon;
        job.Prefilled = bestCommon;
        best.Job = job;
        return true;
    }

    private void Step(List<SequenceBatch> segments, List<Slot> owners)
    {
        segments.Clear(); owners.Clear();
        int budget = maxBatch, prefillTokens = 0, decodeTokens = 0;
        Slot[] active;
        lock (gate) active = slots.Where(s => s.Job is not null).ToArray();
        foreach (var s in active) // decoding slots first: one token each
        {
            var j = s.Job!;
            if (j.NextToken < 0) continue;
            segments.Add(new SequenceBatch(new[] { j.NextToken }, s.Cache)); owners.Add(s);
            budget--; decodeTokens++;
        }
        foreach (var s in active) // then prompt chunks with what is left
        {
            var j = s.Job!;
            if (j.NextToken >= 0 || budget <= 0) continue;
            int n = Math.Min(budget, j.Prompt.Length - j.Prefilled);
            segments.Add(new SequenceBatch(j.Prompt.AsMemory(j.Prefilled, n), s.Cache)); owners.Add(s);
            budget -= n; prefillTokens += n;
        }
        if (segments.Count == 0) return;
        long t0 = Stopwatch.GetTimestamp();
        model.Forward(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(segments), state, threads, logits);
        var elapsed = Stopwatch.GetElapsedTime(t0);
        Metrics.RecordStep(prefillTokens, decodeTokens, elapsed);

        int vocab = model.Config.VocabSize;
        lock (gate)
        {
            for (int i = 0; i < segments.Count; i++)
            {
                var s = owners[i]; var j = s.Job!;
                foreach (var t in segments[i].Tokens.Span) s.Tokens.Add(t);
                if (j.NextToken < 0)
                {
                    j.Prefilled += segments[i].Tokens.Length;
                    if (j.Prefilled < j.Prompt.Length) continue;
                    j.FirstTokenTicks = Stopwatch.GetTimestamp();
                }
                var step = j.Stream!.Next(logits.AsSpan(i * vocab, vocab));
                if (step.Chunk is { } c) j.Output.TryWrite(new JobEvent(j.Index, c, null));
                if (step.Finish is { } f) { Finish(s, f); continue; }
                if (s.Cache.Length >= s.Cache.Capacity) { Finish(s, FinishReason.Length); continue; }
                j.NextToken = step.TokenId;
            }
        }
    }

    private void Finish(Slot s, FinishReason reason)
    {
        var j = s.Job!;
        long now = Stopwatch.GetTimestamp();
        var prefill = j.FirstTokenTicks > 0 ? Stopwatch.GetElapsedTime(j.StartTicks, j.FirstTokenTicks) : Stopwatch.GetElapsedTime(j.StartTicks, now);
        var decode = j.FirstTokenTicks > 0 ? Stopwatch.GetElapsedTime(j.FirstTokenTicks, now) : TimeSpan.Zero;
        j.Output.TryWrite(new JobEvent(j.Index, j.Stream!.Final(reason, new GenerationStats(j.Prompt.Length, j.Stream.Generated, prefill, decode)), null));
        Metrics.RecordCompletion(j.Prompt.Length, j.Stream.Generated, reason == FinishReason.Cancelled);
        s.Job = null;
    }

    private static GenerationStats Stats(GenerationJob j, int generated, double seconds) => new(j.Prompt.Length, generated, TimeSpan.Zero, TimeSpan.FromSeconds(seconds));

    public void Dispose()
    {
        stopping = true;
        wake.Release();
        loop.Join(TimeSpan.FromSeconds(5));
    }
}
