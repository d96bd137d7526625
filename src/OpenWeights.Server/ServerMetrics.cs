using System.Globalization;
using System.Text;

namespace OpenWeights.Server;

/// <summary>Counters and histograms behind GET /metrics (Prometheus text format).</summary>
public sealed class ServerMetrics
{
    /// <summary>The most distinct endpoint labels kept; requests to further endpoints are counted under "other".</summary>
    public const int MaxEndpoints = 32;
    /// <summary>The label of requests that matched no route (404 scans share one series).</summary>
    public const string Unmatched = "unmatched";

    private readonly object gate = new();
    private readonly Dictionary<(string Endpoint, int Status), long> requests = [];
    private readonly Dictionary<string, Histogram> durations = [];
    private readonly Histogram timeToFirstToken = Histogram.Latency(), interToken = Histogram.InterToken();
    private long promptTokens, generatedTokens, completions, cancelled;
    private long prefillTokens, decodeTokens;
    private double prefillSeconds, decodeSeconds;
    private long pausedSlotSteps, stalled;
    private int pausedNow, peakBuffered;

    /// <summary>
    /// One routed request: <paramref name="endpoint"/> is its route template (a bounded set, never the raw path), or
    /// <see cref="Unmatched"/>; <paramref name="status"/> the status the client got.
    /// </summary>
    public void RecordRequest(string endpoint, int status, TimeSpan duration)
    {
        lock (gate)
        {
            if (!durations.TryGetValue(endpoint, out var h))
            {
                if (durations.Count >= MaxEndpoints) endpoint = "other";
                if (!durations.TryGetValue(endpoint, out h)) durations[endpoint] = h = Histogram.Latency();
            }
            requests[(endpoint, status)] = requests.GetValueOrDefault((endpoint, status)) + 1;
            h.Observe(duration.TotalSeconds);
        }
    }

    /// <summary>From the request's arrival to its first generated token (queueing and prefill included).</summary>
    public void ObserveTimeToFirstToken(TimeSpan t) => timeToFirstToken.Observe(t.TotalSeconds);

    /// <summary>Between two consecutive tokens of one generation.</summary>
    public void ObserveInterToken(TimeSpan t) => interToken.Observe(t.TotalSeconds);

    public Histogram TimeToFirstToken => timeToFirstToken;
    public Histogram InterTokenLatency => interToken;

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
        void Histograms(string name, string help, IEnumerable<(string Labels, Histogram H)> values)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(" histogram\n");
            foreach (var (labels, h) in values) h.Render(sb, name, labels);
        }
        lock (gate)
        {
            Metric("openweights_requests_total", "counter", "HTTP requests by endpoint (route template) and status.",
                requests.OrderBy(r => r.Key.Endpoint, StringComparer.Ordinal).ThenBy(r => r.Key.Status)
                    .Select(r => ($"{{endpoint=\"{LabelValue(r.Key.Endpoint)}\",status=\"{r.Key.Status}\"}}", (double)r.Value)));
            Histograms("openweights_request_duration_seconds", "Time from a request's arrival to its last byte, by endpoint (route template).",
                durations.OrderBy(d => d.Key, StringComparer.Ordinal).Select(d => ($"endpoint=\"{LabelValue(d.Key)}\"", d.Value)));
            Histograms("openweights_time_to_first_token_seconds", "Time from a completion request's arrival to its first generated token.", [("", timeToFirstToken)]);
            Histograms("openweights_inter_token_latency_seconds", "Time between consecutive tokens of one generation.", [("", interToken)]);
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

    /// <summary>A label value escaped as the text format requires: backslash, double quote and line feed.</summary>
    public static string LabelValue(string v) => v.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
