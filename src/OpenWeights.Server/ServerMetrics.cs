using System.Globalization;
using System.Text;

namespace OpenWeights.Server;

/// <summary>Counters behind GET /metrics (Prometheus text format).</summary>
public sealed class ServerMetrics
{
    private readonly object gate = new();
    private readonly Dictionary<(string Endpoint, int Status), long> requests = [];
    private long promptTokens, generatedTokens, completions, cancelled;
    private long prefillTokens, decodeTokens;
    private double prefillSeconds, decodeSeconds;
    private long pausedSlotSteps, stalled;
    private int pausedNow, peakBuffered;

    public void RecordRequest(string endpoint, int status)
    {
        lock (gate) requests[(endpoint, status)] = requests.GetValueOrDefault((endpoint, status)) + 1;
    }

    public void RecordCompletion(int prompt, int generated, bool wasCancelled = false)
    {
        if (wasCancelled) Interlocked.Increment(ref cancelled);
        Interlocked.Add(ref promptTokens, prompt);
        Interlocked.Add(ref generatedTokens, generated);
        Interlocked.Increment(ref completions);
    }

    /// <summary>One batched forward pass; a step with prompt tokens counts toward prefill, a decode-only step toward decode.</summary>
    public void RecordStep(int prefill, int decode, TimeSpan elapsed)
    {
        lock (gate)
        {
            if (prefill > 0) { prefillTokens += prefill + decode; prefillSeconds += elapsed.TotalSeconds; }
            else { decodeTokens += decode; decodeSeconds += elapsed.TotalSeconds; }
        }
    }

    /// <summary>One scheduler step: how many slots sat it out because their reader is behind.</summary>
    public void RecordPaused(int slots)
    {
        Volatile.Write(ref pausedNow, slots);
        if (slots > 0) Interlocked.Add(ref pausedSlotSteps, slots);
    }

    /// <summary>A generation ended because its reader left its events unread past the stalled-reader timeout.</summary>
    public void RecordStalled() => Interlocked.Increment(ref stalled);
    public long Stalled => Interlocked.Read(ref stalled);

    /// <summary>Events waiting unread in one request's output after a write.</summary>
    public void ObserveBuffered(int events)
    {
        int cur;
        while (events > (cur = Volatile.Read(ref peakBuffered)) && Interlocked.CompareExchange(ref peakBuffered, events, cur) != cur) { }
    }

    /// <summary>Slot-steps skipped because a slow reader's buffer was full (backpressure).</summary>
    public long PausedSlotSteps => Interlocked.Read(ref pausedSlotSteps);
    /// <summary>Slots paused for their readers at the last step.</summary>
    public int PausedSlots => Volatile.Read(ref pausedNow);
    /// <summary>The most events ever waiting unread in one request's output.</summary>
    public int PeakBufferedEvents => Volatile.Read(ref peakBuffered);

    public long PromptTokens => Interlocked.Read(ref promptTokens);
    public long GeneratedTokens => Interlocked.Read(ref generatedTokens);
    public long Cancelled => Interlocked.Read(ref cancelled);

    public string Render(int queueDepth, int activeSlots, int slots)
    {
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, IEnumerable<(string Labels, double Value)> values)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, v) in values) sb.Append(name).Append(labels).Append(' ').Append(v.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        lock (gate)
        {
            Metric("openweights_requests_total", "counter", "HTTP requests by endpoint and status.",
                requests.OrderBy(r => r.Key.Endpoint).ThenBy(r => r.Key.Status).Select(r => ($"{{endpoint=\"{r.Key.Endpoint}\",status=\"{r.Key.Status}\"}}", (double)r.Value)));
            Metric("openweights_completions_total", "counter", "Finished generations (choices).", [("", completions)]);
            Metric("openweights_cancelled_total", "counter", "Generations stopped because the client went away.", [("", cancelled)]);
            Metric("openweights_prompt_tokens_total", "counter", "Prompt tokens of finished generations.", [("", promptTokens)]);
            Metric("openweights_generated_tokens_total", "counter", "Generated tokens.", [("", generatedTokens)]);
            Metric("openweights_queue_depth", "gauge", "Requests waiting for a slot.", [("", queueDepth)]);
            Metric("openweights_slots_active", "gauge", "Slots generating.", [("", activeSlots)]);
            Metric("openweights_slots_total", "gauge", "Slots (--parallel).", [("", slots)]);
            Metric("openweights_slots_paused", "gauge", "Slots waiting for a slow reader (not decoded) at the last step.", [("", PausedSlots)]);
            Metric("openweights_paused_slot_steps_total", "counter", "Slot-steps skipped because a reader was behind (backpressure).", [("", PausedSlotSteps)]);
            Metric("openweights_stalled_readers_total", "counter", "Generations ended because the client stopped reading for longer than the stalled-reader timeout.", [("", Stalled)]);
            Metric("openweights_stream_buffer_peak_events", "gauge", "The most events ever waiting unread for one request.", [("", PeakBufferedEvents)]);
            Metric("openweights_prefill_tokens_per_second", "gauge", "Tokens per second of forward passes that include prompt tokens.",
                [("", prefillSeconds > 0 ? prefillTokens / prefillSeconds : 0)]);
            Metric("openweights_decode_tokens_per_second", "gauge", "Aggregate tokens per second of decode-only forward passes.",
                [("", decodeSeconds > 0 ? decodeTokens / decodeSeconds : 0)]);
        }
        return sb.ToString();
    }
}
