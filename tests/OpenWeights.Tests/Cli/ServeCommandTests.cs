using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OpenWeights.Cli.Commands;
using OpenWeights.Inference;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Cli;

/// <summary>`openweights serve` as a process: it stops on SIGINT/SIGTERM; and its warnings and shared defaults.</summary>
public class ServeCommandTests
{
    private const int SIGINT = 2, SIGTERM = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    internal static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h
        : Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p
        : "dotnet";

    /// <summary>The built CLI serving tiny-qwen2 (or the model given to <see cref="Start"/>) on a free port; stdout's banner gives the address.</summary>
    internal sealed class ServeProcess : IDisposable
    {
        public Process Process { get; }
        public Uri BaseUri { get; }
        private readonly StringBuilder stderr = new();

        public ServeProcess(params string[] extra) : this(TinyModels.Qwen, extra, 0) { }

        /// <summary>Serves <paramref name="model"/> with the extra serve options.</summary>
        public static ServeProcess Start(string model, params string[] extra) => new(model, extra, 0);

        private ServeProcess(string model, string[] extra, int _)
        {
            var psi = new ProcessStartInfo(DotnetHost()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { typeof(OpenWeights.Cli.Cli).Assembly.Location, "serve", model, "--port", "0", "-t", "1", "--ctx", "2048" }.Concat(extra))
                psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
            Process.BeginErrorReadLine();
            var banner = Process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2)).GetAwaiter().GetResult()
                ?? throw new InvalidOperationException($"serve exited before its banner: {Stderr}");
            var m = Regex.Match(banner, @"on (http://[^ ]+)/v1 ");
            Assert.True(m.Success, banner);
            BaseUri = new Uri(m.Groups[1].Value);
        }

        public string Stderr { get { lock (stderr) return stderr.ToString(); } }

        public void Signal(int signal) => Assert.Equal(0, Kill(Process.Id, signal));

        public bool WaitForStderr(string text, TimeSpan timeout)
        {
            var sw = Stopwatch.StartNew();
            while (!Stderr.Contains(text)) { if (sw.Elapsed > timeout) return false; Thread.Sleep(20); }
            return true;
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }

    private static void SkipUnlessPosix()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) Assert.Skip("POSIX signals (kill) are Linux/macOS only");
    }

    [Theory]
    [InlineData(SIGTERM)]
    [InlineData(SIGINT)]
    public async Task A_signal_ends_open_streams_with_done_and_exits_zero(int signal)
    {
        SkipUnlessPosix();
        using var serve = new ServeProcess("--shutdown-timeout", "0.2");
        using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(1) };
        var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":2000,"n":4,"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"),
        };
        using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)resp.StatusCode);
        using var reader = new StreamReader(await resp.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync()); // the stream is open; stop reading while the signal arrives

        serve.Signal(signal);
        Assert.True(serve.WaitForStderr("stopping", TimeSpan.FromSeconds(30)), "no 'stopping' after the signal: " + serve.Stderr);
        var lines = new List<string>();
        while (await reader.ReadLineAsync() is { } line) if (line.StartsWith("data: ")) lines.Add(line[6..]);
        Assert.Equal("[DONE]", lines[^1]);
        var chunks = lines.SkipLast(1).Select(l => JsonNode.Parse(l)!).ToList();
        var finished = chunks.SelectMany(c => c["choices"]!.AsArray()).Where(c => c!["finish_reason"] is not null).Select(c => c!["index"]!.GetValue<int>());
        Assert.Equal([0, 1, 2, 3], finished.Order()); // every choice got its final chunk
        Assert.NotNull(chunks[^1]["usage"]);
        Assert.Equal("tiny-qwen2", chunks[^1]["model"]!.GetValue<string>()); // gpt-4o was served by the loaded model

        Assert.True(serve.Process.WaitForExit(TimeSpan.FromSeconds(30)), "serve did not exit after the signal");
        serve.Process.WaitForExit(); // the process has exited; this waits for the stderr reader to reach end of stream
        Assert.True(serve.Process.ExitCode == 0, $"exit {serve.Process.ExitCode}: {serve.Stderr}");
        Assert.Contains("POST /v1/chat/completions 200", serve.Stderr); // the access log line
    }

    [Theory]
    [InlineData(SIGTERM)]
    [InlineData(SIGINT)]
    public void A_second_signal_exits_at_once(int signal)
    {
        SkipUnlessPosix();
        using var serve = new ServeProcess("--shutdown-timeout", "300");
        // a request whose body never comes keeps the graceful stop waiting
        using var tcp = new TcpClient(serve.BaseUri.Host, serve.BaseUri.Port);
        tcp.GetStream().Write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"u8);
        Thread.Sleep(200);
        serve.Signal(signal);
        Assert.True(serve.WaitForStderr("stopping", TimeSpan.FromSeconds(30)), "no 'stopping' after the signal: " + serve.Stderr);
        Assert.False(serve.Process.WaitForExit(TimeSpan.FromMilliseconds(300)), "the graceful stop did not wait for the running request");
        serve.Signal(signal);
        Assert.True(serve.Process.WaitForExit(TimeSpan.FromSeconds(10)), "a second signal did not end serve");
        Assert.NotEqual(0, serve.Process.ExitCode);
    }

    [Fact]
    public void Exposed_without_an_api_key_warns()
    {
        if (Environment.GetEnvironmentVariable("OPENWEIGHTS_API_KEY") is { Length: > 0 }) Assert.Skip("OPENWEIGHTS_API_KEY is set: serve has a key");
        var (code, _, err) = CliTests.Run("serve", "/nonexistent/model.gguf", "--host", "0.0.0.0", "--port", "8081");
        Assert.Equal(1, code); // the missing model still ends it
        Assert.Contains("openweights: warning: --host 0.0.0.0 accepts connections from other machines and no API key is set", err);
        Assert.Contains("port 8081", err);
        Assert.DoesNotContain("warning", CliTests.Run("serve", "/nonexistent/model.gguf", "--host", "0.0.0.0", "--api-key", "k").Err);
        Assert.DoesNotContain("warning", CliTests.Run("serve", "/nonexistent/model.gguf").Err);
        Assert.NotNull(ServeCommand.ExposureWarning("*", null, 80));
        Assert.NotNull(ServeCommand.ExposureWarning("192.168.1.5", "", 80));
        Assert.NotNull(ServeCommand.ExposureWarning("::", null, 80));
        Assert.Null(ServeCommand.ExposureWarning("localhost", null, 80));
        Assert.Null(ServeCommand.ExposureWarning("::1", null, 80));
        Assert.Null(ServeCommand.ExposureWarning("127.0.0.1", null, 80));
    }

    [Fact]
    public void Bad_log_format_and_shutdown_timeout_are_refused()
    {
        var (code, _, err) = CliTests.Run("serve", "/nonexistent/model.gguf", "--log-format", "xml");
        Assert.NotEqual(0, code);
        Assert.Contains("xml", err);
        (code, _, err) = CliTests.Run("serve", "/nonexistent/model.gguf", "--shutdown-timeout", "-1");
        Assert.Equal(1, code);
        Assert.Contains("--shutdown-timeout", err);
    }

    [Theory]
    [InlineData("run", "m.gguf", "prompt")]
    [InlineData("chat", "m.gguf")]
    public void Cli_sampling_defaults_are_the_library_defaults(params string[] args)
    {
        var pr = OpenWeights.Cli.Cli.BuildRoot().Parse(args);
        var d = SamplingOptions.Default;
        Assert.Equal(d.Temperature, pr.GetValue<float>("--temp"));
        Assert.Equal(d.TopK, pr.GetValue<int>("--top-k"));
        Assert.Equal(d.TopP, pr.GetValue<float>("--top-p"));
        Assert.Equal(d.MinP, pr.GetValue<float>("--min-p"));
        Assert.Equal(d.RepeatPenalty, pr.GetValue<float>("--repeat-penalty"));
        Assert.Equal((0.8f, 40, 0.95f, 0.05f), (d.Temperature, d.TopK, d.TopP, d.MinP)); // llama.cpp's
    }
}
