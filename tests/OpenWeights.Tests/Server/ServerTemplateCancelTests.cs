using System.Text;
using OpenWeights.Server;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Server;

/// <summary>A chat template is a program from a model file: when the client goes, its render stops (issue 19).</summary>
public class ServerTemplateCancelTests
{
    // nested loops worth ~10^10 steps (minutes of render): the step budget is lifted, so only the cancellation can end the
    // request early, as 499 (client gone); without it the test's 60 s wait runs out (a loaded machine may take a few
    // seconds to see the disconnect, longer than the default budget's render: CI once saw 400 template_error here)
    private const string EndlessTemplate =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages[0]['content'] }}";

    [Fact]
    public async Task ADisconnectedClientsTemplateRenderStops()
    {
        var log = new LineLog();
        await using var server = await KestrelServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyModels.Qwen, Parallel = 1, ContextSize = 256, Threads = 1, ChatTemplate = EndlessTemplate, AccessLog = log,
            ChatTemplateLimits = new OpenWeights.Inference.ChatTemplates.TemplateLimits { MaxSteps = long.MaxValue / 2 },
        });
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseUri };
        var body = new SentContent("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}");
        using var gone = new CancellationTokenSource();
        var send = http.PostAsync("/v1/chat/completions", body, gone.Token);
        await body.Sent.Task.WaitAsync(TimeSpan.FromSeconds(60)); // the whole request is on the wire (never cut mid-body)
        await Task.Delay(200);
        gone.Cancel(); // the client goes away while the server renders
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);

        // the request is logged when its handler ends; it must end because the render was cancelled, not by the step budget
        Assert.True(SpinWait.SpinUntil(() => log.Lines.Any(l => l.Contains("/v1/chat/completions")), 60_000), "the request never ended");
        var line = log.Lines.Single(l => l.Contains("/v1/chat/completions"));
        Assert.True(line.Contains(" 499 "), line);
    }

    /// <summary>A JSON body that says when it has been written to the connection.</summary>
    private sealed class SentContent(string json) : HttpContent
    {
        private readonly byte[] bytes = Encoding.UTF8.GetBytes(json);
        public TaskCompletionSource Sent { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            await stream.WriteAsync(bytes);
            await stream.FlushAsync();
            Sent.TrySetResult();
        }
        protected override bool TryComputeLength(out long length) { length = bytes.Length; return true; }
    }

    private sealed class LineLog : TextWriter
    {
        private readonly List<string> lines = [];
        public override Encoding Encoding => Encoding.UTF8;
        public IReadOnlyList<string> Lines { get { lock (lines) return lines.ToList(); } }
        public override void WriteLine(string? value) { lock (lines) lines.Add(value ?? ""); }
        public override void Write(char value) { }
    }
}
