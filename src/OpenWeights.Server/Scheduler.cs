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
public sealed class GenerationJob(int[] prompt, GenerationOptions options, int index, JobOutput output, CancellationToken ct)
{
    public int[] Prompt { get; } = prompt;
    public GenerationOptions Options { get; } = options;
    public int Index { get; } = index;
    public JobOutput Output { get; } = output;
    public CancellationToken Cancellation { get; } = ct;
    internal TokenStream? Stream;
    internal int Prefilled;
    internal int NextToken = -1;
    internal long StartTicks, FirstTokenTicks;
}

/// <summary>
/// The events of one request (all its choices) on their way to the client, bounded so that a slow reader cannot make
/// them pile up: while <see cref="Limit"/> events wait unread, the scheduler decodes none of the request's jobs (they keep
/// their slots; other requests go on), and resumes once the reader is down to half of that. At most
/// <see cref="Capacity"/> events are ever buffered (the limit, plus room for one last step and a final event per job).
/// </summary>
public sealed class JobOutput
{
    private readonly Channel<JobEvent> channel;
    private volatile int paused, wakeSent;
    private int peak, dropped;
    private long pausedSince; // Stopwatch ticks when the current pause began

    /// <param name="jobs">the jobs writing to it (choices of the request)</param>
    /// <param name="limit">unread events at which the jobs pause</param>
    public JobOutput(int jobs, int limit)
    {
        if (jobs < 1) throw new ArgumentOutOfRangeException(nameof(jobs), jobs, "at least one job");
        if (limit < 1) throw new OpenWeightsException($"the stream buffer of {limit} events must be at least 1");
        Limit = limit;
        Capacity = limit + 3 * jobs;
        channel = Channel.CreateBounded<JobEvent>(new BoundedChannelOptions(Capacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
    }

    /// <summary>Unread events at which the request's jobs stop being decoded.</summary>
    public int Limit { get; }
    /// <summary>The most events the output can hold.</summary>
    public int Capacity { get; }
    /// <summary>Events written and not yet read.</summary>
    public int Count => channel.Reader.Count;
    /// <summary>The most events that were ever waiting unread.</summary>
    public int PeakCount => Volatile.Read(ref peak);
    /// <summary>Events that did not fit (never expected; kept to be checked).</summary>
    public int Dropped => Volatile.Read(ref dropped);
    /// <summary>The jobs are paused for the reader now.</summary>
    public bool Paused => paused != 0;
    /// <summary>How long the current pause has lasted (zero when not paused).</summary>
    public TimeSpan PausedFor => paused != 0 ? Stopwatch.GetElapsedTime(Volatile.Read(ref pausedSince)) : TimeSpan.Zero;

    internal Action? Wake;

    // scheduler thread only
    internal void Write(JobEvent e)
    {
        if (!channel.Writer.TryWrite(e)) { Interlocked.Increment(ref dropped); return; }
        int c = channel.Reader.Count;
        if (c > peak) Volatile.Write(ref peak, c);
    }

    /// <summary>Scheduler: whether the jobs may run this step; pauses them at <see cref="Limit"/>, resumes at half of it.</summary>
    internal bool HasRoom()
    {
        int resume = Limit / 2;
        if (paused != 0)
        {
            if (channel.Reader.Count > resume) return false;
            paused = 0;
            return true;
        }
        if (channel.Reader.Count < Limit) return true;
        wakeSent = 0;
        Volatile.Write(ref pausedSince, Stopwatch.GetTimestamp());
        Interlocked.Exchange(ref paused, 1);
        if (channel.Reader.Count > resume) return false; // the reader wakes the scheduler when it gets there
        paused = 0;
        return true;
    }

    /// <summary>The events in order, as they come (the sequence does not end by itself: stop after the last final event).</summary>
    public async IAsyncEnumerable<JobEvent> ReadAllAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        var reader = channel.Reader;
        while (await reader.WaitToReadAsync(ct))
        {
            while (reader.TryRead(out var e))
            {
                Interlocked.MemoryBarrier();
                if (paused != 0 && reader.Count <= Limit / 2 && Interlocked.Exchange(ref wakeSent, 1) == 0) Wake?.Invoke();
                yield return e;
            }
        }
    }
}

/// <summary>Thrown when the queue is full (HTTP 429).</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>
/// Continuous batching: N slots, each with its own KV cache. Each step, every slot with work contributes its tokens
/// (one token when decoding, a chunk of its prompt when prefilling) to one batched forward pass; a freed slot takes
/// the next queued job at once. Cancelled jobs (client gone) free their slot at the next step. A job whose
/// <see cref="JobOutput"/> is full (slow reader) sits out the steps, keeping its slot, until the reader catches up.
/// Embeddings run on a thread of their own, a chunk of one request at a time, the requests taking turns, on one core while
/// generation is running (<see cref="EmbedAsync"/>).
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
    private readonly bool[] ready; // per active slot of the current step: its reader has room
    private readonly int threads, maxBatch;
    private readonly LinkedList<GenerationJob> queue = new();
    private readonly LinkedList<EmbeddingJob> embeds = new();
    private readonly object gate = new();
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread loop, embedLoop;
    private readonly SemaphoreSlim embedWake = new(0);
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
        ready = new bool[parallel];
        loop = new Thread(Run) { IsBackground = true, Name = "openweights-scheduler" };
        loop.Start();
        embedLoop = new Thread(EmbedLoop) { IsBackground = true, Name = "openweights-embeddings" };
        embedLoop.Start();
    }

    public int QueueDepth { get { lock (gate) return queue.Count; } }
    public int ActiveSlots { get { lock (gate) return slots.Count(s => s.Job is not null); } }

    /// <summary>
    /// A request whose reader has left its events unread this long (its generation paused all the while) is ended as
    /// cancelled and its slot freed, so a client that stays connected without reading cannot hold a slot for ever.
    /// </summary>
    public TimeSpan StalledReaderTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Queues jobs (all or none); throws <see cref="QueueFullException"/> when they do not fit.</summary>
    public void Submit(IReadOnlyList<GenerationJob> jobs)
    {
        foreach (var j in jobs)
        {
            if (j.Prompt.Length == 0) throw new OpenWeightsException("the prompt is empty (no tokens)");
            if (j.Prompt.Length >= ContextSize) throw new OpenWeightsException($"the prompt has {j.Prompt.Length} tokens but the context holds {ContextSize}");
        }
        var streams = jobs.Select(j => new TokenStream(tokenizer, model.Config.VocabSize, j.Prompt, j.Options)).ToArray(); // validates options
        foreach (var j in jobs) j.Output.Wake ??= WakeUp; // before the scheduler can see them (and pause them)
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
        foreach (var j in jobs) j.Cancellation.Register(WakeUp);
        wake.Release();
    }

    private void WakeUp() => wake.Release();

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
                {
                    if (s.Job is { Cancellation.IsCancellationRequested: true }) Finish(s, FinishReason.Cancelled);
                    else if (s.Job is { } j && j.Output.PausedFor > StalledReaderTimeout) { Metrics.RecordStalled(); Finish(s, FinishReason.Cancelled); }
                }
                for (var n = queue.First; n is not null;)
                {
                    var next = n.Next;
                    if (n.Value.Cancellation.IsCancellationRequested)
                    {
                        queue.Remove(n);
                        Emit(n.Value, new JobEvent(n.Value.Index, n.Value.Stream!.Final(FinishReason.Cancelled, Stats(n.Value, 0, 0)), null));
                    }
                    n = next;
                }
                while (queue.First is { } first && Assign(first.Value)) queue.RemoveFirst();
                any = slots.Any(s => s.Job is not null);
            }
            if (!any) { wake.Wait(200); continue; }
            bool stepped = true;
            try { stepped = Step(segments, owners); }
            catch (Exception e)
            {
                lock (gate)
                    foreach (var s in slots)
                        if (s.Job is { } j) { Emit(j, new JobEvent(j.Index, null, e)); s.Job = null; s.Tokens.Clear(); s.Cache.Length = 0; }
            }
            if (!stepped) wake.Wait(100); // every active job waits for its reader: sleep until one reads (or is cancelled)
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

    // One batched forward pass over the slots with work; false when there was none (every job waits for its reader).
    private bool Step(List<SequenceBatch> segments, List<Slot> owners)
    {
        segments.Clear(); owners.Clear();
        int budget = maxBatch, prefillTokens = 0, decodeTokens = 0, paused = 0;
        Slot[] active;
        lock (gate) active = slots.Where(s => s.Job is not null).ToArray();
        var ready = this.ready;
        for (int i = 0; i < active.Length; i++)
        {
            ready[i] = active[i].Job!.Output.HasRoom();
            if (!ready[i]) paused++;
        }
        Metrics.RecordPaused(paused);
        for (int i = 0; i < active.Length; i++) // decoding slots first: one token each
        {
            var s = active[i]; var j = s.Job!;
            if (j.NextToken < 0 || !ready[i]) continue;
            segments.Add(new SequenceBatch(new[] { j.NextToken }, s.Cache)); owners.Add(s);
            budget--; decodeTokens++;
        }
        for (int i = 0; i < active.Length; i++) // then prompt chunks with what is left
        {
            var s = active[i]; var j = s.Job!;
            if (j.NextToken >= 0 || budget <= 0 || !ready[i]) continue;
            int n = Math.Min(budget, j.Prompt.Length - j.Prefilled);
            segments.Add(new SequenceBatch(j.Prompt.AsMemory(j.Prefilled, n), s.Cache)); owners.Add(s);
            budget -= n; prefillTokens += n;
        }
        if (segments.Count == 0) return false;
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
                TokenStream.Step step;
                try { step = j.Stream!.Next(logits.AsSpan(i * vocab, vocab)); }
                catch (Exception e) // sampling or a constraint failed: this job ends with the error, the others go on
                {
                    Emit(j, new JobEvent(j.Index, null, e));
                    s.Job = null; s.Tokens.Clear(); s.Cache.Length = 0;
                    continue;
                }
                if (step.Chunk is { } c) Emit(j, new JobEvent(j.Index, c, null));
                if (step.Finish is { } f) { Finish(s, f); continue; }
                if (s.Cache.Length >= s.Cache.Capacity) { Finish(s, FinishReason.Length); continue; }
                j.NextToken = step.TokenId;
            }
        }
        return true;
    }

    private void Emit(GenerationJob j, JobEvent e)
    {
        j.Output.Write(e);
        Metrics.ObserveBuffered(j.Output.Count);
    }

    private void Finish(Slot s, FinishReason reason)
    {
        var j = s.Job!;
        long now = Stopwatch.GetTimestamp();
        var prefill = j.FirstTokenTicks > 0 ? Stopwatch.GetElapsedTime(j.StartTicks, j.FirstTokenTicks) : Stopwatch.GetElapsedTime(j.StartTicks, now);
        var decode = j.FirstTokenTicks > 0 ? Stopwatch.GetElapsedTime(j.FirstTokenTicks, now) : TimeSpan.Zero;
        Emit(j, new JobEvent(j.Index, j.Stream!.Final(reason, new GenerationStats(j.Prompt.Length, j.Stream.Generated, prefill, decode)), null));
        Metrics.RecordCompletion(j.Prompt.Length, j.Stream.Generated, reason == FinishReason.Cancelled);
        s.Job = null;
    }

    private static GenerationStats Stats(GenerationJob j, int generated, double seconds) => new(j.Prompt.Length, generated, TimeSpan.Zero, TimeSpan.FromSeconds(seconds));

    public void Dispose()
    {
        stopping = true;
        wake.Release();
        embedWake.Release();
        loop.Join(TimeSpan.FromSeconds(5));
        embedLoop.Join(TimeSpan.FromSeconds(5));
        lock (gate)
        {
            foreach (var e in embeds) e.Done.TrySetCanceled();
            embeds.Clear();
        }
    }

    // ---- embeddings ----

    private sealed class EmbeddingJob(IReadOnlyList<int[]> inputs, CancellationToken ct)
    {
        public readonly IReadOnlyList<int[]> Inputs = inputs;
        public readonly float[][] Results = new float[inputs.Count][];
        public readonly CancellationToken Cancellation = ct;
        public readonly TaskCompletionSource<float[][]> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Next;
        public EmbeddingRun? Run;
    }

    /// <summary>Embedding requests waiting or running.</summary>
    public int EmbeddingsPending { get { lock (gate) return embeds.Count; } }

    /// <summary>
    /// Embeds each input (mean-pooled, normalised final hidden states, as <see cref="LlamaModel.Embed"/>). The work runs on
    /// the scheduler thread a chunk of at most the batch size at a time, between generation steps, the embedding requests
    /// taking turns: a large request slows the others down but holds none of them up. Throws
    /// <see cref="QueueFullException"/> when more than <see cref="MaxQueue"/> + <see cref="Parallel"/> requests are pending.
    /// </summary>
    public Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, CancellationToken ct)
    {
        foreach (var t in inputs)
        {
            if (t.Length == 0) throw new OpenWeightsException("an embedding input has no tokens");
            if (t.Length > ContextSize) throw new OpenWeightsException($"an embedding input has {t.Length} tokens but the context holds {ContextSize}");
            foreach (int id in t)
                if ((uint)id >= (uint)model.Config.VocabSize) throw new OpenWeightsException($"token id {id} is outside the vocabulary (0..{model.Config.VocabSize - 1})");
        }
        var job = new EmbeddingJob(inputs, ct);
        if (inputs.Count == 0) return Task.FromResult(job.Results);
        lock (gate)
        {
            if (embeds.Count >= MaxQueue + Parallel)
                throw new QueueFullException($"the server is busy: {embeds.Count} embedding requests are pending (limit {MaxQueue + Parallel}); retry later");
            embeds.AddLast(job);
        }
        ct.Register(() => embedWake.Release());
        embedWake.Release();
        return job.Done.Task;
    }

    private void EmbedLoop()
    {
        while (!stopping)
            if (!EmbedStep()) embedWake.Wait(200);
    }

    // One chunk of the first embedding request, which then goes to the back of the line; false when there was none.
    private bool EmbedStep()
    {
        LinkedListNode<EmbeddingJob>? node;
        lock (gate)
        {
            while ((node = embeds.First) is { Value.Cancellation.IsCancellationRequested: true })
            {
                embeds.Remove(node);
                node.Value.Done.TrySetCanceled(node.Value.Cancellation);
            }
            if (node is null) return false;
        }
        var job = node.Value;
        bool finished;
        try
        {
            job.Run ??= new EmbeddingRun(model, job.Inputs[job.Next], maxBatch);
            // generation keeps the worker pool: while a slot is busy or a job waits, the chunk runs on this thread alone
            bool generating;
            lock (gate) generating = queue.Count > 0 || slots.Any(x => x.Job is not null);
            finished = job.Run.Step(generating ? 1 : threads) && Complete(job);
        }
        catch (Exception e)
        {
            lock (gate) embeds.Remove(node);
            job.Done.TrySetException(e);
            return true;
        }
        lock (gate)
        {
            embeds.Remove(node);
            if (!finished) embeds.AddLast(node);
        }
        if (finished) job.Done.TrySetResult(job.Results);
        return true;
    }

    // the current input is done: keeps its result; true when it was the last
    private static bool Complete(EmbeddingJob job)
    {
        job.Results[job.Next++] = job.Run!.Result();
        job.Run = null;
        return job.Next == job.Inputs.Count;
    }
}
