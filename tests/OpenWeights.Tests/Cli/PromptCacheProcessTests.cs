using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Cli;

/// <summary>
/// The real `serve` process with `--cache-dir`: a prompt computed before a restart is read back after it (the metrics say
/// so) and the reply is the same, bit for bit (log-probabilities included); `--kv-budget` refuses a prompt that can never
/// fit with a 503 in OpenAI's shape, and a malformed size with a one-line error.
/// </summary>
public class PromptCacheProcessTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "ow-cache-dir-" + Guid.NewGuid().ToString("N"));

    public void Dispose() { try { Directory.Delete(dir, recursive: true); } catch (DirectoryNotFoundException) { } }

    private static readonly string Prompt = string.Concat(Enumerable.Range(0, 30).Select(i => $"Clause {i}: records are kept for seven years. ")) + "Summary:";

    private static async Task<string> Complete(HttpClient http)
    {
        var body = new JsonObject { ["model"] = "any", ["prompt"] = Prompt, ["max_tokens"] = 8, ["temperature"] = 0, ["logprobs"] = 2 }.ToJsonString();
        using var resp = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.OK, text);
        var choice = JsonNode.Parse(text)!["choices"]![0]!;
        return choice["text"]!.GetValue<string>() + "|" + choice["logprobs"]!.ToJsonString();
    }

    private static double Metric(string metrics, string name)
    {
        var m = Regex.Match(metrics, "^" + Regex.Escape(name) + @" (\S+)$", RegexOptions.Multiline);
        Assert.True(m.Success, $"{name} missing from /metrics");
        return double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static void Stop(ServeCommandTests.ServeProcess serve)
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) serve.Signal(15);
        else serve.Process.Kill();
        Assert.True(serve.Process.WaitForExit(60_000), "serve did not stop");
    }

    [Fact]
    public async Task A_restarted_server_reads_its_prompt_cache_back_and_answers_the_same()
    {
        string first;
        using (var serve = ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--cache-dir", dir))
        using (var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) })
        {
            first = await Complete(http);
            var metrics = await http.GetStringAsync("/metrics");
            Assert.Equal(0, Metric(metrics, "openweights_prompt_cache_disk_reads_total"));
            Stop(serve);
        }
        Assert.NotEmpty(Directory.GetFiles(dir, "*.kvb", SearchOption.AllDirectories));

        using (var serve = ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--cache-dir", dir))
        using (var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) })
        {
            string again = await Complete(http);
            var metrics = await http.GetStringAsync("/metrics");
            Assert.True(Metric(metrics, "openweights_prompt_cache_disk_reads_total") > 0, metrics);
            Assert.True(Metric(metrics, "openweights_prompt_cache_reused_tokens_total") >= 64, metrics);
            Assert.Equal(first, again);
            Stop(serve);
        }
    }

    [Fact]
    public async Task A_prompt_beyond_the_kv_budget_gets_503_insufficient_memory()
    {
        using var serve = ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--kv-budget", "16K");
        using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) };
        var body = new JsonObject { ["model"] = "any", ["prompt"] = Prompt, ["max_tokens"] = 4 }.ToJsonString();
        using var resp = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, resp.StatusCode);
        var error = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("insufficient_memory", error["code"]!.GetValue<string>());
        Assert.Contains("--kv-budget", error["message"]!.GetValue<string>());
        var metrics = await http.GetStringAsync("/metrics");
        Assert.Equal(16 * 1024, Metric(metrics, "openweights_kv_budget_bytes"));
    }

    [Fact]
    public void A_malformed_size_is_a_one_line_error()
    {
        var psi = new ProcessStartInfo(ServeCommandTests.DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { typeof(OpenWeights.Cli.Cli).Assembly.Location, "serve", TinyModels.Qwen, "--port", "0", "--kv-budget", "lots" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        Assert.NotEqual(0, p.ExitCode);
        Assert.Contains("--kv-budget lots", err);
        Assert.DoesNotContain("   at ", err);
    }
}
