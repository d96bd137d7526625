using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using OpenWeights.Tests.Chat;

namespace OpenWeights.Tests.Audit;

/// <summary>
/// Proof of no egress: each CLI command that touches a model runs inside a network namespace that has only loopback
/// (<c>unshare -n</c>, then <c>ip link set lo up</c>) under <c>strace -f -e trace=connect,sendto,sendmsg</c>, and the test
/// fails on any connection or datagram addressed to anything but loopback (telemetry, update checks, DNS lookups), whether
/// or not it could have succeeded. Unix sockets and netlink are local and allowed. Needs Linux, root, unshare, ip and
/// strace; skips naming what is missing (CI runs as root and installs strace).
/// </summary>
public partial class NoEgressTests
{
    /// <summary>
    /// The commands checked besides `serve` (which needs a request while it runs: <see cref="Serve_with_a_request_over_loopback_sends_nothing_elsewhere"/>):
    /// name, arguments after `openweights`, stdin. `import` needs a bundle made first: its own test.
    /// </summary>
    private static IEnumerable<(string Name, string Args, string? Stdin)> Commands(string stories, string qwen, string dir) =>
    [
        ("run", $"run {stories} 'Once upon a time' -n 8 -t 1", null),
        ("chat", $"chat {qwen} -n 6 -t 1", "hello\n/bye\n"),
        ("tune", $"tune {stories} --data {dir}/train.txt -o {dir}/tuned --max-steps 2 --ctx 32 -t 1", null),
        ("eval", $"eval {stories} --data {dir}/held.txt --ctx 32 -t 1", null),
    ]; // import: Import_of_a_bundle_and_a_run_of_the_imported_model_send_nothing_beyond_loopback

    private static string Cli => $"{Dotnet()} {typeof(global::OpenWeights.Cli.Cli).Assembly.Location}";

    private static string Dotnet() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h
        : Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p
        : "dotnet";

    [Fact]
    public void Run_chat_tune_and_eval_send_nothing_beyond_loopback()
    {
        SkipUnlessIsolatable();
        var stories = TestData.Require("models/stories260K.gguf");
        using var dir = new TempDir();
        string story = "Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Sue.\n";
        File.WriteAllText(dir.File("train.txt"), string.Concat(Enumerable.Repeat(story, 6)));
        File.WriteAllText(dir.File("held.txt"), story);
        foreach (var (name, args, stdin) in Commands(stories, TinyModels.Qwen, dir.Path))
        {
            string trace = dir.File($"{name}.trace");
            string input = stdin is null ? "/dev/null" : dir.File($"{name}.stdin");
            if (stdin is not null) File.WriteAllText(input, stdin);
            var (code, output) = Isolated($"{Traced(trace)} {Cli} {args} < {input} > {dir.File(name + ".out")} 2>&1; rc=$?; cat {dir.File(name + ".out")}; exit $rc");
            Assert.True(code == 0, $"{name} failed in the namespace: {output}");
            AssertNoEgress(name, File.ReadAllText(trace));
        }
    }

    [Fact]
    public void Serve_with_a_request_over_loopback_sends_nothing_elsewhere()
    {
        SkipUnlessIsolatable();
        var stories = TestData.Require("models/stories260K.gguf");
        using var dir = new TempDir();
        string trace = dir.File("serve.trace"), pid = dir.File("serve.pid"), banner = dir.File("serve.out"), response = dir.File("response");
        const string Body = """{"model":"m","prompt":"Once upon a time","max_tokens":8}""";
        // the namespace is empty, so any fixed port is free; the server's own pid (exec keeps it) lets the script stop it
        string script = $"""
            {Traced(trace)} bash -c 'echo $$ > {pid}; exec {Cli} serve {stories} --port 18080 -t 1' > {banner} 2>&1 &
            for i in $(seq 600); do grep -q 'serving ' {banner} && break; sleep 0.1; done
            exec 3<>/dev/tcp/127.0.0.1/18080
            printf 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {Body.Length}\r\nConnection: close\r\n\r\n%s' '{Body}' >&3
            cat <&3 > {response}
            kill -TERM $(cat {pid}); wait # TERM: a background job of a script ignores SIGINT
            cat {banner}
            """;
        var (_, output) = Isolated(script);
        Assert.Contains("HTTP/1.1 200", File.ReadAllText(response) + output);
        Assert.Contains("\"choices\"", File.ReadAllText(response));
        AssertNoEgress("serve", File.ReadAllText(trace));
    }

