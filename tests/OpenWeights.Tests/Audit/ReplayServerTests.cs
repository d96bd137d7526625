using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using OpenWeights.Audit;
using OpenWeights.Tests.Chat;
using OpenWeights.Tests.Cli;

namespace OpenWeights.Tests.Audit;

/// <summary>
/// `serve --audit --audit-content` under concurrent sampled requests (batched together in the scheduler), then
/// `openweights replay` of every logged line alone on one session: every output hash reproduces. This holds because the
/// engine gives a sequence the same logits whether it is decoded alone or batched, and the log names the seed drawn for
/// a request that gave none.
/// </summary>
public class ReplayServerTests
{
    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = global::OpenWeights.Cli.Cli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Every_line_a_busy_server_logged_replays_to_the_same_output_hash()
    {
        using var dir = new TempDir();
        string log = dir.File("audit.log");
        var lines = new List<JsonObject>();
        using (var serve = OpenWeights.Tests.Cli.ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--audit", log, "--audit-content", "--parallel", "4"))
        {
            using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) };
            // sampled (temperature > 0), some with a seed and some without, sent together so they share decode steps
            var requests = Enumerable.Range(0, 6).Select(i =>
            {
                var body = new JsonObject
                {
                    ["model"] = "m", ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Tell me story number {i}" }),
                    ["temperature"] = 1.0, ["max_tokens"] = 16 + 4 * i,
                };
                if (i % 2 == 0) body["seed"] = 1000 + i;
                return http.PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
            }).Append(http.PostAsync("/v1/completions", new StringContent("""{"model":"m","prompt":"Once upon","max_tokens":20,"temperature":0.7,"n":2}""", Encoding.UTF8, "application/json")))
            .ToArray();
            foreach (var r in await Task.WhenAll(requests)) Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
            // the last line is written right after the last reply's final event: wait for all 8 (6 + n=2)
            for (int t = 0; t < 200 && File.ReadAllLines(log).Length < 8; t++) await Task.Delay(50);
        }
        foreach (var text in File.ReadAllLines(log)) lines.Add(JsonNode.Parse(text)!.AsObject());
        Assert.Equal(8, lines.Count);
        Assert.True(AuditChain.Verify(log).Ok);
        Assert.All(lines, l => Assert.Equal(lines[0]["model"]!["sha256"]!.GetValue<string>(), FileDigest.Sha256(TinyModels.Qwen)));
        Assert.Equal(8, lines.Select(l => l["request_id"]!.GetValue<string>()).Distinct().Count()); // request id # choice
        // requests without a seed: the line names the seed drawn for them (not null), and it differs between requests
        var drawn = lines.Where(l => l["endpoint"]!.GetValue<string>() == "/v1/chat/completions" && l["sampling"]!["seed"]!.GetValue<ulong>() is < 1000 or > 1005).ToList();
        Assert.Equal(3, drawn.Count);
        for (int i = 1; i <= lines.Count; i++)
        {
            var (code, stdout, stderr) = Cli("replay", log, "--line", i.ToString(), "-t", "2");
            Assert.True(code == 0, $"line {i}: {stdout}{stderr}");
            Assert.Contains("output hash matches", stdout);
        }
    }

    [Fact]
    public async Task A_request_adapter_is_logged_after_the_models_own_and_its_line_replays()
    {
        using var dir = new TempDir();
        string log = dir.File("audit.log"), adapter = dir.File("legal.gguf");
        using (var m = OpenWeights.Models.DecoderModel.Load(TinyModels.Qwen, repack: false))
            OpenWeights.Lora.GgufLoraAdapter.Write(OpenWeights.Tests.Lora.LoraTestUtil.Random(m.Config, rank: 4, alpha: 8, seed: 3, amp: 0.5f), adapter, m.Config);
        using (var serve = OpenWeights.Tests.Cli.ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, "--audit", log, "--audit-content", "--parallel", "4", "--lora", $"legal={adapter}:0.75"))
        {
            using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) };
            string Body(string model, int seed) => new JsonObject
            {
                ["model"] = model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Summarise the contract" }),
                ["temperature"] = 0.8, ["max_tokens"] = 16, ["seed"] = seed,
            }.ToJsonString();
            // base and adapter requests together: they share decode steps
            var replies = await Task.WhenAll(
                http.PostAsync("/v1/chat/completions", new StringContent(Body("m", 7), Encoding.UTF8, "application/json")),
                http.PostAsync("/v1/chat/completions", new StringContent(Body("m:legal", 7), Encoding.UTF8, "application/json")));
            foreach (var r in replies) Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
            for (int t = 0; t < 200 && File.ReadAllLines(log).Length < 2; t++) await Task.Delay(50);
        }
        var lines = File.ReadAllLines(log).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(2, lines.Count);
        Assert.True(AuditChain.Verify(log).Ok);
        var withAdapter = Assert.Single(lines, l => l["adapters"]!.AsArray().Count == 1);
        var a = withAdapter["adapters"]![0]!;
        Assert.Equal(Path.GetFullPath(adapter), a["path"]!.GetValue<string>());
        Assert.Equal(0.75f, a["scale"]!.GetValue<float>());
        Assert.Equal(FileDigest.Sha256(adapter), a["sha256"]!.GetValue<string>());
        Assert.NotEqual(lines[0]["output_sha256"]!.GetValue<string>(), lines[1]["output_sha256"]!.GetValue<string>()); // the adapter changed the reply
        for (int i = 1; i <= 2; i++)
        {
            var (code, stdout, stderr) = Cli("replay", log, "--line", i.ToString(), "-t", "2");
            Assert.True(code == 0, $"line {i}: {stdout}{stderr}");
            Assert.Contains("output hash matches", stdout);
        }
    }

    [Fact]
    public async Task A_server_with_several_models_keeps_one_chain_and_names_each_lines_model()
    {
        using var dir = new TempDir();
        string log = dir.File("audit.log");
        using (var serve = OpenWeights.Tests.Cli.ServeCommandTests.ServeProcess.Start(TinyModels.Qwen, TinyModels.Llama, "--audit", log, "--audit-content"))
        {
            using var http = new HttpClient { BaseAddress = serve.BaseUri, Timeout = TimeSpan.FromMinutes(2) };
            int served = 0;
            foreach (var model in new[] { Path.GetFileNameWithoutExtension(TinyModels.Qwen), Path.GetFileNameWithoutExtension(TinyModels.Llama), Path.GetFileNameWithoutExtension(TinyModels.Qwen) })
            {
                var body = $$"""{"model":"{{model}}","prompt":"Once upon","max_tokens":8,"temperature":0.5,"seed":5}""";
                using var r = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
                Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
                // the line is written before the reply ends: a client holding the reply finds it logged (and in order)
                Assert.Equal(++served, File.ReadAllLines(log).Length);
            }
            for (int t = 0; t < 200 && File.ReadAllLines(log).Length < 3; t++) await Task.Delay(50);
        }
        var lines = File.ReadAllLines(log).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(3, lines.Count);
        Assert.True(AuditChain.Verify(log).Ok); // one chain, not two logs interleaved in one file
        Assert.Equal([FileDigest.Sha256(TinyModels.Qwen), FileDigest.Sha256(TinyModels.Llama), FileDigest.Sha256(TinyModels.Qwen)],
            lines.Select(l => l["model"]!["sha256"]!.GetValue<string>()).ToArray());
        for (int i = 1; i <= 3; i++)
            Assert.Equal(0, Cli("replay", log, "--line", i.ToString(), "-t", "2").Code);
    }

    [Fact]
    public void Replay_refuses_a_line_without_content_in_one_line()
    {
        using var dir = new TempDir();
        string log = dir.File("a.log");
        var model = TestData.Require("models/stories260K.gguf");
        Assert.Equal(0, Cli("run", model, "Once upon a time", "-n", "4", "-t", "1", "--audit", log).Code);
        var (code, _, err) = Cli("replay", log, "--line", "1");
        Assert.Equal(1, code);
        Assert.Equal("openweights: error: this line has no content (the log was written without --audit-content): nothing to replay", err.Trim());
    }

    [Fact]
    public void Replay_reports_both_hashes_when_the_output_differs_and_refuses_another_model()
    {
        using var dir = new TempDir();
        string log = dir.File("a.log");
        var model = TestData.Require("models/stories260K.gguf");
        Assert.Equal(0, Cli("run", model, "Once upon a time", "-n", "8", "--temp", "0.9", "-t", "1", "--audit", log, "--audit-content").Code);
        Assert.Equal(0, Cli("replay", log, "--line", "1", "-t", "1").Code);
        // a forged output: the chain no longer verifies, and replay shows both hashes
        var line = JsonNode.Parse(File.ReadAllLines(log)[0])!.AsObject();
        string logged = line["output_sha256"]!.GetValue<string>();
        line["output_sha256"] = new string('0', 64);
        File.WriteAllText(dir.File("forged.log"), line.ToJsonString() + "\n");
        var (code, _, err) = Cli("replay", dir.File("forged.log"), "--line", "1", "-t", "1");
        Assert.Equal(1, code);
        Assert.Contains($"logged {new string('0', 64)}, replayed {logged}", err);
        var other = Cli("replay", log, "--line", "1", "--model", TinyModels.Qwen);
        Assert.Equal(1, other.Code);
        Assert.Contains("has SHA-256", other.Err);
    }

    [Fact]
    public void Chat_from_stdin_logs_one_line_per_reply_with_the_seed_it_drew()
    {
        using var dir = new TempDir();
        string log = dir.File("a.log");
        global::OpenWeights.Cli.Commands.CliInput.Override.Value = new StringReader("hello\nhow are you\n/bye\n");
        (int code, string _, string err) = (0, "", "");
        try { (code, _, err) = Cli("chat", TinyModels.Qwen, "-n", "6", "-t", "1", "--audit", log, "--audit-content"); }
        finally { global::OpenWeights.Cli.Commands.CliInput.Override.Value = null; }
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(log);
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.Equal("chat", JsonNode.Parse(l)!["source"]!.GetValue<string>()));
        Assert.Equal(0, Cli("replay", log, "--line", "2", "-t", "1").Code);
    }
}
