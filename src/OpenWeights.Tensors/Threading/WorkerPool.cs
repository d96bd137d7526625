using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace OpenWeights.Tensors.Threading;

/// <summary>A unit of parallel work: <see cref="Execute"/> runs item i of [0, count). A struct, so running it allocates nothing.</summary>
public interface IPoolJob
{
    void Execute(int index);
}

/// <summary>
/// A persistent pool of N-1 dedicated threads that, with the calling thread, run the items of one job at a time.
/// Items are handed out by an atomic counter (dynamic scheduling, so a descheduled thread on a busy machine does not
/// hold the others back). Workers spin briefly after a job and then block; the caller waits with a spin barrier.
/// Running a job allocates nothing: the job is a struct passed by reference, invoked through a static function pointer.
/// When the pool is already busy (another thread is running a job on it), the job runs on the caller alone.
/// </summary>
public sealed unsafe class WorkerPool
{
    private static readonly object poolsGate = new();
    private static WorkerPool?[] pools = new WorkerPool?[8];

    /// <summary>The shared pool for <paramref name="threads"/> threads in total (the caller included).</summary>
    public static WorkerPool Get(int threads)
    {
        threads = Math.Max(1, threads);
        var p = pools;
        if (threads < p.Length && p[threads] is { } hit) return hit;
        lock (poolsGate)
        {
            if (threads >= pools.Length) Array.Resize(ref pools, threads + 1);
            return pools[threads] ??= new WorkerPool(threads);
        }
    }

    /// <summary>Runs job.Execute(i) for every i in [0, count) on up to <paramref name="threads"/> threads; returns when all are done.</summary>
    public static void For<T>(int threads, int count, ref T job) where T : struct, IPoolJob
    {
        if (count <= 0) return;
        if (threads <= 1 || count == 1)
        {
            for (int i = 0; i < count; i++) job.Execute(i);
            return;
        }
        Get(threads).Run(count, &Invoke<T>, Unsafe.AsPointer(ref job));
    }

    private static void Invoke<T>(void* state, int index) where T : struct, IPoolJob => Unsafe.AsRef<T>(state).Execute(index);

    public int Threads { get; }
    private readonly Worker[] workers;

    // the current job; written by the caller before it publishes a new generation
    private delegate*<void*, int, void> body;
    private void* state;
    private int count;
    private int next;          // next item to hand out
    private int gate = Closed; // workers inside the current job, | Closed once the caller has finished its share
    private const int Closed = 1 << 30;
    private int generation;
    private int busy;
    private Exception? failure;

    private const long SpinTicksWorker = 2000; // microseconds a worker spins before it blocks: covers the gaps of a decode step
    private static readonly long spinTicks = Math.Max(1, Stopwatch.Frequency * SpinTicksWorker / 1_000_000);

    private WorkerPool(int threads)
    {
        Threads = threads;
        workers = new Worker[threads - 1];
        for (int i = 0; i < workers.Length; i++)
        {
            var w = workers[i] = new Worker(this);
            var t = new Thread(w.Loop) { IsBackground = true, Name = $"OpenWeights worker {i + 1}/{threads - 1}" };
            t.Start();
        }
    }

    private void Run(int count, delegate*<void*, int, void> body, void* state)
    {
        if (workers.Length == 0 || Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) body(state, i);
            return;
        }
        try
        {
            // the job's fields are written while the gate is closed, so no late worker can see half of them
            this.body = body; this.state = state; this.count = count;
            next = 0;
            Volatile.Write(ref gate, 0);            // open
            Interlocked.Increment(ref generation); // full fence: publishes the job
            foreach (var w in workers) w.Wake();
            Work();
            // barrier: close the gate (a worker that has not woken up yet is not waited for: it finds the gate
            // closed and goes back to sleep), then wait for the workers inside, which finish within an item of us
            int g;
            do g = Volatile.Read(ref gate); while (Interlocked.CompareExchange(ref gate, g | Closed, g) != g);
            long spins = 0;
            while (Volatile.Read(ref gate) != Closed)
            {
                if (++spins < 20000) Pause();
                else Thread.Yield();
            }
            this.body = null; this.state = null;
            if (failure is { } f) { failure = null; throw new AggregateException("a worker thread failed", f); }
        }
        finally { Volatile.Write(ref busy, 0); }
    }

    /// <summary>A worker joins the current job unless the caller has already closed it.</summary>
    private bool Enter()
    {
        while (true)
        {
            int g = Volatile.Read(ref gate);
            if ((g & Closed) != 0) return false;
            if (Interlocked.CompareExchange(ref gate, g + 1, g) == g) return true;
        }
    }

    private void Work()
    {
        var b = body; var s = state; int n = count;
        while (true)
        {
            int i = Interlocked.Increment(ref next) - 1;
            if (i >= n) break;
            b(s, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pause()
    {
        if (X86Base.IsSupported) X86Base.Pause();
        else Thread.SpinWait(1);
    }

    private sealed class Worker(WorkerPool pool)
    {
        private readonly SemaphoreSlim wake = new(0);
        private int sleeping;

        public void Wake()
        {
            if (Volatile.Read(ref sleeping) == 1 && Interlocked.Exchange(ref sleeping, 0) == 1) wake.Release();
        }

        public void Loop()
        {
            int seen = Volatile.Read(ref pool.generation);
            while (true)
            {
                // spin, then block, until a new generation is published
                long start = Stopwatch.GetTimestamp();
                int spins = 0;
                while (Volatile.Read(ref pool.generation) == seen)
                {
                    if ((++spins & 63) != 0) { Pause(); continue; }
                    if (Stopwatch.GetTimestamp() - start < spinTicks) continue;
                    Interlocked.Exchange(ref sleeping, 1);
                    if (Volatile.Read(ref pool.generation) != seen)
                    {
                        // a job arrived meanwhile: if the caller already took our flag it has released the semaphore, consume it
                        if (Interlocked.Exchange(ref sleeping, 0) == 0) wake.Wait();
                    }
                    else wake.Wait();
                    start = Stopwatch.GetTimestamp();
                }
                seen = Volatile.Read(ref pool.generation);
                if (!pool.Enter()) continue;
                try { pool.Work(); }
                catch (Exception e) { pool.failure = e; }
                Interlocked.Decrement(ref pool.gate);
            }
        }
    }
}