    [Fact]
    public void Import_of_a_bundle_and_a_run_of_the_imported_model_send_nothing_beyond_loopback()
    {
        SkipUnlessIsolatable();
        using var dir = new TempDir();
        string srcHub = dir.File("src-hub"), dstHub = dir.File("dst-hub"), bundle = dir.File("b.tar");
        OpenWeights.Tests.Hub.BundleTests.AddRepo(new OpenWeights.Hub.HubStore(srcHub), "acme/tiny-qwen", "1111111111111111111111111111111111111111",
            new() { ["tiny-qwen2-Q8_0.gguf"] = File.ReadAllBytes(TinyModels.Qwen) });
        var (code, output) = Isolated($"HF_HUB_CACHE={srcHub} {Cli} export acme/tiny-qwen -o {bundle} 2>&1"); // made on the connected side in practice
        Assert.True(code == 0, output);
        foreach (var (name, args) in new[] { ("import", $"import {bundle}"), ("run-imported", "run acme/tiny-qwen Hello -n 3 -t 1") })
        {
            string trace = dir.File($"{name}.trace");
            (code, output) = Isolated($"HF_HUB_CACHE={dstHub} {Traced(trace)} {Cli} {args} < /dev/null 2>&1");
            Assert.True(code == 0, $"{name} failed in the namespace: {output}");
            AssertNoEgress(name, File.ReadAllText(trace));
        }
    }

    /// <summary>
    /// `pull` reaches the network by design, but only the configured hub: with HF_ENDPOINT at an address of a network the
    /// namespace lacks, every address it tries is that one (no DNS lookup, no telemetry, no other host); it fails in one line.
    /// </summary>
    [Fact]
    public void Pull_addresses_only_the_configured_hub()
    {
        SkipUnlessIsolatable();
        using var dir = new TempDir();
        string trace = dir.File("pull.trace");
        var (code, output) = Isolated($"HF_HUB_CACHE={dir.File("hub")} HF_ENDPOINT=http://10.9.8.7:8080 {Traced(trace)} {Cli} pull acme/tiny-model < /dev/null 2>&1");
        Assert.NotEqual(0, code);
        Assert.Single(output.Trim().Split('\n'));
        var bad = Violations(File.ReadAllText(trace));
        Assert.NotEmpty(bad); // it did try the hub: the trace sees it
        Assert.All(bad, line => Assert.True(line.Contains("inet_addr(\"10.9.8.7\")") || line.Contains("\"::ffff:10.9.8.7\""), line)); // a dual-mode socket: IPv4-mapped
    }

    /// <summary>The check itself: a connection attempt to another address, made in the same harness, is caught.</summary>
    [Fact]
    public void The_harness_catches_a_connection_attempt_to_another_address()
    {
        SkipUnlessIsolatable();
        using var dir = new TempDir();
        string trace = dir.File("probe.trace");
        Isolated($"{Traced(trace)} bash -c 'exec 3<>/dev/tcp/10.1.2.3/80; exec 4<>/dev/tcp/127.0.0.1/9' 2>/dev/null; true");
        var bad = Violations(File.ReadAllText(trace));
        Assert.Single(bad);
        Assert.Contains("10.1.2.3", bad[0]);
    }

