using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>/metrics (route labels, escaping, bounded series, real status codes, histograms) and the access log.</summary>
public class ServerObservabilityTests
{
    private static StringContent Json(string s) => new(s, Encoding.UTF8, "application/json");

    private static OwFactory Factory(string? apiKey = null, TextWriter? log = null, AccessLogFormat format = AccessLogFormat.Text) =>
        new(new ServerOptions { ModelPath = TinyModels.Qwen, Parallel = 2, ContextSize = 256, Threads = 2, ApiKey = apiKey, AccessLog = log, AccessLogFormat = format });

    // every sample line of the text format: name{label="value",...} number
    private static readonly Regex Sample = new("""^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$""");

    private static void AssertWellFormed(string metrics)
    {
        foreach (var line in metrics.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            if (!line.StartsWith('#')) Assert.Matches(Sample, line);
    }

    [Fact]
    public async Task A_path_cannot_inject_metric_lines()
    {
        using var f = Factory();
        using var http = f.CreateClient();
        // GET /a"}injected 999\nfake_metric{x="
        var resp = await http.GetAsync("/a%22%7Dinjected%20999%0Afake_metric%7Bx=%22");
        Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        string metrics = await http.GetStringAsync("/metrics");
        AssertWellFormed(metrics);
        Assert.DoesNotContain("injected", metrics);
        Assert.DoesNotContain("\nfake_metric", metrics);
        Assert.Contains("openweights_requests_total{endpoint=\"unmatched\",status=\"404\"} 1\n", metrics);
    }

    [Fact]
    public void Label_values_are_escaped()
    {
        var m = new ServerMetrics();
        m.RecordRequest("/a\"}x 9\nfake{y=\"\\", 200, TimeSpan.FromMilliseconds(5));
        string text = m.Render(0, 0, 1);
        AssertWellFormed(text);
        Assert.Contains("openweights_requests_total{endpoint=\"/a\\\"}x 9\\nfake{y=\\\"\\\\\",status=\"200\"} 1\n", text);
    }

    [Fact]
    public async Task Many_distinct_paths_do_not_grow_metrics()
    {
        using var f = Factory();
        using var http = f.CreateClient();
        for (int i = 0; i < 20; i++) await http.GetAsync($"/scan/{i}");
        await http.GetStringAsync("/metrics"); // its own series exists from now on
        int before = (await http.GetStringAsync("/metrics")).Length;
        for (int i = 20; i < 2000; i++) await http.GetAsync($"/scan/{Guid.NewGuid():N}/{i}");
        string after = await http.GetStringAsync("/metrics");
        Assert.InRange(after.Length - before, 0, 200); // a few counts gain digits; no series per path
        Assert.DoesNotContain("/scan/", after);
        Assert.Contains("openweights_requests_total{endpoint=\"unmatched\",status=\"404\"} 2000\n", after);
    }

    [Fact]
    public void The_label_set_is_bounded()
    {
        var m = new ServerMetrics();
        for (int i = 0; i < 1000; i++) m.RecordRequest($"/route{i}", 200, TimeSpan.Zero);
        string text = m.Render(0, 0, 1);
        Assert.Equal(ServerMetrics.MaxEndpoints + 1, Regex.Matches(text, "^openweights_requests_total\\{", RegexOptions.Multiline).Count);
        Assert.Contains($"openweights_requests_total{{endpoint=\"other\",status=\"200\"}} {1000 - ServerMetrics.MaxEndpoints}\n", text);
    }

    [Fact]
    public async Task Requests_refused_for_the_api_key_are_not_recorded()
    {
        using var f = Factory(apiKey: "sesame");
        using var http = f.CreateClient();
        for (int i = 0; i < 30; i++) Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync($"/probe{i}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/metrics")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new("Bearer", "sesame");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v1/models")).StatusCode);
        string metrics = await http.GetStringAsync("/metrics");
        Assert.DoesNotContain("status=\"401\"", metrics);
        Assert.DoesNotContain("probe", metrics);
        Assert.Contains("openweights_requests_total{endpoint=\"/v1/models\",status=\"200\"} 1\n", metrics);
    }

    [Fact]
    public async Task The_recorded_status_is_the_status_the_client_got()
    {
        using var f = Factory();
        using var http = f.CreateClient();
        var counts = new Dictionary<int, int>();
        foreach (var body in new[]
        {
            """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""",
            """{"messages":[{"role":"user","content":"x"}],"temperature":3}""",
            "{not json",
            """{"messages":[{"role":"user","content":[{"type":1}]}]}""",
            """{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}""",
        })
        {
            HttpResponseMessage resp;
            try { resp = await http.PostAsync("/v1/chat/completions", Json(body)); }
            catch (Exception) { continue; } // TestServer rethrows a server exception (a 500) into the client
            counts[(int)resp.StatusCode] = counts.GetValueOrDefault((int)resp.StatusCode) + 1;
        }
        Assert.Equal(1, counts[200]);
        Assert.True(counts[400] >= 2);
        string metrics = await http.GetStringAsync("/metrics");
        foreach (var (status, n) in counts)
            Assert.Contains($"openweights_requests_total{{endpoint=\"/v1/chat/completions\",status=\"{status}\"}} {n}\n", metrics);
    }

    private static (long Count, double Sum, List<long> Buckets) Histogram(string metrics, string name, string labels = "")
    {
        var buckets = Regex.Matches(metrics, $"^{name}_bucket\\{{{Regex.Escape(labels)}le=\"[^\"]+\"\\}} (\\d+)$", RegexOptions.Multiline).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        string braces = labels.Length > 0 ? "\\{" + Regex.Escape(labels.TrimEnd(',')) + "\\}" : "";
        long count = long.Parse(Regex.Match(metrics, $"^{name}_count{braces} (\\d+)$", RegexOptions.Multiline).Groups[1].Value);
        double sum = double.Parse(Regex.Match(metrics, $"^{name}_sum{braces} (\\S+)$", RegexOptions.Multiline).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains($"{name}_bucket{{{labels}le=\"+Inf\"}} {count}\n", metrics);
        Assert.Equal(buckets.Order(), buckets); // cumulative
        Assert.Equal(count, buckets[^1]);
        return (count, sum, buckets);
    }

    [Fact]
    public async Task Metrics_have_histograms_of_time_to_first_token_inter_token_latency_and_duration()
    {
        using var f = Factory();
        using var http = f.CreateClient();
        var resp = await http.PostAsync("/v1/chat/completions", Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"""));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var sse = (await resp.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {")).ToList();
        int completion = System.Text.Json.Nodes.JsonNode.Parse(sse[^1][6..])!["usage"]!["completion_tokens"]!.GetValue<int>();
        await http.GetAsync("/health");
        string metrics = await http.GetStringAsync("/metrics");
        AssertWellFormed(metrics);
        Assert.Contains("# TYPE openweights_time_to_first_token_seconds histogram\n", metrics);
        var ttft = Histogram(metrics, "openweights_time_to_first_token_seconds");
        Assert.Equal(1, ttft.Count);
        Assert.True(ttft.Sum > 0);
        var itl = Histogram(metrics, "openweights_inter_token_latency_seconds");
        Assert.InRange(itl.Count, completion - 1, completion); // one per sampled token after the first (an end-of-turn token is sampled, not counted)
        var chat = Histogram(metrics, "openweights_request_duration_seconds", "endpoint=\"/v1/chat/completions\",");
        Assert.Equal(1, chat.Count);
        Assert.True(chat.Sum >= ttft.Sum);
        Assert.Equal(1, Histogram(metrics, "openweights_request_duration_seconds", "endpoint=\"/health\",").Count);
    }

    [Fact]
    public async Task The_access_log_has_one_text_line_per_request_without_the_prompt()
    {
        var log = new StringWriter();
        int completion;
        using (var f = Factory(log: log))
        {
            using var http = f.CreateClient();
            var resp = await http.PostAsync("/v1/chat/completions?x=secret-query", Json("""{"messages":[{"role":"user","content":"SECRET-PROMPT-7731"}],"max_tokens":3,"logit_bias":{}}"""));
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            completion = System.Text.Json.Nodes.JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["usage"]!["completion_tokens"]!.GetValue<int>();
            await http.GetAsync("/a%22b%0Afake line");
            await http.PostAsync("/v1/embeddings", Json("""{"input":"SECRET-PROMPT-7731"}"""));
        }
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ POST /v1/chat/completions 200 tokens=\d+/" + completion + @" ttft=\d+ms time=\d+ms$", lines[0]);
        Assert.Matches(@"Z \S+ GET /a%22b%0Afake%20line 404 tokens=-/- ttft=- time=\d+ms$", lines[1]);
        Assert.Matches(@"Z \S+ POST /v1/embeddings 200 tokens=\d+/- ttft=- time=\d+ms$", lines[2]);
        Assert.DoesNotContain("SECRET", log.ToString());
        Assert.DoesNotContain("secret-query", log.ToString());
    }

    [Fact]
    public async Task The_json_access_log_has_one_object_per_request()
    {
        var log = new StringWriter();
        int completion;
        using (var f = Factory(log: log, format: AccessLogFormat.Json))
        {
            using var http = f.CreateClient();
            var resp = await http.PostAsync("/v1/completions", Json("""{"prompt":"SECRET-PROMPT-7731","max_tokens":4,"n":2}"""));
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            completion = System.Text.Json.Nodes.JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["usage"]!["completion_tokens"]!.GetValue<int>();
            Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync("/v1/completions", Json("""{"prompt":"x","temperature":9}"""))).StatusCode);
        }
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        var ok = JsonDocument.Parse(lines[0]).RootElement;
        Assert.Equal("POST", ok.GetProperty("method").GetString());
        Assert.Equal("/v1/completions", ok.GetProperty("path").GetString());
        Assert.Equal(200, ok.GetProperty("status").GetInt32());
        Assert.True(ok.GetProperty("prompt_tokens").GetInt32() > 0);
        Assert.Equal(completion, ok.GetProperty("completion_tokens").GetInt32()); // both choices
        Assert.True(ok.GetProperty("ttft_ms").GetDouble() >= 0);
        Assert.True(ok.GetProperty("duration_ms").GetDouble() >= ok.GetProperty("ttft_ms").GetDouble());
        Assert.EndsWith("Z", ok.GetProperty("time").GetString());
        var bad = JsonDocument.Parse(lines[1]).RootElement;
        Assert.Equal(400, bad.GetProperty("status").GetInt32());
        Assert.False(bad.TryGetProperty("ttft_ms", out _));
        Assert.DoesNotContain("SECRET", log.ToString());
    }
}
