using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace OpenWeights.Server;

/// <summary>What one request did, filled in while it runs (an HttpContext feature); the access log and /metrics read it at the end.</summary>
public sealed class RequestRecord(long startTicks)
{
    /// <summary>When the request arrived (Stopwatch ticks).</summary>
    public long StartTicks { get; } = startTicks;
    internal JobOutput? Output { get; set; }
    internal int? InputTokens { get; set; }

    public int? PromptTokens => Output?.PromptTokens ?? InputTokens;
    public int? CompletionTokens => Output?.GeneratedTokens;
    /// <summary>From arrival to the first generated token; null when nothing was generated.</summary>
    public TimeSpan? TimeToFirstToken => Output?.FirstTokenTicks is > 0 and var t ? Stopwatch.GetElapsedTime(StartTicks, t) : null;
}

/// <summary>One access-log line and the request metrics per request (outermost middleware).</summary>
public static class RequestLog
{
    private const int MaxPathChars = 256;

    public static IApplicationBuilder UseRequestLog(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        var options = ctx.RequestServices.GetRequiredService<ServerOptions>();
        var load = ctx.RequestServices.GetRequiredService<ModelLoad>();
        var record = new RequestRecord(Stopwatch.GetTimestamp());
        ctx.Features.Set(record);
        bool failed = false;
        try { await next(ctx); }
        catch { failed = true; throw; }
        finally
        {
            var duration = Stopwatch.GetElapsedTime(record.StartTicks);
            int status = !ctx.Response.HasStarted && failed ? 500 // the server answers 500 for an exception that got this far
                : !ctx.Response.HasStarted && ctx.RequestAborted.IsCancellationRequested ? 499 // the client left before any answer
                : ctx.Response.StatusCode;
            if (Route(ctx) is { } route && load.Host is { } host) // while the model loads there are no metrics to keep
            {
                host.Metrics.RecordRequest(route, status, duration);
                if (record.TimeToFirstToken is { } ttft) host.Metrics.ObserveTimeToFirstToken(ttft);
            }
            if (options.AccessLog is { } log)
            {
                string line = Format(options.AccessLogFormat, DateTimeOffset.UtcNow, ctx.Connection.RemoteIpAddress?.ToString(),
                    ctx.Request.Method, ctx.Request.Path.Value ?? "", status, record, duration);
                lock (log) { log.WriteLine(line); log.Flush(); }
            }
        }
    });

    /// <summary>The request's generation output, for its token counts and time to first token.</summary>
    internal static void Track(HttpContext ctx, JobOutput output)
    {
        if (ctx.Features.Get<RequestRecord>() is { } r) r.Output = output;
    }

    /// <summary>Input tokens of a request that generates nothing (embeddings).</summary>
    internal static void InputTokens(HttpContext ctx, int tokens)
    {
        if (ctx.Features.Get<RequestRecord>() is { } r) r.InputTokens = tokens;
    }

    /// <summary>
    /// The label /metrics records the request under: its route template (a fixed set), <see cref="ServerMetrics.Unmatched"/>
    /// when only the catch-all fallback matched, null when it never reached routing (refused for its API key): not recorded.
    /// </summary>
    internal static string? Route(HttpContext ctx) => ctx.GetEndpoint() switch
    {
        RouteEndpoint e when e.RoutePattern.Parameters.Any(p => p.IsCatchAll) || string.IsNullOrEmpty(e.RoutePattern.RawText) => ServerMetrics.Unmatched,
        RouteEndpoint e => e.RoutePattern.RawText,
        _ => null,
    };

    /// <summary>
    /// One line. text: <c>TIME CLIENT METHOD PATH STATUS tokens=IN/OUT ttft=MSms time=MSms</c> ("-" where unknown); json: one
    /// object with the same fields. The path is the request path without its query; the prompt is never logged.
    /// </summary>
    public static string Format(AccessLogFormat format, DateTimeOffset time, string? client, string method, string path, int status, RequestRecord r, TimeSpan duration)
    {
        string ts = time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        double? ttft = r.TimeToFirstToken?.TotalMilliseconds;
        if (path.Length > MaxPathChars) path = path[..MaxPathChars] + "...";
        if (format == AccessLogFormat.Json)
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms))
            {
                w.WriteStartObject();
                w.WriteString("time", ts);
                if (client is not null) w.WriteString("client", client);
                w.WriteString("method", method);
                w.WriteString("path", string.Concat(path.EnumerateRunes())); // a lone surrogate becomes U+FFFD
                w.WriteNumber("status", status);
                if (r.PromptTokens is { } pt) w.WriteNumber("prompt_tokens", pt);
                if (r.CompletionTokens is { } ct) w.WriteNumber("completion_tokens", ct);
                if (ttft is { } t) w.WriteNumber("ttft_ms", Math.Round(t, 1));
                w.WriteNumber("duration_ms", Math.Round(duration.TotalMilliseconds, 1));
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(ms.ToArray());
        }
        var sb = new StringBuilder();
        sb.Append(ts).Append(' ').Append(client ?? "-").Append(' ').Append(Safe(method)).Append(' ').Append(Safe(path)).Append(' ').Append(status);
        sb.Append(" tokens=").Append(r.PromptTokens?.ToString(CultureInfo.InvariantCulture) ?? "-").Append('/').Append(r.CompletionTokens?.ToString(CultureInfo.InvariantCulture) ?? "-");
        sb.Append(" ttft=").Append(ttft is { } ms2 ? ms2.ToString("0", CultureInfo.InvariantCulture) + "ms" : "-");
        sb.Append(" time=").Append(duration.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)).Append("ms");
        return sb.ToString();
    }

    // A path may hold anything the client sent (decoded): spaces, quotes, control characters and line breaks are
    // percent-encoded so that one request stays one line and its fields stay apart.
    private static string Safe(string s)
    {
        var sb = new StringBuilder(s.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in s.EnumerateRunes())
        {
            if (Rune.IsControl(rune) || Rune.IsWhiteSpace(rune) || rune.Value is '%' or '"' || Rune.GetUnicodeCategory(rune) is UnicodeCategory.Format)
            {
                int n = rune.EncodeToUtf8(utf8);
                for (int i = 0; i < n; i++) sb.Append('%').Append(utf8[i].ToString("X2", CultureInfo.InvariantCulture));
            }
            else sb.Append(rune.ToString());
        }
        return sb.ToString();
    }
}