    [Fact]
    public void Violations_keep_loopback_unix_and_netlink_and_flag_everything_else()
    {
        string trace = """
            100 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
            100 sendto(4, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
            100 connect(5, {sa_family=AF_INET, sin_port=htons(18080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
            100 connect(6, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0
            101 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = -1 ENETUNREACH (Network is unreachable)
            101 sendto(8, "x", 1, MSG_NOSIGNAL, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::1111", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH
            101 connect(9, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
            101 connect(10, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 0
            """;
        var bad = Violations(trace);
        Assert.Equal(3, bad.Count);
        Assert.Contains("8.8.8.8", bad[0]);
        Assert.Contains("2606:4700::1111", bad[1]);
        Assert.Contains("AF_PACKET", bad[2]);
    }

    private static string Traced(string trace) => $"strace -f -qq --seccomp-bpf -e trace=connect,sendto,sendmsg -o {trace}";

    private static void AssertNoEgress(string name, string trace)
    {
        var bad = Violations(trace);
        Assert.True(bad.Count == 0, $"{name} addressed something beyond loopback:\n{string.Join("\n", bad)}");
    }

    /// <summary>Trace lines that address a socket other than loopback (127.0.0.0/8, ::1, ::ffff:127.x), Unix or netlink.</summary>
    public static List<string> Violations(string trace)
    {
        var bad = new List<string>();
        foreach (var line in trace.Split('\n'))
        {
            var family = Family().Match(line);
            if (!family.Success) continue; // a call on a connected socket: its address was checked at connect
            switch (family.Groups[1].Value)
            {
                case "AF_UNIX" or "AF_LOCAL" or "AF_NETLINK" or "AF_UNSPEC": continue;
                case "AF_INET":
                    if (Inet4().Match(line) is { Success: true } a4 && a4.Groups[1].Value.StartsWith("127.", StringComparison.Ordinal)) continue;
                    break;
                case "AF_INET6":
                    if (Inet6().Match(line) is { Success: true } a6 && (a6.Groups[1].Value == "::1" || a6.Groups[1].Value.StartsWith("::ffff:127.", StringComparison.Ordinal))) continue;
                    break;
            }
            bad.Add(line.Trim());
        }
        return bad;
    }

    [GeneratedRegex(@"sa_family=(AF_[A-Z0-9]+)")] private static partial Regex Family();
    [GeneratedRegex(@"sin_addr=inet_addr\(""([0-9.]+)""\)")] private static partial Regex Inet4();
    [GeneratedRegex(@"inet_pton\(AF_INET6, ""([0-9a-fA-F:.]+)""")] private static partial Regex Inet6();

    /// <summary>Runs a bash script in a new network namespace with loopback up; returns its exit code and output.</summary>
    private static (int Code, string Output) Isolated(string script)
    {
        var psi = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-n", "--", "bash", "-c", "ip link set lo up || exit 97\n" + script }) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = null; // nothing switched off for the test: what users run is what is traced
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(entireProcessTree: true); Assert.Fail($"timed out: {output}{err.Result}"); }
        return (p.ExitCode, output + err.Result);
    }

    private static readonly Lazy<string?> missing = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return "network namespaces are Linux only";
        if (Environment.UserName != "root" && GetEuid() != 0) return "unshare -n needs root (CI runs as root)";
        foreach (var tool in new[] { "unshare", "ip", "strace" })
            if (!(Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, tool))))
                return $"{tool} is not installed (apt-get install -y {(tool == "ip" ? "iproute2" : tool == "unshare" ? "util-linux" : tool)})";
        try
        {
            var (code, output) = Isolated("true");
            return code == 0 ? null : $"unshare -n or ip link set lo up failed here (exit {code}: {output.Trim()})";
        }
        catch (Exception e) { return $"unshare could not run: {e.Message}"; }
    });

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")] private static extern uint GetEuid();

    private static void SkipUnlessIsolatable()
    {
        if (missing.Value is { } reason) Assert.Skip($"no-egress check skipped: {reason}");
    }
}
